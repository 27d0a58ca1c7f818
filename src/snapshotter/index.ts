// The containerd snapshots service of soci-snapshotter-grpc: a plain overlay snapshotter with a
// hook (RemotePreparer) for lazily loaded layers.
export {
  startSnapshotterServer,
  systemdListenFds,
  type SnapshotterServer,
  type SnapshotterServerOptions,
} from "./server.js";
export { Snapshotter, type SnapshotterOptions } from "./snapshotter.js";
export {
  LABEL_HAS_SOCI_INDEX_DIGEST,
  LABEL_REMOTE,
  LABEL_REMOTE_NAMESPACE,
  LABEL_REMOTE_VALUE,
  LABEL_TARGET_SNAPSHOT_REF,
  type RemotePreparer,
  type RemotePrepareRequest,
  type RemotePrepareResult,
  type RemoteRestoreRequest,
} from "./remote.js";
export type { Logger, LogFields } from "../log/log.js";
export { SnapshotStore, type SnapshotInfo, type SnapshotKind, type Usage, type Labels } from "./snapshot-store.js";
export type { Mount } from "./overlay-mounts.js";
export { snapshotsService, SNAPSHOTS_SERVICE } from "./proto.js";
export { requestNamespace } from "./namespace.js";
