// Prometheus metrics with the reference's families (docs/snapshotter.md §5.6; fs/metrics/*), and the
// `/metrics` endpoint on `metrics_address` (TCP `host:port`, or a unix socket when
// `metrics_network = "unix"`).
//
// The exposition is written the way Go's client library writes it, because the acceptance tests
// parse it: families sorted by name, families without samples left out, labels in alphabetical
// order (`le` last), samples sorted by label values, numbers in Go's shortest `%g` form (integers
// as `1`, `5.24288e+07` for large values).

import { mkdir, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { dirname } from "node:path";
import {
  collectDefaultMetrics,
  Counter,
  Gauge,
  Histogram,
  Registry,
  type MetricObjectWithValues,
  type MetricValue,
} from "prom-client";
import type { SnapshotterConfig } from "./config/index.js";
import { InvalidArgumentError, messageOf, SociError, UnavailableError, withContext } from "../errors/errors.js";
import type { LayerMetricsSnapshot } from "../fs/lazy-layers.js";

/** Operations timed in milliseconds (`soci_fs_operation_duration_milliseconds`). */
export const MS_OPERATIONS = [
  "mount",
  "remote_registry_get",
  "init_metadata_store",
  "background_fetch",
  "ztoc_unmarshal",
  "fuse_mount",
  "blob_redirect",
  "get_layer_size",
  "soci_index_fetch",
  "ztoc_fetch",
] as const;
export type MsOperation = (typeof MS_OPERATIONS)[number];

/** Operations timed in microseconds (`soci_fs_operation_duration_microseconds`). */
export const US_OPERATIONS = ["node_readdir", "synchronous_read"] as const;
export type UsOperation = (typeof US_OPERATIONS)[number];

/** Counted operations (`soci_fs_operation_count`). Daemon-wide ones use layer "". */
export const COUNT_OPERATIONS = [
  "synchronous_read_count",
  "synchronous_read_remote_registry_fetch_count",
  "fuse_failure_state",
  "fuse_node_getattr_failure_count",
  "fuse_node_listxattr_failure_count",
  "fuse_node_lookup_failure_count",
  "fuse_node_open_failure_count",
  "fuse_node_readdir_failure_count",
  "fuse_file_read_failure_count",
  "fuse_file_getattr_failure_count",
  "fuse_whiteout_getattr_failure_count",
  "fuse_unknown_operation_failure_count",
  "fuse_mount_failure_count",
  "local_mount_failure_count",
  "background_span_fetch_count",
  "background_span_fetch_failure_count",
  "background_fetch_work_queue_evicted",
  "resolve_cache_hit",
  "resolve_cache_miss",
  "preresolve_queue_drop",
] as const;
export type CountOperation = (typeof COUNT_OPERATIONS)[number];

/** FUSE operation names counted per image (`soci_fs_image_operation_count_key`). */
export const FUSE_OPERATIONS = [
  "node.Getattr",
  "node.Getxattr",
  "node.Listxattr",
  "node.Lookup",
  "node.Open",
  "node.Readdir",
  "node.Readlink",
  "file.Read",
  "file.Getattr",
  "whiteout.Getattr",
] as const;
export type FuseOperation = (typeof FUSE_OPERATIONS)[number];
export type ImageOperation = FuseOperation | "background_fetch_work_queue_size";

/** Which per-operation failure counter a failed FUSE operation bumps (fs/metrics/monitor). */
export const FUSE_FAILURE_COUNTERS: Readonly<Record<string, CountOperation>> = {
  "node.Getattr": "fuse_node_getattr_failure_count",
  "node.Listxattr": "fuse_node_listxattr_failure_count",
  "node.Lookup": "fuse_node_lookup_failure_count",
  "node.Open": "fuse_node_open_failure_count",
  "node.Readdir": "fuse_node_readdir_failure_count",
  "file.Read": "fuse_file_read_failure_count",
  "file.Getattr": "fuse_file_getattr_failure_count",
  "whiteout.Getattr": "fuse_whiteout_getattr_failure_count",
};

/** A mounted layer as the size gauges see it (read at every scrape). */
export interface LayerSizeSource {
  digest: string;
  /** compressed size of the layer blob */
  size(): number;
  /** bytes of the blob fetched so far */
  fetchedSize(): number;
}

function sizeSource(l: { digest: string; size: number; fetchedSize: number }): LayerSizeSource {
  return { digest: l.digest, size: () => l.size, fetchedSize: () => l.fetchedSize };
}

const MS_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384];
const US_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/** The daemon's metric families and the helpers that feed them. */
export class SociMetrics {
  readonly registry = new Registry();
  private readonly latencyMs: Histogram<"layer" | "operation_type">;
  private readonly latencyUs: Histogram<"layer" | "operation_type">;
  private readonly opCount: Counter<"layer" | "operation_type">;
  private readonly bytesServed: Gauge<"layer" | "operation_type">;
  private readonly imageOpCount: Gauge<"image" | "operation_type">;
  private readonly cacheWriteFailures: Counter<"reason">;
  private readonly layers = new Map<string, LayerSizeSource>();
  /** Where the served layers' metrics come from (this process's layers, or the FUSE host's). */
  private layerSource: (() => Promise<LayerMetricsSnapshot[]>) | undefined;
  /** The layers of the last snapshots, for the size counters. */
  private servedLayers: LayerMetricsSnapshot["layers"] = [];
  /** How much of each source's cumulative counts is already added, by source and series. */
  private readonly applied = new Map<string, number>();
  private hostFailures: Counter | undefined;

  /** `processMetrics`: also export the process/runtime collectors (as the Go daemon does). */
  constructor(opts: { processMetrics?: boolean } = {}) {
    const registers = [this.registry];
    this.latencyMs = new Histogram({
      name: "soci_fs_operation_duration_milliseconds",
      help: "Latency in milliseconds of soci snapshotter operations. Broken down by operation type and layer sha.",
      labelNames: ["layer", "operation_type"],
      buckets: MS_BUCKETS,
      registers,
    });
    this.latencyUs = new Histogram({
      name: "soci_fs_operation_duration_microseconds",
      help: "Latency in microseconds of soci snapshotter operations. Broken down by operation type and layer sha.",
      labelNames: ["layer", "operation_type"],
      buckets: US_BUCKETS,
      registers,
    });
    this.opCount = new Counter({
      name: "soci_fs_operation_count",
      help: "The count of soci snapshotter operations. Broken down by operation type and layer sha.",
      labelNames: ["layer", "operation_type"],
      registers,
    });
    this.bytesServed = new Gauge({
      name: "soci_fs_bytes_served",
      help: "The number of bytes served per soci snapshotter operations. Broken down by operation type and layer sha.",
      labelNames: ["layer", "operation_type"],
      registers,
    });
    this.imageOpCount = new Gauge({
      name: "soci_fs_image_operation_count_key",
      help: "The count of FUSE operations per image. Broken down by operation type and image digest.",
      labelNames: ["image", "operation_type"],
      registers,
    });
    // not a reference family: span cache writes that failed (a full disk: reason="no_space");
    // reads go on without the cache, so this is the only sign of it besides one log line
    this.cacheWriteFailures = new Counter({
      name: "soci_fs_cache_write_failures_total",
      help: "The count of span cache writes that failed. Broken down by reason (no_space, other).",
      labelNames: ["reason"],
      registers,
    });
    const layers = this.layers;
    const served = () => this.servedLayers;
    // Go emits these as const counters computed at scrape time from every mounted layer.
    const layerCounter = (name: string, help: string, read: (l: LayerSizeSource) => number) =>
      new Counter({
        name,
        help,
        labelNames: ["digest", "mountpoint"],
        registers,
        collect(this: Counter<"digest" | "mountpoint">) {
          this.reset();
          for (const [mountpoint, l] of layers) this.inc({ digest: l.digest, mountpoint }, Math.max(0, read(l)));
          for (const l of served())
            this.inc({ digest: l.digest, mountpoint: l.mountpoint }, Math.max(0, read(sizeSource(l))));
        },
      });
    layerCounter("soci_fs_layer_fetched_size_bytes", "Total fetched size of the layer", (l) => l.fetchedSize());
    layerCounter("soci_fs_layer_size_bytes", "Total size of the layer", (l) => l.size());
    // pre-created so a scrape shows 0 before the first eviction
    this.opCount.inc(opLabels("", "background_fetch_work_queue_evicted"), 0);
    if (opts.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  /** One operation that took `ms` milliseconds, for `layer` (a digest, or "" daemon-wide). */
  observeOperation(layer: string, type: MsOperation, ms: number): void {
    this.latencyMs.observe(opLabels(layer, type), ms);
  }

  /** One operation that took `us` microseconds. */
  observeOperationMicros(layer: string, type: UsOperation, us: number): void {
    this.latencyUs.observe(opLabels(layer, type), us);
  }

  countOperation(layer: string, type: CountOperation, by = 1): void {
    this.opCount.inc(opLabels(layer, type), by);
  }

  /** Counts a failed FUSE operation under its failure counter (unknown names: the "unknown" one). */
  countFuseFailure(layer: string, fuseOperation: string): void {
    this.countOperation(layer, FUSE_FAILURE_COUNTERS[fuseOperation] ?? "fuse_unknown_operation_failure_count");
  }

  /** A span cache write failed (`noSpace`: the disk or quota is full). */
  countCacheWriteFailure(noSpace: boolean): void {
    this.cacheWriteFailures.inc({ reason: noSpace ? "no_space" : "other" });
  }

  /** Bytes served by synchronous reads. */
  addBytesServed(layer: string, bytes: number): void {
    this.bytesServed.inc(opLabels(layer, "synchronous_bytes_served"), bytes);
  }

  /** Adds to a per-image FUSE operation count (emitted once the wait period has passed). */
  addImageOperationCount(image: string, op: FuseOperation, count: number): void {
    this.imageOpCount.inc({ image, operation_type: op }, count);
  }

  /** The background fetcher's queue length (image ""). */
  setBackgroundFetchQueueSize(size: number): void {
    this.imageOpCount.set({ image: "", operation_type: "background_fetch_work_queue_size" }, size);
  }

  /** Reports a mounted layer's sizes until `removeLayer(mountpoint)`. */
  addLayer(mountpoint: string, layer: LayerSizeSource): void {
    this.layers.set(mountpoint, layer);
  }

  removeLayer(mountpoint: string): void {
    this.layers.delete(mountpoint);
  }

  /**
   * Reads the served layers' metrics from `source` at every scrape: layer sizes, FUSE failure
   * counts and per-image operation counts (docs/snapshotter.md §5.8).
   */
  collectLayersFrom(source: () => Promise<LayerMetricsSnapshot[]>): void {
    this.layerSource = source;
  }

  /** `soci_fuse_host_failures_total` from now on (the daemon runs its layers in a FUSE host). */
  enableFuseHostMetrics(): void {
    this.hostFailures ??= new Counter({
      name: "soci_fuse_host_failures_total",
      help: "The number of times the FUSE host serving the snapshotter's lazily loaded layers was found dead.",
      registers: [this.registry],
    });
  }

  /** The FUSE host died (its layers' mounts with it). */
  countFuseHostFailure(): void {
    this.enableFuseHostMetrics();
    this.hostFailures!.inc();
  }

  /** Adds what each source counted since the last scrape; a source's counts only grow. */
  private applySnapshots(snapshots: LayerMetricsSnapshot[]): void {
    const add = (source: string, series: string, total: number, inc: (by: number) => void) => {
      const key = `${source}\n${series}`;
      const delta = total - (this.applied.get(key) ?? 0);
      if (delta <= 0) return;
      this.applied.set(key, total);
      inc(delta);
    };
    this.servedLayers = snapshots.flatMap((s) => s.layers);
    for (const s of snapshots) {
      for (const f of s.fuseFailures)
        add(s.source, `fuse\n${f.layer}\n${f.operation}`, f.count, (by) => {
          this.opCount.inc(
            opLabels(f.layer, FUSE_FAILURE_COUNTERS[f.operation] ?? "fuse_unknown_operation_failure_count"),
            by,
          );
        });
      add(s.source, "failure-state", s.failureStates, (by) => this.countOperation("", "fuse_failure_state", by));
      for (const o of s.imageOperations)
        add(s.source, `image\n${o.image}\n${o.operation}`, o.count, (by) => {
          this.imageOpCount.inc({ image: o.image, operation_type: o.operation }, by);
        });
      for (const c of s.cacheWriteFailures ?? [])
        add(s.source, `cache-write\n${c.reason}`, c.count, (by) =>
          this.cacheWriteFailures.inc({ reason: c.reason }, by),
        );
    }
  }

  /** The Prometheus text exposition, as Go's client writes it. */
  async exposition(): Promise<string> {
    if (this.layerSource) {
      try {
        this.applySnapshots(await this.layerSource());
      } catch {
        // the layers' owner did not answer (a FUSE host being replaced): last scrape's layers go
        this.servedLayers = [];
      }
    }
    const families = await this.registry.getMetricsAsJSON();
    families.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return families.map(renderFamily).join("");
  }
}

/** Labels of the operation families, keys in alphabetical order. */
function opLabels(layer: string, type: string): { layer: string; operation_type: string } {
  return { layer, operation_type: type };
}

/** Go `strconv.FormatFloat(v, 'g', -1, 64)` as the text format writes sample values. */
export function goFloat(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  if (v === 0) return "0";
  const [mant, e] = v.toExponential().split("e") as [string, string];
  const exp = Number(e);
  if (exp < -4 || exp >= 6) return `${mant}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
  return String(v);
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

type Sample = MetricValue<string> & { metricName?: string; sharedLabels?: Record<string, string | number> };

function renderFamily(family: MetricObjectWithValues<MetricValue<string>>): string {
  const samples = family.values as Sample[];
  if (samples.length === 0) return "";
  // group a series' lines (histogram buckets, _sum, _count stay together, in order)
  const series = new Map<string, { key: string[]; lines: string[] }>();
  for (const s of samples) {
    const labels = { ...(s.sharedLabels ?? {}), ...s.labels } as Record<string, string | number>;
    const names = Object.keys(labels)
      .filter((n) => n !== "le" && n !== "quantile")
      .sort();
    const key = names.map((n) => String(labels[n]));
    const id = JSON.stringify([names, key]);
    const parts = names.map((n) => `${n}="${escapeLabel(String(labels[n]))}"`);
    for (const special of ["le", "quantile"]) {
      const v = labels[special];
      if (v !== undefined) parts.push(`${special}="${typeof v === "number" ? goFloat(v) : escapeLabel(v)}"`);
    }
    const line = `${s.metricName ?? family.name}${parts.length ? `{${parts.join(",")}}` : ""} ${goFloat(s.value)}\n`;
    const entry = series.get(id) ?? { key, lines: [] };
    entry.lines.push(line);
    series.set(id, entry);
  }
  const ordered = [...series.values()].sort((a, b) => compareKeys(a.key, b.key));
  return `# HELP ${family.name} ${escapeHelp(family.help)}\n# TYPE ${family.name} ${family.type}\n${ordered.map((s) => s.lines.join("")).join("")}`;
}

function compareKeys(a: string[], b: string[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (a[i] !== b[i]) return a[i]! < b[i]! ? -1 : 1;
  }
  return a.length - b.length;
}

/** A running `/metrics` listener. */
export interface MetricsServer {
  /** `host:port` actually bound (TCP) or the socket path (unix) */
  readonly address: string;
  close(): Promise<void>;
}

/** Splits Go's `host:port` (`[v6]:port`, `:port` = every interface). */
export function splitHostPort(address: string): { host: string | undefined; port: number } {
  const m = /^(?:\[([^\]]*)\]|([^:]*)):(\d+)$/.exec(address);
  if (!m) throw new InvalidArgumentError(`address ${address}: missing port in address`);
  const port = Number(m[3]);
  if (port > 65535) throw new InvalidArgumentError(`address ${address}: invalid port`);
  const host = m[1] ?? m[2];
  return { host: host === "" ? undefined : host, port };
}

/**
 * Starts the metrics listener the config asks for; null when `metrics_address` is empty or
 * `no_prometheus` is set. A unix socket's directory is created and a stale socket replaced.
 */
export async function serveMetrics(
  cfg: Pick<SnapshotterConfig, "metricsAddress" | "metricsNetwork" | "noPrometheus">,
  metrics: SociMetrics,
): Promise<MetricsServer | null> {
  if (cfg.metricsAddress === "" || cfg.noPrometheus) return null;
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain; charset=utf-8", "x-content-type-options": "nosniff" });
      res.end("404 page not found\n");
      return;
    }
    metrics.exposition().then(
      (body) => {
        res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" });
        res.end(req.method === "HEAD" ? undefined : body);
      },
      (err: unknown) => {
        res.writeHead(500, { "content-type": "text/plain; charset=utf-8" });
        res.end(
          `An error has occurred while serving metrics:\n\n${err instanceof Error ? err.message : String(err)}\n`,
        );
      },
    );
  });
  try {
    if (cfg.metricsNetwork === "unix") {
      const path = cfg.metricsAddress;
      await mkdir(dirname(path), { recursive: true, mode: 0o711 });
      await rm(path, { force: true, recursive: true });
      await listen(server, { path });
      return handle(server, path);
    }
    const { host, port } = splitHostPort(cfg.metricsAddress);
    await listen(server, host === undefined ? { port } : { host, port });
    const a = server.address() as AddressInfo;
    return handle(server, a.family === "IPv6" ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`);
  } catch (e) {
    server.close();
    const context = "failed to get listener for metrics endpoint";
    // a bad address keeps its class; a socket that cannot be bound (in use, no permission) is unavailable
    throw e instanceof SociError
      ? withContext(e, context)
      : new UnavailableError(`${context}: ${messageOf(e)}`, { cause: e });
  }
}

function listen(server: Server, opts: { path: string } | { host?: string; port: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts, () => {
      server.off("error", reject);
      resolve();
    });
  });
}

function handle(server: Server, address: string): MetricsServer {
  return {
    address,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
