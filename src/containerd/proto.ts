// Loads our containerd .proto files at run time from `<package root>/proto/` (shipped with the
// package; found from src/ under vitest/tsx and from dist/ alike).
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import { loadSync, type Options } from "@grpc/proto-loader";
import { FailedPreconditionError } from "../errors/errors.js";

/** The .proto files, relative to the proto directory. */
export const PROTO_FILES = [
  "containerd/services/content/v1/content.proto",
  "containerd/services/diff/v1/diff.proto",
  "containerd/services/images/v1/images.proto",
  "containerd/services/leases/v1/leases.proto",
  "containerd/services/namespaces/v1/namespace.proto",
  "containerd/services/snapshots/v1/snapshots.proto",
] as const;

/**
 * How messages look in JS: camelCase fields, int64 as number (sizes and offsets stay far below
 * 2^53), enums as their names, every field present with its default.
 */
export const PROTO_OPTIONS: Options = { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true };

/** The directory holding our .proto files: `<package root>/proto`, two levels above this module in src/containerd and dist/containerd alike. */
export function protoDir(): string {
  return join(dirname(fileURLToPath(import.meta.url)), "..", "..", "proto");
}

/** Constructors for each service client, keyed by full service name. */
export interface ContainerdServices {
  content: grpc.ServiceClientConstructor;
  diff: grpc.ServiceClientConstructor;
  images: grpc.ServiceClientConstructor;
  leases: grpc.ServiceClientConstructor;
  namespaces: grpc.ServiceClientConstructor;
  snapshots: grpc.ServiceClientConstructor;
}

let loaded: { definition: grpc.GrpcObject; services: ContainerdServices } | undefined;

/** The loaded package definition (shared: the snapshotter daemon serves Snapshots from it). */
export function containerdProtos(): { definition: grpc.GrpcObject; services: ContainerdServices } {
  if (loaded) return loaded;
  const dir = protoDir();
  const pkg = loadSync(
    PROTO_FILES.map((f) => join(dir, f)),
    { ...PROTO_OPTIONS, includeDirs: [dir] },
  );
  const definition = grpc.loadPackageDefinition(pkg);
  const svc = (path: string): grpc.ServiceClientConstructor => {
    let node: unknown = definition;
    for (const part of path.split(".")) node = (node as Record<string, unknown>)[part];
    if (typeof node !== "function") throw new FailedPreconditionError(`containerd protos: no service ${path}`);
    return node as grpc.ServiceClientConstructor;
  };
  loaded = {
    definition,
    services: {
      content: svc("containerd.services.content.v1.Content"),
      diff: svc("containerd.services.diff.v1.Diff"),
      images: svc("containerd.services.images.v1.Images"),
      leases: svc("containerd.services.leases.v1.Leases"),
      namespaces: svc("containerd.services.namespaces.v1.Namespaces"),
      snapshots: svc("containerd.services.snapshots.v1.Snapshots"),
    },
  };
  return loaded;
}
