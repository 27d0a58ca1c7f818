// The snapshots service definition, from our copy of containerd's protos (`<package root>/proto/`,
// found by containerd/proto.ts), which the containerd client loads too.
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { PROTO_OPTIONS, protoDir } from "../containerd/proto.js";

export const SNAPSHOTS_SERVICE = "containerd.services.snapshots.v1.Snapshots";

let cached: grpc.ServiceClientConstructor | undefined;

/**
 * The Snapshots service (its `.service` is the definition a server adds; the constructor itself
 * is a client). Messages in JS: camelCase fields, int64 as number, enums as names, defaults set.
 */
export function snapshotsService(): grpc.ServiceClientConstructor {
  if (cached) return cached;
  const dir = protoDir();
  const pkg = loadSync(join(dir, "containerd/services/snapshots/v1/snapshots.proto"), {
    ...PROTO_OPTIONS,
    includeDirs: [dir],
  });
  const def = grpc.loadPackageDefinition(pkg) as unknown as {
    containerd: { services: { snapshots: { v1: { Snapshots: grpc.ServiceClientConstructor } } } };
  };
  cached = def.containerd.services.snapshots.v1.Snapshots;
  return cached;
}
