// The daemon's TOML configuration: the reference's keys, defaults and fill-zero rules, go-toml's
// decoding rules, clear errors naming the key, and `config dump` / `config default` layout.
import { describe, expect, it } from "vitest";
import { existsSync } from "node:fs";
import { mkdtemp, mkdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  ConfigError,
  DEFAULT_CONFIG_PATH,
  defaultConfig,
  defaultConfigText,
  dumpConfig,
  loadConfig,
  parseConfig,
  parseSize,
} from "../src/daemon/config/index.js";

// What the reference prints for `config default` (go-toml v2, SetIndentTables(true)), docs/formats.md §6.
const GOLDEN_DEFAULT = `http_cache_type = ''
filesystem_cache_type = ''
resolve_result_entry = 0
debug = false
disable_verification = false
max_concurrency = 100
no_prometheus = false
mount_timeout_sec = 30
fuse_metrics_emit_wait_duration_sec = 60
metrics_address = ''
metrics_network = 'tcp'
debug_address = ''
metadata_store = 'db'
metadata_db_no_sync = false
metadata_insertion_chunk_size = 0
skip_check_snapshotter_supported = false

[http]
  DialTimeoutMsec = 3000
  ResponseHeaderTimeoutMsec = 3000
  RequestTimeoutMsec = 300000
  MaxRetries = 8
  MinWaitMsec = 30
  MaxWaitMsec = 300000

[blob]
  valid_interval = 60
  fetching_timeout_sec = 300
  max_retries = 8
  min_wait_msec = 30
  max_wait_msec = 300000
  check_always = false
  force_single_range_mode = false
  max_span_verification_retries = 0

[directory_cache]
  max_lru_cache_entry = 0
  max_cache_fds = 0
  sync_add = false
  direct = true

[fuse]
  attr_timeout = 1
  entry_timeout = 1
  negative_timeout = 1
  log_fuse_operations = false

[background_fetch]
  disable = false
  silence_period_msec = 30000
  fetch_period_msec = 500
  max_queue_size = 300
  drop_policy = 'newest'
  emit_metric_period_sec = 10

[content_store]
  type = 'soci'
  containerd_address = '/run/containerd/containerd.sock'

[prefetch]
  enable = false
  max_concurrency = 0

[pull_modes]
  [pull_modes.soci_v1]
    enable = false

  [pull_modes.soci_v2]
    enable = true

  [pull_modes.parallel_pull_unpack]
    enable = false
    experimental_parallel_pull_as_fallback = false
    max_concurrent_downloads = -1
    max_concurrent_downloads_per_image = 3
    concurrent_download_chunk_size = ''
    max_concurrent_unpacks = -1
    max_concurrent_unpacks_per_image = 1
    discard_unpacked_layers = false

[kubeconfig_keychain]
  enable_keychain = false
  kubeconfig_path = ''

[cri_keychain]
  enable_keychain = false
  image_service_path = '/run/containerd/containerd.sock'

[resolver]
  auth_client_ttl_sec = 3600
  enable_auth_client_sharing = false

[snapshotter]
  min_layer_size = 0
  allow_invalid_mounts_on_restart = false
`;

function configError(text: string): string {
  try {
    parseConfig(text);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error(`accepted: ${text}`);
}

describe("defaults", () => {
  it("config default prints the golden default configuration", () => {
    expect(defaultConfigText()).toBe(GOLDEN_DEFAULT);
  });

  it("has the reference's default values (config_test.go TestConfigDefaults)", () => {
    const c = defaultConfig();
    expect(c.pullModes.sociV1.enable).toBe(false);
    expect(c.pullModes.sociV2.enable).toBe(true);
    expect(c.metricsNetwork).toBe("tcp");
    expect(c.criKeychain.imageServicePath).toBe("/run/containerd/containerd.sock");
    expect(c.mountTimeoutSec).toBe(30);
    expect(c.fuseMetricsEmitWaitDurationSec).toBe(60);
    expect(c.maxConcurrency).toBe(100);
    expect([c.fuse.attrTimeout, c.fuse.entryTimeout, c.fuse.negativeTimeout]).toEqual([1, 1, 1]);
    expect(c.backgroundFetch).toEqual({
      disable: false,
      silencePeriodMsec: 30000,
      fetchPeriodMsec: 500,
      maxQueueSize: 300,
      dropPolicy: "newest",
      emitMetricPeriodSec: 10,
    });
    expect(c.http).toEqual({
      dialTimeoutMsec: 3000,
      responseHeaderTimeoutMsec: 3000,
      requestTimeoutMsec: 300000,
      maxRetries: 8,
      minWaitMsec: 30,
      maxWaitMsec: 300000,
    });
    expect(c.blob.validInterval).toBe(60);
    expect(c.blob.fetchingTimeoutSec).toBe(300);
    expect(c.contentStore.type).toBe("soci");
    expect(c.directoryCache.direct).toBe(true);
    expect(c.pullModes.parallelPullUnpack.concurrentDownloadChunkSizeBytes).toBe(-1);
    expect(c.resolver.host).toBeUndefined();
  });

  it("an empty file gives the defaults", () => {
    expect(parseConfig("")).toEqual(defaultConfig());
  });
});

describe("decoding", () => {
  it("reads every section", () => {
    const c = parseConfig(`
http_cache_type = "memory"
resolve_result_entry = 12
debug = true
metrics_address = "127.0.0.1:9901"
metadata_store = "db-multi"
skip_check_snapshotter_supported = true
[http]
MaxRetries = 2
[blob]
max_retries = 3
min_wait_msec = 100
max_wait_msec = 1600
[fuse]
attr_timeout = 5
[background_fetch]
drop_policy = "oldest"
max_queue_size = -1
[content_store]
type = "containerd"
containerd_address = "unix:///run/ctd/containerd.sock"
[prefetch]
enable = true
max_concurrency = 4
[pull_modes.soci_v1]
enable = true
[kubeconfig_keychain]
enable_keychain = true
kubeconfig_path = "/root/.kube/config"
[cri_keychain]
enable_keychain = true
image_service_path = "/custom/test/containerd.sock"
[resolver]
enable_auth_client_sharing = true
auth_client_ttl_sec = -1
[[resolver.host."docker.io".mirrors]]
host = "mirror.example:5000"
insecure = true
request_timeout_sec = -1
[snapshotter]
min_layer_size = 10000000
allow_invalid_mounts_on_restart = true
`);
    expect(c.httpCacheType).toBe("memory");
    expect(c.resolveResultEntry).toBe(12);
    expect(c.debug).toBe(true);
    expect(c.metricsAddress).toBe("127.0.0.1:9901");
    expect(c.metadataStore).toBe("db-multi");
    expect(c.skipCheckSnapshotterSupported).toBe(true);
    expect(c.http.maxRetries).toBe(2);
    expect(c.blob).toMatchObject({ maxRetries: 3, minWaitMsec: 100, maxWaitMsec: 1600 });
    expect(c.fuse.attrTimeout).toBe(5);
    expect(c.backgroundFetch.dropPolicy).toBe("oldest");
    expect(c.backgroundFetch.maxQueueSize).toBe(-1);
    expect(c.contentStore).toEqual({ type: "containerd", containerdAddress: "/run/ctd/containerd.sock" });
    expect(c.prefetch).toEqual({ enable: true, maxConcurrency: 4 });
    expect(c.pullModes.sociV1.enable).toBe(true);
    expect(c.kubeconfigKeychain).toEqual({ enableKeychain: true, kubeconfigPath: "/root/.kube/config" });
    expect(c.criKeychain).toEqual({ enableKeychain: true, imageServicePath: "/custom/test/containerd.sock" });
    expect(c.resolver).toEqual({
      host: { "docker.io": { mirrors: [{ host: "mirror.example:5000", insecure: true, requestTimeoutSec: -1 }] } },
      authClientTtlSec: -1,
      enableAuthClientSharing: true,
    });
    expect(c.snapshotter).toEqual({ minLayerSize: 10000000, allowInvalidMountsOnRestart: true });
  });

  it("an explicit 0 or empty string means the default", () => {
    const c = parseConfig(`
max_concurrency = 0
mount_timeout_sec = 0
metrics_network = ""
metadata_store = ""
[fuse]
entry_timeout = 0
[background_fetch]
max_queue_size = 0
drop_policy = ""
[content_store]
type = ""
containerd_address = ""
[cri_keychain]
image_service_path = ""
[resolver]
auth_client_ttl_sec = 0
`);
    expect(c).toEqual(defaultConfig());
  });

  it("applies the reference's fill rules", () => {
    expect(parseConfig("max_concurrency = -5").maxConcurrency).toBe(0); // unlimited
    expect(parseConfig("[prefetch]\nmax_concurrency = -2").prefetch.maxConcurrency).toBe(0);
    expect(parseConfig("[blob]\nvalid_interval = 10\ncheck_always = true").blob.validInterval).toBe(0);
    expect(parseConfig("[directory_cache]\ndirect = false").directoryCache.direct).toBe(false);
    // [blob] inherits [http] only where it is 0: decoded over the defaults, an untouched [blob]
    // already holds 8/30/300000 (the reference behaves the same way)
    const inherit = parseConfig("[http]\nMaxRetries = 2\nMinWaitMsec = 5\n[blob]\nmax_retries = 0");
    expect(inherit.blob.maxRetries).toBe(2);
    expect(inherit.blob.minWaitMsec).toBe(30);
  });

  it("matches keys exactly, then case-insensitively; ignores unknown keys and sections", () => {
    const c = parseConfig(`
MAX_CONCURRENCY = 7
no_such_key = "x"
[HTTP]
maxretries = 4
[registry]
config_path = ""
mirrors = {}
[auth]
username = ""
identitytoken = ""
[tls]
insecure_skip_verify = false
`);
    expect(c.maxConcurrency).toBe(7);
    expect(c.http.maxRetries).toBe(4);
  });

  it("names every unknown key by its dotted path, in tables, maps and arrays of tables", () => {
    const unknown: string[] = [];
    const c = parseConfig(
      `
no_such_key = "x"
[background_fetch]
silence_perid_msec = 10
fetch_period_msec = 7
[registry]
config_path = ""
[pull_modes.parallel_pull_unpack.decompress_streams.gzip]
path = "/bin/unpigz"
argz = ["-d"]
[[resolver.host."docker.io".mirrors]]
host = "m.example"
timeout = 3
`,
      { onUnknownKey: (key) => unknown.push(key) },
    );
    expect(unknown).toEqual([
      "no_such_key",
      "background_fetch.silence_perid_msec",
      "registry",
      "pull_modes.parallel_pull_unpack.decompress_streams.gzip.argz",
      'resolver.host."docker.io".mirrors[0].timeout',
    ]);
    // known keys around them still apply; an unknown key changes nothing
    expect(c.backgroundFetch.fetchPeriodMsec).toBe(7);
    expect(c.backgroundFetch.silencePeriodMsec).toBe(parseConfig("").backgroundFetch.silencePeriodMsec);
    // no report for a file without unknown keys
    parseConfig(defaultConfigText(), { onUnknownKey: (key) => unknown.push(`default: ${key}`) });
    expect(unknown).toHaveLength(5);
  });

  it("no_prometheus is read from the root key (and dumped as the shadowed FSConfig field, false)", () => {
    const c = parseConfig("no_prometheus = true");
    expect(c.noPrometheus).toBe(true);
    expect(dumpConfig(c)).toContain("\nno_prometheus = false\n");
  });

  it("parses concurrent_download_chunk_size like the reference", () => {
    expect(parseSize("")).toBe(-1);
    expect(parseSize("0")).toBe(-1);
    expect(parseSize("0mb")).toBe(-1);
    expect(parseSize("1024")).toBe(1024);
    expect(parseSize(" 3 b ")).toBe(3);
    expect(parseSize("1kb")).toBe(1024);
    expect(parseSize("1.5 MB")).toBe(1572864);
    expect(parseSize("2Gb")).toBe(2 * 1024 ** 3);
    expect(parseSize("0.5kb")).toBe(512);
    expect(() => parseSize("badstring")).toThrow(/invalid size format: badstring/);
    expect(() => parseSize("-5")).toThrow(/invalid size format: -5/);
    expect(() => parseSize("5 tb")).toThrow(/invalid size format/);
    expect(
      parseConfig('[pull_modes.parallel_pull_unpack]\nconcurrent_download_chunk_size = "4mb"').pullModes
        .parallelPullUnpack.concurrentDownloadChunkSizeBytes,
    ).toBe(4 << 20);
  });
});

describe("errors name the key", () => {
  it("wrong TOML types", () => {
    expect(configError('max_concurrency = "10"')).toBe("max_concurrency: expected an integer, got a string");
    expect(configError("max_concurrency = 1.5")).toBe("max_concurrency: expected an integer, got a float");
    expect(configError("debug = 1")).toBe("debug: expected a boolean, got an integer");
    expect(configError("metrics_address = 9000")).toBe("metrics_address: expected a string, got an integer");
    expect(configError("blob = 3")).toBe("blob: expected a table, got an integer");
    expect(configError("[fuse]\nattr_timeout = true")).toBe("fuse.attr_timeout: expected an integer, got a boolean");
    expect(configError('[resolver.host."r.io"]\nmirrors = ["m"]')).toBe(
      'resolver.host."r.io".mirrors[0]: expected a table, got a string',
    );
    expect(configError('[pull_modes.parallel_pull_unpack.decompress_streams.gzip]\npath = "/bin/gz"\nargs = [1]')).toBe(
      "pull_modes.parallel_pull_unpack.decompress_streams.gzip.args[0]: expected a string, got an integer",
    );
    expect(configError("min_layer_size = 1\n[snapshotter]\nmin_layer_size = 99999999999999999999")).toMatch(
      /^snapshotter\.min_layer_size: integer 99999999999999999999 is out of range$/,
    );
  });

  it("invalid values", () => {
    expect(configError('[background_fetch]\ndrop_policy = "random"')).toBe(
      'background_fetch.drop_policy: invalid value "random": must be "oldest" or "newest"',
    );
    expect(configError('metrics_network = "udp"')).toBe(
      'metrics_network: invalid value "udp": must be "tcp" or "unix"',
    );
    expect(configError('metadata_store = "bolt"')).toMatch(/^metadata_store: invalid value "bolt"/);
    expect(configError('[content_store]\ntype = "local"')).toMatch(/^content_store\.type: invalid value "local"/);
    expect(configError('[pull_modes.parallel_pull_unpack]\nconcurrent_download_chunk_size = "badstring"')).toBe(
      "pull_modes.parallel_pull_unpack.concurrent_download_chunk_size: invalid size format: badstring",
    );
    expect(configError("[snapshotter]\nmin_layer_size = -1")).toBe(
      "snapshotter.min_layer_size: must not be negative, got -1",
    );
    expect(configError("mount_timeout_sec = -3")).toBe("mount_timeout_sec: must not be negative, got -3");
    expect(configError("[http]\nDialTimeoutMsec = -1")).toBe("http.DialTimeoutMsec: must not be negative, got -1");
    expect(configError('[pull_modes.parallel_pull_unpack.decompress_streams.gzip]\npath = "igzip"')).toMatch(
      /^pull_modes\.parallel_pull_unpack\.decompress_streams\."gzip"\.path: must be an absolute path/,
    );
    expect(configError('[[resolver.host."r.io".mirrors]]\ninsecure = true')).toMatch(
      /mirrors\[0\]\.host: must not be empty/,
    );
  });

  it("parallel pull limits and content store", () => {
    expect(configError("[pull_modes.parallel_pull_unpack]\nenable = true")).toMatch(
      /needs content_store\.type = "containerd" unless discard_unpacked_layers = true/,
    );
    expect(
      parseConfig("[pull_modes.parallel_pull_unpack]\nenable = true\ndiscard_unpacked_layers = true").pullModes
        .parallelPullUnpack.enable,
    ).toBe(true);
    const base = '[content_store]\ntype = "containerd"\n[pull_modes.parallel_pull_unpack]\nenable = true\n';
    expect(configError(base + "max_concurrent_downloads = 2\nmax_concurrent_downloads_per_image = 3")).toBe(
      "pull_modes.parallel_pull_unpack.max_concurrent_downloads_per_image (3) must not exceed max_concurrent_downloads (2)",
    );
    expect(configError(base + "max_concurrent_unpacks = 4\nmax_concurrent_unpacks_per_image = -1")).toMatch(
      /max_concurrent_unpacks_per_image \(-1\) must not exceed/,
    );
    expect(configError(base + "max_concurrent_unpacks_per_image = 0")).toMatch(
      /max_concurrent_unpacks_per_image: must not be 0/,
    );
    expect(parseConfig(base + "max_concurrent_downloads = 3").pullModes.parallelPullUnpack.maxConcurrentDownloads).toBe(
      3,
    );
  });

  it("TOML syntax errors give the position", () => {
    expect(configError("a = 1\na = 2")).toMatch(/^toml: line 2 column \d+: /);
    expect(configError("[http\n")).toMatch(/^toml: line 1 /);
  });
});

describe("loading files", () => {
  it("a missing explicit file is an error; a bad one names the file and the key", async () => {
    const dir = await mkdtemp(join(tmpdir(), "soci-cfg-"));
    await expect(loadConfig(join(dir, "nope.toml"))).rejects.toThrow(
      `failed to open config file "${join(dir, "nope.toml")}": no such file or directory`,
    );
    await expect(loadConfig(dir)).rejects.toThrow(/failed to open config file .*: is a directory/);
    const bad = join(dir, "bad.toml");
    await writeFile(bad, '[background_fetch]\ndrop_policy = "x"\n');
    await expect(loadConfig(bad)).rejects.toThrow(
      `failed to load config file "${bad}": background_fetch.drop_policy: invalid value "x"`,
    );
    const good = join(dir, "sub", "good.toml");
    await mkdir(join(dir, "sub"));
    await writeFile(good, "[snapshotter]\nmin_layer_size = 42\n");
    expect((await loadConfig(good)).snapshotter.minLayerSize).toBe(42);
  });

  it("a missing file at the default path means defaults", async () => {
    expect(existsSync(DEFAULT_CONFIG_PATH)).toBe(false); // premise of this test on a clean machine
    expect(await loadConfig(DEFAULT_CONFIG_PATH)).toEqual(defaultConfig());
    expect(await loadConfig(undefined)).toEqual(defaultConfig());
  });
});

describe("[blob] chunk_verification (ours)", () => {
  it("defaults to true and stays out of the dump; false is read and dumped", () => {
    expect(defaultConfig().blob.chunkVerification).toBe(true);
    expect(dumpConfig(defaultConfig())).not.toContain("chunk_verification");
    const off = parseConfig("[blob]\nchunk_verification = false\n");
    expect(off.blob.chunkVerification).toBe(false);
    expect(dumpConfig(off)).toContain("  chunk_verification = false\n");
    expect(parseConfig(dumpConfig(off))).toEqual(off);
  });
});

describe("config dump", () => {
  const rich = `
max_concurrency = 7
metrics_address = "/run/it's/metrics.sock"
metrics_network = "unix"
debug_address = "tab\there"
[content_store]
type = "containerd"
[resolver.host."registry.example.com:5000"]
  [[resolver.host."registry.example.com:5000".mirrors]]
    host = "mirror.local"
  [[resolver.host."registry.example.com:5000".mirrors]]
    host = "m2"
    insecure = true
[resolver.host.plain]
[pull_modes.parallel_pull_unpack]
enable = true
concurrent_download_chunk_size = "1.5 MB"
[pull_modes.parallel_pull_unpack.decompress_streams.gzip]
path = "/usr/bin/igzip"
args = ["-d", "-c"]
`;

  it("writes maps sorted, array tables, nested indentation and Go's string quoting", () => {
    const text = dumpConfig(parseConfig(rich));
    expect(text).toContain(`metrics_address = "/run/it's/metrics.sock"\n`);
    expect(text).toContain("debug_address = 'tab\there'\n");
    expect(text).toContain(`    concurrent_download_chunk_size = '1.5 MB'
    max_concurrent_unpacks = -1
    max_concurrent_unpacks_per_image = 1
    discard_unpacked_layers = false

    [pull_modes.parallel_pull_unpack.decompress_streams]
      [pull_modes.parallel_pull_unpack.decompress_streams.gzip]
        path = '/usr/bin/igzip'
        args = ['-d', '-c']

[kubeconfig_keychain]
`);
    expect(text).toContain(`[resolver]
  auth_client_ttl_sec = 3600
  enable_auth_client_sharing = false

  [resolver.host]
    [resolver.host.plain]
      mirrors = []

    [resolver.host.'registry.example.com:5000']
      [[resolver.host.'registry.example.com:5000'.mirrors]]
        host = 'mirror.local'
        insecure = false
        request_timeout_sec = 0

      [[resolver.host.'registry.example.com:5000'.mirrors]]
        host = 'm2'
        insecure = true
        request_timeout_sec = 0

[snapshotter]
`);
  });

  it("reads back to the same configuration", () => {
    const c = parseConfig(rich);
    expect(parseConfig(dumpConfig(c))).toEqual(c);
    expect(parseConfig(dumpConfig(defaultConfig()))).toEqual(defaultConfig());
  });
});

describe("[fuse_manager] (ours: the FUSE host, docs/snapshotter.md §5.8)", () => {
  it("defaults to the host on, its socket under the root, started as fits the system", () => {
    expect(defaultConfig().fuseManager).toEqual({ enable: true, address: "", path: "", start: "auto" });
  });

  it("reads its keys; start must be one of the modes", () => {
    const c = parseConfig(
      '[fuse_manager]\nenable = false\naddress = "unix:///run/soci/host.sock"\npath = "/opt/soci/bin/soci-fuse-host.js"\nstart = "none"\n',
    );
    expect(c.fuseManager).toEqual({
      enable: false,
      address: "/run/soci/host.sock",
      path: "/opt/soci/bin/soci-fuse-host.js",
      start: "none",
    });
    for (const start of ["spawn", "systemd"])
      expect(parseConfig(`[fuse_manager]\nstart = "${start}"`).fuseManager.start).toBe(start);
    expect(() => parseConfig('[fuse_manager]\nstart = "fork"')).toThrow(/^fuse_manager\.start: invalid value "fork"/);
    expect(() => parseConfig("[fuse_manager]\nenable = 1")).toThrow(/^fuse_manager\.enable: expected a boolean/);
  });

  it("is not printed by config dump, which stays the reference's layout", () => {
    const text = dumpConfig(parseConfig('[fuse_manager]\nenable = false\nstart = "spawn"'));
    expect(text).toBe(defaultConfigText());
    expect(text).not.toContain("fuse_manager");
  });
});
