// A small CRI ImageService client (runtime.v1, as the kubelet calls it) over a gRPC unix socket:
// containerd's, where its CRI plugin serves it, or the snapshotter's, whose CRI keychain proxies it.
// Uses the daemon's own copy of the cri-api proto (proto/cri-api.proto).
import * as grpc from "@grpc/grpc-js";
import { grpcService } from "../../../src/containerd/proto.js";
import { IMAGE_SERVICE_V1 } from "../../../src/cri/proto.js";
import type { CriAuthConfig } from "../../../src/cri/credentials.js";

export interface CriImage {
  id: string;
  repo_tags: string[];
  repo_digests: string[];
  size: number;
}

/** runtime.v1.AuthConfig */
export type CriAuth = CriAuthConfig;

export interface CriImageClient {
  pullImage(
    image: string,
    opts?: { auth?: CriAuth; sandbox?: { name: string; namespace: string; uid: string } },
  ): Promise<string>;
  /** `null` when the runtime does not have the image */
  imageStatus(image: string): Promise<CriImage | null>;
  listImages(image?: string): Promise<CriImage[]>;
  removeImage(image: string): Promise<void>;
  imageFsInfo(): Promise<{
    image_filesystems: Array<{
      timestamp: number;
      fs_id: { mountpoint: string } | null;
      used_bytes: { value: number } | null;
      inodes_used: { value: number } | null;
    }>;
  }>;
  close(): void;
}

type Unary = (
  req: unknown,
  md: grpc.Metadata,
  opts: grpc.CallOptions,
  cb: (err: grpc.ServiceError | null, res: unknown) => void,
) => void;

/** The runtime.v1.ImageService client constructor (snake_case fields, 64-bit integers as numbers). */
export function imageServiceClient(): grpc.ServiceClientConstructor {
  return grpcService("cri-api", IMAGE_SERVICE_V1, { longs: Number, enums: String, defaults: true });
}

/** `socket`: a gRPC socket path. Calls time out after `timeoutMs` (default 120 s). */
export function criImageClient(socket: string, timeoutMs = 120_000): CriImageClient {
  const Client = imageServiceClient();
  const client = new Client(`unix:${socket}`, grpc.credentials.createInsecure()) as unknown as Record<string, Unary> &
    grpc.Client;
  const call = <T>(method: string, req: unknown): Promise<T> =>
    new Promise((resolve, reject) => {
      client[method]!.call(client, req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) =>
        err ? reject(err) : resolve(res as T),
      );
    });
  return {
    async pullImage(image, opts = {}) {
      const req: Record<string, unknown> = { image: { image } };
      if (opts.auth) req.auth = opts.auth;
      if (opts.sandbox) req.sandbox_config = { metadata: { ...opts.sandbox, attempt: 0 } };
      const res = await call<{ image_ref: string }>("PullImage", req);
      return res.image_ref;
    },
    async imageStatus(image) {
      const res = await call<{ image: CriImage | null }>("ImageStatus", { image: { image } });
      return res.image ?? null;
    },
    async listImages(image) {
      const res = await call<{ images: CriImage[] }>("ListImages", image ? { filter: { image: { image } } } : {});
      return res.images;
    },
    async removeImage(image) {
      await call("RemoveImage", { image: { image } });
    },
    imageFsInfo: () => call("ImageFsInfo", {}),
    close: () => client.close(),
  };
}
