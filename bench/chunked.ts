// Chunk verification (docs/formats.md §9) end to end: pull to ready of the e2e images through the
// shaping proxy (100 Mbit/s, 20 ms RTT), fresh containerd and daemon per run, modes alternating:
//   overlayfs   ctr images pull + ctr run
//   soci        the image as `soci convert` makes it by default (4 MiB spans, whole-span verification)
//   chunked     `soci convert --chunk-verification` (span size per SOCI_BENCH_CHUNKED_SPANS)
//   recorded    chunked + the prefetch list `soci prefetch record` wrote for the image's own workload,
//               daemon with `[prefetch] enable = true`
// and the read-all cost: a whole image read through its lazily mounted layers (`tar -cf -` of each
// FUSE mount after `soci image rpull`) against `ctr images pull` (download + unpack), both from the
// registry on loopback without the proxy.
//
//   npx tsx bench/chunked.ts
//   SOCI_BENCH_E2E_IMAGES=numpy,data SOCI_BENCH_CHUNKED_SPANS=4194304,1048576,262144 SOCI_BENCH_RUNS=1 npx tsx bench/chunked.ts
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { Cleanup } from "../src/demo/cleanup.js";
import { pushLayout } from "../src/demo/image.js";
import { pullToReady, type PullToReadyResult } from "../src/demo/pull-to-ready.js";
import { SOCI_BIN, startContainerd, startDaemon, startRegistry } from "../src/demo/services.js";
import { startShapingProxy } from "../src/demo/shaping-proxy.js";
import { dataImage, numpyImage, numpySlimImage, smallImage, type BenchImage } from "./lib/e2e-images.js";
import { envInt } from "./lib/env.js";
import { commandLine, fmt, machineInfo, mb, table, writeResults } from "./lib/report.js";
import { median } from "./lib/timing.js";

const run = promisify(execFile);
const RUNS = envInt("SOCI_BENCH_RUNS", 3);
const DATA_MB = envInt("SOCI_BENCH_E2E_DATA_MB", 200);
const WHICH = (process.env.SOCI_BENCH_E2E_IMAGES || "small,numpy,data").split(",");
const SPANS = (process.env.SOCI_BENCH_CHUNKED_SPANS || "1048576").split(",").map(Number);
const CHUNK = envInt("SOCI_BENCH_CHUNKED_CHUNK", 65536);
const MODES = (process.env.SOCI_BENCH_CHUNKED_MODES || "overlayfs,soci,chunked,recorded").split(",");
const READ_ALL = process.env.SOCI_BENCH_CHUNKED_READ_ALL !== "0";
const LINK = { rttMs: 20, bitsPerSecond: 100e6 };
const PREFETCH_CONFIG = "[prefetch]\nenable = true\n";

const log = (s: string) => process.stderr.write(`${s}\n`);

interface Variant {
  /** Column name: overlayfs, soci, chunked-<span>, recorded-<span>. */
  name: string;
  tag: string;
  mode: "overlayfs" | "soci";
  daemonConfig?: string;
}

interface Row {
  image: string;
  variant: string;
  runs: PullToReadyResult[];
}

async function soci(args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run(process.execPath, [SOCI_BIN, ...args], { maxBuffer: 64 << 20 });
}

async function dropCaches(): Promise<void> {
  await run("sync");
  await writeFile("/proc/sys/vm/drop_caches", "3\n").catch(() => undefined);
}

async function main(): Promise<void> {
  const images: BenchImage[] = [];
  for (const w of WHICH) {
    if (w === "small") images.push(await smallImage(log));
    else if (w === "numpy") images.push(await numpyImage(log));
    else if (w === "numpy-slim") images.push(await numpySlimImage(log));
    else if (w === "data") images.push(await dataImage(DATA_MB, log));
    else throw new Error(`unknown image ${w}`);
  }
  const cleanup = new Cleanup();
  const offSignals = cleanup.onSignals(log);
  const work = await mkdtemp("/tmp/sbc-");
  cleanup.final("work dir", () => rm(work, { recursive: true, force: true }));
  try {
    const registry = await startRegistry(join(work, "registry"), cleanup);
    const proxy = await startShapingProxy(registry.host, LINK);
    cleanup.add("proxy", () => proxy.stop());
    const variants = new Map<string, Variant[]>();
    for (const img of images) {
      const repo = `${registry.host}/bench/${img.name}`;
      await pushLayout(img.layout, img.tag, `${repo}:latest`);
      const minLayer = img.minLayerSize !== undefined ? ["--min-layer-size", String(img.minLayerSize)] : [];
      const convert = (tag: string, extra: string[]) =>
        soci([
          "--root",
          join(work, `convert-${img.name}-${tag}`),
          "convert",
          "--plain-http",
          ...minLayer,
          ...extra,
          `${repo}:latest`,
          `${repo}:${tag}`,
        ]);
      const vs: Variant[] = [];
      if (MODES.includes("overlayfs")) vs.push({ name: "overlayfs", tag: "latest", mode: "overlayfs" });
      if (MODES.includes("soci")) {
        await convert("soci", []);
        vs.push({ name: "soci", tag: "soci", mode: "soci" });
      }
      for (const span of SPANS) {
        const fine = ["--chunk-verification", "--chunk-size", String(CHUNK), "--span-size", String(span)];
        const tag = `chunked-${span}`;
        await convert(tag, fine);
        if (MODES.includes("chunked")) vs.push({ name: tag, tag, mode: "soci" });
        if (!MODES.includes("recorded")) continue;
        // the workload recorded once against the image on loopback, then the list converted in
        const list = join(work, `${img.name}-${span}.json`);
        const rec = await soci([
          "--root",
          join(work, `record-${img.name}`),
          "prefetch",
          "record",
          "--plain-http",
          `${repo}:${tag}`,
          list,
          "--",
          ...img.command,
        ]);
        const files = JSON.parse(await readFile(list, "utf8")) as string[];
        log(
          `  ${img.name}: recorded ${files.length} files (${rec.stderr.split("\n").filter((l) => l.startsWith("not listed")).length} read in part, not listed)`,
        );
        await convert(`recorded-${span}`, [...fine, "--prefetch-files-json", list]);
        vs.push({ name: `recorded-${span}`, tag: `recorded-${span}`, mode: "soci", daemonConfig: PREFETCH_CONFIG });
      }
      variants.set(img.name, vs);
    }
    const rows: Row[] = images.flatMap((img) =>
      variants.get(img.name)!.map((v) => ({ image: img.name, variant: v.name, runs: [] })),
    );
    let n = 0;
    for (let r = 0; r < RUNS; r++) {
      for (const img of images) {
        const vs = variants.get(img.name)!;
        for (const v of r % 2 ? [...vs].reverse() : vs) {
          await dropCaches();
          const res = await pullToReady({
            mode: v.mode,
            ref: `${proxy.host}/bench/${img.name}:${v.tag}`,
            proxy,
            dir: join(work, `r${n++}`),
            command: img.command,
            daemonConfig: v.daemonConfig,
            cleanup,
          });
          log(
            `  ${img.name} ${v.name} run ${r + 1}: ${fmt(res.seconds, 2)} s to ready (pull ${fmt(res.pullSeconds, 2)} s), ${mb(res.bytes)}` +
              (res.daemonPeakRssBytes ? `, daemon ${mb(res.daemonPeakRssBytes)} peak RSS` : ""),
          );
          rows.find((x) => x.image === img.name && x.variant === v.name)!.runs.push(res);
        }
      }
    }
    const readAll = READ_ALL ? await readAllRuns(images, registry.host, variants, work, cleanup) : [];
    report(rows, readAll);
  } finally {
    await cleanup.run(log);
    offSignals();
  }
}

interface ReadAll {
  image: string;
  variant: string;
  seconds: number[];
  bytes: number;
}

/**
 * A whole image read lazily (`soci image rpull` + `tar -cf -` of every FUSE layer) against
 * `ctr images pull` (download + unpack), registry on loopback, page cache dropped before each.
 */
async function readAllRuns(
  images: BenchImage[],
  host: string,
  variants: Map<string, Variant[]>,
  work: string,
  cleanup: Cleanup,
): Promise<ReadAll[]> {
  const out: ReadAll[] = [];
  let n = 0;
  for (const img of images) {
    for (const v of variants.get(img.name)!.filter((x) => !x.name.startsWith("recorded"))) {
      const row: ReadAll = { image: img.name, variant: v.name, seconds: [], bytes: 0 };
      for (let r = 0; r < RUNS; r++) {
        const dir = join(work, `a${n++}`);
        const runCleanup = new Cleanup();
        const detach = cleanup.add("read-all run", () => runCleanup.run());
        try {
          const daemon =
            v.mode === "soci"
              ? await startDaemon(join(dir, "d"), runCleanup, { configToml: "[background_fetch]\ndisable = true\n" })
              : undefined;
          const ctd = await startContainerd(join(dir, "c"), runCleanup, daemon ? { sociSocket: daemon.socket } : {});
          const ref = `${host}/bench/${img.name}:${v.tag}`;
          await dropCaches();
          const t0 = performance.now();
          if (daemon) {
            await soci(["--address", ctd.socket, "image", "rpull", "--plain-http", ref]);
            const mounts = (await readFile("/proc/mounts", "utf8"))
              .split("\n")
              .filter((l) => l.includes(" fuse.rawBridge ") && l.includes(daemon.root))
              .map((l) => l.split(" ")[1]!);
            let bytes = 0;
            for (const m of mounts) {
              const { stdout } = await run("sh", ["-c", `tar -cf - -C '${m}' . | wc -c`]);
              bytes += Number(stdout.trim());
            }
            row.bytes = bytes;
          } else {
            await ctd.ctr(["images", "pull", "--plain-http", ref]);
          }
          row.seconds.push((performance.now() - t0) / 1000);
          log(`  read-all ${img.name} ${v.name} run ${r + 1}: ${fmt(row.seconds.at(-1)!, 2)} s`);
        } finally {
          await detach();
        }
      }
      out.push(row);
    }
  }
  return out;
}

function report(rows: Row[], readAll: ReadAll[]): void {
  console.log(`machine: ${JSON.stringify(machineInfo())}`);
  console.log(`command: ${commandLine()}`);
  console.log(
    `link:    ${LINK.bitsPerSecond / 1e6} Mbit/s, ${LINK.rttMs} ms RTT; chunk ${CHUNK}; ${RUNS} run(s), medians (min–max)`,
  );
  const med = (r: Row, f: (x: PullToReadyResult) => number) => median(r.runs.map(f));
  const spread = (r: Row) => {
    const xs = r.runs.map((x) => x.seconds);
    return xs.length > 1 ? ` (${fmt(Math.min(...xs), 2)}–${fmt(Math.max(...xs), 2)})` : "";
  };
  const body = rows.map((r) => {
    const o = rows.find((x) => x.image === r.image && x.variant === "overlayfs");
    const ratio = o ? `${fmt(med(o, (x) => x.seconds) / med(r, (x) => x.seconds), 2)}x` : "";
    const rss = Math.max(...r.runs.map((x) => x.daemonPeakRssBytes ?? 0));
    return [
      r.image,
      r.variant,
      `${fmt(
        med(r, (x) => x.seconds),
        2,
      )}${spread(r)}`,
      fmt(
        med(r, (x) => x.pullSeconds),
        2,
      ),
      ratio,
      mb(med(r, (x) => x.bytes)),
      rss ? mb(rss) : "",
    ];
  });
  console.log(
    table(["image", "mode", "pull → ready s", "pull s", "overlay ÷ mode", "fetched", "daemon peak RSS"], body),
  );
  if (readAll.length) {
    const ra = readAll.map((r) => {
      const o = readAll.find((x) => x.image === r.image && x.variant === "overlayfs");
      const s = median(r.seconds);
      return [r.image, r.variant, fmt(s, 2), o ? `${fmt(s / median(o.seconds), 2)}x` : "", r.bytes ? mb(r.bytes) : ""];
    });
    console.log(
      "\nread everything (registry on loopback): ctr images pull vs soci image rpull + tar of every lazy layer",
    );
    console.log(table(["image", "mode", "seconds", "÷ ctr pull", "tar bytes"], ra));
  }
  console.log(
    `results: ${writeResults("chunked", { link: LINK, spans: SPANS, chunk: CHUNK, runs: RUNS, rows, readAll })}`,
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
