// The seam between the FUSE presentation of a layer (tree, attributes, mount) and the span
// machinery that produces its file contents (fetch, verify, inflate, cache).
import type { FileMetadata } from "../formats/toc.js";

/** What `/.soci-snapshotter/<digest>.json` reports for a layer (docs/snapshotter.md §4.2). */
export interface LayerState {
  digest: string;
  /** Compressed layer size. */
  size: number;
  /** Compressed bytes fetched so far (distinct ranges). */
  fetchedSize: number;
  /** The last error any operation on this layer met. */
  error?: string;
}

/** Verified file contents of one layer. */
export interface LayerFileReader {
  /**
   * Bytes [offset, min(offset + length, size)) of the payload of regular file `entry` (empty at or
   * past EOF). Every byte comes from spans whose sha256 matched the ztoc's span digest; anything
   * else rejects (the FUSE layer answers EIO).
   */
  read(entry: FileMetadata, offset: number, length: number): Promise<Uint8Array>;
  /** Current state, for the state file. */
  state(): LayerState;
  /** Records a failure met outside `read` (e.g. by a FUSE operation) as the layer's last error. */
  noteError(err: unknown): void;
}
