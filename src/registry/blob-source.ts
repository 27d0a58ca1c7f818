// An image's blobs read from its registry (a BlobSource): the index builder, the pull client and
// the snapshotter read manifests and blobs through it. Kept apart from the client so a pull loads
// nothing else to resolve an image.
import { isIndexType, isManifestType } from "../formats/oci.js";
import type { RegistryClient } from "./client.js";
import type { ImageRef } from "./types.js";
import type { BlobSource } from "../store/blob-source.js";

/**
 * An image's blobs read straight from its registry: layers stream from the network into the index
 * builder once, never staged on disk. Manifests are fetched by digest (size-checked by the client).
 */
export class RegistrySource implements BlobSource {
  private readonly manifests = new Map<string, Uint8Array>();

  constructor(
    private readonly client: RegistryClient,
    readonly ref: ImageRef,
  ) {}

  /** Remembers manifest bytes already fetched (they are asked for by digest later). */
  remember(digest: string, bytes: Uint8Array): void {
    this.manifests.set(digest, bytes);
  }

  async get(digest: string, mediaType?: string): Promise<Uint8Array> {
    const known = this.manifests.get(digest);
    if (known) return known;
    if (mediaType && (isManifestType(mediaType) || isIndexType(mediaType))) {
      const { bytes } = await this.client.getManifest({ ...this.ref, tag: undefined, digest });
      this.manifests.set(digest, bytes);
      return bytes;
    }
    return this.client.getBlob(this.ref, digest);
  }

  async exists(digest: string, mediaType?: string): Promise<boolean> {
    if (this.manifests.has(digest)) return true;
    // blobs: a HEAD, never the download
    if (!mediaType || !(isManifestType(mediaType) || isIndexType(mediaType)))
      return (await this.client.blobExists(this.ref, digest)) !== undefined;
    try {
      await this.get(digest, mediaType);
      return true;
    } catch (err) {
      if ((err as { code?: string }).code === "NotFound") return false;
      throw err;
    }
  }

  async createReadStream(digest: string): Promise<AsyncIterable<Uint8Array>> {
    return this.client.blobStream(this.ref, digest);
  }
}
