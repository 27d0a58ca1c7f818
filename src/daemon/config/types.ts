// The daemon's configuration as plain typed objects (docs/formats.md §6). Each field names the TOML key
// it is read from; the file layout mirrors the reference's `config.Config`, whose embedded
// `FSConfig`/`ServiceConfig` keys sit at the top level of the file.

/** `[http]` — the global retrying HTTP client. Keys are Go field names (no toml tags). */
export interface HttpConfig {
  /** `DialTimeoutMsec` (0 ⇒ 3000) */
  dialTimeoutMsec: number;
  /** `ResponseHeaderTimeoutMsec` (0 ⇒ 3000) */
  responseHeaderTimeoutMsec: number;
  /** `RequestTimeoutMsec` — whole request including the body (0 ⇒ 300000) */
  requestTimeoutMsec: number;
  /** `MaxRetries` (0 ⇒ 8; −1 ⇒ no retry) */
  maxRetries: number;
  /** `MinWaitMsec` (0 ⇒ 30) */
  minWaitMsec: number;
  /** `MaxWaitMsec` (0 ⇒ 300000) */
  maxWaitMsec: number;
}

/** `[blob]` — layer blob fetching. */
export interface BlobConfig {
  /** `valid_interval` seconds (0 ⇒ 60; forced to 0 by `check_always`) */
  validInterval: number;
  /** `fetching_timeout_sec` (0 ⇒ 300) */
  fetchingTimeoutSec: number;
  /** `max_retries` (0 ⇒ `[http] MaxRetries`) */
  maxRetries: number;
  /** `min_wait_msec` (0 ⇒ `[http] MinWaitMsec`) */
  minWaitMsec: number;
  /** `max_wait_msec` (0 ⇒ `[http] MaxWaitMsec`) */
  maxWaitMsec: number;
  /** `check_always` */
  checkAlways: boolean;
  /** `force_single_range_mode` */
  forceSingleRangeMode: boolean;
  /** `max_span_verification_retries` — extra fetches after a span digest mismatch */
  maxSpanVerificationRetries: number;
  /** `chunk_verification` (ours, default true): use layer verification artifacts (docs/formats.md §9) */
  chunkVerification: boolean;
}

/** `[directory_cache]` */
export interface DirectoryCacheConfig {
  /** `max_lru_cache_entry` (0 ⇒ 10 at the use site) */
  maxLruCacheEntry: number;
  /** `max_cache_fds` (0 ⇒ 10 at the use site) */
  maxCacheFds: number;
  /** `sync_add` */
  syncAdd: boolean;
  /** `direct` (true by default; an explicit false is honoured) */
  direct: boolean;
}

/** `[fuse]` — kernel cache timeouts in seconds. */
export interface FuseConfig {
  /** `attr_timeout` (0 ⇒ 1) */
  attrTimeout: number;
  /** `entry_timeout` (0 ⇒ 1) */
  entryTimeout: number;
  /** `negative_timeout` (0 ⇒ 1) */
  negativeTimeout: number;
  /** `log_fuse_operations` */
  logFuseOperations: boolean;
}

export type DropPolicy = "oldest" | "newest";

/** `[background_fetch]` */
export interface BackgroundFetchConfig {
  /** `disable` */
  disable: boolean;
  /** `silence_period_msec` (0 ⇒ 30000) */
  silencePeriodMsec: number;
  /** `fetch_period_msec` (0 ⇒ 500) */
  fetchPeriodMsec: number;
  /** `max_queue_size` (0 ⇒ 300; negative ⇒ unlimited) */
  maxQueueSize: number;
  /** `drop_policy` (`oldest` | `newest`; "" ⇒ newest) */
  dropPolicy: DropPolicy;
  /** `emit_metric_period_sec` (0 ⇒ 10) */
  emitMetricPeriodSec: number;
}

export type ContentStoreType = "soci" | "containerd";

/** `[content_store]` */
export interface ContentStoreConfig {
  /** `type` ("" ⇒ soci) */
  type: ContentStoreType;
  /** `containerd_address` ("" ⇒ /run/containerd/containerd.sock; a `unix://` prefix is dropped) */
  containerdAddress: string;
}

/** `[prefetch]` */
export interface PrefetchConfig {
  /** `enable` */
  enable: boolean;
  /** `max_concurrency` (0 = unlimited; negative ⇒ 0) */
  maxConcurrency: number;
}

/** `[pull_modes.parallel_pull_unpack.decompress_streams."<name>"]` — an external decompressor. */
export interface DecompressStream {
  /** `path` — absolute path of the executable (run without a shell) */
  path: string;
  /** `args` */
  args: string[];
}

/** `[pull_modes.parallel_pull_unpack]` */
export interface ParallelPullUnpackConfig {
  /** `enable` */
  enable: boolean;
  /** `experimental_parallel_pull_as_fallback` */
  experimentalParallelPullAsFallback: boolean;
  /** `max_concurrent_downloads` (−1 = unbounded) */
  maxConcurrentDownloads: number;
  /** `max_concurrent_downloads_per_image` */
  maxConcurrentDownloadsPerImage: number;
  /** `concurrent_download_chunk_size` as written ("" = whole layer) */
  concurrentDownloadChunkSize: string;
  /** the same in bytes (−1 = whole layer in one request); not a TOML key */
  concurrentDownloadChunkSizeBytes: number;
  /** `max_concurrent_unpacks` (−1 = unbounded) */
  maxConcurrentUnpacks: number;
  /** `max_concurrent_unpacks_per_image` */
  maxConcurrentUnpacksPerImage: number;
  /** `discard_unpacked_layers` */
  discardUnpackedLayers: boolean;
  /** `decompress_streams` — media-type short name (e.g. "gzip") → decompressor; undefined = none */
  decompressStreams: Record<string, DecompressStream> | undefined;
}

/** `[pull_modes]` */
export interface PullModesConfig {
  /** `[pull_modes.soci_v1] enable` (false) — index discovery through the referrers API */
  sociV1: { enable: boolean };
  /** `[pull_modes.soci_v2] enable` (true) — index digest annotated on the image manifest */
  sociV2: { enable: boolean };
  /** `[pull_modes.parallel_pull_unpack]` */
  parallelPullUnpack: ParallelPullUnpackConfig;
}

/** `[kubeconfig_keychain]` */
export interface KubeconfigKeychainConfig {
  /** `enable_keychain` */
  enableKeychain: boolean;
  /** `kubeconfig_path` */
  kubeconfigPath: string;
}

/** `[cri_keychain]` */
export interface CriKeychainConfig {
  /** `enable_keychain` */
  enableKeychain: boolean;
  /** `image_service_path` ("" ⇒ /run/containerd/containerd.sock) */
  imageServicePath: string;
}

/** `[[resolver.host."<host>".mirrors]]` */
export interface MirrorConfig {
  /** `host` */
  host: string;
  /** `insecure` — plain HTTP */
  insecure: boolean;
  /** `request_timeout_sec` (0 = client default, negative = no timeout) */
  requestTimeoutSec: number;
}

/** `[resolver.host."<host>"]` */
export interface HostConfig {
  /** `mirrors` */
  mirrors: MirrorConfig[];
}

/** `[resolver]` */
export interface ResolverConfig {
  /** `host` — registry host → mirrors; undefined when the file has no `[resolver.host]` */
  host: Record<string, HostConfig> | undefined;
  /** `auth_client_ttl_sec` (0 ⇒ 3600; negative = never expire) */
  authClientTtlSec: number;
  /** `enable_auth_client_sharing` */
  enableAuthClientSharing: boolean;
}

/** `[snapshotter]` */
export interface SnapshotterSectionConfig {
  /** `min_layer_size` — layers smaller than this are never lazily loaded */
  minLayerSize: number;
  /** `allow_invalid_mounts_on_restart` */
  allowInvalidMountsOnRestart: boolean;
}

/**
 * `[fuse_manager]` — ours, not the reference's (docs/snapshotter.md §5.8): the FUSE host that owns
 * the layer mounts so that they outlive the daemon. Not printed by `config dump`.
 */
export interface FuseManagerConfig {
  /** `enable` (true): mounts live in the FUSE host; false: in the daemon, as the reference. */
  enable: boolean;
  /** `address` ("" ⇒ `<root>/fuse-host/host.sock`) */
  address: string;
  /** `path` — the host executable ("" ⇒ this package's bin/soci-fuse-host.js) */
  path: string;
  /** `start` ("" ⇒ auto): auto | spawn | systemd | none */
  start: FuseManagerStart;
}

export type FuseManagerStart = "auto" | "spawn" | "systemd" | "none";

export type MetricsNetwork = "tcp" | "unix";
export type MetadataStoreType = "db" | "db-multi";

/** The whole daemon configuration, defaults and fill rules applied. */
export interface SnapshotterConfig {
  /** `http_cache_type` ("memory" = in memory, anything else = directory cache) */
  httpCacheType: string;
  /** `filesystem_cache_type` */
  filesystemCacheType: string;
  /** `resolve_result_entry` (0 ⇒ 30 at the use site) */
  resolveResultEntry: number;
  /** `debug` — FUSE library debug logging */
  debug: boolean;
  /** `disable_verification` */
  disableVerification: boolean;
  /** `max_concurrency` (0 ⇒ 100; negative in the file ⇒ 0 = unlimited) */
  maxConcurrency: number;
  /** `mount_timeout_sec` (0 ⇒ 30) */
  mountTimeoutSec: number;
  /** `fuse_metrics_emit_wait_duration_sec` (0 ⇒ 60) */
  fuseMetricsEmitWaitDurationSec: number;
  /** `metrics_address` ("" = no metrics listener) */
  metricsAddress: string;
  /** `metrics_network` ("" ⇒ tcp) */
  metricsNetwork: MetricsNetwork;
  /** `no_prometheus` — disables the metrics listener */
  noPrometheus: boolean;
  /** `debug_address` */
  debugAddress: string;
  /** `metadata_store` ("" ⇒ db) */
  metadataStore: MetadataStoreType;
  /** `metadata_db_no_sync` */
  metadataDbNoSync: boolean;
  /** `metadata_insertion_chunk_size` (0 ⇒ 5000 at the use site) */
  metadataInsertionChunkSize: number;
  /** `skip_check_snapshotter_supported` */
  skipCheckSnapshotterSupported: boolean;
  http: HttpConfig;
  blob: BlobConfig;
  directoryCache: DirectoryCacheConfig;
  fuse: FuseConfig;
  backgroundFetch: BackgroundFetchConfig;
  contentStore: ContentStoreConfig;
  prefetch: PrefetchConfig;
  pullModes: PullModesConfig;
  kubeconfigKeychain: KubeconfigKeychainConfig;
  criKeychain: CriKeychainConfig;
  resolver: ResolverConfig;
  snapshotter: SnapshotterSectionConfig;
  fuseManager: FuseManagerConfig;
}
