// A small CRI ImageService client (runtime.v1, as the kubelet calls it) over containerd's gRPC
// socket, where containerd's CRI plugin serves it. Loads ./api.proto with @grpc/proto-loader.
import * as grpc from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { fileURLToPath } from "node:url";

export interface CriImage {
  id: string;
  repo_tags: string[];
  repo_digests: string[];
  size: number;
}

export interface CriImageClient {
  pullImage(image: string, opts?: { auth?: { username: string; password: string }; sandbox?: { name: string; namespace: string; uid: string } }): Promise<string>;
  /** `null` when the runtime does not have the image */
  imageStatus(image: string): Promise<CriImage | null>;
  listImages(image?: string): Promise<CriImage[]>;
  removeImage(image: string): Promise<void>;
  close(): void;
}

type Unary = (req: unknown, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: unknown) => void) => void;

let ctor: grpc.ServiceClientConstructor | undefined;

function imageServiceClient(): grpc.ServiceClientConstructor {
  if (ctor) return ctor;
  const pkg = loadSync(fileURLToPath(new URL("./api.proto", import.meta.url)), {
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
  });
  const def = grpc.loadPackageDefinition(pkg) as unknown as { runtime: { v1: { ImageService: grpc.ServiceClientConstructor } } };
  ctor = def.runtime.v1.ImageService;
  return ctor;
}

/** `socket`: containerd's gRPC socket path. Calls time out after `timeoutMs` (default 120 s). */
export function criImageClient(socket: string, timeoutMs = 120_000): CriImageClient {
  const Client = imageServiceClient();
  const client = new Client(`unix:${socket}`, grpc.credentials.createInsecure()) as unknown as Record<string, Unary> & grpc.Client;
  const call = <T>(method: string, req: unknown): Promise<T> =>
    new Promise((resolve, reject) => {
      client[method]!.call(client, req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res as T)));
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
    close: () => client.close(),
  };
}
