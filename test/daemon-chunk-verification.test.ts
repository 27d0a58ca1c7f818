// The daemon with layer verification artifacts (docs/formats.md §9), through containerd 1.6, a real
// registry behind a request-logging proxy, and runc:
// - record → convert → prefetch: `soci prefetch record` runs a workload in a lazily mounted image and
//   writes the files it read (mostly read or small ones); `soci convert --chunk-verification
//   --prefetch-files-json` turns them into prefetch artifacts; the daemon prefetches exactly those
//   files' spans once the layers are mounted, and the workload then needs no network;
// - `[blob] chunk_verification = false` models the reference (which skips blobs of unknown media
//   types): the same image mounts with the artifacts never fetched and whole ztocs instead.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { startRegistry, type RegistryServer } from "./helpers/registry-server.js";
import { startFaultProxy, type FaultProxy } from "./helpers/fault-proxy.js";
import { runOnSoci, startContainerd, type Containerd } from "./helpers/containerd.js";
import {
  addLayer,
  busyboxLayer,
  fuseMountsUnder,
  initLayout,
  SOCI_BIN,
  spawnDaemon,
  stopFuseHosts,
  waitForSnapshotter,
  type SociDaemon,
} from "./helpers/soci-daemon.js";
import { LayerVerificationMediaType } from "../src/formats/layer-verification.js";
import { parsePrefetchArtifact, PrefetchArtifactMediaType } from "../src/formats/prefetch.js";
import { decodeZtoc } from "../src/formats/ztoc.js";
import { zinfoOf } from "../src/formats/zinfo.js";

const run = promisify(execFile);
let dir = "";
let registry: RegistryServer;
let proxy: FaultProxy;
let ctd: Containerd | undefined;
let daemon: SociDaemon | undefined;
const files = new Map<string, Buffer>();
const sock = () => join(dir, "soci.sock");
const daemonRoot = () => join(dir, "soci-root");
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

interface Raw {
  manifests?: { digest: string; artifactType?: string }[];
  layers?: { digest: string; mediaType: string; size: number; annotations?: Record<string, string> }[];
}
const raw = async (ref: string): Promise<Raw> =>
  JSON.parse((await run("skopeo", ["inspect", "--raw", "--tls-verify=false", `docker://${ref}`])).stdout) as Raw;
const blob = async (digest: string) =>
  new Uint8Array(await (await fetch(`http://${registry.host}/v2/rec/img/blobs/${digest}`)).arrayBuffer());

async function sociIndexOf(tag: string): Promise<Raw> {
  const top = await raw(`${registry.host}/rec/img:${tag}`);
  const idx = top.manifests!.find((m) => m.artifactType === "application/vnd.amazon.soci.index.v2+json")!;
  return raw(`${registry.host}/rec/img@${idx.digest}`);
}

async function startDaemon(config: string): Promise<void> {
  await writeFile(join(dir, "config.toml"), config);
  daemon = spawnDaemon({ address: sock(), root: daemonRoot(), config: join(dir, "config.toml") });
  await daemon.ready;
  await waitForSnapshotter((args) => ctd!.ctr(args));
}

async function resetDaemon(): Promise<void> {
  for (const img of (await ctd!.ctr(["images", "ls", "-q"])).stdout.split("\n").filter(Boolean))
    await ctd!.ctr(["images", "rm", "--sync", img]);
  for (let i = 0; i < 50 && (await fuseMountsUnder(daemonRoot())).length > 0; i++)
    await new Promise((r) => setTimeout(r, 200));
  await daemon?.stop("SIGINT");
  // the FUSE host outlives the daemon (docs/snapshotter.md §5.8): a fresh root needs it gone too
  await stopFuseHosts(daemonRoot());
  await rm(daemonRoot(), { recursive: true, force: true });
}

function runContainer(image: string, id: string, script: string): Promise<string> {
  return runOnSoci(ctd!, { image, id, script, runcRoot: join(dir, "runc") });
}

const blobGets = (from: number) =>
  proxy.log
    .slice(from)
    .filter((l) => l.method === "GET" && l.path.includes("/blobs/"))
    .map((l) => ({
      digest: l.path.slice(l.path.lastIndexOf("/") + 1),
      range: l.range,
      ranges: (l.range ?? "")
        .replace(/^bytes=/, "")
        .split(",")
        .filter(Boolean)
        .map((s) => s.split("-").map(Number) as [number, number])
        .map(([a, b]) => [a, b + 1] as [number, number]),
    }));

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "soci-rec-"));
  registry = await startRegistry();
  proxy = await startFaultProxy(registry.host);
  const layout = join(dir, "image");
  await initLayout(layout);
  await addLayer(layout, dir, async (rootfs) => {
    await busyboxLayer(rootfs);
    for (const d of ["dev", "proc", "tmp"]) await mkdir(join(rootfs, d));
  });
  files.set("/data/a.txt", Buffer.from("the first file the workload reads\n".repeat(100)));
  files.set("/data/b.bin", randomBytes(1 << 20));
  files.set("/data/big.bin", Buffer.concat([randomBytes(4 << 20), Buffer.alloc(4 << 20, "big ")]));
  files.set("/data/unread.bin", randomBytes(2 << 20));
  await addLayer(layout, dir, async (rootfs) => {
    await mkdir(join(rootfs, "data"));
    for (const [p, b] of files) await writeFile(join(rootfs, p), b);
  });
  await run("skopeo", [
    "copy",
    "--dest-tls-verify=false",
    `oci:${layout}:latest`,
    `docker://${registry.host}/rec/img:latest`,
  ]);
  const convert = (tag: string, extra: string[]) =>
    run("node", [
      SOCI_BIN,
      "--root",
      join(dir, `convert-${tag}`),
      "convert",
      "--plain-http",
      "--min-layer-size",
      "0",
      "--chunk-verification",
      "--span-size",
      String(256 << 10),
      "--chunk-size",
      "16384",
      ...extra,
      `${registry.host}/rec/img:latest`,
      `${registry.host}/rec/img:${tag}`,
    ]);
  await convert("fine", []);
  ctd = await startContainerd({ proxyPlugins: { soci: { address: sock() } } });
}, 240_000);

afterAll(async () => {
  await ctd?.stop().catch(() => undefined);
  await daemon?.stop("SIGINT").catch(() => undefined);
  await proxy?.close();
  await registry?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 60_000);

describe("record → convert → prefetch", () => {
  let listed: string[] = [];

  it("soci prefetch record lists what the workload read: mostly read or small files, not a big file read in part", async () => {
    const out = join(dir, "prefetch.json");
    const workload = "cat /data/a.txt /data/b.bin > /dev/null && head -c 4096 /data/big.bin > /dev/null";
    const r = await run("node", [
      SOCI_BIN,
      "--root",
      join(dir, "record-root"),
      "prefetch",
      "record",
      "--plain-http",
      `${proxy.host}/rec/img:fine`,
      out,
      "--",
      "/bin/sh",
      "-c",
      workload,
    ]);
    listed = JSON.parse(await readFile(out, "utf8")) as string[];
    expect(listed).toEqual(expect.arrayContaining(["/bin/busybox", "/data/a.txt", "/data/b.bin"]));
    expect(listed).not.toContain("/data/big.bin");
    expect(listed).not.toContain("/data/unread.bin");
    expect(r.stderr).toMatch(/not listed \(\d+ of 8388608 bytes read\): \/data\/big\.bin/);
  }, 120_000);

  it("the converted image's prefetch artifacts hold exactly those files' spans; the daemon prefetches them after the mount, and the workload then needs no network", async () => {
    await run("node", [
      SOCI_BIN,
      "--root",
      join(dir, "convert-opt"),
      "convert",
      "--plain-http",
      "--min-layer-size",
      "0",
      "--chunk-verification",
      "--span-size",
      String(256 << 10),
      "--chunk-size",
      "16384",
      "--prefetch-files-json",
      join(dir, "prefetch.json"),
      `${registry.host}/rec/img:latest`,
      `${registry.host}/rec/img:opt`,
    ]);
    const index = await sociIndexOf("opt");
    const ztocDescs = index.layers!.filter((l) => l.mediaType === "application/octet-stream");
    const prefetches = index.layers!.filter((l) => l.mediaType === PrefetchArtifactMediaType);
    expect(prefetches).toHaveLength(2); // busybox's layer and the data layer
    // the data layer's artifact: the spans of a.txt and b.bin (nothing of big.bin or unread.bin)
    const dataLayer = ztocDescs[1]!.annotations!["com.amazon.soci.image-layer-digest"]!;
    const ztoc = decodeZtoc(await blob(ztocDescs[1]!.digest));
    const zinfo = zinfoOf(ztoc);
    const spansOf = (p: string) => {
      const e = ztoc.toc.find((m) => Buffer.from(m.name).toString() === p.slice(1))!;
      const a = zinfo.spanForOffset(e.uncompressedOffset);
      const b = zinfo.spanForOffset(e.uncompressedOffset + e.uncompressedSize);
      return Array.from({ length: b - a + 1 }, (_, k) => a + k);
    };
    const want = new Set([...spansOf("/data/a.txt"), ...spansOf("/data/b.bin")]);
    const art = parsePrefetchArtifact(
      await blob(prefetches.find((p) => p.annotations!["com.amazon.soci.image-layer-digest"] === dataLayer)!.digest),
    );
    const got = new Set(
      art.prefetchSpans!.flatMap((s) => Array.from({ length: s.endSpan - s.startSpan + 1 }, (_, k) => s.startSpan + k)),
    );
    expect([...got].sort((x, y) => x - y)).toEqual([...want].sort((x, y) => x - y));

    await startDaemon("[prefetch]\nenable = true\n[background_fetch]\ndisable = true\n");
    const image = `${proxy.host}/rec/img:opt`;
    await run("node", [SOCI_BIN, "--address", ctd!.socket, "image", "rpull", "--plain-http", image]);
    for (let i = 0; i < 100 && daemon!.lines("spans").filter((l) => l.msg === "prefetched spans").length < 2; i++)
      await new Promise((r) => setTimeout(r, 100));
    const prefetched = daemon!.lines("spans").filter((l) => l.msg === "prefetched spans");
    expect(prefetched.find((l) => l.layer === dataLayer)?.spans).toBe(want.size);
    // the workload's files are local now: reading them fetches nothing from the data layer
    const mark = proxy.log.length;
    const out = await runContainer(image, "rec-1", "sha256sum /data/a.txt /data/b.bin");
    expect(out).toBe(
      `${sha(files.get("/data/a.txt")!)}  /data/a.txt\n${sha(files.get("/data/b.bin")!)}  /data/b.bin\n`,
    );
    expect(blobGets(mark).filter((g) => g.digest === dataLayer)).toEqual([]);
    // and the file it did not record is fetched on demand, correctly
    expect(await runContainer(image, "rec-2", "sha256sum /data/unread.bin")).toBe(
      `${sha(files.get("/data/unread.bin")!)}  /data/unread.bin\n`,
    );
    expect(blobGets(mark).filter((g) => g.digest === dataLayer).length).toBeGreaterThan(0);
  }, 180_000);
});

describe("[blob] chunk_verification = false (the reference's view of the index)", () => {
  it("mounts the image with the artifacts ignored: never fetched, ztocs fetched whole; the files are right", async () => {
    await resetDaemon();
    await startDaemon("[blob]\nchunk_verification = false\n[background_fetch]\ndisable = true\n");
    const index = await sociIndexOf("fine");
    const artifacts = index.layers!.filter((l) => l.mediaType === LayerVerificationMediaType).map((l) => l.digest);
    const ztocs = index.layers!.filter((l) => l.mediaType === "application/octet-stream").map((l) => l.digest);
    expect(artifacts).toHaveLength(2);
    const image = `${proxy.host}/rec/img:fine`;
    const mark = proxy.log.length;
    const r = await run("node", [SOCI_BIN, "--address", ctd!.socket, "image", "rpull", "--plain-http", image]);
    expect(r.stdout).toMatch(/2 of 2 layers provided by soci/);
    expect(await fuseMountsUnder(daemonRoot())).toHaveLength(2);
    const out = await runContainer(image, "ref-1", "sha256sum /data/big.bin; cat /data/a.txt | head -n 1");
    expect(out).toBe(`${sha(files.get("/data/big.bin")!)}  /data/big.bin\nthe first file the workload reads\n`);
    const gets = blobGets(mark);
    for (const a of artifacts) expect(gets.some((g) => g.digest === a)).toBe(false);
    for (const z of ztocs) expect(gets.some((g) => g.digest === z && !g.range)).toBe(true);
  }, 180_000);

  it("with the default configuration the same image is read through the artifacts (ztocs by range only)", async () => {
    await resetDaemon();
    await startDaemon("[background_fetch]\ndisable = true\n");
    const index = await sociIndexOf("fine");
    const artifacts = index.layers!.filter((l) => l.mediaType === LayerVerificationMediaType).map((l) => l.digest);
    const ztocs = index.layers!.filter((l) => l.mediaType === "application/octet-stream").map((l) => l.digest);
    const image = `${proxy.host}/rec/img:fine`;
    const mark = proxy.log.length;
    await run("node", [SOCI_BIN, "--address", ctd!.socket, "image", "rpull", "--plain-http", image]);
    const out = await runContainer(image, "fine-1", "sha256sum /data/big.bin");
    expect(out).toBe(`${sha(files.get("/data/big.bin")!)}  /data/big.bin\n`);
    const gets = blobGets(mark);
    for (const a of artifacts) expect(gets.some((g) => g.digest === a && !g.range)).toBe(true);
    for (const z of ztocs) expect(gets.some((g) => g.digest === z && !g.range)).toBe(false);
  }, 180_000);
});
