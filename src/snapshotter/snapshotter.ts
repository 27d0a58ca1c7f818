// The snapshotter's operations (docs/snapshotter.md §1.7, §2.3, §5.1): metadata in the SnapshotStore,
// contents in `<root>/snapshots/<id>/{fs,work}`, mounts per overlay-mounts.ts, and the
// RemotePreparer hook for labelled Prepares. Transport-free: service.ts maps gRPC onto it.
import { chmodSync, lchownSync, mkdirSync, mkdtempSync, renameSync, rmSync } from "node:fs";
import { chmod, mkdir, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { removeOrphans } from "./cleanup.js";
import { diskUsage } from "./disk-usage.js";
import { hasCode, UnimplementedError, withContext } from "../errors/errors.js";
import { alreadyExists, unavailable } from "./errors.js";
import { silentLogger, type Logger } from "../log/log.js";
import { forceUnmount, mountPoints, mountPointsUnder } from "./mountinfo.js";
import { fsDir, needsUserxattr, snapshotMounts, type Mount } from "./overlay-mounts.js";
import { checkOverlaySupported } from "./overlay-support.js";
import { lockRoot, type RootLock } from "./root-lock.js";
import {
  LABEL_HAS_SOCI_INDEX_DIGEST,
  LABEL_REMOTE,
  LABEL_REMOTE_NAMESPACE,
  LABEL_REMOTE_VALUE,
  LABEL_TARGET_SNAPSHOT_REF,
  type RemotePreparer,
  type RemotePrepareResult,
} from "./remote.js";
import {
  SnapshotStore,
  type Labels,
  type SnapshotInfo,
  type SnapshotKind,
  type SnapshotRef,
  type Usage,
} from "./snapshot-store.js";

export interface SnapshotterOptions {
  /** the snapshotter's directory: `metadata.db` and `snapshots/` live here */
  root: string;
  remote?: RemotePreparer;
  logger?: Logger;
  /** override the `userxattr` detection (default: needed only inside a user namespace) */
  userxattr?: boolean;
  /** start even if a remote snapshot cannot be re-mounted (it then reports Unavailable) */
  allowInvalidMountsOnRestart?: boolean;
  /** skip the startup check that overlayfs works under `root` (config skip_check_snapshotter_supported) */
  skipOverlayCheck?: boolean;
}

export class Snapshotter {
  readonly root: string;
  readonly snapshotsDir: string;
  private readonly store: SnapshotStore;
  private readonly remote: RemotePreparer | undefined;
  private readonly log: Logger;
  private readonly userxattr: boolean;
  /** Labelled Prepares in progress, by target: one layer is provided once, not once per puller. */
  private readonly preparing = new Map<string, Promise<Mount[]>>();

  private constructor(
    opts: SnapshotterOptions,
    store: SnapshotStore,
    private readonly lock: RootLock,
  ) {
    this.root = resolve(opts.root);
    this.snapshotsDir = join(this.root, "snapshots");
    this.store = store;
    this.remote = opts.remote;
    this.log = opts.logger ?? silentLogger;
    this.userxattr = opts.userxattr ?? needsUserxattr();
  }

  /**
   * Opens the snapshotter: creates the directories, opens the store and restores the remote
   * snapshots a previous run left (§5.1).
   */
  static async open(opts: SnapshotterOptions): Promise<Snapshotter> {
    const root = resolve(opts.root);
    await mkdir(root, { recursive: true, mode: 0o700 });
    // before anything touches the directory: restore would unmount another instance's layers
    const lock = await lockRoot(root);
    let store: SnapshotStore | undefined;
    try {
      await mkdir(join(root, "snapshots"), { recursive: true, mode: 0o700 });
      // above every FUSE mount and unpacked layer: only root may enter, whatever mode the root has
      await chmod(join(root, "snapshots"), 0o700);
      if (!opts.skipOverlayCheck) await checkOverlaySupported(root, opts.userxattr ?? needsUserxattr());
      store = SnapshotStore.open(join(root, "metadata.db"));
      const s = new Snapshotter(opts, store, lock);
      await s.restore(opts.allowInvalidMountsOnRestart ?? false);
      return s;
    } catch (err) {
      store?.close();
      await lock.release();
      throw err;
    }
  }

  /**
   * Prepare (§2.3): an active snapshot on `parent`. With the target-snapshot label and a remote
   * preparer, the layer may be provided here; then the snapshot is committed under the target
   * name and AlreadyExists tells containerd it needs nothing else.
   */
  async prepare(key: string, parent: string, labels: Labels, namespace: string): Promise<Mount[]> {
    const target = labels[LABEL_TARGET_SNAPSHOT_REF] ?? "";
    if (target === "" || this.remote === undefined) {
      const s = await this.createSnapshot("active", key, parent, labels);
      return this.mountsFor(s, parent);
    }
    // Two images sharing a layer, pulled at the same time, both ask for it: the second waits for
    // the first and then finds it committed, instead of mounting the layer a second time on a
    // snapshot nobody will use.
    for (let p = this.preparing.get(target); p; p = this.preparing.get(target)) await p.catch(() => undefined);
    const work = this.prepareLayer(key, parent, labels, namespace, target, this.remote);
    this.preparing.set(target, work);
    try {
      return await work;
    } finally {
      if (this.preparing.get(target) === work) this.preparing.delete(target);
    }
  }

  private async prepareLayer(
    key: string,
    parent: string,
    labels: Labels,
    namespace: string,
    target: string,
    remote: RemotePreparer,
  ): Promise<Mount[]> {
    if (this.isCommittedLayer(target, parent)) {
      // Already provided (e.g. the same image pulled in another namespace): containerd's List
      // lookup finds it; mounting the layer a second time would only leave a mount to clean up.
      throw alreadyExists(`target snapshot ${JSON.stringify(target)}`);
    }
    const s = await this.createSnapshot("active", key, parent, labels);
    const remoteLabels: Labels = { ...labels, [LABEL_REMOTE_NAMESPACE]: namespace };
    const mountpoint = fsDir(this.snapshotsDir, s.id);
    let result: RemotePrepareResult;
    try {
      result = await remote.prepare({
        key,
        target,
        parent,
        namespace,
        labels: remoteLabels,
        snapshotId: s.id,
        mountpoint,
        parentDirs: s.parentIds.map((id) => fsDir(this.snapshotsDir, id)),
      });
    } catch (err) {
      this.log.warn("failed to prepare remote snapshot; deferring to container runtime", {
        key,
        parent,
        "remote-snapshot-prepared": "false",
        "defer-snapshot-runtime": "true",
        error: (err as Error).message,
      });
      await this.clearMountpoint(mountpoint);
      return this.mountsFor(s, parent);
    }
    if (result.outcome === "failed") {
      this.log.warn("failed to prepare local snapshot", {
        key,
        parent,
        "local-snapshot-prepared": "false",
        error: result.error.message,
      });
      await this.clearMountpoint(mountpoint);
      this.store.remove(key);
      throw result.error;
    }
    if (result.outcome === "defer") {
      this.log.warn(result.reason ?? "no valid SOCI index found; deferring to container runtime", {
        key,
        parent,
        "defer-snapshot-runtime": "true",
      });
      await this.clearMountpoint(mountpoint);
      return this.mountsFor(s, parent);
    }

    const isRemote = result.outcome === "remote";
    const commitLabels: Labels = { ...remoteLabels, ...result.labels, [LABEL_HAS_SOCI_INDEX_DIGEST]: "true" };
    if (isRemote) commitLabels[LABEL_REMOTE] = LABEL_REMOTE_VALUE;
    try {
      const usage = isRemote ? { size: 0, inodes: 0 } : await diskUsage(mountpoint);
      this.store.commitActive(key, target, usage, commitLabels);
    } catch (err) {
      if (!hasCode(err, "AlreadyExists")) throw err;
      // The target name is taken (by a snapshot on another parent: the same layer on the same
      // parent was answered above). Ours can never be committed and containerd will never
      // reference it: take it down now rather than leave a mounted layer until containerd's GC.
      this.log.warn("target snapshot exists on another parent; dropping the prepared layer", { key, parent, target });
      if (isRemote) await this.unmount(mountpoint).catch(() => undefined);
      this.store.remove(key);
      throw alreadyExists(`target snapshot ${JSON.stringify(target)}`);
    }
    if (isRemote) {
      this.log.info("remote snapshot successfully prepared.", { key, parent, "remote-snapshot-prepared": "true" });
    } else {
      this.log.info("local snapshot successfully prepared", { key, parent, "local-snapshot-prepared": "true" });
    }
    throw alreadyExists(`target snapshot ${JSON.stringify(target)}`);
  }

  /**
   * containerd will write the layer into this directory itself: a mount the preparer left
   * behind (a half-done FUSE mount) must not stay in the way.
   */
  private async clearMountpoint(mountpoint: string): Promise<void> {
    if (!(await mountPoints()).includes(mountpoint)) return;
    this.log.warn("remote preparer left a mount on a deferred snapshot; unmounting", { mountpoint });
    await this.unmount(mountpoint);
  }

  /** Whether `target` is a committed snapshot on `parent` made from the same layer label. */
  private isCommittedLayer(target: string, parent: string): boolean {
    try {
      const { info } = this.store.getInfo(target);
      return info.kind === "committed" && info.parent === parent && info.labels[LABEL_TARGET_SNAPSHOT_REF] === target;
    } catch (err) {
      if (hasCode(err, "NotFound")) return false;
      throw err;
    }
  }

  /** View: a read-only snapshot of `parent`. */
  async view(key: string, parent: string, labels: Labels): Promise<Mount[]> {
    const s = await this.createSnapshot("view", key, parent, labels);
    return this.mountsFor(s, parent);
  }

  /** Mounts of an active or view snapshot. */
  async mounts(key: string): Promise<Mount[]> {
    let s: SnapshotRef;
    try {
      s = this.store.getSnapshot(key);
    } catch (err) {
      throw withContext(err, "failed to get active mount");
    }
    return this.mountsFor(s, key);
  }

  /** Commit: the active snapshot `key` becomes `name`; its usage is measured now. */
  async commit(name: string, key: string, labels: Labels): Promise<void> {
    const { id } = this.store.getInfo(key);
    const usage = await diskUsage(fsDir(this.snapshotsDir, id));
    this.store.commitActive(key, name, usage, labels);
    this.log.debug("committed snapshot", { key, name });
  }

  /** Remove forgets the snapshot; its directory goes at the next Cleanup. */
  async remove(key: string): Promise<void> {
    let labels: Labels | undefined;
    if (this.remote?.removed) {
      try {
        labels = this.store.getInfo(key).info.labels;
      } catch {
        // store.remove reports the missing key
      }
    }
    const { id } = this.store.remove(key);
    this.log.debug("removed snapshot", { key, id });
    if (labels) this.remote!.removed!(labels);
  }

  stat(key: string): SnapshotInfo {
    return this.store.getInfo(key).info;
  }

  update(name: string, labels: Labels, paths: readonly string[]): SnapshotInfo {
    return this.store.updateInfo(name, labels, paths);
  }

  /** Usage: measured live for an active snapshot, as stored for the others. */
  async usage(key: string): Promise<Usage> {
    const { id, info, usage } = this.store.getInfo(key);
    if (info.kind !== "active") return usage;
    return diskUsage(fsDir(this.snapshotsDir, id));
  }

  list(filters: readonly string[]): SnapshotInfo[] {
    return this.store.walk(filters);
  }

  /** Cleanup: delete the directories no snapshot owns any more. */
  async cleanup(): Promise<string[]> {
    const removed = await removeOrphans(
      this.snapshotsDir,
      () => new Set(this.store.idMap().keys()),
      (mp) => this.unmount(mp),
    );
    if (removed.length > 0) this.log.debug("cleaned up snapshot directories", { removed });
    return removed;
  }

  /**
   * Closes the store. With `unmount` (the daemon's SIGINT), every mount on a snapshot's fs/ is
   * taken down first; without (SIGTERM) they stay for the next start to repair.
   */
  async close(opts: { unmount?: boolean } = {}): Promise<void> {
    if (opts.unmount ?? true) {
      for (const mp of await mountPointsUnder(this.snapshotsDir)) {
        try {
          await this.unmount(mp);
        } catch (err) {
          this.log.warn("failed to unmount", { mountpoint: mp, error: (err as Error).message });
        }
      }
    }
    this.store.close();
    await this.lock.release();
  }

  private async unmount(mountpoint: string): Promise<void> {
    if (this.remote?.unmount) await this.remote.unmount(mountpoint);
    if ((await mountPoints()).includes(mountpoint)) await forceUnmount(mountpoint);
  }

  /**
   * Creates the snapshot's directories and record together: the directories are built under a
   * temporary name and renamed to `<id>` inside the store transaction, so a failure leaves
   * neither (SOCI createSnapshot). Everything between mkdtemp and the rename is synchronous, so
   * a concurrent Cleanup never sees a half-made snapshot.
   */
  private async createSnapshot(kind: SnapshotKind, key: string, parent: string, labels: Labels): Promise<SnapshotRef> {
    // A new layer's root takes the owner of the layer below it. Read asynchronously: the parent
    // may be a FUSE mount served by this process.
    let owner: { uid: number; gid: number } | undefined;
    if (parent !== "") {
      try {
        const { id } = this.store.getInfo(parent);
        const st = await stat(fsDir(this.snapshotsDir, id));
        owner = { uid: st.uid, gid: st.gid };
      } catch {
        // a missing parent is reported by the store below
      }
    }
    const tmp = mkdtempSync(join(this.snapshotsDir, "new-"));
    try {
      mkdirSync(join(tmp, "fs"));
      chmodSync(join(tmp, "fs"), 0o755);
      if (kind === "active") {
        mkdirSync(join(tmp, "work"));
        chmodSync(join(tmp, "work"), 0o711);
      }
      if (owner) lchownSync(join(tmp, "fs"), owner.uid, owner.gid);
      return this.store.createSnapshot(kind, key, parent, labels, (s) => {
        const dir = join(this.snapshotsDir, s.id);
        // Only a crash between a rename and its commit can leave a directory with an unused id.
        rmSync(dir, { recursive: true, force: true });
        renameSync(tmp, dir);
      });
    } catch (err) {
      rmSync(tmp, { recursive: true, force: true });
      throw err;
    }
  }

  /** The mounts for `s`, after checking that the remote layers under `checkKey` still work. */
  private async mountsFor(s: SnapshotRef, checkKey: string): Promise<Mount[]> {
    if (checkKey !== "") await this.checkAvailability(checkKey);
    return snapshotMounts(this.snapshotsDir, s, { userxattr: this.userxattr });
  }

  /** checkAvailability (§1.7): every remote snapshot in the chain from `key` down must answer. */
  private async checkAvailability(key: string): Promise<void> {
    const checks: Promise<void>[] = [];
    for (let k = key; k !== ""; ) {
      const { id, info } = this.store.getInfo(k);
      if (info.labels[LABEL_REMOTE] !== undefined) {
        const mountpoint = fsDir(this.snapshotsDir, id);
        checks.push(
          (async () => {
            if (!this.remote?.check) {
              if (!this.remote) throw new UnimplementedError("no remote snapshot support in this snapshotter");
              return;
            }
            await this.remote.check(mountpoint, info.labels);
          })().catch((err: Error) => {
            this.log.warn("layer is unavailable", { key: k, id, error: err.message });
            throw unavailable(`layer ${JSON.stringify(id)} unavailable`);
          }),
        );
      }
      k = info.parent;
    }
    await Promise.all(checks);
  }

  /**
   * Restore (§5.1): adopt the remote mounts that still serve (a FUSE host outlived the daemon,
   * §5.8), force-unmount whatever else a previous run left mounted under `snapshots/`, then mount
   * every other remote snapshot again through the remote preparer.
   */
  private async restore(allowInvalid: boolean): Promise<void> {
    const live = (await this.remote?.liveMounts?.()) ?? new Set<string>();
    const remote = new Map<string, SnapshotInfo & { id: string }>();
    for (const { id, info } of this.store.all())
      if (info.labels[LABEL_REMOTE] !== undefined) remote.set(fsDir(this.snapshotsDir, id), { ...info, id });
    for (const mp of await mountPointsUnder(this.snapshotsDir)) {
      if (live.has(mp) && remote.has(mp)) continue;
      if (live.has(mp)) {
        // mounted for a Prepare the previous daemon never committed
        this.log.debug("unmounting a layer no snapshot references", { mountpoint: mp });
        await this.unmount(mp);
        continue;
      }
      this.log.debug("unmounting leftover mount", { mountpoint: mp });
      await forceUnmount(mp);
    }
    await this.remountRemote(remote, live, allowInvalid);
  }

  /**
   * Mounts again every remote snapshot whose layer no longer answers (the FUSE host that served
   * it stopped or died, §5.8); the ones still served are left alone. Failures are logged: the
   * snapshots concerned answer Unavailable.
   */
  async repairRemote(): Promise<void> {
    const live = (await this.remote?.liveMounts?.()) ?? new Set<string>();
    const remote = new Map<string, SnapshotInfo & { id: string }>();
    for (const { id, info } of this.store.all())
      if (info.labels[LABEL_REMOTE] !== undefined) remote.set(fsDir(this.snapshotsDir, id), { ...info, id });
    const mounted = new Set(await mountPointsUnder(this.snapshotsDir));
    for (const mp of remote.keys()) {
      if (live.has(mp) || !mounted.has(mp)) continue;
      this.log.debug("unmounting dead layer mount", { mountpoint: mp });
      await forceUnmount(mp).catch((err: Error) =>
        this.log.warn("failed to unmount", { mountpoint: mp, error: err.message }),
      );
    }
    await this.remountRemote(remote, live, true);
  }

  private async remountRemote(
    remote: Map<string, SnapshotInfo & { id: string }>,
    live: Set<string>,
    allowInvalid: boolean,
  ): Promise<void> {
    for (const [mountpoint, info] of remote) {
      const id = info.id;
      if (live.has(mountpoint)) {
        this.log.info("adopted remote snapshot", { key: info.name, id });
        continue;
      }
      try {
        if (!this.remote?.restore) throw new UnimplementedError("no remote snapshot support in this snapshotter");
        await mkdir(mountpoint, { recursive: true, mode: 0o755 });
        await this.remote.restore({
          snapshotId: id,
          name: info.name,
          mountpoint,
          labels: info.labels,
          namespace: info.labels[LABEL_REMOTE_NAMESPACE] ?? "default",
        });
        this.log.info("restored remote snapshot", { key: info.name, id });
      } catch (err) {
        const failure = withContext(err, `failed to restore remote snapshot ${info.name} (id ${id})`);
        if (!allowInvalid) throw failure;
        this.log.warn(failure.message, { key: info.name, id });
      }
    }
  }
}
