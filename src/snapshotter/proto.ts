// Loads our copy of containerd's snapshots service proto at run time. tsc does not copy .proto
// files into dist/, so they are found under the package root (the directory with package.json),
// which works from src/ (vitest) and from dist/ alike. google/protobuf/{empty,field_mask,
// timestamp}.proto come with protobufjs.
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";

export const SNAPSHOTS_SERVICE = "containerd.services.snapshots.v1.Snapshots";

/** `<package root>/src/snapshotter/proto` */
export function snapshotterProtoDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, "package.json"))) return join(dir, "src", "snapshotter", "proto");
    const up = dirname(dir);
    if (up === dir) throw new Error(`snapshotter protos: no package.json above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

let cached: grpc.ServiceClientConstructor | undefined;

/**
 * The Snapshots service (its `.service` is the definition a server adds; the constructor itself
 * is a client). Messages in JS: camelCase fields, int64 as number, enums as names, defaults set.
 */
export function snapshotsService(): grpc.ServiceClientConstructor {
  if (cached) return cached;
  const dir = snapshotterProtoDir();
  const pkg = loadSync(join(dir, "snapshots.proto"), {
    includeDirs: [dir],
    keepCase: false,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const def = grpc.loadPackageDefinition(pkg) as unknown as {
    containerd: { services: { snapshots: { v1: { Snapshots: grpc.ServiceClientConstructor } } } };
  };
  cached = def.containerd.services.snapshots.v1.Snapshots;
  return cached;
}
