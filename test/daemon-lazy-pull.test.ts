// Lazy pulls end to end: our `soci-snapshotter-grpc` daemon as containerd 1.6's proxy snapshotter,
// an image converted with `soci convert` in a real registry, pulled with `ctr-remote images rpull`
// (stargz labels) and run with runc. Indexed layers are FUSE mounts, the small unindexed layer is
// unpacked by the daemon, and the container sees exactly the image's files.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { startRegistry, type RegistryServer } from "./helpers/registry-server.js";
import { startContainerd, type Containerd } from "./helpers/containerd.js";

const run = promisify(execFile);
const soci = new URL("../bin/soci.js", import.meta.url).pathname;
const daemonBin = new URL("../bin/soci-snapshotter-grpc.js", import.meta.url).pathname;

let dir = "";
let registry: RegistryServer;
let ctd: Containerd | undefined;
let daemon: ChildProcess | undefined;
let daemonLog = "";
let image = "";
let big = Buffer.alloc(0);

const sock = () => join(dir, "soci.sock");
const metricsSock = () => join(dir, "metrics.sock");
const daemonRoot = () => join(dir, "soci-root");

async function buildImage(layout: string): Promise<void> {
  await run("umoci", ["init", "--layout", layout]);
  await run("umoci", ["new", "--image", `${layout}:latest`]);
  const layer = async (fill: (rootfs: string) => Promise<void>) => {
    const bundle = join(dir, `bundle-${randomBytes(4).toString("hex")}`);
    await run("umoci", ["unpack", "--image", `${layout}:latest`, bundle]);
    await fill(join(bundle, "rootfs"));
    await run("umoci", ["repack", "--image", `${layout}:latest`, bundle]);
    await rm(bundle, { recursive: true, force: true });
  };
  await layer(async (rootfs) => {
    await mkdir(join(rootfs, "bin"), { recursive: true });
    await cp("/bin/busybox", join(rootfs, "bin", "busybox"));
    for (const tool of ["sh", "cat", "sha256sum", "ls", "find", "sort"]) await symlink("busybox", join(rootfs, "bin", tool));
  });
  big = Buffer.concat([randomBytes(3 << 20), Buffer.alloc(3 << 20, "0123456789abcdef")]);
  await layer(async (rootfs) => {
    await mkdir(join(rootfs, "data"), { recursive: true });
    await writeFile(join(rootfs, "data", "big.bin"), big);
    for (let i = 0; i < 50; i++) await writeFile(join(rootfs, "data", `f${i}.txt`), `file ${i}\n`);
  });
  await layer(async (rootfs) => {
    await mkdir(join(rootfs, "etc"), { recursive: true });
    await writeFile(join(rootfs, "etc", "hello"), "hello from a small layer\n");
  });
  await run("umoci", ["config", "--image", `${layout}:latest`, "--config.cmd", "/bin/sh"]);
}

function startDaemon(): Promise<void> {
  daemonLog = "";
  daemon = spawn("node", [daemonBin, "--address", sock(), "--root", daemonRoot(), "--config", join(dir, "config.toml"), "--log-level", "debug"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const proc = daemon;
  return new Promise((resolve, reject) => {
    const onData = (d: Buffer) => {
      daemonLog += d.toString();
      if (daemonLog.includes("successfully started")) resolve();
    };
    proc.stdout!.on("data", onData);
    proc.stderr!.on("data", onData);
    proc.once("exit", (code) => reject(new Error(`daemon exited ${code}: ${daemonLog}`)));
  });
}

async function stopDaemon(signal: NodeJS.Signals): Promise<void> {
  const proc = daemon;
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once("exit", r));
  proc.kill(signal);
  await exited;
}

async function fuseMounts(): Promise<string[]> {
  return (await readFile("/proc/mounts", "utf8")).split("\n").filter((l) => l.includes("fuse.rawBridge") && l.includes(daemonRoot()));
}

function logLines(key: string): Array<Record<string, string>> {
  return daemonLog.split("\n").filter((l) => l.includes(key)).map((l) => JSON.parse(l) as Record<string, string>);
}

/** containerd redials a restarted proxy plugin with backoff: wait until it answers through containerd. */
async function waitForSnapshotter(): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      await ctd!.ctr(["snapshots", "--snapshotter", "soci", "ls"]);
      return;
    } catch (e) {
      if (i >= 100) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

async function runContainer(id: string, script: string): Promise<string> {
  const r = await ctd!.ctr(["run", "--rm", "--snapshotter", "soci", "--runc-root", join(dir, "runc"), image, id, "/bin/sh", "-c", script]);
  return r.stdout;
}

function scrape(): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: metricsSock(), path: "/metrics" }, (res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d.toString()));
      res.on("end", () => resolve(body));
    });
    req.on("error", reject);
    req.end();
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "soci-lazy-"));
  registry = await startRegistry();
  const layout = join(dir, "image");
  await buildImage(layout);
  await run("skopeo", ["copy", "--dest-tls-verify=false", `oci:${layout}:latest`, `docker://${registry.host}/lazy/img:latest`]);
  image = `${registry.host}/lazy/img:soci`;
  // the busybox and data layers get ztocs; the tiny /etc layer stays unindexed (sparse index)
  await run("node", [soci, "--root", join(dir, "convert-root"), "convert", "--plain-http", "--min-layer-size", "100000", "--span-size", String(256 << 10),
    `${registry.host}/lazy/img:latest`, image]);
  await writeFile(join(dir, "config.toml"), `metrics_address = "${metricsSock()}"\nmetrics_network = "unix"\n[background_fetch]\ndisable = true\n`);
  await startDaemon();
  ctd = await startContainerd({ proxyPlugins: { soci: { address: sock() } } });
}, 240_000);

afterAll(async () => {
  await ctd?.stop().catch(() => undefined);
  await stopDaemon("SIGINT").catch(() => undefined);
  for (const line of await fuseMounts().catch(() => [])) await run("umount", ["-l", line.split(" ")[1]!]).catch(() => undefined);
  await registry?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("lazy pull through containerd", () => {
  it("ctr-remote rpull mounts indexed layers with FUSE and unpacks the unindexed one", async () => {
    await run("ctr-remote", ["--address", ctd!.socket, "images", "rpull", "--plain-http", "--snapshotter", "soci", image]).catch((e: Error) => {
      throw new Error(`${e.message}\ndaemon log:\n${daemonLog.slice(-4000)}`);
    });
    expect(logLines("remote-snapshot-prepared").filter((l) => l["remote-snapshot-prepared"] === "true")).toHaveLength(2);
    expect(logLines("local-snapshot-prepared").filter((l) => l["local-snapshot-prepared"] === "true")).toHaveLength(1);
    expect(await fuseMounts()).toHaveLength(2);
    expect(daemonLog).toContain("fetching SOCI artifacts using index descriptor");
  }, 120_000);

  it("a container of the lazily pulled image sees the image's files", async () => {
    const out = await runContainer("lazy-1", "cat /etc/hello; sha256sum /data/big.bin; cat /data/f7.txt; ls /data | sort | busybox wc -l");
    const sha = createHash("sha256").update(big).digest("hex");
    expect(out).toBe(`hello from a small layer\n${sha}  /data/big.bin\nfile 7\n51\n`);
  }, 120_000);

  it("serves metrics for the mounted layers", async () => {
    const text = await scrape();
    expect(text).toMatch(/soci_fs_layer_size_bytes\{digest="sha256:[0-9a-f]{64}",mountpoint="[^"]+"\} \d+/);
    expect(text).toContain('soci_fs_operation_count{layer="",operation_type="background_fetch_work_queue_evicted"} 0');
  });

  it("after SIGTERM and a restart the layers are mounted again and a new container runs", async () => {
    await stopDaemon("SIGTERM");
    await startDaemon();
    expect(await fuseMounts()).toHaveLength(2);
    await waitForSnapshotter();
    const out = await runContainer("lazy-2", "cat /data/f3.txt").catch((e: Error) => {
      throw new Error(`${e.message}\ndaemon log:\n${daemonLog.slice(-6000)}`);
    });
    expect(out).toBe("file 3\n");
  }, 120_000);

  it("removing the image unmounts its layers; SIGINT leaves nothing mounted", async () => {
    await ctd!.ctr(["images", "rm", "--sync", image]);
    await ctd!.ctr(["snapshots", "--snapshotter", "soci", "ls"]); // let GC settle
    for (let i = 0; i < 50 && (await fuseMounts()).length > 0; i++) await new Promise((r) => setTimeout(r, 200));
    expect(await fuseMounts()).toHaveLength(0);
    await stopDaemon("SIGINT");
    expect(await fuseMounts()).toHaveLength(0);
  }, 60_000);

  it("soci image rpull (cri.* labels) pulls lazily too, and the container runs", async () => {
    await startDaemon();
    await waitForSnapshotter();
    const r = await run("node", [soci, "--address", ctd!.socket, "image", "rpull", "--plain-http", image]);
    expect(r.stdout).toMatch(/: 3 of 3 layers provided by soci\n$/); // two lazily, one unpacked by the snapshotter
    expect(logLines("remote-snapshot-prepared").filter((l) => l["remote-snapshot-prepared"] === "true")).toHaveLength(2);
    expect(logLines("local-snapshot-prepared").filter((l) => l["local-snapshot-prepared"] === "true")).toHaveLength(1);
    expect(await fuseMounts()).toHaveLength(2);
    expect(await runContainer("lazy-3", "cat /etc/hello /data/f9.txt")).toBe("hello from a small layer\nfile 9\n");
    // the lazily provided layers were never downloaded into containerd's content store
    const { stdout } = await ctd!.ctr(["content", "ls", "-q"]);
    const sizes = await run("skopeo", ["inspect", "--raw", "--tls-verify=false", `docker://${image}`]);
    expect(sizes.stdout.length).toBeGreaterThan(0);
    expect(stdout.split("\n").filter(Boolean).length).toBeLessThanOrEqual(5); // index, manifest, config, the small layer (+ nothing big)
  }, 120_000);
});
