// The hook through which remote (lazily loaded) snapshots plug into the plain overlay
// snapshotter: docs/snapshotter.md §2.3. On a Prepare carrying the target-snapshot label the
// snapshotter creates the active snapshot as usual, then asks the RemotePreparer to fill
// `snapshots/<id>/fs`. "remote" (a FUSE mount) and "local" (unpacked by us) are committed under the
// target name and answered with AlreadyExists, so containerd never downloads the layer; "defer"
// hands the ordinary overlay mounts back and containerd applies the layer itself.
import type { Labels } from "./snapshot-store.js";

/** containerd's client unpacker names the layer's chain ID with this label. */
export const LABEL_TARGET_SNAPSHOT_REF = "containerd.io/snapshot.ref";
/** Marks a snapshot backed by a remote mount (availability checks, restore after restart). */
export const LABEL_REMOTE = "containerd.io/snapshot/remote";
export const LABEL_REMOTE_VALUE = "remote snapshot";
/** The namespace the layer was prepared in, kept for restore. */
export const LABEL_REMOTE_NAMESPACE = "containerd.io/snapshot/remote/namespace";
export const LABEL_HAS_SOCI_INDEX_DIGEST = "containerd.io/snapshot/remote/has.soci.index.digest";

export interface RemotePrepareRequest {
  /** backend key of the new active snapshot, e.g. `default/3/extract-… sha256:…` */
  key: string;
  /** the chain ID containerd wants (value of `containerd.io/snapshot.ref`) */
  target: string;
  /** the parent's name ("" for a bottom layer) */
  parent: string;
  /** from the `containerd-namespace` header, else the key's first path segment */
  namespace: string;
  /** the Prepare's labels plus `containerd.io/snapshot/remote/namespace` */
  labels: Labels;
  snapshotId: string;
  /** `<root>/snapshots/<id>/fs`, an empty directory: mount the layer here, or unpack it into it */
  mountpoint: string;
  /** the parents' content directories, nearest first */
  parentDirs: string[];
}

export type RemotePrepareResult =
  /** The layer is mounted at `mountpoint` (usage recorded as 0). */
  | { outcome: "remote"; labels?: Labels }
  /** The layer was unpacked into `mountpoint` by the preparer (usage measured). */
  | { outcome: "local"; labels?: Labels }
  /** Not ours (e.g. no SOCI index): containerd downloads and applies the layer itself. */
  | { outcome: "defer"; reason?: string }
  /** Parallel pull mode could not provide the layer: the Prepare fails with this error (no fallback). */
  | { outcome: "failed"; error: Error };

export interface RemoteRestoreRequest {
  snapshotId: string;
  /** the committed snapshot's name (its chain ID) */
  name: string;
  mountpoint: string;
  labels: Labels;
  namespace: string;
}

export interface RemotePreparer {
  /**
   * Fill the new snapshot's directory for a labelled Prepare. A throw is treated as "defer"; on
   * "defer" or a throw the directory should be left empty and unmounted (a leftover mount is
   * taken down before containerd gets the directory).
   */
  prepare(req: RemotePrepareRequest): Promise<RemotePrepareResult>;
  /** Availability check of a remote snapshot before its mounts are handed out; throw if unusable. */
  check?(mountpoint: string, labels: Labels): Promise<void>;
  /** Re-mount a remote snapshot at daemon start (its old mount has been force-unmounted). */
  restore?(req: RemoteRestoreRequest): Promise<void>;
  /** A snapshot with these labels was removed (parallel pull mode drops the image's unfinished work). */
  removed?(labels: Labels): void;
  /** Tear down a remote mount (Cleanup of an orphan, close with unmount). */
  unmount?(mountpoint: string): Promise<void>;
  /**
   * Remote mounts that outlived the previous daemon and still serve (a FUSE host, §5.8): restore
   * adopts them as they are instead of unmounting and mounting their layers again.
   */
  liveMounts?(): Promise<Set<string>>;
}
