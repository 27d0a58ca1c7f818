// containerd's snapshots service as a client (docs/snapshotter.md §1.1), bound to one snapshotter.
import type { CallOptions, Rpc } from "./client.js";
import { labelPaths, toDate, type Labels, type Mount, type Timestamp } from "./types.js";

export type SnapshotKind = "UNKNOWN" | "VIEW" | "ACTIVE" | "COMMITTED";

export interface SnapshotInfo {
  name: string;
  parent: string;
  kind: SnapshotKind;
  createdAt?: Date;
  updatedAt?: Date;
  labels: Labels;
}

export interface SnapshotUsage {
  size: number;
  inodes: number;
}

interface ProtoInfo {
  name: string;
  parent: string;
  kind: SnapshotKind;
  createdAt: Timestamp | null;
  updatedAt: Timestamp | null;
  labels: Labels;
}

function info(p: ProtoInfo): SnapshotInfo {
  return {
    name: p.name,
    parent: p.parent,
    kind: p.kind,
    createdAt: toDate(p.createdAt),
    updatedAt: toDate(p.updatedAt),
    labels: { ...p.labels },
  };
}

function mounts(ms: Mount[]): Mount[] {
  return ms.map((m) => ({ type: m.type, source: m.source, options: [...m.options] }));
}

export class SnapshotsService {
  constructor(
    private readonly rpc: Rpc,
    readonly snapshotter: string,
  ) {}

  /** An active snapshot `key` on top of committed `parent` ("" for none); its mounts. */
  async prepare(key: string, parent = "", labels: Labels = {}, opts?: CallOptions): Promise<Mount[]> {
    const res = await this.rpc.unary<unknown, { mounts: Mount[] }>(
      "snapshots",
      "Prepare",
      { snapshotter: this.snapshotter, key, parent, labels },
      opts,
    );
    return mounts(res.mounts);
  }

  /** A read-only view of `parent`. */
  async view(key: string, parent = "", labels: Labels = {}, opts?: CallOptions): Promise<Mount[]> {
    const res = await this.rpc.unary<unknown, { mounts: Mount[] }>(
      "snapshots",
      "View",
      { snapshotter: this.snapshotter, key, parent, labels },
      opts,
    );
    return mounts(res.mounts);
  }

  async mounts(key: string, opts?: CallOptions): Promise<Mount[]> {
    const res = await this.rpc.unary<unknown, { mounts: Mount[] }>(
      "snapshots",
      "Mounts",
      { snapshotter: this.snapshotter, key },
      opts,
    );
    return mounts(res.mounts);
  }

  /** Commits active snapshot `key` as `name` (the key goes away). */
  async commit(name: string, key: string, labels: Labels = {}, opts?: CallOptions): Promise<void> {
    await this.rpc.unary("snapshots", "Commit", { snapshotter: this.snapshotter, name, key, labels }, opts);
  }

  /** FailedPreconditionError while the snapshot has children. */
  async remove(key: string, opts?: CallOptions): Promise<void> {
    await this.rpc.unary("snapshots", "Remove", { snapshotter: this.snapshotter, key }, opts);
  }

  async stat(key: string, opts?: CallOptions): Promise<SnapshotInfo> {
    const res = await this.rpc.unary<unknown, { info: ProtoInfo }>(
      "snapshots",
      "Stat",
      { snapshotter: this.snapshotter, key },
      opts,
    );
    return info(res.info);
  }

  /** Sets (empty value: removes) the given labels of snapshot `key`. */
  async setLabels(key: string, labels: Labels, opts?: CallOptions): Promise<SnapshotInfo> {
    return this.update({ name: key, labels }, labelPaths(labels), opts);
  }

  /** Updates mutable fields (labels); `paths` as containerd's field mask (`labels.<key>`, or `labels`). */
  async update(snapshot: { name: string; labels: Labels }, paths: string[], opts?: CallOptions): Promise<SnapshotInfo> {
    const res = await this.rpc.unary<unknown, { info: ProtoInfo }>(
      "snapshots",
      "Update",
      {
        snapshotter: this.snapshotter,
        info: { name: snapshot.name, labels: snapshot.labels },
        updateMask: { paths },
      },
      opts,
    );
    return info(res.info);
  }

  async usage(key: string, opts?: CallOptions): Promise<SnapshotUsage> {
    const res = await this.rpc.unary<unknown, SnapshotUsage>(
      "snapshots",
      "Usage",
      { snapshotter: this.snapshotter, key },
      opts,
    );
    return { size: res.size, inodes: res.inodes };
  }

  /** Snapshots matching any of `filters` (e.g. `parent==<name>`, `labels."k"==v`); streamed in batches. */
  async list(filters: string[] = [], opts?: CallOptions): Promise<SnapshotInfo[]> {
    const out: SnapshotInfo[] = [];
    for await (const msg of this.rpc.serverStream<unknown, { info: ProtoInfo[] }>(
      "snapshots",
      "List",
      { snapshotter: this.snapshotter, filters },
      opts,
    )) {
      for (const i of msg.info) out.push(info(i));
    }
    return out;
  }

  /** Asks the snapshotter to release unused resources (NotImplemented on some backends). */
  async cleanup(opts?: CallOptions): Promise<void> {
    await this.rpc.unary("snapshots", "Cleanup", { snapshotter: this.snapshotter }, opts);
  }
}
