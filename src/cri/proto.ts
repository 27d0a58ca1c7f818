// Loads the CRI ImageService proto (runtime.v1) at run time from `<package root>/proto/cri-api.proto`
// (shipped with the package; found from src/ under vitest/tsx and from dist/ alike).
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import { loadSync, type Options } from "@grpc/proto-loader";

/** The service as the kubelet calls it. containerd 1.6 also serves the same API as `runtime.v1alpha2`. */
export const IMAGE_SERVICE_V1 = "runtime.v1.ImageService";
export const IMAGE_SERVICE_V1ALPHA2 = "runtime.v1alpha2.ImageService";
/** The ImageService RPCs, in api.proto's order. */
export const IMAGE_SERVICE_METHODS = ["ListImages", "ImageStatus", "PullImage", "RemoveImage", "ImageFsInfo"] as const;
export type ImageServiceMethod = (typeof IMAGE_SERVICE_METHODS)[number];

/**
 * Messages in JS as cri-api names them: snake_case fields (`server_address`), 64-bit integers as
 * decimal strings (an image size may pass 2^53 only in theory, but nothing here does arithmetic on
 * them), enums as names, every field present with its default.
 */
export const CRI_PROTO_OPTIONS: Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

/** `<package root>/proto/cri-api.proto`, two levels above this module in src/cri and dist/cri alike (as the WASM module and the containerd protos are found). */
export function criProtoPath(): string {
  return join(dirname(fileURLToPath(import.meta.url)), "..", "..", "proto", "cri-api.proto");
}

let cached: grpc.ServiceClientConstructor | undefined;

/**
 * `runtime.v1.ImageService`: its `.service` holds each method's (de)serializers, the constructor
 * itself is a client.
 */
export function imageService(): grpc.ServiceClientConstructor {
  if (cached) return cached;
  const pkg = loadSync(criProtoPath(), CRI_PROTO_OPTIONS);
  const def = grpc.loadPackageDefinition(pkg) as unknown as {
    runtime: { v1: { ImageService: grpc.ServiceClientConstructor } };
  };
  cached = def.runtime.v1.ImageService;
  return cached;
}
