// One connection to a FUSE host's socket, with typed calls (proto/fuse-host.proto). The daemon's
// client uses it for the active host; the active host uses it for the retired ones it forwards to.
import * as grpc from "@grpc/grpc-js";
import type { LayerMetricsSnapshot, LayerMountRequest, LayerMountTimes, ServedLayer } from "../fs/lazy-layers.js";
import {
  CHANNEL_OPTIONS,
  fromStatus,
  fuseHostService,
  mountRequestToWire,
  snapshotFromWire,
  type HostInfo,
} from "./protocol.js";

/** How a log subscription ended: the host retired (a successor serves), stopped for good, or vanished. */
export type LogsEnd = "retired" | "stopping" | "lost";

type Callback<T> = (err: grpc.ServiceError | null, res: T) => void;
type Method = (req: unknown, meta: grpc.Metadata, opts: grpc.CallOptions, cb: Callback<unknown>) => void;

export class FuseHostConnection {
  private readonly client: grpc.Client;
  private logs: grpc.ClientReadableStream<unknown> | undefined;

  constructor(readonly address: string) {
    const Ctor = fuseHostService();
    this.client = new Ctor(`unix:${address}`, grpc.credentials.createInsecure(), {
      ...CHANNEL_OPTIONS,
      // a host being replaced is away for a moment: fail fast and let the caller decide
      "grpc.initial_reconnect_backoff_ms": 100,
      "grpc.max_reconnect_backoff_ms": 1_000,
    });
  }

  private call<T>(name: string, req: unknown, timeoutMs: number): Promise<T> {
    const method = (this.client as unknown as Record<string, Method>)[name]!.bind(this.client);
    return new Promise<T>((resolve, reject) => {
      method(req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) =>
        err ? reject(fromStatus(err, name)) : resolve(res as T),
      );
    });
  }

  info(timeoutMs = 10_000): Promise<HostInfo> {
    return this.call<HostInfo>("Info", {}, timeoutMs);
  }

  mount(req: LayerMountRequest, timeoutMs: number): Promise<LayerMountTimes> {
    return this.call<LayerMountTimes>("Mount", mountRequestToWire(req), timeoutMs);
  }

  async unmount(mountpoint: string, timeoutMs = 90_000): Promise<void> {
    await this.call("Unmount", { mountpoint }, timeoutMs);
  }

  async check(mountpoint: string, opts: { validIntervalMs: number; timeoutMs: number }): Promise<void> {
    await this.call("Check", { mountpoint, ...opts }, opts.timeoutMs + 10_000);
  }

  async list(timeoutMs = 30_000): Promise<ServedLayer[]> {
    return (await this.call<{ layers: ServedLayer[] }>("List", {}, timeoutMs)).layers ?? [];
  }

  async metrics(timeoutMs = 5_000): Promise<LayerMetricsSnapshot[]> {
    const r = await this.call<{ snapshots: Parameters<typeof snapshotFromWire>[0][] }>("Metrics", {}, timeoutMs);
    return (r.snapshots ?? []).map(snapshotFromWire);
  }

  retire(successorPid: number): Promise<{ address: string; pid: number }> {
    return this.call("Retire", { successorPid }, 30_000);
  }

  /**
   * Subscribes to the host's log lines (one subscription per connection); `onEnd` says why the
   * stream ended. Resolves once the host has taken the subscription.
   */
  relayLogs(level: string, onLine: (line: string) => void, onEnd?: (why: LogsEnd) => void): void {
    if (this.logs) return;
    const stream = (this.client as unknown as { Logs(req: unknown): grpc.ClientReadableStream<unknown> }).Logs({
      level,
    });
    this.logs = stream;
    let why: LogsEnd = "lost";
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      if (this.logs === stream) this.logs = undefined;
      onEnd?.(why);
    };
    stream.on("data", (e: { line: string; retired: boolean; stopping: boolean }) => {
      if (e.retired) why = "retired";
      else if (e.stopping) why = "stopping";
      else if (e.line) onLine(e.line);
    });
    stream.on("error", end);
    stream.on("end", end);
    stream.on("close", end);
  }

  get relaying(): boolean {
    return this.logs !== undefined;
  }

  close(): void {
    this.logs?.cancel();
    this.logs = undefined;
    this.client.close();
  }
}
