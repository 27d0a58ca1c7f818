// Parallel pull mode under containerd 1.6 (docs/snapshotter.md §6, the reference's TestPullWithParallelism
// and TestPullWithDecompressStreams): our daemon downloads and unpacks every layer itself — no FUSE
// mount, no SOCI index lookup — in ranged chunks, keeps the blobs in containerd's content store
// (unless told to discard them), and a container of the image sees the image's files. As a fallback
// it takes only images without an index (an indexed image still mounts lazily). A layer whose diff ID
// does not match fails the pull instead of being handed to containerd.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { startRegistry, type RegistryServer } from "./helpers/registry-server.js";
import { startContainerd, type Containerd } from "./helpers/containerd.js";
import {
  fuseMountsUnder,
  scrapeMetrics,
  SOCI_BIN,
  spawnDaemon,
  waitForSnapshotter,
  type SociDaemon,
} from "./helpers/soci-daemon.js";
import { pushTestImage, type PushedImage } from "./helpers/test-image.js";
import { RegistryClient } from "../src/registry/client.js";
import { RegistryAuthorizer } from "../src/registry/auth.js";

const run = promisify(execFile);
const REPO = "par/img";
const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";

let dir = "";
let registry: RegistryServer;
let client: RegistryClient;
let ctd: Containerd | undefined;
let daemon: SociDaemon | undefined;
const images: Record<string, PushedImage> = {};

const sock = () => join(dir, "soci.sock");
const metricsSock = () => join(dir, "metrics.sock");
const daemonRoot = () => join(dir, "soci-root");
const ref = (tag: string) => `${registry.host}/${REPO}:${tag}`;
const log = () => daemon?.log() ?? "";

async function startDaemon(config: string): Promise<void> {
  await daemon?.stop("SIGINT");
  await writeFile(
    join(dir, "config.toml"),
    `metrics_address = "${metricsSock()}"\nmetrics_network = "unix"\n[background_fetch]\ndisable = true\n${config}`,
  );
  daemon = spawnDaemon({ address: sock(), root: daemonRoot(), config: join(dir, "config.toml") });
  await daemon.ready;
  if (ctd) await waitForSnapshotter((args) => ctd!.ctr(args));
}

function outcomes(from: number) {
  const lines = log()
    .slice(from)
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, string>);
  return {
    remote: lines.filter((l) => l["remote-snapshot-prepared"] === "true").length,
    local: lines.filter((l) => l["local-snapshot-prepared"] === "true").length,
    deferred: lines.filter((l) => l["defer-snapshot-runtime"] === "true").length,
    indexLookups: lines.filter((l) => l.msg === "fetching SOCI artifacts using index descriptor").length,
  };
}

async function rpull(tag: string): Promise<void> {
  await run("node", [SOCI_BIN, "--address", ctd!.socket, "image", "rpull", "--plain-http", ref(tag)]).catch(
    (e: Error) => {
      throw new Error(`${e.message}\ndaemon log:\n${log().slice(-5000)}`);
    },
  );
}

async function runContainer(tag: string, id: string): Promise<string> {
  const r = await ctd!.ctr([
    "run",
    "--rm",
    "--snapshotter",
    "soci",
    "--runc-root",
    join(dir, "runc"),
    ref(tag),
    id,
    "/bin/sh",
    "-c",
    "cat /id /etc/hello /data/f7.txt; sha256sum /data/big.bin; ls /data | wc -l",
  ]);
  return r.stdout;
}

function expected(img: PushedImage): string {
  const sha = createHash("sha256").update(img.files.big).digest("hex");
  return `${img.files.id}\n${img.files.hello}${img.files.id} file 7\n${sha}  /data/big.bin\n51\n`;
}

/** The layer blobs containerd's content store holds in the default namespace. */
async function storedBlobs(): Promise<string[]> {
  const { stdout } = await ctd!.ctr(["content", "ls", "-q"]);
  return stdout.split("\n").filter(Boolean);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "soci-par-"));
  registry = await startRegistry({ accessLog: true });
  client = new RegistryClient({ plainHttp: true, authorizer: new RegistryAuthorizer({ dockerConfig: false }) });
  for (const t of ["primary", "plain", "indexed-src", "baddiff-src"])
    images[t] = await pushTestImage(client, registry.host, REPO, t, 4 << 20);
  await run("node", [
    SOCI_BIN,
    "--root",
    join(dir, "cli-root"),
    "convert",
    "--plain-http",
    "--min-layer-size",
    "100000",
    "--span-size",
    String(256 << 10),
    ref("primary"),
    ref("primary-soci"),
  ]);
  await run("node", [
    SOCI_BIN,
    "--root",
    join(dir, "cli-root"),
    "convert",
    "--plain-http",
    "--min-layer-size",
    "100000",
    "--span-size",
    String(256 << 10),
    ref("indexed-src"),
    ref("indexed"),
  ]);
  // an image whose config names a wrong diff ID for its data layer
  const src = images["baddiff-src"]!;
  const manifest = JSON.parse(Buffer.from(src.manifestBytes).toString("utf8")) as {
    config: { digest: string; size: number };
  };
  const config = JSON.parse(
    Buffer.from(await client.getBlob(ref("baddiff-src"), manifest.config.digest)).toString("utf8"),
  ) as { rootfs: { diff_ids: string[] } };
  config.rootfs.diff_ids[1] = `sha256:${"e".repeat(64)}`;
  const configBytes = Buffer.from(JSON.stringify(config));
  const configDigest = `sha256:${createHash("sha256").update(configBytes).digest("hex")}`;
  await client.pushBlob(ref("baddiff"), configBytes, { digest: configDigest, size: configBytes.length });
  manifest.config = { ...manifest.config, digest: configDigest, size: configBytes.length };
  await client.pushManifest(ref("baddiff"), Buffer.from(JSON.stringify(manifest)), OCI_MANIFEST, "baddiff");

  ctd = await startContainerd({ proxyPlugins: { soci: { address: sock() } } });
  await startDaemon(
    `[content_store]\ntype = "containerd"\ncontainerd_address = "${ctd.socket}"\n` +
      `[pull_modes.parallel_pull_unpack]\nenable = true\nconcurrent_download_chunk_size = "256kb"\nmax_concurrent_downloads_per_image = 3\n`,
  );
}, 240_000);

afterAll(async () => {
  await ctd?.stop().catch(() => undefined);
  await daemon?.stop("SIGINT").catch(() => undefined);
  await registry?.stop();
  await rm(dir, { recursive: true, force: true });
}, 60_000);

describe("parallel pull mode", () => {
  it("primary: every layer of an indexed image is downloaded in chunks and unpacked by the snapshotter", async () => {
    const from = log().length;
    const before = registry.requests.length;
    await rpull("primary-soci");
    const o = outcomes(from);
    expect(o).toEqual({ remote: 0, local: 3, deferred: 0, indexLookups: 0 });
    expect(log().slice(from)).toContain('"decompressor":"built-in"');
    expect(await fuseMountsUnder(daemonRoot())).toEqual([]);
    const data = images.primary!.layers[1]!;
    const ranged = registry.requests
      .slice(before)
      .filter((r) => r.startsWith(`GET /v2/${REPO}/blobs/${data.digest} 206`));
    expect(ranged).toHaveLength(Math.ceil(data.size / (256 << 10)));
    // kept in containerd's content store, as containerd's own pull would have
    const stored = await storedBlobs();
    for (const l of images.primary!.layers) expect(stored).toContain(l.digest);
    expect(await readdir(join(daemonRoot(), "unpack"))).toEqual([]);
    expect(await runContainer("primary-soci", "par-1")).toBe(expected(images.primary!));
    expect(await scrapeMetrics(metricsSock())).not.toMatch(
      /^soci_fs_operation_count\{layer="",operation_type="local_mount_failure_count"\} [1-9]/m,
    );
  }, 180_000);

  it("a layer whose diff ID does not match fails the pull; nothing is left behind", async () => {
    const err = await rpull("baddiff").then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err).toBeInstanceOf(Error);
    expect(err!.message).toMatch(/diff id mismatch/);
    for (let i = 0; i < 50 && (await readdir(join(daemonRoot(), "unpack"))).length > 0; i++)
      await new Promise((r) => setTimeout(r, 100));
    expect(await readdir(join(daemonRoot(), "unpack"))).toEqual([]);
    expect(await fuseMountsUnder(daemonRoot())).toEqual([]);
  }, 180_000);

  it("fallback: an image without an index is unpacked in parallel (through pigz, blobs discarded), an indexed one still mounts lazily", async () => {
    await startDaemon(
      `[pull_modes.parallel_pull_unpack]\nexperimental_parallel_pull_as_fallback = true\ndiscard_unpacked_layers = true\n` +
        `[pull_modes.parallel_pull_unpack.decompress_streams."gzip"]\npath = "/usr/bin/pigz"\nargs = ["-d", "-c"]\n`,
    );
    let from = log().length;
    await rpull("plain");
    expect(outcomes(from)).toMatchObject({ remote: 0, local: 3, deferred: 0 });
    const unpacked = log()
      .slice(from)
      .split("\n")
      .filter((l) => l.includes("parallel pull: layer unpacked"));
    expect(unpacked).toHaveLength(3);
    for (const l of unpacked) expect(JSON.parse(l)).toMatchObject({ decompressor: "/usr/bin/pigz" });
    const stored = await storedBlobs();
    for (const l of images.plain!.layers) expect(stored).not.toContain(l.digest);
    expect(await runContainer("plain", "par-2")).toBe(expected(images.plain!));

    from = log().length;
    await rpull("indexed");
    expect(outcomes(from)).toMatchObject({ remote: 2, local: 1, deferred: 0, indexLookups: 1 });
    expect(await fuseMountsUnder(daemonRoot())).toHaveLength(2);
    expect(await runContainer("indexed", "par-3")).toBe(expected(images["indexed-src"]!));
  }, 180_000);
});
