// `soci demo`: a lazy pull end to end on this machine, next to a normal one.
//  1. installs what it needs when missing (apt: docker-registry, containerd, runc, busybox-static,
//     libfuse2, fuse3), as root;
//  2. builds a sample image: a busybox layer and a data layer of --size-mb MiB in three files;
//  3. starts a registry in a temporary root, pushes the image and converts it with this library
//     (SOCI index v2, as `soci convert` does);
//  4. puts a proxy modelling a WAN link (100 Mbit/s, 20 ms RTT by default) in front of the registry;
//  5. for each of overlayfs (containerd's default: `ctr images pull` + `ctr run`) and soci (our
//     daemon as containerd's proxy snapshotter: `soci image rpull` + `ctr run --snapshotter soci`),
//     starts a fresh containerd (and daemon) and times pull start → the container's "ready" line;
//  6. prints the two side by side and removes everything it started (also on Ctrl-C or failure).
import { FailedPreconditionError, InvalidArgumentError } from "../errors/errors.js";
import { mkdtemp, rm, writeFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { Cleanup, mountsUnder, unmountUnder } from "./cleanup.js";
import { ensureDemoPrerequisites } from "./setup.js";
import { pushLayout, sampleData, writeBusyboxRootfs, writeImageLayout, writeLayer } from "./image.js";
import { startRegistry } from "./services.js";
import { startShapingProxy } from "./shaping-proxy.js";
import { pullToReady, type PullToReadyResult } from "./pull-to-ready.js";
import { convertLocations } from "../indexer/image-location.js";
import { RegistryClient } from "../registry/client.js";
import { DefaultMinLayerSize, DefaultSpanSize } from "../formats/soci-index.js";
import { Command } from "commander";

export interface DemoOptions {
  /** Size of the data layer, MiB (split over three files). */
  sizeMB: number;
  spanSize: number;
  /** Link model between containerd and the registry. */
  mbit: number;
  rttMs: number;
  /** Install missing packages with apt (default true). */
  install: boolean;
}

const mbText = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
const sec = (s: number) => `${s.toFixed(2)} s`;

export async function runDemo(opts: DemoOptions): Promise<void> {
  if (!(opts.sizeMB > 0)) throw new InvalidArgumentError(`--size-mb must be a positive number, got ${opts.sizeMB}`);
  const log = (s: string) => process.stdout.write(`${s}\n`);
  log("soci demo: a lazy pull with the SOCI snapshotter, next to containerd's overlayfs");
  await ensureDemoPrerequisites(log, { install: opts.install });

  const cleanup = new Cleanup();
  const offSignals = cleanup.onSignals((l) => process.stderr.write(`${l}\n`));
  const work = await mkdtemp("/tmp/soci-demo-"); // short: containerd's sockets live below it
  cleanup.final("temporary root", async () => {
    await unmountUnder(work);
    await rm(work, { recursive: true, force: true });
  });
  log(`temporary root: ${work} (removed at the end, also on Ctrl-C)`);
  try {
    // 2. the sample image
    let t = performance.now();
    const base = join(work, "base");
    await writeBusyboxRootfs(base);
    const rootfs = join(work, "rootfs");
    await mkdir(join(rootfs, "data"), { recursive: true });
    await mkdir(join(rootfs, "etc"), { recursive: true });
    await writeFile(join(rootfs, "etc", "demo.txt"), "hello from a lazily pulled image\n");
    const each = Math.max(1, Math.floor((opts.sizeMB * (1 << 20)) / 3));
    for (let i = 0; i < 3; i++) await writeFile(join(rootfs, "data", `part-${i}.bin`), sampleData(each));
    const layers = [
      await writeLayer({ dir: base }, join(work, "base.tar.gz")),
      await writeLayer({ dir: rootfs }, join(work, "data.tar.gz")),
    ];
    const script =
      'cat /etc/demo.txt; for f in /data/part-0.bin /data/part-1.bin /data/part-2.bin; do head -c 4096 "$f" > /dev/null || exit 1; done; echo ready';
    const command = ["/bin/sh", "-c", script];
    const layout = join(work, "image");
    await writeImageLayout(layout, layers, { cmd: command });
    await rm(base, { recursive: true, force: true });
    await rm(rootfs, { recursive: true, force: true });
    for (const l of layers) await rm(l.gzPath, { force: true });
    log(
      `sample image: busybox layer (${mbText(layers[0]!.gzSize)} gzip) + data layer of 3 files (${mbText(layers[1]!.tarSize)} tar, ` +
        `${mbText(layers[1]!.gzSize)} gzip), built in ${sec((performance.now() - t) / 1000)}`,
    );

    // 3. registry, push, convert
    const registry = await startRegistry(join(work, "registry"), cleanup);
    const latest = `${registry.host}/demo/app:latest`;
    const soci = `${registry.host}/demo/app:soci`;
    t = performance.now();
    const client = new RegistryClient({ plainHttp: true });
    try {
      // layers below the reference's default minimum (the busybox layer) get no ztoc and are
      // unpacked by the snapshotter; the data layer is mounted lazily
      const minLayerSize = Math.min(DefaultMinLayerSize, layers[1]!.gzSize);
      const desc = await convertLocations(`oci:${layout}:latest`, soci, () => client, {
        spanSize: opts.spanSize,
        minLayerSize,
        xattrOptimization: false,
        force: false,
        prefetchFiles: [],
        platforms: [],
        allPlatforms: false,
        log: () => undefined,
      });
      log(
        `converted the sample image into demo/app:soci in ${sec((performance.now() - t) / 1000)} (SOCI index v2 ${desc.digest.slice(0, 19)}…, ` +
          `span size ${opts.spanSize >= 1 << 20 ? `${opts.spanSize / (1 << 20)} MiB` : `${opts.spanSize} bytes`})`,
      );
    } finally {
      await client.close();
    }
    await pushLayout(layout, "latest", latest); // the same image, unconverted: what overlayfs pulls
    log(`registry: docker-registry on ${registry.host}, serving demo/app:latest and demo/app:soci`);

    // 4. the link
    const proxy = await startShapingProxy(registry.host, { bitsPerSecond: opts.mbit * 1e6, rttMs: opts.rttMs });
    cleanup.add("proxy", () => proxy.stop());
    log(`link: containerd reaches the registry through a proxy modelling ${opts.mbit} Mbit/s and ${opts.rttMs} ms RTT`);

    // 5. the two cold starts
    const ref = (tag: string) => `${proxy.host}/demo/app:${tag}`;
    log("run 1: overlayfs — ctr images pull, then ctr run (a fresh containerd)…");
    const overlay = await pullToReady({
      mode: "overlayfs",
      ref: ref("latest"),
      proxy,
      dir: join(work, "o"),
      command,
      cleanup,
    });
    log(
      "run 2: soci — soci image rpull, then ctr run --snapshotter soci (a fresh containerd + soci-snapshotter-grpc)…",
    );
    const lazy = await pullToReady({ mode: "soci", ref: ref("soci"), proxy, dir: join(work, "s"), command, cleanup });
    for (const r of [overlay, lazy]) {
      if (!r.output.includes("hello from a lazily pulled image"))
        throw new FailedPreconditionError(`${r.mode}: unexpected container output: ${r.output}`);
    }
    log(`container output (both runs): ${JSON.stringify(lazy.output)}`);
    log("");
    printTable(overlay, lazy, log);
  } catch (e) {
    // interrupted: what failed is the interruption; the signal handler cleans up and exits
    if (cleanup.aborted) await new Promise(() => undefined);
    throw e;
  } finally {
    if (!cleanup.aborted) {
      await cleanup.run((l) => process.stderr.write(`${l}\n`));
      offSignals();
    }
  }
  const left = mountsUnder(work);
  if (left.length) throw new FailedPreconditionError(`still mounted after cleanup: ${left.join(", ")}`);
  log(`cleaned up: registry, containerd and daemon stopped, nothing mounted, ${work} removed`);
}

function printTable(o: PullToReadyResult, s: PullToReadyResult, log: (l: string) => void): void {
  const rows: Array<[string, string, string]> = [
    ["", "overlayfs", "soci (lazy)"],
    ["pull", sec(o.pullSeconds), sec(s.pullSeconds)],
    ['pull start → "ready"', sec(o.seconds), sec(s.seconds)],
    ['fetched before "ready"', mbText(o.bytes), mbText(s.bytes)],
  ];
  if (s.daemonPeakRssBytes !== undefined)
    rows.push(["daemon peak RSS / CPU", "", `${mbText(s.daemonPeakRssBytes)} / ${sec(s.daemonCpuSeconds ?? 0)}`]);
  for (const [a, b, c] of rows) log(`  ${a.padEnd(24)}${b.padStart(12)}${c.padStart(16)}`);
  log("");
  const ratio = o.seconds / s.seconds;
  const speed =
    ratio >= 1
      ? `${ratio.toFixed(1)}× sooner`
      : `${(1 / ratio).toFixed(1)}× later (the image is too small for lazy loading to pay: try a larger --size-mb)`;
  log(
    `soci: ready ${speed}, after fetching ${((100 * s.bytes) / Math.max(1, o.bytes)).toFixed(1)}% of the bytes` +
      (s.pullSummary ? ` (${s.pullSummary.replace(/^pulled \S+: /, "")})` : ""),
  );
}

/** The `soci demo` command. */
export function demoCommand(): Command {
  return new Command("demo")
    .description(
      "as root: install what is missing (apt), build a sample image, convert it, and time a lazy pull + run through containerd and soci-snapshotter-grpc against a normal overlayfs pull, over a modelled slow link; cleans up after itself",
    )
    .option("--size-mb <n>", "size of the sample image's data layer, MiB", "200")
    .option("--span-size <bytes>", "span size of the ztoc", String(DefaultSpanSize))
    .option("--mbit <n>", "modelled link bandwidth, Mbit/s", "100")
    .option("--rtt-ms <n>", "modelled round-trip time, ms", "20")
    .option("--no-install", "fail instead of installing missing packages")
    .action(async (o: { sizeMb: string; spanSize: string; mbit: string; rttMs: string; install: boolean }) => {
      const num = (name: string, v: string) => {
        const n = Number(v);
        if (!Number.isFinite(n) || n <= 0)
          throw new InvalidArgumentError(`--${name} must be a positive number, got "${v}"`);
        return n;
      };
      await runDemo({
        sizeMB: num("size-mb", o.sizeMb),
        spanSize: num("span-size", o.spanSize),
        mbit: num("mbit", o.mbit),
        rttMs: num("rtt-ms", o.rttMs),
        install: o.install,
      });
    });
}
