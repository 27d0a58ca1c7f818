// Index build throughput: ztocs for a multi-layer image built from /usr files, with one worker and
// with every core, against node:zlib streaming gunzip of the same layers in the same run.
//
//   npm run bench:index          (npm run build && tsx bench/index.ts)
//   SOCI_BENCH_LAYERS=100,50 npx tsx bench/index.ts     # smaller layers (MB of tar each)
//
// Layers are streamed from disk in 1 MiB reads, as a registry download would arrive; nothing is
// held whole. Peak RSS is the process's (all worker threads included). A second table splits each
// run's CPU by thread (bench/lib/threads.ts): main, the pool's workers (with their time waiting
// for a core and blocked, summed over workers), and the other threads (V8's compiler and GC
// helpers, libuv's pool) — on a loaded machine, compare these rather than the wall clock.
import { createReadStream } from "node:fs";
import { availableParallelism } from "node:os";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { BuildPool } from "../src/indexer/pool.js";
import { ensureCorpus, sha256File, type Corpus } from "./lib/corpus.js";
import { commandLine, fmt, machineInfo, mb, table, writeResults } from "./lib/report.js";
import { runThreads, threadTimes, type RunThreads } from "./lib/threads.js";

const CHUNK = 1 << 20;
const SPAN = 4 << 20;
const layerMBs = (process.env.SOCI_BENCH_LAYERS ?? "400,300,150").split(",").map(Number);

const read = (path: string) => createReadStream(path, { highWaterMark: CHUNK });
const rssMB = () => process.resourceUsage().maxRSS / 1024;

async function zlibGunzip(layers: Corpus[]): Promise<{ seconds: number; threads: RunThreads }> {
  const before = threadTimes();
  const t = performance.now();
  for (const l of layers) {
    await pipeline(read(l.gzPath), createGunzip({ chunkSize: CHUNK }), async (src: AsyncIterable<Buffer>) => {
      for await (const _ of src) void _;
    });
  }
  const ms = performance.now() - t;
  return { seconds: ms / 1000, threads: runThreads(before, threadTimes(), ms) };
}

/** The layers' descriptors: the build checks each blob's digest and size, as `soci convert` does. */
const descriptors = new Map<string, { digest: string; size: number }>();

async function index(
  layers: Corpus[],
  threads: number,
): Promise<{ seconds: number; digests: string[]; threads: RunThreads }> {
  const before = threadTimes();
  const pool = new BuildPool({ threads });
  try {
    const t = performance.now();
    const r = await Promise.all(
      layers.map((l) =>
        pool.buildZtoc(read(l.gzPath), { spanSize: SPAN, compression: "gzip", expect: descriptors.get(l.gzPath) }),
      ),
    );
    const ms = performance.now() - t;
    // read before destroy(): the workers' counters go with their threads
    return { seconds: ms / 1000, digests: r.map((x) => x.digest), threads: runThreads(before, threadTimes(), ms) };
  } finally {
    await pool.destroy();
  }
}

async function main(): Promise<void> {
  const layers: Corpus[] = [];
  for (const m of layerMBs) layers.push(await ensureCorpus(m));
  for (const l of layers) descriptors.set(l.gzPath, { digest: `sha256:${await sha256File(l.gzPath)}`, size: l.gzSize });
  const gz = layers.reduce((s, l) => s + l.gzSize, 0);
  const tar = layers.reduce((s, l) => s + l.tarSize, 0);
  const cores = availableParallelism();
  console.log(`machine: ${JSON.stringify(machineInfo())}`);
  console.log(`command: ${commandLine()}`);
  console.log(
    `image:   ${layers.length} layers, ${mb(gz)} gzip -6 → ${mb(tar)} tar (${layers.map((l) => mb(l.gzSize)).join(", ")})`,
  );

  const zlib = await zlibGunzip(layers);
  const zlibS = zlib.seconds;
  const one = await index(layers, 1);
  const rssOne = rssMB();
  const all = await index(layers, cores);
  const rssAll = rssMB();
  if (one.digests.join() !== all.digests.join()) throw new Error("ztoc digests differ between runs");

  const row = (name: string, s: number, note = "") => [
    name,
    fmt(s, 2),
    fmt(gz / 1e6 / s),
    fmt(tar / 1e6 / s),
    fmt(zlibS / s, 2) + "x",
    note,
  ];
  console.log("");
  console.log(
    table(
      ["method", "wall s", "in MB/s", "out MB/s", "vs zlib", "notes"],
      [
        row("node:zlib gunzip stream (anchor)", zlibS, "decompress only, 1 thread"),
        row("soci index build, 1 worker", one.seconds, `peak RSS ${fmt(rssOne, 0)} MB`),
        row(`soci index build, ${cores} workers`, all.seconds, `peak RSS ${fmt(rssAll, 0)} MB`),
      ],
    ),
  );
  // Where each run's time went (CPU ms by thread): a build is bounded by its workers' CPU when
  // they are neither blocked (empty ring, start) nor waiting for a core (a loaded machine).
  const ms = (n: number) => fmt(n, 0);
  const threadRow = (name: string, t: RunThreads) => [
    name,
    ms(t.total),
    ms(t.main),
    t.started.count ? `${ms(t.started.cpu)} (${t.started.count})` : "-",
    t.started.count ? ms(t.started.wait) : "-",
    t.started.count ? ms(t.started.blocked) : "-",
    ms(t.others),
  ];
  console.log("");
  console.log(
    table(
      ["CPU ms", "all threads", "main", "workers", "workers waiting for a core", "workers blocked", "other threads"],
      [
        threadRow("node:zlib gunzip stream", zlib.threads),
        threadRow("index build, 1 worker", one.threads),
        threadRow(`index build, ${cores} workers`, all.threads),
      ],
    ),
  );
  const ratio = zlibS / one.seconds;
  const scale = one.seconds / all.seconds;
  console.log(
    `\ntargets (issue 15): 1 worker ≥ 1.25× node:zlib gunzip → ${fmt(ratio, 2)}× ${ratio >= 1.25 ? "PASS" : "MISS"}; ` +
      `${cores} workers ≥ 1.8× 1 worker → ${fmt(scale, 2)}× ${scale >= 1.8 ? "PASS" : "MISS"}; ` +
      `peak RSS < 300 MB → ${fmt(rssAll, 0)} MB ${rssAll < 300 ? "PASS" : "MISS"}`,
  );
  writeResults("index", {
    layers: layers.map((l) => ({ gz: l.gzSize, tar: l.tarSize })),
    zlibS,
    oneWorkerS: one.seconds,
    allWorkersS: all.seconds,
    cores,
    rssOne,
    rssAll,
    threadsMs: { zlib: zlib.threads, oneWorker: one.threads, allWorkers: all.threads },
    ztocs: one.digests,
  });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
