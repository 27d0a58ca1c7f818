// The TOML layout of the configuration: one list of fields per table, in the order the reference's
// structs declare them. Both the decoder and the `config dump` encoder walk these lists, so key
// order and key spelling live in exactly one place.
//
// Order facts (docs/formats.md §6; the reference encodes with go-toml v2, which flattens embedded
// structs in declaration order, writes a table's key/values before its sub-tables, and keeps the
// FIRST of two same-named keys): FSConfig's keys, then Config's root keys; FSConfig's tables, then
// ServiceConfig's.

export type ScalarKind = "string" | "bool" | "int";

export interface ScalarField {
  kind: ScalarKind;
  key: string;
  prop: string;
  /**
   * What `config dump` prints instead of the value. Only `no_prometheus`: the reference has two
   * fields of that name (FSConfig's and Config's); TOML sets Config's, while the encoder keeps
   * FSConfig's — never set, so always false — at FSConfig's position.
   */
  dumpAs?: string;
  /**
   * Keys of ours (not the reference's): `config dump` leaves the key out while it holds this
   * value, so an unchanged configuration prints exactly what the reference prints.
   */
  omitWhen?: boolean | number | string;
}

export interface TableField {
  kind: "table";
  key: string;
  prop: string;
  fields: Field[];
  /** A table of ours, not the reference's: read from the file, never printed by `config dump`. */
  notDumped?: true;
}

/** A table of named sub-tables (Go `map[string]Struct`); keys are dumped sorted. */
export interface MapField {
  kind: "map";
  key: string;
  prop: string;
  entry: Field[];
  make: () => Record<string, unknown>;
}

/** An array of tables (Go `[]Struct`). */
export interface TableArrayField {
  kind: "tableArray";
  key: string;
  prop: string;
  entry: Field[];
  make: () => Record<string, unknown>;
}

/** An array of strings (Go `[]string`). */
export interface StringListField {
  kind: "strings";
  key: string;
  prop: string;
}

export type Field = ScalarField | TableField | MapField | TableArrayField | StringListField;

const s = (key: string, prop: string): ScalarField => ({ kind: "string", key, prop });
const b = (key: string, prop: string): ScalarField => ({ kind: "bool", key, prop });
const i = (key: string, prop: string): ScalarField => ({ kind: "int", key, prop });
const t = (key: string, prop: string, fields: Field[]): TableField => ({ kind: "table", key, prop, fields });

const mirrorFields: Field[] = [
  s("host", "host"),
  b("insecure", "insecure"),
  i("request_timeout_sec", "requestTimeoutSec"),
];

const hostFields: Field[] = [
  {
    kind: "tableArray",
    key: "mirrors",
    prop: "mirrors",
    entry: mirrorFields,
    make: () => ({ host: "", insecure: false, requestTimeoutSec: 0 }),
  },
];

const decompressStreamFields: Field[] = [s("path", "path"), { kind: "strings", key: "args", prop: "args" }];

/** Root table of the file. */
export const CONFIG_SCHEMA: Field[] = [
  // FSConfig key/values
  s("http_cache_type", "httpCacheType"),
  s("filesystem_cache_type", "filesystemCacheType"),
  i("resolve_result_entry", "resolveResultEntry"),
  b("debug", "debug"),
  b("disable_verification", "disableVerification"),
  i("max_concurrency", "maxConcurrency"),
  { kind: "bool", key: "no_prometheus", prop: "noPrometheus", dumpAs: "false" },
  i("mount_timeout_sec", "mountTimeoutSec"),
  i("fuse_metrics_emit_wait_duration_sec", "fuseMetricsEmitWaitDurationSec"),
  // Config key/values
  s("metrics_address", "metricsAddress"),
  s("metrics_network", "metricsNetwork"),
  s("debug_address", "debugAddress"),
  s("metadata_store", "metadataStore"),
  b("metadata_db_no_sync", "metadataDbNoSync"),
  i("metadata_insertion_chunk_size", "metadataInsertionChunkSize"),
  b("skip_check_snapshotter_supported", "skipCheckSnapshotterSupported"),
  // FSConfig tables
  t("http", "http", [
    i("DialTimeoutMsec", "dialTimeoutMsec"),
    i("ResponseHeaderTimeoutMsec", "responseHeaderTimeoutMsec"),
    i("RequestTimeoutMsec", "requestTimeoutMsec"),
    i("MaxRetries", "maxRetries"),
    i("MinWaitMsec", "minWaitMsec"),
    i("MaxWaitMsec", "maxWaitMsec"),
  ]),
  t("blob", "blob", [
    i("valid_interval", "validInterval"),
    i("fetching_timeout_sec", "fetchingTimeoutSec"),
    i("max_retries", "maxRetries"),
    i("min_wait_msec", "minWaitMsec"),
    i("max_wait_msec", "maxWaitMsec"),
    b("check_always", "checkAlways"),
    b("force_single_range_mode", "forceSingleRangeMode"),
    i("max_span_verification_retries", "maxSpanVerificationRetries"),
    { kind: "bool", key: "chunk_verification", prop: "chunkVerification", omitWhen: true },
  ]),
  t("directory_cache", "directoryCache", [
    i("max_lru_cache_entry", "maxLruCacheEntry"),
    i("max_cache_fds", "maxCacheFds"),
    b("sync_add", "syncAdd"),
    b("direct", "direct"),
  ]),
  t("fuse", "fuse", [
    i("attr_timeout", "attrTimeout"),
    i("entry_timeout", "entryTimeout"),
    i("negative_timeout", "negativeTimeout"),
    b("log_fuse_operations", "logFuseOperations"),
  ]),
  t("background_fetch", "backgroundFetch", [
    b("disable", "disable"),
    i("silence_period_msec", "silencePeriodMsec"),
    i("fetch_period_msec", "fetchPeriodMsec"),
    i("max_queue_size", "maxQueueSize"),
    s("drop_policy", "dropPolicy"),
    i("emit_metric_period_sec", "emitMetricPeriodSec"),
  ]),
  t("content_store", "contentStore", [s("type", "type"), s("containerd_address", "containerdAddress")]),
  t("prefetch", "prefetch", [b("enable", "enable"), i("max_concurrency", "maxConcurrency")]),
  // ServiceConfig tables
  t("pull_modes", "pullModes", [
    t("soci_v1", "sociV1", [b("enable", "enable")]),
    t("soci_v2", "sociV2", [b("enable", "enable")]),
    t("parallel_pull_unpack", "parallelPullUnpack", [
      b("enable", "enable"),
      b("experimental_parallel_pull_as_fallback", "experimentalParallelPullAsFallback"),
      i("max_concurrent_downloads", "maxConcurrentDownloads"),
      i("max_concurrent_downloads_per_image", "maxConcurrentDownloadsPerImage"),
      s("concurrent_download_chunk_size", "concurrentDownloadChunkSize"),
      i("max_concurrent_unpacks", "maxConcurrentUnpacks"),
      i("max_concurrent_unpacks_per_image", "maxConcurrentUnpacksPerImage"),
      b("discard_unpacked_layers", "discardUnpackedLayers"),
      {
        kind: "map",
        key: "decompress_streams",
        prop: "decompressStreams",
        entry: decompressStreamFields,
        make: () => ({ path: "", args: [] }),
      },
    ]),
  ]),
  t("kubeconfig_keychain", "kubeconfigKeychain", [
    b("enable_keychain", "enableKeychain"),
    s("kubeconfig_path", "kubeconfigPath"),
  ]),
  t("cri_keychain", "criKeychain", [
    b("enable_keychain", "enableKeychain"),
    s("image_service_path", "imageServicePath"),
  ]),
  t("resolver", "resolver", [
    { kind: "map", key: "host", prop: "host", entry: hostFields, make: () => ({ mirrors: [] }) },
    i("auth_client_ttl_sec", "authClientTtlSec"),
    b("enable_auth_client_sharing", "enableAuthClientSharing"),
  ]),
  t("snapshotter", "snapshotter", [
    i("min_layer_size", "minLayerSize"),
    b("allow_invalid_mounts_on_restart", "allowInvalidMountsOnRestart"),
  ]),
  // ours (docs/snapshotter.md §5.8)
  {
    ...t("fuse_manager", "fuseManager", [
      b("enable", "enable"),
      s("address", "address"),
      s("path", "path"),
      s("start", "start"),
    ]),
    notDumped: true,
  },
];
