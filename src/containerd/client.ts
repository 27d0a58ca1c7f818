// A gRPC connection to containerd over its unix socket. One channel is shared by all service
// clients; every call carries the namespace (`containerd-namespace`) and, when set, a lease
// (`containerd-lease`) in its metadata. Unary calls get a deadline; streams are bounded by the
// caller (AbortSignal) since a layer read may legitimately take long.
import * as grpc from "@grpc/grpc-js";
import { containerdProtos, type ContainerdServices } from "./proto.js";
import { fromGrpcError } from "./errors.js";
import { InvalidArgumentError } from "../errors/errors.js";
import { ContentService } from "./content.js";
import { DiffService } from "./diff.js";
import { ImagesService } from "./images.js";
import { LeasesService } from "./leases.js";
import { NamespacesService } from "./namespaces.js";
import { SnapshotsService } from "./snapshots.js";

export const NAMESPACE_HEADER = "containerd-namespace";
export const LEASE_HEADER = "containerd-lease";
export const DEFAULT_NAMESPACE = "default";
export const DEFAULT_TIMEOUT_MS = 30_000;
/** containerd's own limit (16 MiB); content reads come in 1 MiB messages. */
const MAX_MESSAGE = 16 << 20;

export interface ContainerdClientOptions {
  /** `unix:///path/to/containerd.sock` or just the socket path. */
  address: string;
  namespace?: string;
  /** Deadline for unary calls (default 30 s). */
  timeoutMs?: number;
}

export interface CallOptions {
  /** Overrides the client's unary deadline. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

type ServiceName = keyof ContainerdServices;
type Callback<T> = (err: grpc.ServiceError | null, res: T) => void;
type AnyClient = grpc.Client & Record<string, (...args: unknown[]) => unknown>;

/** The socket path of a containerd address (`unix://` stripped, as the reference does). */
export function socketPath(address: string): string {
  return address.startsWith("unix://") ? address.slice("unix://".length) : address;
}

/** The shared channel and one stub per service. */
class Connection {
  readonly channel: grpc.Channel;
  readonly stubs: Record<ServiceName, AnyClient>;

  constructor(readonly path: string) {
    const target = path.startsWith("/") ? `unix://${path}` : `unix:${path}`;
    const options: grpc.ChannelOptions = {
      "grpc.max_receive_message_length": MAX_MESSAGE,
      "grpc.max_send_message_length": MAX_MESSAGE,
    };
    this.channel = new grpc.Channel(target, grpc.credentials.createInsecure(), options);
    const { services } = containerdProtos();
    const stub = (ctor: grpc.ServiceClientConstructor) =>
      new ctor(target, grpc.credentials.createInsecure(), {
        ...options,
        channelOverride: this.channel,
      }) as unknown as AnyClient;
    this.stubs = {
      content: stub(services.content),
      diff: stub(services.diff),
      images: stub(services.images),
      leases: stub(services.leases),
      namespaces: stub(services.namespaces),
      snapshots: stub(services.snapshots),
    };
  }

  close(): void {
    for (const s of Object.values(this.stubs)) s.close();
    this.channel.close();
  }
}

/**
 * Issues calls on behalf of one (namespace, lease) scope. The service wrappers (content.ts, …)
 * hold one of these; `ContainerdClient.withLease` makes a sibling scope on the same channel.
 */
export class Rpc {
  constructor(
    private readonly conn: Connection,
    readonly namespace: string,
    readonly lease: string | undefined,
    /** The deadline for unary calls. */
    readonly timeoutMs: number,
  ) {}

  get address(): string {
    return this.conn.path;
  }

  metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    md.set(NAMESPACE_HEADER, this.namespace);
    if (this.lease) md.set(LEASE_HEADER, this.lease);
    return md;
  }

  error(err: unknown, service: ServiceName, method: string): Error {
    return fromGrpcError(err, `${service}.${method}`, this.conn.path);
  }

  unary<Req, Res>(service: ServiceName, method: string, req: Req, opts: CallOptions = {}): Promise<Res> {
    const stub = this.conn.stubs[service];
    const deadline = Date.now() + (opts.timeoutMs ?? this.timeoutMs);
    return new Promise<Res>((resolve, reject) => {
      const cb: Callback<Res> = (err, res) => (err ? reject(this.error(err, service, method)) : resolve(res));
      const call = stub[method]!(req, this.metadata(), { deadline }, cb) as grpc.ClientUnaryCall;
      onAbort(opts.signal, () => call.cancel());
    });
  }

  /** A server stream as an async iterable of its messages. */
  async *serverStream<Req, Res>(
    service: ServiceName,
    method: string,
    req: Req,
    opts: CallOptions = {},
  ): AsyncGenerator<Res> {
    const stub = this.conn.stubs[service];
    const call = stub[method]!(
      req,
      this.metadata(),
      opts.timeoutMs ? { deadline: Date.now() + opts.timeoutMs } : {},
    ) as grpc.ClientReadableStream<Res>;
    const off = onAbort(opts.signal, () => call.cancel());
    try {
      for await (const msg of call) yield msg as Res;
    } catch (err) {
      throw this.error(err, service, method);
    } finally {
      off();
      call.cancel(); // no-op once the stream ended; stops the server when the consumer quits early
    }
  }

  /** A bidirectional stream (content Write). */
  duplex<Req, Res>(service: ServiceName, method: string, opts: CallOptions = {}): grpc.ClientDuplexStream<Req, Res> {
    const stub = this.conn.stubs[service];
    const call = stub[method]!(
      this.metadata(),
      opts.timeoutMs ? { deadline: Date.now() + opts.timeoutMs } : {},
    ) as grpc.ClientDuplexStream<Req, Res>;
    const off = onAbort(opts.signal, () => call.cancel());
    call.once("status", off);
    return call;
  }
}

function onAbort(signal: AbortSignal | undefined, f: () => void): () => void {
  if (!signal) return () => undefined;
  if (signal.aborted) {
    f();
    return () => undefined;
  }
  signal.addEventListener("abort", f, { once: true });
  return () => signal.removeEventListener("abort", f);
}

export class ContainerdClient {
  readonly content: ContentService;
  readonly diff: DiffService;
  readonly images: ImagesService;
  readonly leases: LeasesService;
  readonly namespaces: NamespacesService;
  private readonly rpc: Rpc;

  private constructor(
    private readonly conn: Connection,
    namespace: string,
    lease: string | undefined,
    private readonly timeoutMs: number,
    private readonly owner: boolean,
  ) {
    this.rpc = new Rpc(conn, namespace, lease, timeoutMs);
    this.content = new ContentService(this.rpc);
    this.diff = new DiffService(this.rpc);
    this.images = new ImagesService(this.rpc);
    this.leases = new LeasesService(this.rpc);
    this.namespaces = new NamespacesService(this.rpc);
  }

  /** Connects lazily: the first call fails with UnavailableError if nothing answers at the address. */
  static connect(opts: ContainerdClientOptions): ContainerdClient {
    const path = socketPath(opts.address);
    if (!path) throw new InvalidArgumentError("containerd address is empty");
    const ns = opts.namespace ?? DEFAULT_NAMESPACE;
    validateNamespace(ns);
    return new ContainerdClient(new Connection(path), ns, undefined, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, true);
  }

  /** The socket path. */
  get address(): string {
    return this.conn.path;
  }

  get namespace(): string {
    return this.rpc.namespace;
  }

  /** The lease every call of this client carries, if any. */
  get lease(): string | undefined {
    return this.rpc.lease;
  }

  /** The snapshots service of one snapshotter (e.g. `overlayfs`, or a proxy plugin's name). */
  snapshots(snapshotter: string): SnapshotsService {
    return new SnapshotsService(this.rpc, snapshotter);
  }

  /** The same connection in another namespace. */
  withNamespace(namespace: string): ContainerdClient {
    validateNamespace(namespace);
    return new ContainerdClient(this.conn, namespace, this.rpc.lease, this.timeoutMs, false);
  }

  /** The same connection, with every call made under `leaseId` (content written stays until the lease goes). */
  withLease(leaseId: string | undefined): ContainerdClient {
    return new ContainerdClient(this.conn, this.rpc.namespace, leaseId, this.timeoutMs, false);
  }

  /** Closes the connection (only the client made by `connect` owns it). */
  close(): void {
    if (this.owner) this.conn.close();
  }
}

// containerd `namespaces.Validate`: a label-like identifier.
const NAMESPACE_RE = /^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$/;

export function validateNamespace(ns: string): void {
  if (ns.length === 0 || ns.length > 76 || !NAMESPACE_RE.test(ns)) {
    throw new InvalidArgumentError(
      `namespace ${JSON.stringify(ns)}: invalid namespace name (letters, digits, and ._- between them, at most 76 characters)`,
    );
  }
}
