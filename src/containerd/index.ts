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
export { fromGrpcError } from "./errors.js";
export type { ContentInfo, ReadRange, WriteContent, WriteOptions, WriteResult } from "./content.js";
export { nameFilter, targetDigestFilter } from "./images.js";
export type { Image } from "./images.js";
export { LEASE_EXPIRE_LABEL, LEASE_TTL_MS, openLease, withLease } from "./leases.js";
export type { OpenLease } from "./leases.js";
export type { CreateLeaseOptions, Lease, LeaseResource } from "./leases.js";
export type { Namespace } from "./namespaces.js";
export type { SnapshotInfo, SnapshotKind, SnapshotUsage } from "./snapshots.js";
export type { Labels, Mount, ProtoDescriptor } from "./types.js";
export { ContainerdContentStore } from "./content-source.js";
export { GC_REF_CONTENT, GC_ROOT, SOCI_INDEX_IMAGE_LABEL, gcLabelsFor, sociIndexPlatformLabel } from "./gc-labels.js";
export {
  containerdProtos,
  grpcService,
  protoDescriptorPath,
  PROTO_OPTIONS,
  type MessageOptions,
  type ProtoGroup,
} from "./proto.js";
