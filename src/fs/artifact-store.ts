// Where the snapshotter keeps the SOCI artifacts it fetches (docs/snapshotter.md §3.3, `[content_store]`):
// `type = "soci"` is the local OCI layout `<root>/content` (ContentStore has this shape and keeps no
// labels); `type = "containerd"` is snapshotter/containerd-artifact-store.ts.

export interface PutOptions {
  /**
   * The blob is a SOCI index: a store that keeps labels makes it a GC root that references every
   * artifact in its layers[] (ztocs and prefetch artifacts), so they live as long as it does.
   */
  index?: boolean;
}

export interface ArtifactStore {
  exists(digest: string): Promise<boolean>;
  /** The stored blob (trusted as is); a missing blob is BlobNotFoundError. */
  get(digest: string): Promise<Uint8Array>;
  /** Stores `bytes` only if they have `expected`'s digest (and size); a blob already there is kept. */
  put(bytes: Uint8Array, expected: { digest: string; size?: number }, opts?: PutOptions): Promise<unknown>;
  /** A view whose writes are all held by one lease until `done` (stores without GC: none). */
  batch?(): Promise<ArtifactBatch>;
}

export interface ArtifactBatch {
  store: ArtifactStore;
  /** Ends the batch (never throws). */
  done(): Promise<void>;
}

/** `store.batch()`, or the store itself when it has no garbage collector to hold off. */
export function openBatch(store: ArtifactStore): Promise<ArtifactBatch> {
  return store.batch ? store.batch() : Promise.resolve({ store, done: () => Promise.resolve() });
}
