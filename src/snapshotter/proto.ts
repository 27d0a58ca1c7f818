// The snapshots service definition, from our copy of containerd's protos (compiled descriptors,
// see containerd/proto.ts), which the containerd client loads too.
import type * as grpc from "@grpc/grpc-js";
import { grpcService } from "../containerd/proto.js";

export const SNAPSHOTS_SERVICE = "containerd.services.snapshots.v1.Snapshots";

/**
 * The Snapshots service (its `.service` is the definition a server adds; the constructor itself
 * is a client). Messages in JS: camelCase fields, int64 as number, enums as names, defaults set.
 */
export function snapshotsService(): grpc.ServiceClientConstructor {
  return grpcService("containerd", SNAPSHOTS_SERVICE);
}
