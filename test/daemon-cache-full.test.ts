// A full disk under the daemon's span cache: `<root>/soci/spancache` is a 1 MiB tmpfs filled to the
// last byte before a lazily pulled image is read. Reads of the FUSE layer still return the image's
// bytes (fetched from the registry again each time), the daemon says once that the cache is full,
// and the failed writes are counted in `soci_fs_cache_write_failures_total`.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { access, mkdir, mkdtemp, readFile, rm, statfs, writeFile } from "node:fs/promises";
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
  unmountAllUnder,
  type SociDaemon,
} from "./helpers/soci-daemon.js";
import { pushTestImage, type PushedImage } from "./helpers/test-image.js";
import { RegistryClient } from "../src/registry/client.js";

const run = promisify(execFile);
const FULL_MESSAGE = "span cache is full: it stops growing, reads go on from the registry";

let dir = "";
let registry: RegistryServer;
let ctd: Containerd | undefined;
let daemon: SociDaemon | undefined;
let pushed: PushedImage;
let image = "";

const root = () => join(dir, "root");
const spanCache = () => join(root(), "soci", "spancache");
const metricsSock = () => join(dir, "metrics.sock");
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "soci-full-"));
  registry = await startRegistry();
  const client = new RegistryClient({ plainHttp: true });
  pushed = await pushTestImage(client, registry.host, "full/img", "latest", 8 << 20);
  await client.close();
  image = `${registry.host}/full/img:soci`;
  await run("node", [
    SOCI_BIN,
    "--root",
    join(dir, "convert-root"),
    "convert",
    "--plain-http",
    "--min-layer-size",
    "0",
    "--span-size",
    String(256 << 10),
    pushed.ref,
    image,
  ]);
  // a 1 MiB tmpfs as the span cache, filled up
  await mkdir(spanCache(), { recursive: true });
  await run("mount", ["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", spanCache()]);
  await run("dd", ["if=/dev/zero", `of=${join(spanCache(), "filler")}`, "bs=4096"]).catch(() => undefined);
  expect((await statfs(spanCache())).bavail).toBe(0);
  await writeFile(
    join(dir, "config.toml"),
    `metrics_address = "${metricsSock()}"\nmetrics_network = "unix"\n[background_fetch]\ndisable = true\n`,
  );
  daemon = spawnDaemon({ address: join(dir, "soci.sock"), root: root(), config: join(dir, "config.toml") });
  await daemon.ready;
  ctd = await startContainerd({ proxyPlugins: { soci: { address: join(dir, "soci.sock") } } });
}, 180_000);

afterAll(async () => {
  await ctd?.stop().catch(() => undefined);
  await daemon?.stop("SIGINT").catch(() => undefined);
  await unmountAllUnder(dir).catch(() => undefined);
  await registry?.stop();
  await rm(dir, { recursive: true, force: true });
}, 60_000);

describe("a full disk under the span cache", () => {
  it("reads still return the image's bytes; the daemon says so once and counts the failed writes", async () => {
    await run("ctr-remote", [
      "--address",
      ctd!.socket,
      "images",
      "rpull",
      "--plain-http",
      "--snapshotter",
      "soci",
      image,
    ]);
    const layers = await fuseMountsUnder(root());
    expect(layers).toHaveLength(3);
    const holds = await Promise.all(
      layers.map((m) =>
        access(join(m, "data/big.bin")).then(
          () => true,
          () => false,
        ),
      ),
    );
    const data = layers[holds.indexOf(true)];
    expect(data).toBeDefined();
    // twice: nothing is cached, so the second read is fetched and verified again
    for (let i = 0; i < 2; i++) expect(sha(await readFile(join(data!, "data/big.bin")))).toBe(sha(pushed.files.big));
    expect(await readFile(join(data!, "data/f7.txt"), "utf8")).toBe(`${pushed.files.id} file 7\n`);

    const full = daemon!
      .log()
      .split("\n")
      .filter((l) => l.includes(FULL_MESSAGE))
      .map((l) => JSON.parse(l) as Record<string, string>);
    expect(full).toHaveLength(1);
    expect(full[0]).toMatchObject({ level: "warning", root: spanCache() });
    expect(full[0]!.error).toMatch(/ENOSPC/);
    const metrics = await scrapeMetrics(metricsSock());
    const failures = Number(/^soci_fs_cache_write_failures_total\{reason="no_space"\} (\d+)$/m.exec(metrics)?.[1]);
    // 8 MiB / 256 KiB spans of big.bin, read twice, plus the small files' spans
    expect(failures).toBeGreaterThanOrEqual(32);
    expect(metrics).not.toMatch(/soci_fs_cache_write_failures_total\{reason="other"\}/);
  }, 120_000);
});
