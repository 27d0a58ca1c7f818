// Default values and the reference's "fill zero values" passes (config/*.go): the file is decoded
// over an already-defaulted config, then every pass runs again, so an explicit 0 or "" in the file
// usually means "use the default". Validation of values the daemon cannot run with ends the job.

import { ConfigError } from "./errors.js";
import type { SnapshotterConfig } from "./types.js";

export const DEFAULT_CONFIG_PATH = "/etc/soci-snapshotter-grpc/config.toml";
export const DEFAULT_ROOT_PATH = "/var/lib/soci-snapshotter-grpc";
export const DEFAULT_ADDRESS = "/run/soci-snapshotter-grpc/soci-snapshotter-grpc.sock";
export const DEFAULT_CONTAINERD_ADDRESS = "/run/containerd/containerd.sock";
export const DEFAULT_IMAGE_SERVICE_PATH = "/run/containerd/containerd.sock";

/** Defaults the reference applies where a value is used rather than in the config (dump shows 0). */
export const USE_SITE_DEFAULTS = {
  /** `resolve_result_entry` 0 ⇒ 30 resolved layers cached */
  resolveResultEntry: 30,
  /** `[directory_cache] max_lru_cache_entry` / `max_cache_fds` 0 ⇒ 10 */
  directoryCacheEntries: 10,
  /** `metadata_insertion_chunk_size` 0 ⇒ 5000 node insertions per transaction */
  metadataInsertionChunkSize: 5000,
} as const;

/** −1: unbounded concurrency / whole-layer downloads in parallel pull mode. */
export const UNBOUNDED = -1;

/** Every field at its Go zero value (the struct before any pass runs). */
export function zeroConfig(): SnapshotterConfig {
  return {
    httpCacheType: "",
    filesystemCacheType: "",
    resolveResultEntry: 0,
    debug: false,
    disableVerification: false,
    maxConcurrency: 0,
    mountTimeoutSec: 0,
    fuseMetricsEmitWaitDurationSec: 0,
    metricsAddress: "",
    metricsNetwork: "" as never,
    noPrometheus: false,
    debugAddress: "",
    metadataStore: "" as never,
    metadataDbNoSync: false,
    metadataInsertionChunkSize: 0,
    skipCheckSnapshotterSupported: false,
    http: {
      dialTimeoutMsec: 0,
      responseHeaderTimeoutMsec: 0,
      requestTimeoutMsec: 0,
      maxRetries: 0,
      minWaitMsec: 0,
      maxWaitMsec: 0,
    },
    blob: {
      validInterval: 0,
      fetchingTimeoutSec: 0,
      maxRetries: 0,
      minWaitMsec: 0,
      maxWaitMsec: 0,
      checkAlways: false,
      forceSingleRangeMode: false,
      maxSpanVerificationRetries: 0,
      chunkVerification: true,
    },
    directoryCache: { maxLruCacheEntry: 0, maxCacheFds: 0, syncAdd: false, direct: false },
    fuse: { attrTimeout: 0, entryTimeout: 0, negativeTimeout: 0, logFuseOperations: false },
    backgroundFetch: {
      disable: false,
      silencePeriodMsec: 0,
      fetchPeriodMsec: 0,
      maxQueueSize: 0,
      dropPolicy: "" as never,
      emitMetricPeriodSec: 0,
    },
    contentStore: { type: "" as never, containerdAddress: "" },
    prefetch: { enable: false, maxConcurrency: 0 },
    pullModes: {
      sociV1: { enable: false },
      sociV2: { enable: false },
      parallelPullUnpack: {
        enable: false,
        experimentalParallelPullAsFallback: false,
        maxConcurrentDownloads: 0,
        maxConcurrentDownloadsPerImage: 0,
        concurrentDownloadChunkSize: "",
        concurrentDownloadChunkSizeBytes: 0,
        maxConcurrentUnpacks: 0,
        maxConcurrentUnpacksPerImage: 0,
        discardUnpackedLayers: false,
        decompressStreams: undefined,
      },
    },
    kubeconfigKeychain: { enableKeychain: false, kubeconfigPath: "" },
    criKeychain: { enableKeychain: false, imageServicePath: "" },
    resolver: { host: undefined, authClientTtlSec: 0, enableAuthClientSharing: false },
    snapshotter: { minLayerSize: 0, allowInvalidMountsOnRestart: false },
    fuseManager: { enable: false, address: "", path: "", start: "" as never },
  };
}

/** Defaults that are not Go zero values and have no fill rule (set once, before decoding). */
export function applyInitialDefaults(cfg: SnapshotterConfig): void {
  cfg.pullModes.sociV1.enable = false;
  cfg.pullModes.sociV2.enable = true;
  const p = cfg.pullModes.parallelPullUnpack;
  p.enable = false;
  p.maxConcurrentDownloads = UNBOUNDED;
  p.maxConcurrentDownloadsPerImage = 3;
  p.maxConcurrentUnpacks = UNBOUNDED;
  p.maxConcurrentUnpacksPerImage = 1;
  p.concurrentDownloadChunkSizeBytes = UNBOUNDED;
  cfg.directoryCache.direct = true;
  cfg.fuseManager.enable = true;
}

/** The fill-zero passes, in the reference's order (root, service, fs, parallel). */
export function fillZeroValues(cfg: SnapshotterConfig): void {
  // root
  if ((cfg.metricsNetwork as string) === "") cfg.metricsNetwork = "tcp";
  if ((cfg.metadataStore as string) === "") cfg.metadataStore = "db";
  // service
  if (cfg.criKeychain.imageServicePath === "") cfg.criKeychain.imageServicePath = DEFAULT_IMAGE_SERVICE_PATH;
  if (cfg.resolver.authClientTtlSec === 0) cfg.resolver.authClientTtlSec = 3600;
  // fs
  if (cfg.mountTimeoutSec === 0) cfg.mountTimeoutSec = 30;
  if (cfg.fuseMetricsEmitWaitDurationSec === 0) cfg.fuseMetricsEmitWaitDurationSec = 60;
  if (cfg.maxConcurrency === 0) cfg.maxConcurrency = 100;
  if (cfg.maxConcurrency < 0) cfg.maxConcurrency = 0; // unlimited
  const f = cfg.fuse;
  if (f.attrTimeout === 0) f.attrTimeout = 1;
  if (f.entryTimeout === 0) f.entryTimeout = 1;
  if (f.negativeTimeout === 0) f.negativeTimeout = 1;
  const bg = cfg.backgroundFetch;
  if (bg.fetchPeriodMsec === 0) bg.fetchPeriodMsec = 500;
  if (bg.silencePeriodMsec === 0) bg.silencePeriodMsec = 30_000;
  if (bg.maxQueueSize === 0) bg.maxQueueSize = 300;
  if ((bg.dropPolicy as string) === "") bg.dropPolicy = "newest";
  if (bg.emitMetricPeriodSec === 0) bg.emitMetricPeriodSec = 10;
  const h = cfg.http;
  if (h.dialTimeoutMsec === 0) h.dialTimeoutMsec = 3000;
  if (h.responseHeaderTimeoutMsec === 0) h.responseHeaderTimeoutMsec = 3000;
  if (h.requestTimeoutMsec === 0) h.requestTimeoutMsec = 300_000;
  if (h.maxRetries === 0) h.maxRetries = 8;
  if (h.minWaitMsec === 0) h.minWaitMsec = 30;
  if (h.maxWaitMsec === 0) h.maxWaitMsec = 300_000;
  // [blob] inherits from [http] only where it is 0. The file is decoded over the defaults, which
  // already hold [http]'s defaults, so a file setting only [http] MaxRetries leaves [blob] at 8 —
  // as the reference does.
  const bl = cfg.blob;
  if (bl.validInterval === 0) bl.validInterval = 60;
  if (bl.checkAlways) bl.validInterval = 0;
  if (bl.fetchingTimeoutSec === 0) bl.fetchingTimeoutSec = 300;
  if (bl.maxRetries === 0) bl.maxRetries = h.maxRetries;
  if (bl.minWaitMsec === 0) bl.minWaitMsec = h.minWaitMsec;
  if (bl.maxWaitMsec === 0) bl.maxWaitMsec = h.maxWaitMsec;
  const cs = cfg.contentStore;
  if ((cs.type as string) === "") cs.type = "soci";
  cs.containerdAddress =
    cs.containerdAddress === "" ? DEFAULT_CONTAINERD_ADDRESS : trimSocketAddress(cs.containerdAddress);
  if (cfg.prefetch.maxConcurrency < 0) cfg.prefetch.maxConcurrency = 0;
  // parallel
  const p = cfg.pullModes.parallelPullUnpack;
  p.concurrentDownloadChunkSizeBytes = parseSize(p.concurrentDownloadChunkSize);
  // ours
  if ((cfg.fuseManager.start as string) === "") cfg.fuseManager.start = "auto";
  cfg.fuseManager.address = trimSocketAddress(cfg.fuseManager.address);
}

export function trimSocketAddress(address: string): string {
  return address.startsWith("unix://") ? address.slice("unix://".length) : address;
}

const SIZE_RE = /^\s*(\d+(\.\d+)?)(\s*(gb|mb|kb|b)?)?\s*$/i;
const UNIT: Record<string, number> = { "": 1, b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };

/**
 * `concurrent_download_chunk_size` text → bytes: `N`, `N b|kb|mb|gb` (case-insensitive, fraction
 * allowed, truncated); "" or 0 ⇒ −1 (whole layer).
 */
export function parseSize(text: string): number {
  if (text === "") return UNBOUNDED;
  const m = SIZE_RE.exec(text);
  if (!m)
    throw new ConfigError(
      `pull_modes.parallel_pull_unpack.concurrent_download_chunk_size: invalid size format: ${text}`,
    );
  const size = Math.trunc(Number(m[1]) * UNIT[(m[4] ?? "").toLowerCase()]!);
  if (!Number.isSafeInteger(size))
    throw new ConfigError(`pull_modes.parallel_pull_unpack.concurrent_download_chunk_size: size too large: ${text}`);
  return size === 0 ? UNBOUNDED : size;
}

/** Keys whose negative values mean nothing (a duration, a count or a size). */
const NON_NEGATIVE: Array<[string, (c: SnapshotterConfig) => number]> = [
  ["resolve_result_entry", (c) => c.resolveResultEntry],
  ["mount_timeout_sec", (c) => c.mountTimeoutSec],
  ["fuse_metrics_emit_wait_duration_sec", (c) => c.fuseMetricsEmitWaitDurationSec],
  ["metadata_insertion_chunk_size", (c) => c.metadataInsertionChunkSize],
  ["http.DialTimeoutMsec", (c) => c.http.dialTimeoutMsec],
  ["http.ResponseHeaderTimeoutMsec", (c) => c.http.responseHeaderTimeoutMsec],
  ["http.RequestTimeoutMsec", (c) => c.http.requestTimeoutMsec],
  ["http.MinWaitMsec", (c) => c.http.minWaitMsec],
  ["http.MaxWaitMsec", (c) => c.http.maxWaitMsec],
  ["blob.valid_interval", (c) => c.blob.validInterval],
  ["blob.fetching_timeout_sec", (c) => c.blob.fetchingTimeoutSec],
  ["blob.min_wait_msec", (c) => c.blob.minWaitMsec],
  ["blob.max_wait_msec", (c) => c.blob.maxWaitMsec],
  ["blob.max_span_verification_retries", (c) => c.blob.maxSpanVerificationRetries],
  ["directory_cache.max_lru_cache_entry", (c) => c.directoryCache.maxLruCacheEntry],
  ["directory_cache.max_cache_fds", (c) => c.directoryCache.maxCacheFds],
  ["fuse.attr_timeout", (c) => c.fuse.attrTimeout],
  ["fuse.entry_timeout", (c) => c.fuse.entryTimeout],
  ["fuse.negative_timeout", (c) => c.fuse.negativeTimeout],
  ["background_fetch.silence_period_msec", (c) => c.backgroundFetch.silencePeriodMsec],
  ["background_fetch.fetch_period_msec", (c) => c.backgroundFetch.fetchPeriodMsec],
  ["background_fetch.emit_metric_period_sec", (c) => c.backgroundFetch.emitMetricPeriodSec],
  ["snapshotter.min_layer_size", (c) => c.snapshotter.minLayerSize],
];

function oneOf(key: string, value: string, allowed: readonly string[]): void {
  if (!allowed.includes(value)) {
    throw new ConfigError(
      `${key}: invalid value ${JSON.stringify(value)}: must be ${allowed.map((a) => JSON.stringify(a)).join(" or ")}`,
    );
  }
}

/** Rejects values the daemon cannot run with; the message names the key. */
export function validateConfig(cfg: SnapshotterConfig): void {
  oneOf("metrics_network", cfg.metricsNetwork, ["tcp", "unix"]);
  oneOf("metadata_store", cfg.metadataStore, ["db", "db-multi"]);
  oneOf("background_fetch.drop_policy", cfg.backgroundFetch.dropPolicy, ["oldest", "newest"]);
  oneOf("content_store.type", cfg.contentStore.type, ["soci", "containerd"]);
  oneOf("fuse_manager.start", cfg.fuseManager.start, ["auto", "spawn", "systemd", "none"]);
  for (const [key, get] of NON_NEGATIVE) {
    const v = get(cfg);
    if (v < 0) throw new ConfigError(`${key}: must not be negative, got ${v}`);
  }
  for (const [name, host] of Object.entries(cfg.resolver.host ?? {})) {
    host.mirrors.forEach((m, i) => {
      if (m.host === "")
        throw new ConfigError(`resolver.host.${JSON.stringify(name)}.mirrors[${i}].host: must not be empty`);
    });
  }
  const p = cfg.pullModes.parallelPullUnpack;
  for (const [name, d] of Object.entries(p.decompressStreams ?? {})) {
    const key = `pull_modes.parallel_pull_unpack.decompress_streams.${JSON.stringify(name)}.path`;
    if (!d.path.startsWith("/"))
      throw new ConfigError(`${key}: must be an absolute path to an executable, got ${JSON.stringify(d.path)}`);
  }
  if (p.enable || p.experimentalParallelPullAsFallback) {
    if (cfg.contentStore.type !== "containerd" && !p.discardUnpackedLayers) {
      throw new ConfigError(
        'pull_modes.parallel_pull_unpack: needs content_store.type = "containerd" unless discard_unpacked_layers = true',
      );
    }
    limitWithin(
      "max_concurrent_downloads_per_image",
      p.maxConcurrentDownloadsPerImage,
      "max_concurrent_downloads",
      p.maxConcurrentDownloads,
    );
    limitWithin(
      "max_concurrent_unpacks_per_image",
      p.maxConcurrentUnpacksPerImage,
      "max_concurrent_unpacks",
      p.maxConcurrentUnpacks,
    );
  }
}

/** A per-image limit must fit in the global one (negative = unbounded). */
function limitWithin(perKey: string, per: number, globalKey: string, global: number): void {
  const pre = "pull_modes.parallel_pull_unpack.";
  if (per === 0) throw new ConfigError(`${pre}${perKey}: must not be 0 (use a negative value for unbounded)`);
  if (global === 0) throw new ConfigError(`${pre}${globalKey}: must not be 0 (use a negative value for unbounded)`);
  if (global > 0 && (per < 0 || per > global)) {
    throw new ConfigError(`${pre}${perKey} (${per}) must not exceed ${globalKey} (${global})`);
  }
}
