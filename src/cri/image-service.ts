// The CRI ImageService proxy of the CRI keychain (docs/snapshotter.md §5.4, reference
// service/keychain/cri): with `[cri_keychain] enable_keychain = true` the snapshotter serves
// `runtime.v1.ImageService` (and `runtime.v1alpha2.ImageService`, as containerd 1.6 and the
// reference do) on its own socket. The kubelet is pointed there (`--image-service-endpoint`);
// every call is forwarded to the real CRI image service at `image_service_path` (containerd's
// socket). On the way through, PullImage's `auth` is remembered for the image (CriCredentials)
// before the pull reaches containerd, whose CRI plugin then has the snapshotter prepare the layers
// (and the daemon's registry client find the credentials); RemoveImage forgets them once containerd
// removed the image.
//
// Requests and responses are forwarded as bytes, unchanged (fields newer than ./api.proto too);
// only PullImage, RemoveImage and the ImageStatus answer consulted before a removal are decoded.
// The caller's deadline and cancellation carry over to the backend call, its custom metadata is
// passed on, and the backend's errors come back with their code, message and trailers.
import * as grpc from "@grpc/grpc-js";
import { silentLogger, type Logger } from "../log/log.js";
import { CriCredentials, hasCredentials, type CriAuthConfig } from "./credentials.js";
import {
  IMAGE_SERVICE_METHODS,
  IMAGE_SERVICE_V1,
  IMAGE_SERVICE_V1ALPHA2,
  imageService,
  type ImageServiceMethod,
} from "./proto.js";

/** A gRPC service to add to a server: its method definitions and handlers. */
export interface GrpcServiceRegistration {
  definition: grpc.ServiceDefinition;
  implementation: grpc.UntypedServiceImplementation;
}

export interface CriImageServiceOptions {
  /** `[cri_keychain] image_service_path`: the backend CRI's socket, a path or `unix://<path>`. */
  backend: string;
  /** Where PullImage credentials go (default: a new cache). */
  credentials?: CriCredentials;
  logger?: Logger;
  /** Serve `runtime.v1alpha2.ImageService` too (default true). */
  v1alpha2?: boolean;
  /** Log the backend connection state in the background, as the reference does (default true). */
  watchConnection?: boolean;
}

// Messages as large as containerd allows (16 MiB): a ListImages of a big node.
const MAX_MESSAGE = 16 << 20;

/** Request metadata that belongs to the transport, not the caller: never forwarded. */
const HOP_BY_HOP = new Set(["user-agent", "host", "te", "content-type", "connection", "keep-alive"]);

/** `image_service_path` → a grpc-js target: bare paths and `unix://` are unix sockets (containerd's dialer). */
export function backendTarget(address: string): string {
  if (address.startsWith("unix://")) return `unix:${address.slice("unix://".length)}`;
  if (address.startsWith("unix:")) return address;
  if (address.includes("://")) return address;
  return `unix:${address}`;
}

const identity = (b: Buffer): Buffer => b;

interface DecodedImageRequest {
  image?: { image?: string; annotations?: Record<string, string> } | null;
  auth?: CriAuthConfig | null;
}

interface DecodedImageStatus {
  image?: { id?: string; repo_tags?: string[]; repo_digests?: string[] } | null;
}

export class CriImageService {
  readonly credentials: CriCredentials;
  /** The services to add to the snapshotter's gRPC server. */
  readonly services: GrpcServiceRegistration[];
  private readonly client: grpc.Client;
  private readonly logger: Logger;
  private readonly backend: string;
  private closed = false;

  constructor(opts: CriImageServiceOptions) {
    this.credentials = opts.credentials ?? new CriCredentials();
    this.logger = opts.logger ?? silentLogger;
    this.backend = opts.backend;
    this.client = new grpc.Client(backendTarget(opts.backend), grpc.credentials.createInsecure(), {
      "grpc.max_receive_message_length": MAX_MESSAGE,
      "grpc.max_send_message_length": MAX_MESSAGE,
      // the reference dials with a 3 s maximum backoff: containerd may (re)start after us
      "grpc.max_reconnect_backoff_ms": 3000,
      "grpc.initial_reconnect_backoff_ms": 500,
    });
    const names = [IMAGE_SERVICE_V1, ...(opts.v1alpha2 === false ? [] : [IMAGE_SERVICE_V1ALPHA2])];
    this.services = names.map((service) => this.registration(service));
    if (opts.watchConnection !== false) this.watchConnection();
  }

  /** Closes the connection to the backend (after the server stopped serving). */
  close(): void {
    this.closed = true;
    this.client.close();
  }

  private registration(service: string): GrpcServiceRegistration {
    const definition: Record<string, grpc.MethodDefinition<Buffer, Buffer>> = {};
    const implementation: grpc.UntypedServiceImplementation = {};
    for (const method of IMAGE_SERVICE_METHODS) {
      const path = `/${service}/${method}`;
      definition[method] = {
        path,
        requestStream: false,
        responseStream: false,
        requestSerialize: identity,
        requestDeserialize: identity,
        responseSerialize: identity,
        responseDeserialize: identity,
        originalName: method[0]!.toLowerCase() + method.slice(1),
      };
      implementation[method] = (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
        this.handle(service, method, call).then(
          (res) => callback(null, res),
          (err: unknown) => callback(toStatus(err)),
        );
      };
    }
    return { definition, implementation };
  }

  private async handle(
    service: string,
    method: ImageServiceMethod,
    call: grpc.ServerUnaryCall<Buffer, Buffer>,
  ): Promise<Buffer> {
    if (method === "PullImage") return this.pullImage(service, call);
    if (method === "RemoveImage") return this.removeImage(service, call);
    return this.forward(`/${service}/${method}`, call.request, call);
  }

  private async pullImage(service: string, call: grpc.ServerUnaryCall<Buffer, Buffer>): Promise<Buffer> {
    const req = decode<DecodedImageRequest>("PullImage", call.request);
    const image = req?.image?.image ?? "";
    const hasAuth = hasCredentials(req?.auth);
    // remembered before containerd starts the pull: its CRI plugin has us prepare the layers
    // while the call is still running
    let pull: { key: string; rollback(): void } | undefined;
    try {
      pull = this.credentials.rememberPull(image, req?.auth);
      this.logger.debug("CRI PullImage", { image: pull.key, "with-auth": hasAuth });
    } catch {
      // not an image reference: nothing to remember; containerd gives the caller its own answer
      this.logger.debug("CRI PullImage of an unparsable image reference", { image });
    }
    try {
      return await this.forward(`/${service}/PullImage`, call.request, call);
    } catch (err) {
      pull?.rollback();
      throw err;
    }
  }

  private async removeImage(service: string, call: grpc.ServerUnaryCall<Buffer, Buffer>): Promise<Buffer> {
    const req = decode<DecodedImageRequest>("RemoveImage", call.request);
    const image = req?.image?.image ?? "";
    // The kubelet removes images by ID (image GC) as well as by name, and containerd's CRI removes
    // every name of the image: ask which names those are first.
    const names = new Set<string>([image]);
    if (this.credentials.size > 0 && image !== "") {
      const statusRequest = imageService().service.ImageStatus!.requestSerialize({ image: req!.image });
      const status = await this.forward(`/${service}/ImageStatus`, statusRequest, call).then(
        (res) => decodeResponse<DecodedImageStatus>("ImageStatus", res),
        () => undefined,
      );
      for (const n of [...(status?.image?.repo_tags ?? []), ...(status?.image?.repo_digests ?? [])]) names.add(n);
    }
    const res = await this.forward(`/${service}/RemoveImage`, call.request, call);
    let forgotten = 0;
    for (const n of names) if (this.credentials.forget(n)) forgotten++;
    this.logger.debug("CRI RemoveImage", { image, "forgotten-auth-entries": forgotten });
    return res;
  }

  /** One unary call to the backend with the caller's deadline, cancellation and metadata. */
  private forward(path: string, request: Buffer, call: grpc.ServerUnaryCall<Buffer, Buffer>): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const options: grpc.CallOptions = {};
      const deadline = call.getDeadline();
      if (deadline instanceof Date || (typeof deadline === "number" && Number.isFinite(deadline)))
        options.deadline = deadline;
      const outgoing = forwardedMetadata(call.metadata);
      const backendCall = this.client.makeUnaryRequest(
        path,
        identity,
        identity,
        request,
        outgoing,
        options,
        (err, res) => {
          call.off("cancelled", onCancel);
          if (err) reject(err);
          else resolve(res ?? Buffer.alloc(0));
        },
      );
      const onCancel = () => backendCall.cancel();
      call.on("cancelled", onCancel);
    });
  }

  private watchConnection(): void {
    this.logger.debug("Waiting for CRI service to start...", { address: this.backend });
    let attempts = 0;
    const attempt = () => {
      if (this.closed) return;
      this.client.waitForReady(Date.now() + 10_000, (err) => {
        if (this.closed) return;
        if (!err) {
          this.logger.info("connected to backend CRI service", { address: this.backend });
          return;
        }
        attempts++;
        this.logger.warn("failed to connect to CRI", { address: this.backend, error: err.message });
        if (attempts < 100) attempt();
        else this.logger.error("no connection is available to CRI", { address: this.backend });
      });
    };
    attempt();
  }
}

function decode<T>(method: ImageServiceMethod, bytes: Buffer): T | undefined {
  try {
    return imageService().service[method]!.requestDeserialize(bytes) as T;
  } catch {
    return undefined; // malformed: forwarded as is, the backend answers
  }
}

function decodeResponse<T>(method: ImageServiceMethod, bytes: Buffer): T | undefined {
  try {
    return imageService().service[method]!.responseDeserialize(bytes) as T;
  } catch {
    return undefined;
  }
}

function forwardedMetadata(incoming: grpc.Metadata): grpc.Metadata {
  const out = new grpc.Metadata();
  for (const [key, values] of Object.entries(incoming.toJSON())) {
    if (key.startsWith(":") || key.startsWith("grpc-") || HOP_BY_HOP.has(key)) continue;
    for (const v of values) out.add(key, v);
  }
  return out;
}

/** A backend failure as the status to answer with: its code, message and trailers. */
function toStatus(err: unknown): grpc.ServerErrorResponse {
  const e = err as Partial<grpc.ServiceError>;
  if (e && typeof e.code === "number") {
    const status: grpc.ServerErrorResponse = Object.assign(new Error(e.details ?? e.message ?? ""), {
      code: e.code,
      details: e.details ?? "",
    });
    if (e.metadata instanceof grpc.Metadata) {
      const trailers = new grpc.Metadata();
      for (const [key, values] of Object.entries(e.metadata.toJSON())) {
        if (key.startsWith(":") || key === "content-type" || key === "grpc-status" || key === "grpc-message") continue;
        for (const v of values) trailers.add(key, v);
      }
      status.metadata = trailers;
    }
    return status;
  }
  return Object.assign(new Error(String((err as Error)?.message ?? err)), {
    code: grpc.status.INTERNAL,
    details: "CRI image service proxy: " + String((err as Error)?.message ?? err),
  });
}
