// The containerd client library: one import for the CLI and the snapshotter daemon.
export {
  ContainerdClient,
  DEFAULT_NAMESPACE,
  LEASE_HEADER,
  NAMESPACE_HEADER,
  socketPath,
  validateNamespace,
} from "./client.js";
export type { CallOptions, ContainerdClientOptions } from "./client.js";
export {
  AlreadyExistsError,
  ContainerdError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  UnavailableError,
  fromGrpcError,
} from "./errors.js";
export type { ContainerdErrorCode } from "./errors.js";
export type { ContentInfo, ReadRange, WriteContent, WriteOptions, WriteResult } from "./content.js";
export { nameFilter, targetDigestFilter } from "./images.js";
export type { Image } from "./images.js";
export { LEASE_EXPIRE_LABEL, LEASE_TTL_MS, openLease, withLease } from "./leases.js";
export type { OpenLease } from "./leases.js";
export type { CreateLeaseOptions, Lease, LeaseResource } from "./leases.js";
export type { Namespace } from "./namespaces.js";
export type { SnapshotInfo, SnapshotKind, SnapshotUsage } from "./snapshots.js";
export type { Labels, Mount, ProtoDescriptor } from "./types.js";
export { ContainerdBlobTarget, ContainerdContentSource } from "./content-source.js";
export { GC_REF_CONTENT, GC_ROOT, SOCI_INDEX_IMAGE_LABEL, gcLabelsFor, sociIndexPlatformLabel } from "./gc-labels.js";
export { chainIds, unpackImage, unpackLayers, GC_REF_SNAPSHOT, SNAPSHOT_REF_LABEL } from "../pull/unpack.js";
export type { LayerOutcome, UnpackLayer, UnpackOptions, UnpackResult } from "../pull/unpack.js";
export { checkConvertDestination, convertInContainerd, createInContainerd } from "../indexer/containerd-build.js";
export type { ContainerdBuildOptions } from "../indexer/containerd-build.js";
export { containerdProtos, protoDir, PROTO_FILES, PROTO_OPTIONS } from "./proto.js";
