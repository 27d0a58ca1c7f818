// The CRI ImageService (runtime.v1) from our copy of cri-api's api.proto (compiled descriptors,
// see containerd/proto.ts).
import type * as grpc from "@grpc/grpc-js";
import { grpcService, type MessageOptions } from "../containerd/proto.js";

/** The service as the kubelet calls it. containerd 1.6 also serves the same API as `runtime.v1alpha2`. */
export const IMAGE_SERVICE_V1 = "runtime.v1.ImageService";
export const IMAGE_SERVICE_V1ALPHA2 = "runtime.v1alpha2.ImageService";
/** The ImageService RPCs, in api.proto's order. */
export const IMAGE_SERVICE_METHODS = ["ListImages", "ImageStatus", "PullImage", "RemoveImage", "ImageFsInfo"] as const;
export type ImageServiceMethod = (typeof IMAGE_SERVICE_METHODS)[number];

/**
 * Messages in JS as cri-api names them: snake_case fields (`server_address`: the descriptor keeps
 * api.proto's names, proto/compile.mjs), 64-bit integers as
 * decimal strings (an image size may pass 2^53 only in theory, but nothing here does arithmetic on
 * them), enums as names, every field present with its default.
 */
export const CRI_PROTO_OPTIONS: MessageOptions = {
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

/**
 * `runtime.v1.ImageService`: its `.service` holds each method's (de)serializers, the constructor
 * itself is a client.
 */
export function imageService(): grpc.ServiceClientConstructor {
  return grpcService("cri-api", IMAGE_SERVICE_V1, CRI_PROTO_OPTIONS);
}
