// The one pair of blob interfaces: BlobReader (by digest, whatever holds the blob: a local OCI
// layout, a registry repository, containerd's content store) and BlobWriter (content stored only
// when it hashes to what the caller expects). The index builder reads an image through a
// BlobReader and writes its artifacts through a BlobWriter; a convert's destination is one too.
import type { Descriptor } from "../formats/oci.js";

/** Bytes to store: all at once, or streamed. */
export type BlobContent = Uint8Array | AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

export interface BlobInfo {
  digest: string;
  size: number;
}

/** What a written blob must be: its digest, its size when known, its media type where the store needs it. */
export interface ExpectedBlob {
  digest: string;
  size?: number;
  mediaType?: string;
}

export interface BlobReader {
  /** A whole blob. `mediaType` tells a registry whether to ask for a manifest or a blob. */
  get(digest: string, mediaType?: string): Promise<Uint8Array>;
  exists(digest: string, mediaType?: string): Promise<boolean>;
  /** A blob's bytes as they are read (layers are never held whole). */
  createReadStream(digest: string): Promise<AsyncIterable<Uint8Array>>;
}

export interface BlobWriter {
  /**
   * Stores `content` if it hashes to `expected.digest` (and measures `expected.size`); otherwise
   * fails with a DigestMismatch-class error and stores nothing. A blob already there is kept.
   */
  put(content: BlobContent, expected: ExpectedBlob): Promise<BlobInfo>;
  /** `put`; a store that lists manifests (an OCI layout's index.json) lists `desc` when it is one. */
  putDescriptor(desc: Descriptor, content: BlobContent): Promise<Descriptor>;
}
