// Lazy pulls end to end: our `soci-snapshotter-grpc` daemon as containerd 1.6's proxy snapshotter,
// an image converted with `soci convert` in a real registry, pulled with `ctr-remote images rpull`
// (stargz labels) and run with runc. Indexed layers are FUSE mounts, the small unindexed layer is
// unpacked by the daemon, and the container sees exactly the image's files.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { startRegistry, type RegistryServer } from "./helpers/registry-server.js";
import { runOnSoci, startContainerd, type Containerd } from "./helpers/containerd.js";
import {
  addLayer,
  busyboxLayer,
  fuseMountsUnder,
  initLayout,
  scrapeMetrics,
  SOCI_BIN,
  spawnDaemon,
  waitForSnapshotter,
  type SociDaemon,
} from "./helpers/soci-daemon.js";

const run = promisify(execFile);
const soci = SOCI_BIN;

let dir = "";
let registry: RegistryServer;
let ctd: Containerd | undefined;
let daemon: SociDaemon | undefined;
let image = "";
let big = Buffer.alloc(0);

const sock = () => join(dir, "soci.sock");
const metricsSock = () => join(dir, "metrics.sock");
const daemonRoot = () => join(dir, "soci-root");

async function buildImage(layout: string): Promise<void> {
  await initLayout(layout);
  await addLayer(layout, dir, busyboxLayer);
  big = Buffer.concat([randomBytes(3 << 20), Buffer.alloc(3 << 20, "0123456789abcdef")]);
  await addLayer(layout, dir, async (rootfs) => {
    await mkdir(join(rootfs, "data"), { recursive: true });
    await writeFile(join(rootfs, "data", "big.bin"), big);
    for (let i = 0; i < 50; i++) await writeFile(join(rootfs, "data", `f${i}.txt`), `file ${i}\n`);
  });
  await addLayer(layout, dir, async (rootfs) => {
    await mkdir(join(rootfs, "etc"), { recursive: true });
    await writeFile(join(rootfs, "etc", "hello"), "hello from a small layer\n");
  });
}

async function startDaemon(): Promise<void> {
  daemon = spawnDaemon({ address: sock(), root: daemonRoot(), config: join(dir, "config.toml") });
  await daemon.ready;
}

async function stopDaemon(signal: NodeJS.Signals): Promise<void> {
  await daemon?.stop(signal);
}

const fuseMounts = () => fuseMountsUnder(daemonRoot());
const logLines = (key: string) => daemon!.lines(key);
const daemonLog = () => daemon?.log() ?? "";
const waitForSoci = () => waitForSnapshotter((args) => ctd!.ctr(args));

function runContainer(id: string, script: string): Promise<string> {
  return runOnSoci(ctd!, { image, id, script, runcRoot: join(dir, "runc") });
}

const scrape = () => scrapeMetrics(metricsSock());

/** The ztoc digests of the image's SOCI index (v2: the index manifest named in the image index; ztocs are its octet-stream layers). */
async function ztocDigests(): Promise<string[]> {
  const raw = async (ref: string) =>
    JSON.parse((await run("skopeo", ["inspect", "--raw", "--tls-verify=false", `docker://${ref}`])).stdout) as {
      manifests?: { digest: string; artifactType?: string }[];
      layers?: { digest: string; mediaType: string }[];
    };
  const top = await raw(image);
  const sociIndex = top.manifests!.find((m) => m.artifactType === "application/vnd.amazon.soci.index.v2+json")!;
  return (await raw(`${registry.host}/lazy/img@${sociIndex.digest}`))
    .layers!.filter((l) => l.mediaType === "application/octet-stream")
    .map((l) => l.digest);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "soci-lazy-"));
  registry = await startRegistry({ accessLog: true });
  const layout = join(dir, "image");
  await buildImage(layout);
  await run("skopeo", [
    "copy",
    "--dest-tls-verify=false",
    `oci:${layout}:latest`,
    `docker://${registry.host}/lazy/img:latest`,
  ]);
  image = `${registry.host}/lazy/img:soci`;
  // the busybox and data layers get ztocs; the tiny /etc layer stays unindexed (sparse index)
  await run("node", [
    soci,
    "--root",
    join(dir, "convert-root"),
    "convert",
    "--plain-http",
    "--min-layer-size",
    "100000",
    "--span-size",
    String(256 << 10),
    "--prefetch-file",
    "/data/f7.txt",
    `${registry.host}/lazy/img:latest`,
    image,
  ]);
  await writeFile(
    join(dir, "config.toml"),
    `metrics_address = "${metricsSock()}"\nmetrics_network = "unix"\n[background_fetch]\ndisable = true\n`,
  );
  await startDaemon();
  ctd = await startContainerd({ proxyPlugins: { soci: { address: sock() } } });
}, 240_000);

afterAll(async () => {
  await ctd?.stop().catch(() => undefined);
  await stopDaemon("SIGINT").catch(() => undefined);
  for (const line of await fuseMounts().catch(() => []))
    await run("umount", ["-l", line.split(" ")[1]!]).catch(() => undefined);
  await registry?.stop();
  await rm(dir, { recursive: true, force: true });
}, 60_000);

describe("lazy pull through containerd", () => {
  it("ctr-remote rpull mounts indexed layers with FUSE and unpacks the unindexed one", async () => {
    await run("ctr-remote", [
      "--address",
      ctd!.socket,
      "images",
      "rpull",
      "--plain-http",
      "--snapshotter",
      "soci",
      image,
    ]).catch((e: Error) => {
      throw new Error(`${e.message}\ndaemon log:\n${daemonLog().slice(-4000)}`);
    });
    expect(logLines("remote-snapshot-prepared").filter((l) => l["remote-snapshot-prepared"] === "true")).toHaveLength(
      2,
    );
    expect(logLines("local-snapshot-prepared").filter((l) => l["local-snapshot-prepared"] === "true")).toHaveLength(1);
    expect(await fuseMounts()).toHaveLength(2);
    expect(daemonLog()).toContain("fetching SOCI artifacts using index descriptor");
    // both ztocs were fetched (ahead of their layer's Prepare), each exactly once
    const ztocs = await ztocDigests();
    expect(ztocs).toHaveLength(2);
    for (const z of ztocs)
      expect(registry.requests.filter((r) => r.startsWith(`GET /v2/lazy/img/blobs/${z} `))).toHaveLength(1);
  }, 120_000);

  it("a container of the lazily pulled image sees the image's files", async () => {
    const out = await runContainer(
      "lazy-1",
      "cat /etc/hello; sha256sum /data/big.bin; cat /data/f7.txt; ls /data | sort | busybox wc -l",
    );
    const sha = createHash("sha256").update(big).digest("hex");
    expect(out).toBe(`hello from a small layer\n${sha}  /data/big.bin\nfile 7\n51\n`);
  }, 120_000);

  it("the container's / is the same as the image run on overlayfs (containerd's default snapshotter)", async () => {
    // every path with its mode, owner and type; file contents and link targets
    const script = [
      "cd / && busybox find . -xdev | busybox sort | while read f; do",
      "busybox stat -c '%n %a %u %g %F' \"$f\";",
      'if [ -L "$f" ]; then busybox readlink "$f"; elif [ -f "$f" ]; then busybox sha256sum "$f"; fi;',
      "done",
    ].join(" ");
    const lazy = await runContainer("tree-soci", script);
    await ctd!.ctr(["images", "pull", "--plain-http", image]); // downloads the layers, unpacks them into overlayfs
    const plain = (
      await ctd!.ctr([
        "run",
        "--rm",
        "--runc-root",
        join(dir, "runc"),
        image,
        "tree-overlayfs",
        "/bin/sh",
        "-c",
        script,
      ])
    ).stdout;
    expect(lazy.split("\n").length).toBeGreaterThan(60);
    expect(lazy).toContain("./data/big.bin 644 0 0 regular file");
    expect(lazy).toBe(plain);
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
    await waitForSoci();
    const out = await runContainer("lazy-2", "cat /data/f3.txt").catch((e: Error) => {
      throw new Error(`${e.message}\ndaemon log:\n${daemonLog().slice(-6000)}`);
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
    await waitForSoci();
    const r = await run("node", [soci, "--address", ctd!.socket, "image", "rpull", "--plain-http", image]);
    expect(r.stdout).toMatch(/: 3 of 3 layers provided by soci\n$/); // two lazily, one unpacked by the snapshotter
    expect(logLines("remote-snapshot-prepared").filter((l) => l["remote-snapshot-prepared"] === "true")).toHaveLength(
      2,
    );
    expect(logLines("local-snapshot-prepared").filter((l) => l["local-snapshot-prepared"] === "true")).toHaveLength(1);
    expect(await fuseMounts()).toHaveLength(2);
    expect(await runContainer("lazy-3", "cat /etc/hello /data/f9.txt")).toBe("hello from a small layer\nfile 9\n");
    // the lazily provided layers were never downloaded into containerd's content store
    const { stdout } = await ctd!.ctr(["content", "ls", "-q"]);
    const sizes = await run("skopeo", ["inspect", "--raw", "--tls-verify=false", `docker://${image}`]);
    expect(sizes.stdout.length).toBeGreaterThan(0);
    expect(stdout.split("\n").filter(Boolean).length).toBeLessThanOrEqual(5); // index, manifest, config, the small layer (+ nothing big)
  }, 120_000);

  it("with [prefetch] enable = true the layer's prefetch artifact is resolved once the layer is mounted; FUSE operations are logged and counted per image", async () => {
    await ctd!.ctr(["images", "rm", "--sync", image]);
    for (let i = 0; i < 50 && (await fuseMounts()).length > 0; i++) await new Promise((r) => setTimeout(r, 200));
    await stopDaemon("SIGINT");
    await rm(join(daemonRoot(), "soci", "spancache"), { recursive: true, force: true }); // cold spans
    await writeFile(
      join(dir, "config.toml"),
      [
        `metrics_address = "${metricsSock()}"`,
        `metrics_network = "unix"`,
        "fuse_metrics_emit_wait_duration_sec = 5",
        "[background_fetch]",
        "disable = true",
        "[prefetch]",
        "enable = true",
        "[fuse]",
        "log_fuse_operations = true",
        "",
      ].join("\n"),
    );
    await startDaemon();
    await waitForSoci();
    await run("node", [soci, "--address", ctd!.socket, "image", "rpull", "--plain-http", image]);
    expect(daemonLog()).toContain("Successfully loaded prefetch artifact with 1 span ranges");
    // prefetch runs after the mount (the pull does not wait for it)
    for (let i = 0; i < 100 && !logLines("spans").some((l) => l.msg === "prefetched spans"); i++)
      await new Promise((r) => setTimeout(r, 100));
    expect(
      logLines("spans")
        .filter((l) => l.msg === "prefetched spans")
        .map((l) => Number(l.spans)),
    ).toEqual([1]);
    expect(await runContainer("lazy-4", "cat /data/f7.txt")).toBe("file 7\n");
    // log_fuse_operations: the container's read of the file went through FUSE
    expect(
      logLines("operation").some(
        (l) => l.msg === "FUSE operation" && l.operation === "file.Read" && l.path === "/data/f7.txt",
      ),
    ).toBe(true);
    // per-image operation counts appear once the emit wait has passed
    let text = "";
    for (let i = 0; i < 75 && !text.includes("soci_fs_image_operation_count_key"); i++) {
      await new Promise((r) => setTimeout(r, 200));
      text = await scrape();
    }
    expect(text).toMatch(
      /soci_fs_image_operation_count_key\{image="sha256:[0-9a-f]{64}",operation_type="file\.Read"\} [1-9]\d*/,
    );
    expect(text).toMatch(
      /soci_fs_image_operation_count_key\{image="sha256:[0-9a-f]{64}",operation_type="node\.Getattr"\} [1-9]\d*/,
    );
  }, 120_000);
});
