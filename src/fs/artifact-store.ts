// Where the snapshotter keeps the SOCI artifacts it fetches (SNAPSHOTTER.md §3.3, `[content_store]`):
// * `type = "soci"` — the local OCI layout `<root>/content` (ContentStore, used as is: it has the
//   shape below and keeps no labels);
// * `type = "containerd"` — containerd's content store, in the namespace of the Prepare: the SOCI
//   index is committed labelled `containerd.io/gc.root` and with a `gc.ref.content.ztoc.<i>` label
//   per layers[] entry (gc-labels.ts), and a batch of writes is held by one lease until the index
//   references them (the reference's `BatchOpen`).
import type { ContainerdClient } from "../containerd/client.js";
import { ContainerdBlobTarget } from "../containerd/content-source.js";
import { GC_ROOT } from "../containerd/gc-labels.js";
import { openLease, withLease } from "../containerd/leases.js";
import type { Labels } from "../containerd/types.js";

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

/** Go's `time.RFC3339` in UTC, the value the reference gives `containerd.io/gc.root`. */
function rfc3339(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

/**
 * SOCI artifacts in containerd's content store, in `client`'s namespace. Digests and sizes are
 * checked by containerd on commit. A write outside a batch gets a lease of its own: the blob is kept
 * once committed only because an index already references it.
 */
export class ContainerdArtifactStore implements ArtifactStore {
  private readonly target: ContainerdBlobTarget;

  constructor(readonly client: ContainerdClient) {
    this.target = new ContainerdBlobTarget(client);
  }

  get namespace(): string {
    return this.client.namespace;
  }

  exists(digest: string): Promise<boolean> {
    return this.target.exists(digest);
  }

  get(digest: string): Promise<Uint8Array> {
    return this.target.get(digest);
  }

  async put(bytes: Uint8Array, expected: { digest: string; size?: number }, opts: PutOptions = {}): Promise<void> {
    // the index's gc.ref.content.* labels come from its content (ContainerdBlobTarget)
    const labels: Labels = opts.index ? { [GC_ROOT]: rfc3339(new Date()) } : {};
    if (this.client.lease) {
      await this.target.put(bytes, expected, labels);
      return;
    }
    await withLease(this.client, (leased) => new ContainerdBlobTarget(leased).put(bytes, expected, labels));
  }

  async batch(): Promise<ArtifactBatch> {
    const { leased, release } = await openLease(this.client);
    return { store: new ContainerdArtifactStore(leased), done: release };
  }
}
