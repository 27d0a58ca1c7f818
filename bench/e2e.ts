// End to end: time from the start of a pull to the container's "ready" line, containerd's default
// overlayfs snapshotter against our SOCI snapshotter, for three images served by a real registry
// behind a proxy modelling 100 Mbit/s and 20 ms RTT. Each run gets a fresh containerd (and daemon)
// root, so nothing is cached between runs; the two modes alternate.
//
//   npm run bench:e2e        (npm run build && tsx bench/e2e.ts)
//   SOCI_BENCH_E2E_REPORT=/var/tmp/soci-bench/e2e-results.json npx tsx bench/e2e.ts   (table + chart of a finished run)
//   SOCI_BENCH_E2E_IMAGES=small,data SOCI_BENCH_E2E_DATA_MB=20 SOCI_BENCH_RUNS=1 npx tsx bench/e2e.ts   (a quick look)
//
// Images (bench/lib/e2e-images.ts, cached in /var/tmp/soci-bench/e2e): small (busybox), numpy
// (Debian python3 + NumPy + SciPy), data (3 × 200 MiB files, the workload reads 4 KiB of each).
// Each is pushed as <name>:latest and converted with `soci convert` (4 MiB spans) to <name>:soci;
// overlayfs pulls :latest (what a user pulls today), soci pulls :soci.
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { Cleanup } from "../src/demo/cleanup.js";
import { pushLayout } from "../src/demo/image.js";
import { pullToReady, type Mode, type PullToReadyResult } from "../src/demo/pull-to-ready.js";
import { SOCI_BIN, startRegistry } from "../src/demo/services.js";
import { startShapingProxy } from "../src/demo/shaping-proxy.js";
import { dataImage, numpyImage, numpySlimImage, smallImage, type BenchImage } from "./lib/e2e-images.js";
import { envInt } from "./lib/env.js";
import { commandLine, fmt, machineInfo, mb, table, writeResults } from "./lib/report.js";
import { barChartSvg } from "./lib/svg-chart.js";
import { median } from "./lib/timing.js";

const run = promisify(execFile);
const RUNS = envInt("SOCI_BENCH_RUNS", 3);
const DATA_MB = envInt("SOCI_BENCH_E2E_DATA_MB", 200);
const SPAN = envInt("SOCI_BENCH_E2E_SPAN", 4 << 20);
const WHICH = (process.env.SOCI_BENCH_E2E_IMAGES || "small,numpy,numpy-slim,data").split(",");
const LINK = { rttMs: 20, bitsPerSecond: 100e6 };
/** Pull-to-ready targets by image (the data image is named data-<MB>). */
const target = (name: string): number | undefined => (name === "numpy" ? 4 : name.startsWith("data") ? 20 : undefined);
const RSS_TARGET = 150e6;
// SOCI_BENCH_E2E_MODES=soci skips the overlayfs runs (for quick probes of the snapshotter alone);
// `parallel` adds runs of the daemon in parallel pull mode on the unconverted image
const MODES = (process.env.SOCI_BENCH_E2E_MODES || "overlayfs,soci,parallel").split(",").map((m) => {
  if (m !== "overlayfs" && m !== "soci" && m !== "parallel")
    throw new Error(`unknown mode ${m} (overlayfs, soci, parallel)`);
  return m as Mode;
});

interface ImageResult {
  name: string;
  description: string;
  compressedBytes: number;
  uncompressedBytes: number;
  convertSeconds: number;
  runs: PullToReadyResult[];
}

const log = (s: string) => process.stderr.write(`${s}\n`);

async function main(): Promise<void> {
  // SOCI_BENCH_E2E_REPORT=<results json>: print the table and redraw the chart of a finished run
  if (process.env.SOCI_BENCH_E2E_REPORT) {
    const saved = JSON.parse(readFileSync(process.env.SOCI_BENCH_E2E_REPORT, "utf8")) as { results: ImageResult[] };
    report(saved.results);
    return;
  }
  const images: BenchImage[] = [];
  for (const w of WHICH) {
    if (w === "small") images.push(await smallImage(log));
    else if (w === "numpy") images.push(await numpyImage(log));
    else if (w === "numpy-slim") images.push(await numpySlimImage(log));
    else if (w === "data") images.push(await dataImage(DATA_MB, log));
    else throw new Error(`unknown image ${w} (small, numpy, numpy-slim, data)`);
  }
  const cleanup = new Cleanup();
  const offSignals = cleanup.onSignals(log);
  const work = await mkdtemp("/tmp/sbe-"); // short: containerd's socket path lives below it
  cleanup.final("work dir", () => rm(work, { recursive: true, force: true }));
  try {
    const registry = await startRegistry(join(work, "registry"), cleanup);
    const proxy = await startShapingProxy(registry.host, LINK);
    cleanup.add("proxy", () => proxy.stop());
    const results: ImageResult[] = [];
    for (const img of images) {
      const src = `${registry.host}/bench/${img.name}:latest`;
      await pushLayout(img.layout, img.tag, src);
      const t = performance.now();
      const minLayer = img.minLayerSize !== undefined ? ["--min-layer-size", String(img.minLayerSize)] : [];
      await run(
        process.execPath,
        [
          SOCI_BIN,
          "--root",
          join(work, "convert-root"),
          "convert",
          "--plain-http",
          "--span-size",
          String(SPAN),
          ...minLayer,
          src,
          `${registry.host}/bench/${img.name}:soci`,
        ],
        { maxBuffer: 16 << 20 },
      );
      results.push({
        name: img.name,
        description: img.description,
        compressedBytes: img.layers.reduce((a, l) => a + l.gzSize, 0),
        uncompressedBytes: img.layers.reduce((a, l) => a + l.tarSize, 0),
        convertSeconds: (performance.now() - t) / 1000,
        runs: [],
      });
    }
    let n = 0;
    for (let r = 0; r < RUNS; r++) {
      for (const [i, img] of images.entries()) {
        for (const mode of r % 2 ? [...MODES].reverse() : MODES) {
          const ref = `${proxy.host}/bench/${img.name}:${mode === "soci" ? "soci" : "latest"}`; // parallel: no index needed
          const res = await pullToReady({
            mode,
            ref,
            proxy,
            dir: join(work, `r${n++}`),
            command: img.command,
            cleanup,
          });
          log(
            `  ${img.name} ${mode} run ${r + 1}: ${fmt(res.seconds, 2)} s to ready (pull ${fmt(res.pullSeconds, 2)} s), ${mb(res.bytes)} fetched` +
              (res.daemonPeakRssBytes
                ? `, daemon ${mb(res.daemonPeakRssBytes)} peak RSS, ${fmt(res.daemonCpuSeconds!, 2)} s CPU`
                : "") +
              (res.pullSummary ? ` — ${res.pullSummary}` : ""),
          );
          results[i]!.runs.push(res);
        }
      }
    }
    report(results);
  } finally {
    await cleanup.run(log);
    offSignals();
  }
}

function report(results: ImageResult[]): void {
  const med = (r: ImageResult, mode: Mode, f: (x: PullToReadyResult) => number) =>
    median(r.runs.filter((x) => x.mode === mode).map(f));
  const rows: string[][] = [];
  const summary = results.map((r) => {
    const o = med(r, "overlayfs", (x) => x.seconds);
    const s = med(r, "soci", (x) => x.seconds);
    const ob = med(r, "overlayfs", (x) => x.bytes);
    const sb = med(r, "soci", (x) => x.bytes);
    const rss = Math.max(...r.runs.filter((x) => x.mode === "soci").map((x) => x.daemonPeakRssBytes ?? 0));
    const hasParallel = r.runs.some((x) => x.mode === "parallel");
    const p = hasParallel ? med(r, "parallel", (x) => x.seconds) : undefined;
    const pb = hasParallel ? med(r, "parallel", (x) => x.bytes) : undefined;
    const cpu = med(r, "soci", (x) => x.daemonCpuSeconds ?? 0);
    const spread = (mode: Mode) => {
      const xs = r.runs.filter((x) => x.mode === mode).map((x) => x.seconds);
      return xs.length > 1 ? ` (${fmt(Math.min(...xs), 2)}–${fmt(Math.max(...xs), 2)})` : "";
    };
    rows.push([
      r.name,
      `${mb(r.compressedBytes)} / ${mb(r.uncompressedBytes)}`,
      `${fmt(o, 2)}${spread("overlayfs")}`,
      `${fmt(s, 2)}${spread("soci")}`,
      `${fmt(o / s, 2)}x`,
      mb(ob),
      mb(sb),
      mb(rss),
      fmt(cpu, 2),
      ...(p !== undefined ? [`${fmt(p, 2)}${spread("parallel")}`, `${fmt(o / p, 2)}x`] : []),
    ]);
    return {
      name: r.name,
      description: r.description,
      compressedBytes: r.compressedBytes,
      uncompressedBytes: r.uncompressedBytes,
      convertSeconds: r.convertSeconds,
      overlaySeconds: o,
      sociSeconds: s,
      ratio: o / s,
      overlayBytes: ob,
      sociBytes: sb,
      daemonPeakRssBytes: rss,
      daemonCpuSeconds: cpu,
      ...(p !== undefined ? { parallelSeconds: p, parallelBytes: pb! } : {}),
    };
  });
  console.log(`machine: ${JSON.stringify(machineInfo())}`);
  console.log(`command: ${commandLine()}`);
  console.log(
    `link:    ${LINK.bitsPerSecond / 1e6} Mbit/s, ${LINK.rttMs} ms RTT (shaping proxy); span size ${SPAN}; ${RUNS} run(s) per mode, medians (min–max)`,
  );
  console.log("");
  const withParallel = summary.some((s) => s.parallelSeconds !== undefined);
  console.log(
    table(
      [
        "image",
        "gzip / tar",
        "overlayfs s",
        "soci s",
        "overlay ÷ soci",
        "overlay fetched",
        "soci fetched",
        "daemon peak RSS",
        "daemon CPU s",
        ...(withParallel ? ["parallel pull s", "overlay ÷ parallel"] : []),
      ],
      rows,
    ),
  );
  const verdicts: string[] = [];
  for (const s of summary) {
    const t = target(s.name);
    if (t !== undefined) verdicts.push(`${s.name} ≥ ${t}× → ${fmt(s.ratio, 2)}× ${s.ratio >= t ? "PASS" : "MISS"}`);
  }
  const rss = Math.max(...summary.map((s) => s.daemonPeakRssBytes));
  verdicts.push(`daemon RSS ≤ ${mb(RSS_TARGET)} → ${mb(rss)} ${rss <= RSS_TARGET ? "PASS" : "MISS"}`);
  console.log(`\ntargets: ${verdicts.join("; ")}`);
  const path = writeResults("e2e", { link: LINK, spanSize: SPAN, runs: RUNS, dataMB: DATA_MB, summary, results });
  console.log(`results: ${path}`);

  const svg = barChartSvg({
    title: "Pull to ready: containerd overlayfs vs SOCI snapshotter",
    subtitle: `registry behind ${LINK.bitsPerSecond / 1e6} Mbit/s, ${LINK.rttMs} ms RTT; fresh containerd per run; median of ${RUNS}; ${new Date().toISOString().slice(0, 10)}`,
    series: [
      { name: "overlayfs (ctr images pull + ctr run)", color: "#9aa5b1" },
      { name: "soci (soci image rpull + ctr run --snapshotter soci)", color: "#2b7bb9" },
      ...(withParallel
        ? [{ name: "soci parallel pull mode (unconverted image, downloaded whole)", color: "#e8a33d" }]
        : []),
    ],
    panels: [
      {
        title: 'seconds from pull start to "ready" (lower is better)',
        unit: "s",
        digits: 2,
        groups: summary.map((s) => ({
          label: s.name,
          note: s.ratio >= 1 ? `${fmt(s.ratio, 1)}× faster` : `${fmt(1 / s.ratio, 1)}× slower`,
          values: [s.overlaySeconds, s.sociSeconds, ...(withParallel ? [s.parallelSeconds ?? 0] : [])],
        })),
      },
      {
        title: 'MB fetched from the registry before "ready"',
        unit: "MB",
        groups: summary.map((s) => ({
          label: s.name,
          values: [s.overlayBytes / 1e6, s.sociBytes / 1e6, ...(withParallel ? [(s.parallelBytes ?? 0) / 1e6] : [])],
        })),
      },
    ],
  });
  const svgPath = new URL("./e2e.svg", import.meta.url).pathname;
  writeFileSync(svgPath, svg);
  console.log(`chart:   ${svgPath}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
