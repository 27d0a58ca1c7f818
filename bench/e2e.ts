// End to end: time from the start of a pull to the container's "ready" line for containerd's
// default overlayfs snapshotter, our SOCI snapshotter (default index; with layer verification
// artifacts, docs/formats.md §9; with those and a recorded prefetch list) and stargz-snapshotter
// (eStargz and optimized eStargz copies of the same images), all measured in one run against a real
// registry behind a proxy modelling 100 Mbit/s and 20 ms RTT. Each run gets a fresh containerd (and
// daemon) root and a dropped page cache; the modes take turns in a different order each repetition.
// A second part reads whole images from the registry without shaping (lazy mount + `tar` of it,
// against containerd's pull + unpack). Modes (bench/lib/cold-start.ts):
//   overlayfs      containerd's pull + unpack of :latest
//   soci           :soci, `soci convert --span-size $SOCI_BENCH_E2E_SPAN`
//   soci-chunked   :soci-chunked, `soci convert --chunk-verification` (span and chunk size: the CLI's
//                  defaults for that flag, unless SOCI_BENCH_CHUNKED_SPAN / _CHUNK say otherwise)
//   soci-recorded  :soci-recorded, the same + `--prefetch-files-json <list>`, the list written by
//                  `soci prefetch record` running the image's workload once against :soci-chunked on
//                  the unshaped registry; daemon with `[prefetch] enable = true`
//   stargz, stargz-opt  :esgz and :esgz-opt (bench/lib/stargz.ts) through stargz-snapshotter
//   parallel       (only when asked for) our daemon in parallel pull mode on :latest
// Settings, all optional (bench/RESULTS.md has examples):
//   SOCI_BENCH_RUNS                 repetitions (default 5); medians are over these
//   SOCI_BENCH_E2E_IMAGES           small,numpy,numpy-slim,numpy-debian,data (default: all; `none`: none)
//   SOCI_BENCH_E2E_MODES            default overlayfs,soci,soci-chunked,soci-recorded,stargz,stargz-opt
//   SOCI_BENCH_E2E_READALL          images for the read-all part (default numpy-debian; `none` skips it)
//   SOCI_BENCH_E2E_READALL_MODES    default overlayfs,soci,soci-chunked,stargz (any mode above)
//   SOCI_BENCH_E2E_READALL_RUNS     repetitions of the read-all part (default SOCI_BENCH_RUNS)
//   SOCI_BENCH_E2E_DATA_MB, SOCI_BENCH_E2E_SPAN   data image file size (200), soci convert span (4 MiB)
//   SOCI_BENCH_CHUNKED_SPAN, SOCI_BENCH_CHUNKED_CHUNK  --span-size / --chunk-size of the soci-chunked
//                                   and soci-recorded conversions (default: not passed)
//   SOCI_BENCH_E2E_REPORT=<results json>          print the tables and redraw the chart of a finished run
// The results file (<bench dir>/e2e-results.json, rewritten after every run) and the report carry
// the commit and the command. The issue's two images, 3 repetitions:
//   SOCI_BENCH_RUNS=3 SOCI_BENCH_E2E_IMAGES=numpy-debian,data npm run bench:e2e
// Images: bench/lib/e2e-images.ts (built offline, cached in <bench dir>/e2e).
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { loadavg } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Cleanup } from "../src/demo/cleanup.js";
import { pushLayout } from "../src/demo/image.js";
import { SOCI_BIN, startRegistry } from "../src/demo/services.js";
import { startShapingProxy } from "../src/demo/shaping-proxy.js";
import { type ColdStart, coldStart, MODES, type Mode, type ReadAll, readAll } from "./lib/cold-start.js";
import {
  type BenchImage,
  dataImage,
  numpyDebianImage,
  numpyImage,
  numpySlimImage,
  smallImage,
} from "./lib/e2e-images.js";
import { envInt } from "./lib/env.js";
import { commandLine, fmt, machineInfo, mb, writeResults } from "./lib/report.js";
import { buildStargzDaemon, type StargzCopies, stargzCopies } from "./lib/stargz.js";
import { barChartSvg } from "./lib/svg-chart.js";
import { median } from "./lib/timing.js";
import { InvalidArgumentError } from "../src/errors/errors.js";
import { DefaultVerificationChunkSize, DefaultVerificationSpanSize } from "../src/formats/layer-verification.js";

const run = promisify(execFile);
const RUNS = envInt("SOCI_BENCH_RUNS", 5);
const DATA_MB = envInt("SOCI_BENCH_E2E_DATA_MB", 200);
const SPAN = envInt("SOCI_BENCH_E2E_SPAN", 4 << 20);
/** A positive integer from the environment, or undefined when unset. */
const envOptInt = (name: string): number | undefined => (process.env[name] ? envInt(name, 1) : undefined);
const CHUNKED = { spanSize: envOptInt("SOCI_BENCH_CHUNKED_SPAN"), chunkSize: envOptInt("SOCI_BENCH_CHUNKED_CHUNK") };
const LINK = { rttMs: 20, bitsPerSecond: 100e6 };
const RSS_TARGET = 150e6;
const READALL_TARGET = 1.25;

const list = (name: string, fallback: string): string[] =>
  (process.env[name] || fallback).split(",").filter((s) => s && s !== "none");
const modes = (name: string, fallback: string): Mode[] =>
  list(name, fallback).map((m) => {
    if (!(MODES as readonly string[]).includes(m))
      throw new InvalidArgumentError(`${name}: unknown mode ${m} (${MODES.join(", ")})`);
    return m as Mode;
  });
const WHICH = list("SOCI_BENCH_E2E_IMAGES", "small,numpy,numpy-slim,numpy-debian,data");
const READALL = list("SOCI_BENCH_E2E_READALL", "numpy-debian");
const RUN_MODES = modes("SOCI_BENCH_E2E_MODES", "overlayfs,soci,soci-chunked,soci-recorded,stargz,stargz-opt");
const READALL_MODES = modes("SOCI_BENCH_E2E_READALL_MODES", "overlayfs,soci,soci-chunked,stargz");
const READALL_RUNS = envInt("SOCI_BENCH_E2E_READALL_RUNS", RUNS);

type Failure = { mode: Mode; rep: number; error: string };
/** The prefetch list of soci-recorded and how it was made. */
interface Recorded {
  /** `soci prefetch record` of the workload against :soci-chunked (loopback registry), seconds. */
  recordSeconds: number;
  /** Files in the list; files the workload read only in part and were left out. */
  files: number;
  notListed: number;
  /** `soci convert --chunk-verification --prefetch-files-json`, seconds. */
  convertSeconds: number;
}
interface ImageResult {
  name: string;
  description: string;
  compressedBytes: number;
  uncompressedBytes: number;
  /** `soci convert` of :soci, seconds. */
  convertSeconds: number;
  /** soci-chunked / soci-recorded (when either runs): `soci convert --chunk-verification`, seconds; the recording. */
  chunked?: { convertSeconds: number; recorded?: Recorded };
  stargz?: StargzCopies;
  runs: Array<ColdStart & { rep: number }>;
  readAll: Array<ReadAll & { rep: number }>;
  failures: Failure[];
}
interface Saved {
  date: string;
  commit: string;
  command: string;
  link: typeof LINK;
  spanSize: number;
  /** --span-size / --chunk-size given to the soci-chunked and soci-recorded conversions (absent: the CLI's defaults). */
  chunked?: { spanSize?: number; chunkSize?: number };
  runs: number;
  modes: Mode[];
  readAllModes: Mode[];
  notes: string[];
  /** 1-minute load average when the runs started and when they ended (other work on the machine shows here). */
  load: { start: number; end: number };
  results: ImageResult[];
}

const log = (s: string) => process.stderr.write(`${s}\n`);
/** Each process's peak RSS, e.g. "soci-snapshotter-grpc 104.6 MB + soci-fuse-host 211.8 MB". */
const byProcess = (m: Record<string, number> | undefined): string =>
  m
    ? Object.entries(m)
        .map(([name, bytes]) => `${name} ${mb(bytes)}`)
        .join(" + ")
    : "";
/** `xs` rotated left by `n`: each mode leads one repetition in turn. */
const rotate = <T>(xs: T[], n: number): T[] => xs.map((_, i) => xs[(i + n) % xs.length]!);

async function buildImage(name: string): Promise<BenchImage> {
  if (name === "small") return smallImage(log);
  if (name === "numpy") return numpyImage(log);
  if (name === "numpy-slim") return numpySlimImage(log);
  if (name === "numpy-debian") return numpyDebianImage(log);
  if (name === "data") return dataImage(DATA_MB, log);
  throw new InvalidArgumentError(`unknown image ${name} (small, numpy, numpy-slim, numpy-debian, data)`);
}

/** The --chunk-verification flags of soci-chunked and soci-recorded. */
const chunkedFlags = (): string[] => [
  "--chunk-verification",
  ...(CHUNKED.spanSize !== undefined ? ["--span-size", String(CHUNKED.spanSize)] : []),
  ...(CHUNKED.chunkSize !== undefined ? ["--chunk-size", String(CHUNKED.chunkSize)] : []),
];

/** Whether `r` has what `mode` pulls (the stargz copies and the recorded list may have failed to build). */
const available = (r: ImageResult, mode: Mode): boolean =>
  mode.startsWith("stargz")
    ? r.stargz !== undefined
    : mode === "soci-recorded"
      ? r.chunked?.recorded !== undefined
      : true;

/**
 * Pushes :soci-recorded: the image's workload run once by `soci prefetch record` against
 * :soci-chunked (`ref` is the unshaped registry), and the files it read converted in as the prefetch list.
 */
async function recordedCopy(
  img: BenchImage,
  ref: string,
  work: string,
  convert: (root: string, tag: string, flags: string[]) => Promise<number>,
): Promise<Recorded> {
  const list = join(work, `${img.name}-prefetch.json`);
  const t = performance.now();
  const rec = await run(
    SOCI_BIN,
    [
      "--root",
      join(work, `record-${img.name}`),
      "prefetch",
      "record",
      "--plain-http",
      `${ref}:soci-chunked`,
      list,
      "--",
      ...img.command,
    ],
    { maxBuffer: 64 << 20 },
  );
  const recordSeconds = (performance.now() - t) / 1000;
  const files = (JSON.parse(await readFile(list, "utf8")) as string[]).length;
  const notListed = rec.stderr.split("\n").filter((l) => l.startsWith("not listed")).length;
  const convertSeconds = await convert(`convert-${img.name}-recorded`, "soci-recorded", [
    ...chunkedFlags(),
    "--prefetch-files-json",
    list,
  ]);
  return { recordSeconds, files, notListed, convertSeconds };
}

async function main(): Promise<void> {
  if (process.env.SOCI_BENCH_E2E_REPORT) {
    report(JSON.parse(readFileSync(process.env.SOCI_BENCH_E2E_REPORT, "utf8")) as Saved);
    return;
  }
  const names = [...new Set([...WHICH, ...READALL])];
  const images = new Map<string, BenchImage>();
  for (const n of names) images.set(n, await buildImage(n));
  const notes: string[] = [];
  const allModes = new Set([...RUN_MODES, ...READALL_MODES]);
  let runModes = RUN_MODES;
  let readAllModes = READALL_MODES;
  let stargzBin: string | undefined;
  if ([...runModes, ...readAllModes].some((m) => m.startsWith("stargz"))) {
    const b = await buildStargzDaemon(log);
    if ("bin" in b) stargzBin = b.bin;
    else {
      notes.push(`stargz columns skipped: ${b.unavailable}`);
      log(`e2e: ${notes.at(-1)}`);
      runModes = runModes.filter((m) => !m.startsWith("stargz"));
      readAllModes = readAllModes.filter((m) => !m.startsWith("stargz"));
    }
  }
  const commit = (
    await run("git", ["describe", "--always", "--dirty"], { cwd: new URL("..", import.meta.url).pathname })
  ).stdout.trim();

  const cleanup = new Cleanup();
  const offSignals = cleanup.onSignals(log);
  const work = await mkdtemp("/tmp/sbe-"); // short: containerd's socket path lives below it
  cleanup.final("work dir", () => rm(work, { recursive: true, force: true }));
  let failed = 0;
  try {
    const registry = await startRegistry(join(work, "registry"), cleanup);
    const proxy = await startShapingProxy(registry.host, LINK);
    cleanup.add("proxy", () => proxy.stop());
    const results = new Map<string, ImageResult>();
    for (const img of images.values()) {
      const repo = `bench/${img.name}`;
      const ref = `${registry.host}/${repo}`;
      await pushLayout(img.layout, img.tag, `${ref}:latest`);
      const minLayer = img.minLayerSize !== undefined ? ["--min-layer-size", String(img.minLayerSize)] : [];
      /** `soci convert` of :latest to :<tag>; seconds. */
      const convert = async (root: string, tag: string, flags: string[]): Promise<number> => {
        const t = performance.now();
        await run(
          SOCI_BIN,
          [
            "--root",
            join(work, root),
            "convert",
            "--plain-http",
            ...flags,
            ...minLayer,
            `${ref}:latest`,
            `${ref}:${tag}`,
          ],
          { maxBuffer: 16 << 20 },
        );
        return (performance.now() - t) / 1000;
      };
      const convertSeconds = await convert("convert-root", "soci", ["--span-size", String(SPAN)]);
      let chunked: ImageResult["chunked"];
      if (allModes.has("soci-chunked") || allModes.has("soci-recorded")) {
        // a root of its own: no blobs already fetched by the other conversions, so the times compare
        chunked = { convertSeconds: await convert(`convert-${img.name}-chunked`, "soci-chunked", chunkedFlags()) };
        if (allModes.has("soci-recorded")) {
          try {
            chunked.recorded = await recordedCopy(img, ref, work, convert);
            log(
              `e2e: ${img.name}: recorded ${chunked.recorded.files} files to prefetch (${chunked.recorded.notListed} read in part, not listed)`,
            );
          } catch (e) {
            if (cleanup.aborted) throw e;
            notes.push(`${img.name}: no soci-recorded runs, recording failed: ${(e as Error).message.slice(0, 600)}`);
            log(`e2e: ${notes.at(-1)}`);
          }
        }
      }
      let stargz: StargzCopies | undefined;
      if (stargzBin) {
        try {
          stargz = await stargzCopies(img, registry.host, work, cleanup, log);
        } catch (e) {
          if (cleanup.aborted) throw e;
          notes.push(`${img.name}: no stargz runs, its eStargz copies failed: ${(e as Error).message.slice(0, 600)}`);
          log(`e2e: ${notes.at(-1)}`);
        }
      }
      results.set(img.name, {
        name: img.name,
        description: img.description,
        compressedBytes: img.layers.reduce((a, l) => a + l.gzSize, 0),
        uncompressedBytes: img.layers.reduce((a, l) => a + l.tarSize, 0),
        convertSeconds,
        ...(chunked ? { chunked } : {}),
        ...(stargz ? { stargz } : {}),
        runs: [],
        readAll: [],
        failures: [],
      });
    }
    const loadStart = loadavg()[0]!;
    const date = new Date().toISOString();
    const saved = (): Saved => ({
      date,
      commit,
      command: commandLine(),
      link: LINK,
      spanSize: SPAN,
      chunked: CHUNKED,
      runs: RUNS,
      modes: runModes,
      readAllModes,
      notes,
      load: { start: loadStart, end: loadavg()[0]! },
      results: [...results.values()],
    });
    // written after every run, so an interrupted benchmark can still be reported (SOCI_BENCH_E2E_REPORT)
    const save = () => writeResults("e2e", saved());
    let n = 0;
    const daemonConfig = process.env.SOCI_BENCH_DAEMON_CONFIG;
    const ctx = (reg: string) => ({
      registry: reg,
      stargzBin,
      dir: join(work, `r${n++}`),
      cleanup,
      log,
      ...(daemonConfig ? { daemonConfig } : {}),
    });
    const fail = (r: ImageResult, mode: Mode, rep: number, e: Error) => {
      failed++;
      r.failures.push({ mode, rep, error: e.message.slice(0, 2000) });
      save();
      log(`  ${r.name} ${mode} run ${rep + 1}: FAILED: ${e.message.slice(0, 2000)}`);
    };
    for (let rep = 0; rep < RUNS; rep++) {
      for (const which of WHICH) {
        const img = images.get(which)!;
        const name = img.name; // data → data-<MB>
        const r = results.get(name)!;
        for (const mode of rotate(runModes, rep)) {
          if (!available(r, mode)) continue;
          try {
            const res = await coldStart(mode, `bench/${name}`, img.command, proxy, ctx(proxy.host));
            r.runs.push({ ...res, rep });
            save();
            log(
              `  ${name} ${mode} run ${rep + 1}: ${fmt(res.seconds, 2)} s to ready (pull ${fmt(res.pullSeconds, 2)} s), ${mb(res.bytes)} fetched` +
                (res.daemonPeakRssBytes !== undefined
                  ? `, daemon ${mb(res.daemonPeakRssBytes)} peak RSS (${byProcess(res.daemonRssByProcess)}), ${fmt(res.daemonCpuSeconds!, 2)} s CPU`
                  : "") +
                (res.pullSummary ? ` — ${res.pullSummary}` : ""),
            );
          } catch (e) {
            if (cleanup.aborted) throw e;
            fail(r, mode, rep, e as Error);
          }
        }
      }
    }
    for (let rep = 0; rep < (READALL.length ? READALL_RUNS : 0); rep++) {
      for (const which of READALL) {
        const name = images.get(which)!.name;
        const r = results.get(name)!;
        for (const mode of rotate(readAllModes, rep)) {
          if (!available(r, mode)) continue;
          try {
            const res = await readAll(mode, `bench/${name}`, ctx(registry.host));
            r.readAll.push({ ...res, rep });
            save();
            log(
              `  ${name} read-all ${mode} run ${rep + 1}: ${fmt(res.seconds, 2)} s (pull ${fmt(res.pullSeconds, 2)} s` +
                (res.tarBytes !== undefined
                  ? `, mounted ${fmt(res.mountSeconds!, 2)} s, tar ${mb(res.tarBytes)}`
                  : "") +
                ")" +
                (res.daemonPeakRssBytes !== undefined
                  ? `, daemon ${mb(res.daemonPeakRssBytes)} peak RSS (${byProcess(res.daemonRssByProcess)}), ${fmt(res.daemonCpuSeconds!, 2)} s CPU`
                  : ""),
            );
          } catch (e) {
            if (cleanup.aborted) throw e;
            fail(r, mode, rep, e as Error);
          }
        }
      }
    }
    console.log(`results: ${save()}`);
    report(saved());
  } finally {
    await cleanup.run(log);
    offSignals();
  }
  if (failed) {
    log(`e2e: ${failed} run(s) failed (listed above and in the results file)`);
    process.exitCode = 1;
  }
}

const LABEL: Record<Mode, string> = {
  overlayfs: "overlayfs",
  soci: "soci",
  "soci-chunked": "soci chunked",
  "soci-recorded": "soci recorded",
  parallel: "soci parallel",
  stargz: "stargz",
  "stargz-opt": "stargz optimized",
};
const COLOR: Record<Mode, string> = {
  overlayfs: "#9aa5b1",
  soci: "#2b7bb9",
  "soci-chunked": "#7fb8e0",
  "soci-recorded": "#15476e",
  parallel: "#e8a33d",
  stargz: "#59a14f",
  "stargz-opt": "#a0cb7c",
};

function report(saved: Saved): void {
  const { results, modes: runModes } = saved;
  const lazy = runModes.filter((m) => m !== "overlayfs");
  const of = (r: ImageResult, mode: Mode) => r.runs.filter((x) => x.mode === mode);
  const med = (r: ImageResult, mode: Mode, f: (x: ColdStart) => number): number | undefined => {
    const xs = of(r, mode).map(f);
    return xs.length ? median(xs) : undefined;
  };
  const cell = (r: ImageResult, mode: Mode, f: (x: ColdStart) => number) => {
    const xs = of(r, mode).map(f);
    if (!xs.length) return "—";
    const spread = xs.length > 1 ? ` (${fmt(Math.min(...xs), 2)}–${fmt(Math.max(...xs), 2)})` : "";
    return `${fmt(median(xs), 2)}${spread}`;
  };
  /** Median over the repetitions of a(rep) / b(rep): both modes measured in the same repetition. */
  const ratio = (r: ImageResult, a: Mode, b: Mode, f: (x: ColdStart) => number = (x) => x.seconds) => {
    const xs: number[] = [];
    for (const x of of(r, a)) {
      const y = r.runs.find((y) => y.mode === b && y.rep === x.rep);
      if (y) xs.push(f(x) / f(y));
    }
    return xs.length ? median(xs) : undefined;
  };
  const x = (v: number | undefined) => (v === undefined ? "—" : `${fmt(v, 2)}×`);
  const md = (header: string[], rows: string[][]) =>
    [
      `| ${header.join(" | ")} |`,
      `| ${header.map((_, i) => (i ? "---:" : "---")).join(" | ")} |`,
      ...rows.map((r) => `| ${r.join(" | ")} |`),
    ].join("\n");

  console.log(`date:    ${saved.date.slice(0, 16).replace("T", " ")} UTC, commit ${saved.commit}`);
  console.log(`command: ${saved.command}`);
  console.log(`machine: ${JSON.stringify(machineInfo())}`);
  console.log(
    `link:    ${saved.link.bitsPerSecond / 1e6} Mbit/s, ${saved.link.rttMs} ms RTT (shaping proxy); soci span size ${saved.spanSize}; ${saved.runs} repetition(s), medians (min–max); ratios are medians of per-repetition ratios`,
  );
  if (saved.load)
    console.log(
      `load:    1-minute load average ${fmt(saved.load.start, 1)} at the start, ${fmt(saved.load.end, 1)} at the end`,
    );
  const sizes = (v: number | undefined, fallback: number) =>
    v === undefined ? `CLI default (${fallback})` : String(v);
  if ([...runModes, ...saved.readAllModes].some((m) => m === "soci-chunked" || m === "soci-recorded"))
    console.log(
      `chunked: soci-chunked / soci-recorded converted with --chunk-verification, span size ${sizes(saved.chunked?.spanSize, DefaultVerificationSpanSize)}, chunk size ${sizes(saved.chunked?.chunkSize, DefaultVerificationChunkSize)}; soci-recorded daemon: [prefetch] enable = true`,
    );
  for (const r of results) {
    const rec = r.chunked?.recorded;
    if (rec)
      console.log(
        `record:  ${r.name}: prefetch list of ${rec.files} files (${rec.notListed} read in part, not listed), recorded in ${fmt(rec.recordSeconds, 1)} s`,
      );
  }
  for (const n of saved.notes) console.log(`note:    ${n}`);
  const dropped = results.flatMap((r) => r.runs).every((x) => x.pageCacheDropped);
  if (!dropped) console.log("note:    the page cache could not be dropped before some runs");

  console.log("\nPull → ready, seconds (ratios: the other mode's time ÷ soci's; > 1 means soci is faster)\n");
  const vs = runModes.filter((m) => m !== "soci");
  console.log(
    md(
      ["image", "gzip / tar", ...runModes.map((m) => LABEL[m]), ...vs.map((m) => `${LABEL[m]} ÷ soci`)],
      results
        .filter((r) => r.runs.length)
        .map((r) => [
          r.name,
          `${mb(r.compressedBytes)} / ${mb(r.uncompressedBytes)}`,
          ...runModes.map((m) => cell(r, m, (y) => y.seconds)),
          ...vs.map((m) => x(ratio(r, m, "soci"))),
        ]),
    ),
  );
  console.log("\nPull only (until the layers are mounted, or downloaded and unpacked), seconds\n");
  const lazyVs = lazy.filter((m) => m !== "soci");
  console.log(
    md(
      ["image", ...runModes.map((m) => LABEL[m]), ...lazyVs.map((m) => `${LABEL[m]} ÷ soci`)],
      results
        .filter((r) => r.runs.length)
        .map((r) => [
          r.name,
          ...runModes.map((m) => cell(r, m, (y) => y.pullSeconds)),
          ...lazyVs.map((m) => x(ratio(r, m, "soci", (y) => y.pullSeconds))),
        ]),
    ),
  );
  console.log(
    "\nMB fetched before ready (median) and the daemon's peak RSS (largest over the runs; sum over its processes)\n",
  );
  console.log(
    md(
      [
        "image",
        "image size: gzip / eStargz / optimized",
        ...runModes.map((m) => `${LABEL[m]} fetched`),
        ...lazy.map((m) => `${LABEL[m]} RSS`),
        ...lazy.map((m) => `${LABEL[m]} CPU s`),
      ],
      results
        .filter((r) => r.runs.length)
        .map((r) => [
          r.name,
          `${mb(r.compressedBytes)} / ${r.stargz ? `${mb(r.stargz.esgzBytes)} / ${mb(r.stargz.optBytes)}` : "— / —"}`,
          ...runModes.map((m) => {
            const v = med(r, m, (y) => y.bytes);
            return v === undefined ? "—" : mb(v);
          }),
          ...lazy.map((m) => {
            const xs = of(r, m).map((y) => y.daemonPeakRssBytes ?? 0);
            return xs.length ? mb(Math.max(...xs)) : "—";
          }),
          ...lazy.map((m) => {
            const v = med(r, m, (y) => y.daemonCpuSeconds ?? 0);
            return v === undefined ? "—" : fmt(v, 2);
          }),
        ]),
    ),
  );

  const withReadAll = results.filter((r) => r.readAll.length);
  const rmodes = saved.readAllModes;
  const raMed = (r: ImageResult, mode: Mode, f: (y: ReadAll) => number) => {
    const xs = r.readAll.filter((y) => y.mode === mode).map(f);
    return xs.length ? median(xs) : undefined;
  };
  const raRatio = (r: ImageResult, mode: Mode) => {
    const xs: number[] = [];
    for (const y of r.readAll.filter((y) => y.mode === mode)) {
      const o = r.readAll.find((z) => z.mode === "overlayfs" && z.rep === y.rep);
      if (o) xs.push(y.seconds / o.seconds);
    }
    return xs.length ? median(xs) : undefined;
  };
  if (withReadAll.length) {
    console.log(
      "\nRead everything from a fast registry (loopback, no shaping), seconds: overlayfs = containerd's pull + unpack; lazy modes = pull, a mount of the image's snapshot, `tar -cf - .` of it to the end (pull / mounted at)\n",
    );
    const rl = rmodes.filter((m) => m !== "overlayfs");
    console.log(
      md(
        ["image", "tar stream", ...rmodes.map((m) => LABEL[m]), ...rl.map((m) => `${LABEL[m]} ÷ overlayfs`)],
        withReadAll.map((r) => [
          r.name,
          mb(Math.max(0, ...r.readAll.map((y) => y.tarBytes ?? 0))),
          ...rmodes.map((m) => {
            const v = raMed(r, m, (y) => y.seconds);
            if (v === undefined) return "—";
            const p = raMed(r, m, (y) => y.pullSeconds)!;
            const mt = raMed(r, m, (y) => y.mountSeconds ?? Number.NaN);
            return m === "overlayfs" ? fmt(v, 2) : `${fmt(v, 2)} (${fmt(p, 2)} / ${fmt(mt ?? 0, 2)})`;
          }),
          ...rl.map((m) => x(raRatio(r, m))),
        ]),
      ),
    );
  }

  // the issue's targets, each against the modes measured in the same repetition
  const verdict = (ok: boolean | undefined) => (ok === undefined ? "not measured" : ok ? "PASS" : "MISS");
  const lines: string[] = [];
  const measured = results.filter((r) => r.runs.length);
  const SOCI_MODES: Mode[] = ["soci", "soci-chunked", "soci-recorded"];
  // every SOCI mode is the product (the verification artifact and the recorded prefetch are flags of
  // `soci convert` and the daemon), so each is held to the targets
  for (const r of measured)
    for (const m of SOCI_MODES) {
      if (!of(r, m).length) continue;
      const checks: string[] = [];
      const so = ratio(r, "overlayfs", m);
      const want = r.name.startsWith("data") ? 20 : 1;
      checks.push(`overlayfs ÷ ${m} ${x(so)} ≥ ${want}× ${verdict(so === undefined ? undefined : so >= want)}`);
      const sg = ratio(r, "stargz", m);
      checks.push(`pull → ready faster than stargz (${x(sg)}) ${verdict(sg === undefined ? undefined : sg > 1)}`);
      if (r.name.startsWith("numpy")) {
        const so2 = ratio(r, "stargz-opt", m);
        checks.push(`faster than optimized stargz (${x(so2)}) ${verdict(so2 === undefined ? undefined : so2 > 1)}`);
      }
      const sp = ratio(r, "stargz", m, (y) => y.pullSeconds);
      checks.push(`pull no slower than stargz's (${x(sp)}) ${verdict(sp === undefined ? undefined : sp >= 1)}`);
      const rss = of(r, m).map((y) => y.daemonPeakRssBytes ?? 0);
      checks.push(`RSS ${mb(Math.max(...rss))} ≤ ${mb(RSS_TARGET)} ${verdict(Math.max(...rss) <= RSS_TARGET)}`);
      lines.push(`- ${r.name}, ${m}: ${checks.join("; ")}`);
    }
  for (const r of withReadAll) {
    const v = raRatio(r, "soci");
    lines.push(
      `- ${r.name} read-all: soci ÷ overlayfs ${x(v)} ≤ ${READALL_TARGET}× ${verdict(v === undefined ? undefined : v <= READALL_TARGET)}`,
    );
  }
  console.log(`\nTargets (issue 16):\n${lines.join("\n")}`);
  const failures = results.flatMap((r) => r.failures.map((f) => `${r.name} ${f.mode} run ${f.rep + 1}`));
  if (failures.length) console.log(`\nFailed runs (left out of the medians): ${failures.join(", ")}`);

  const shown = measured.filter((r) => runModes.some((m) => of(r, m).length));
  const svg = barChartSvg({
    title: "Pull to ready: overlayfs, SOCI and stargz snapshotters",
    subtitle: `registry behind ${saved.link.bitsPerSecond / 1e6} Mbit/s, ${saved.link.rttMs} ms RTT; fresh containerd per run; median of ${saved.runs}; ${saved.date.slice(0, 10)}, ${saved.commit}`,
    series: runModes.map((m) => ({ name: LABEL[m], color: COLOR[m] })),
    panels: [
      {
        title: 'seconds from pull start to "ready" (lower is better)',
        unit: "s",
        digits: 2,
        groups: shown.map((r) => {
          const so = ratio(r, "overlayfs", "soci");
          return {
            label: r.name,
            ...(so !== undefined
              ? { note: so >= 1 ? `soci ${fmt(so, 1)}× faster` : `soci ${fmt(1 / so, 1)}× slower` }
              : {}),
            values: runModes.map((m) => med(r, m, (y) => y.seconds) ?? 0),
          };
        }),
      },
      {
        title: 'MB fetched from the registry before "ready"',
        unit: "MB",
        groups: shown.map((r) => ({
          label: r.name,
          values: runModes.map((m) => (med(r, m, (y) => y.bytes) ?? 0) / 1e6),
        })),
      },
    ],
  });
  const svgPath = new URL("./e2e.svg", import.meta.url).pathname;
  writeFileSync(svgPath, svg);
  console.log(`\nchart:   ${svgPath}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
