// Inflate throughput: the WebAssembly core (plain, checkpoint build, span extraction) against
// node:zlib, fflate and pako on a layer-like tar.gz of /usr files.
//
//   npm run build && npx tsx bench/inflate.ts
//   SOCI_BENCH_MB=50 SOCI_BENCH_RUNS=3 npx tsx bench/inflate.ts      # quick run
//
// Throughput is uncompressed output bytes per second (MB = 10^6 bytes), median of SOCI_BENCH_RUNS
// timed runs after one untimed run whose output is checked against the tar (length and sha256).
// The last line of stdout is the results as JSON (also written to $SOCI_BENCH_DIR/inflate-results.json).
import { readFileSync } from "node:fs";
import { createGunzip, gunzipSync } from "node:zlib";
import * as fflate from "fflate";
import pako from "pako";
import {
  CheckpointBuilder,
  extract,
  GunzipDecoder,
  gunzip,
  type Checkpoint,
  type CheckpointResult,
} from "../src/index.js";
import { ensureCorpus, sha256 } from "./lib/corpus.js";
import { benchRuns } from "./lib/env.js";
import { commandLine, fmt, machineInfo, mb, table, writeResults } from "./lib/report.js";
import { gc, measure, type Measurement } from "./lib/timing.js";

const SPAN = 4 << 20;
const CHUNK = 1 << 20;
const ANCHOR = "node:zlib gunzipSync";
const STREAM_ANCHOR = "node:zlib stream 1 MiB";
const TARGETS = [
  { method: "wasm gunzip", label: "WASM plain", min: 1.3, anchor: ANCHOR },
  { method: "wasm stream 1 MiB", label: "WASM stream (÷ zlib stream)", min: 1.2, anchor: STREAM_ANCHOR },
  { method: "wasm checkpoint build", label: "checkpoint build", min: 0.9, anchor: ANCHOR },
  { method: "wasm span extraction", label: "span extraction", min: 1.7, anchor: ANCHOR },
];

type Output = Uint8Array | Uint8Array[];

interface Method {
  name: string;
  /** The timed operation. */
  run(): unknown;
  /** Untimed: the uncompressed bytes the method produces, for verification (defaults to run()). */
  output?(): Output | Promise<Output>;
  note?: string;
}

interface Span {
  cp: Checkpoint;
  start: number;
  end: number;
  length: number;
}

/** node:zlib streaming, fed 1 MiB chunks, output chunks of 1 MiB collected. */
function zlibStream(gz: Uint8Array): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const z = createGunzip({ chunkSize: CHUNK });
    const out: Buffer[] = [];
    z.on("data", (b: Buffer) => out.push(b));
    z.on("end", () => resolve(out));
    z.on("error", reject);
    for (let i = 0; i < gz.length; i += CHUNK) z.write(gz.subarray(i, i + CHUNK));
    z.end();
  });
}

/** The streaming API fed 1 MiB chunks, its output buffers collected (as the zlib stream row). */
function wasmStream(gz: Uint8Array): Buffer[] {
  const out: Buffer[] = [];
  const take = (b: Buffer) => out.push(b);
  const dec = new GunzipDecoder();
  for (let i = 0; i < gz.length; i += CHUNK) dec.push(gz.subarray(i, i + CHUNK), take);
  dec.end(take);
  return out;
}

/** Checkpoint build as layers stream in: 1 MiB pushes, then finish(). */
function buildCheckpoints(gz: Uint8Array, onData?: (view: Uint8Array) => void): CheckpointResult {
  const b = new CheckpointBuilder(SPAN, onData ? { onData } : {});
  for (let i = 0; i < gz.length; i += CHUNK) b.push(gz.subarray(i, i + CHUNK));
  return b.finish();
}

/** Span i covers [cp_i.out, cp_{i+1}.out), compressed bytes from cp_i.in (one byte earlier when bits > 0) to cp_{i+1}.in. */
function spansOf(r: CheckpointResult): Span[] {
  return r.checkpoints.map((cp, i) => {
    const next = r.checkpoints[i + 1];
    return {
      cp,
      start: cp.in - (cp.bits ? 1 : 0),
      end: next ? next.in : r.compressedSize,
      length: (next ? next.out : r.uncompressedSize) - cp.out,
    };
  });
}

const extractAll = (gz: Uint8Array, spans: Span[]): Uint8Array[] =>
  spans.map((s) => extract(gz.subarray(s.start, s.end), s.cp, s.cp.out, s.length));

async function main(): Promise<void> {
  const runs = benchRuns();
  const machine = machineInfo();
  const command = commandLine();
  const corpus = await ensureCorpus();
  const gz = new Uint8Array(readFileSync(corpus.gzPath));
  const canGc = gc();

  console.log(
    `machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGB} GB; node ${machine.node} (V8 ${machine.v8}) ${machine.platform}`,
  );
  console.log(`command: ${command}`);
  console.log(
    `corpus:  ${corpus.tarPath} ${mb(corpus.tarSize)} (${corpus.files} files) -> ${mb(corpus.gzSize)} gzip -6 ` +
      `(ratio ${fmt(corpus.tarSize / corpus.gzSize, 2)})${corpus.cached ? ", cached" : ""}`,
  );
  console.log(`runs:    ${runs} timed + 1 verified warm-up per method; gc between runs: ${canGc ? "yes" : "no"}`);

  // Filled by the checkpoint build's verification run; the extraction method reads them.
  let spans: Span[] = [];
  const methods: Method[] = [
    { name: ANCHOR, run: () => gunzipSync(gz) },
    { name: "node:zlib stream 1 MiB", run: () => zlibStream(gz) },
    { name: "fflate gunzipSync", run: () => fflate.gunzipSync(gz) },
    { name: "pako ungzip", run: () => pako.ungzip(gz) },
    { name: "wasm gunzip", run: () => gunzip(gz) },
    { name: "wasm stream 1 MiB", run: () => wasmStream(gz) },
    {
      name: "wasm checkpoint build",
      run: () => buildCheckpoints(gz),
      output() {
        const parts: Uint8Array[] = [];
        const r = buildCheckpoints(gz, (v) => parts.push(v.slice()));
        if (r.compressedSize !== gz.length || r.uncompressedSize !== corpus.tarSize) {
          throw new Error(`sizes ${r.compressedSize}/${r.uncompressedSize}, expected ${gz.length}/${corpus.tarSize}`);
        }
        if (r.checkpoints[0]?.out !== 0) throw new Error("no checkpoint at offset 0");
        spans = spansOf(r);
        this.note = `${r.checkpoints.length} checkpoints, ${r.members} member(s)`;
        return parts;
      },
    },
    {
      name: "wasm span extraction",
      run: () => extractAll(gz, spans),
      output() {
        if (spans.length === 0) throw new Error("no checkpoints (checkpoint build failed)");
        return extractAll(gz, spans);
      },
      get note() {
        return spans.length ? `${spans.length} spans of ${SPAN >> 20} MiB` : undefined;
      },
    },
  ];

  const rows: { method: Method; m?: Measurement; error?: string }[] = [];
  for (const method of methods) {
    console.error(`measuring ${method.name} ...`);
    try {
      gc();
      await verify(method, corpus.tarSize, corpus.tarSha256);
      rows.push({ method, m: await measure(method.name, corpus.tarSize, runs, () => method.run()) });
    } catch (err) {
      rows.push({ method, error: (err as Error).message });
    }
  }

  const anchor = rows.find((r) => r.method.name === ANCHOR)?.m?.median;
  const ratio = (m?: Measurement) => (m && anchor ? m.median / anchor : undefined);
  // The one-shot rows return one contiguous buffer as large as the tar; the stream rows return 1 MiB
  // buffers that malloc recycles between runs. First touches of fresh memory are slow on some VMs
  // (host page faults: ~3 ms per MB on the Firecracker machine of bench/RESULTS.md, 2026-12-08), a
  // floor under every one-shot row that the stream rows do not pay: measured here and printed.
  const floor = await measure("fresh buffer", corpus.tarSize, runs, () =>
    Buffer.allocUnsafeSlow(corpus.tarSize).fill(1),
  );
  console.log(
    `fresh memory: filling a new ${mb(corpus.tarSize)} buffer takes ${fmt(corpus.tarSize / 1e3 / floor.median)} ms ` +
      `(${fmt(floor.median)} MB/s), paid by the one-shot rows (gunzipSync, fflate, pako, wasm gunzip) and not the stream rows`,
  );
  console.log();
  console.log(
    table(
      ["method", "median MB/s", "min", "max", "vs zlib", "notes"],
      rows.map(({ method, m, error }) =>
        m
          ? [method.name, fmt(m.median), fmt(m.min), fmt(m.max), `${fmt(ratio(m)!, 2)}x`, method.note ?? ""]
          : [method.name, "-", "-", "-", "-", `FAILED: ${error}`],
      ),
    ),
  );

  const median = (name: string) => rows.find((x) => x.method.name === name)?.m?.median;
  const targets = TARGETS.map((t) => {
    const m = median(t.method);
    const a = median(t.anchor);
    const r = m !== undefined && a !== undefined ? m / a : undefined;
    return { ...t, ratio: r, pass: r !== undefined && r >= t.min };
  });
  console.log();
  console.log(
    "targets (÷ node:zlib gunzipSync unless noted): " +
      targets
        .map(
          (t) =>
            `${t.label} ${t.ratio === undefined ? "n/a" : fmt(t.ratio, 2)} (≥${fmt(t.min)} ${t.pass ? "PASS" : "MISS"})`,
        )
        .join(" | "),
  );

  const results = {
    benchmark: "inflate",
    date: new Date().toISOString(),
    machine,
    command,
    corpus: { tarBytes: corpus.tarSize, gzBytes: corpus.gzSize, files: corpus.files },
    runs,
    freshBufferMBps: round(floor.median),
    spanSize: SPAN,
    chunkSize: CHUNK,
    unit: "MB/s of uncompressed output (10^6 bytes/s)",
    methods: rows.map(({ method, m, error }) => ({
      method: method.name,
      ...(m
        ? {
            medianMBps: round(m.median),
            minMBps: round(m.min),
            maxMBps: round(m.max),
            vsZlib: round(ratio(m)!, 3),
            seconds: m.seconds.map((s) => round(s, 4)),
          }
        : { error }),
      ...(method.note ? { note: method.note } : {}),
    })),
    targets: targets.map((t) => ({
      name: t.label,
      ratio: t.ratio === undefined ? null : round(t.ratio, 3),
      min: t.min,
      pass: t.pass,
    })),
  };
  console.log(`results: ${writeResults("inflate", results)}`);
  console.log(JSON.stringify(results));
  if (rows.some((r) => r.error)) process.exitCode = 1;
}

/** Runs the method once, untimed, and checks its output against the tar (length, then sha256). */
async function verify(method: Method, size: number, sha: string): Promise<void> {
  const out = await (method.output ? method.output() : (method.run() as Output | Promise<Output>));
  const parts = out instanceof Uint8Array ? [out] : out;
  const length = parts.reduce((n, p) => n + p.length, 0);
  if (length !== size) throw new Error(`output is ${length} bytes, expected ${size}`);
  if (sha256(parts) !== sha) throw new Error("output differs from the tar (sha256)");
}

const round = (n: number, digits = 1) => Number(n.toFixed(digits));

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
