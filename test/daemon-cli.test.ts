// The real `soci-snapshotter-grpc` executable (bin/ → dist/): config default / dump, flags and
// their environment variables, fatal bad configs within 2 s, and a start → scrape → SIGINT cycle.
import { describe, expect, it } from "vitest";
import { execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { defaultConfigText, parseConfig } from "../src/daemon/config/index.js";

const BIN = new URL("../bin/soci-snapshotter-grpc.js", import.meta.url).pathname;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

function run(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const start = Date.now();
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("SOCI_SNAPSHOTTER_")));
  return new Promise((resolve) => {
    execFile("node", [BIN, ...args], { env: { ...clean, ...env }, timeout: 20_000 }, (err, stdout, stderr) => {
      const code = err ? ((err as { code?: number }).code ?? null) : 0;
      resolve({ code: typeof code === "number" ? code : null, stdout, stderr, ms: Date.now() - start });
    });
  });
}

async function tempConfig(text: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "soci-cli-cfg-"));
  const path = join(dir, "config.toml");
  await writeFile(path, text);
  return path;
}

function fatalLine(stderr: string): Record<string, string> {
  const lines = stderr
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, string>);
  const fatal = lines.find((l) => l.level === "fatal");
  expect(fatal, stderr).toBeDefined();
  return fatal!;
}

describe("soci-snapshotter-grpc config", () => {
  it("config default prints the default configuration", async () => {
    const r = await run(["config", "default"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(defaultConfigText());
    expect(r.stdout).toMatch(/^max_concurrency = 100$/m);
  });

  it("config dump prints the effective configuration of --config (global or local flag)", async () => {
    const path = await tempConfig(
      'metrics_address = "127.0.0.1:9901"\n[snapshotter]\nmin_layer_size = 10000000\n[fuse]\nattr_timeout = 0\n',
    );
    for (const args of [
      ["--config", path, "config", "dump"],
      ["config", "dump", "--config", path],
    ]) {
      const r = await run(args);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain("metrics_address = '127.0.0.1:9901'\n");
      expect(r.stdout).toContain("[snapshotter]\n  min_layer_size = 10000000\n");
      expect(r.stdout).toContain("[fuse]\n  attr_timeout = 1\n");
      expect(parseConfig(r.stdout).snapshotter.minLayerSize).toBe(10000000);
    }
  });

  it("SOCI_SNAPSHOTTER_CONFIG replaces the default config path (main_test.go TestEnvVarOverridesDefaultConfigPath)", async () => {
    const path = await tempConfig('[cri_keychain]\n  image_service_path = "/custom/test/containerd.sock"\n');
    const r = await run(["config", "dump"], { SOCI_SNAPSHOTTER_CONFIG: path });
    expect(r.code, r.stderr).toBe(0);
    expect(parseConfig(r.stdout).criKeychain.imageServicePath).toBe("/custom/test/containerd.sock");
    // the flag wins over the variable
    const other = await tempConfig('[cri_keychain]\nimage_service_path = "/flag.sock"\n');
    const f = await run(["--config", other, "config", "dump"], { SOCI_SNAPSHOTTER_CONFIG: path });
    expect(parseConfig(f.stdout).criKeychain.imageServicePath).toBe("/flag.sock");
  });

  it("a missing explicit config file is fatal", async () => {
    const r = await run(["--config", "/nonexistent/soci/config.toml", "config", "dump"]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(fatalLine(r.stderr).msg).toBe(
      'failed to open config file "/nonexistent/soci/config.toml": no such file or directory',
    );
  });
});

describe("soci-snapshotter-grpc start-up checks", () => {
  const bad: Array<[string, RegExp]> = [
    [
      '[pull_modes.parallel_pull_unpack]\nconcurrent_download_chunk_size = "badstring"\n',
      /invalid size format: badstring/,
    ],
    ['[background_fetch]\ndrop_policy = "random"\n', /background_fetch\.drop_policy: invalid value "random"/],
    ['metrics_network = "udp"\n', /metrics_network: invalid value "udp"/],
    ["max_concurrency = 'ten'\n", /max_concurrency: expected an integer, got a string/],
    ["[snapshotter\n", /toml: line 1/],
  ];
  for (const [text, message] of bad) {
    it(`a bad config exits non-zero within 2 s: ${message.source}`, async () => {
      const dir = await mkdtemp(join(tmpdir(), "soci-cli-bad-"));
      const path = await tempConfig(text);
      const r = await run(["--config", path, "--root", join(dir, "root"), "--address", join(dir, "s.sock")]);
      expect(r.code).toBe(1);
      expect(r.ms).toBeLessThan(2000);
      const fatal = fatalLine(r.stderr);
      expect(fatal.msg).toMatch(message);
      expect(fatal.msg).toContain(`failed to load config file "${path}"`);
      expect(fatal.error).toBe(fatal.msg);
      expect(existsSync(join(dir, "s.sock"))).toBe(false);
    });
  }

  it("a missing explicit config file stops the daemon too", async () => {
    const r = await run([], {
      SOCI_SNAPSHOTTER_CONFIG: "/nonexistent/soci/config.toml",
      SOCI_SNAPSHOTTER_ROOT: "/nonexistent/root",
    });
    expect(r.code).toBe(1);
    expect(r.ms).toBeLessThan(2000);
    expect(fatalLine(r.stderr).msg).toMatch(/^failed to open config file/);
  });

  it("an unknown log level is rejected before anything starts", async () => {
    const r = await run(["--log-level", "chatty"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('soci-snapshotter-grpc: failed to prepare logger: not a valid logrus Level: "chatty"\n');
  });
});

describe("soci-snapshotter-grpc serving", () => {
  it("starts, serves /metrics on a unix socket, and exits cleanly on SIGINT", async () => {
    const dir = await mkdtemp(join(tmpdir(), "soci-cli-run-"));
    const metricsSock = join(dir, "metrics", "m.sock");
    const grpcSock = join(dir, "run", "soci.sock");
    const config = await tempConfig(
      `metrics_address = "${metricsSock}"\nmetrics_network = "unix"\n[kubeconfig_keychain]\nenable_keychain = true\n` +
        "[background_fetch]\nsilence_perid_msec = 10\n",
    );
    const child = spawn("node", [BIN, "--root", join(dir, "root")], {
      env: {
        ...process.env,
        SOCI_SNAPSHOTTER_CONFIG: config,
        SOCI_SNAPSHOTTER_ADDRESS: grpcSock,
        SOCI_SNAPSHOTTER_LOG_LEVEL: "debug",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    const exited = new Promise<number | null>((ok) => child.on("exit", (code) => ok(code)));
    try {
      await new Promise<void>((ok, fail) => {
        const timer = setTimeout(() => fail(new Error(`no start line in time:\n${stderr}`)), 15_000);
        child.stderr.on("data", (d: Buffer) => {
          stderr += d.toString();
          if (stderr.includes("successfully started")) {
            clearTimeout(timer);
            ok();
          }
        });
        child.on("exit", () => fail(new Error(`exited early:\n${stderr}`)));
      });
      expect(existsSync(grpcSock)).toBe(true);
      const body = await new Promise<string>((ok, fail) => {
        const req = request({ socketPath: metricsSock, path: "/metrics", agent: false }, (res) => {
          let b = "";
          res.on("data", (c: Buffer) => (b += c.toString()));
          res.on("end", () => ok(b));
        });
        req.on("error", fail);
        req.end();
      });
      expect(body).toContain(
        'soci_fs_operation_count{layer="",operation_type="background_fetch_work_queue_evicted"} 0\n',
      );
      expect(body).toMatch(/^process_resident_memory_bytes /m);
      child.kill("SIGINT");
      expect(await exited).toBe(0);
    } finally {
      child.kill("SIGKILL");
    }
    const lines = stderr
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, string>);
    const msgs = lines.map((l) => l.msg);
    expect(msgs[0]).toBe("starting soci-snapshotter-grpc");
    expect(lines.find((l) => l.msg === "soci-snapshotter-grpc successfully started")?.address).toBe(grpcSock);
    // a setting this daemon cannot honour is said so, not silently ignored
    expect(lines.find((l) => l.msg.startsWith("kubeconfig_keychain is not supported"))?.level).toBe("warning");
    // … nor is a key it does not know (a typo), named in full
    const unknown = lines.filter((l) => l.key === "background_fetch.silence_perid_msec");
    expect(unknown).toHaveLength(1);
    expect(unknown[0]).toMatchObject({
      level: "warning",
      msg: 'unknown key "background_fetch.silence_perid_msec" in config file ignored',
      path: config,
    });
    expect(msgs).toContain("Got interrupt");
    expect(msgs).toContain("Closing the snapshotter"); // debug level from SOCI_SNAPSHOTTER_LOG_LEVEL
    expect(msgs.at(-1)).toBe("Exiting");
    for (const l of lines) expect(l.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}(Z|[+-]\d\d:\d\d)$/);
    expect(existsSync(grpcSock)).toBe(false);
    expect(existsSync(metricsSock)).toBe(false);
  });
});
