// SOCI artifacts in containerd's content store (`[content_store] type = "containerd"`,
// docs/snapshotter.md §3.3), in the namespace of the Prepare: the SOCI index is committed labelled
// `containerd.io/gc.root` and with a `gc.ref.content.ztoc.<i>` label per layers[] entry
// (containerd/gc-labels.ts), and a batch of writes is held by one lease until the index references
// them (the reference's `BatchOpen`).
import type { ContainerdClient } from "../containerd/client.js";
import { ContainerdContentStore } from "../containerd/content-source.js";
import { GC_ROOT } from "../containerd/gc-labels.js";
import { openLease, withLease } from "../containerd/leases.js";
import type { Labels } from "../containerd/types.js";
import type { ArtifactBatch, ArtifactStore, PutOptions } from "../fs/artifact-store.js";

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
  private readonly target: ContainerdContentStore;

  constructor(readonly client: ContainerdClient) {
    this.target = new ContainerdContentStore(client);
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
    // the index's gc.ref.content.* labels come from its content (ContainerdContentStore.put)
    const labels: Labels = opts.index ? { [GC_ROOT]: rfc3339(new Date()) } : {};
    if (this.client.lease) {
      await this.target.put(bytes, expected, labels);
      return;
    }
    await withLease(this.client, (leased) => new ContainerdContentStore(leased).put(bytes, expected, labels));
  }

  async batch(): Promise<ArtifactBatch> {
    const { leased, release } = await openLease(this.client);
    return { store: new ContainerdArtifactStore(leased), done: release };
  }
}
