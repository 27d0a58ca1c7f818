// Timing helpers: repeated runs with a GC in between, throughput statistics.
import { performance } from "node:perf_hooks";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

let gcFn: (() => void) | undefined;
let gcResolved = false;

/** Forces a full GC when possible (--expose-gc, else enabled at runtime through V8 flags); returns whether it ran. */
export function gc(): boolean {
  if (!gcResolved) {
    gcResolved = true;
    gcFn = (globalThis as { gc?: () => void }).gc;
    if (!gcFn) {
      try {
        setFlagsFromString("--expose-gc");
        gcFn = runInNewContext("gc") as () => void;
      } catch {
        gcFn = undefined;
      }
    }
  }
  gcFn?.();
  return gcFn !== undefined;
}

export interface Measurement {
  name: string;
  /** Bytes processed per run (the throughput numerator). */
  bytes: number;
  /** Wall time of each run, seconds. */
  seconds: number[];
  /** Throughput in MB/s (10^6 bytes per second). */
  median: number;
  min: number;
  max: number;
}

/** Runs `fn` `runs` times (GC before each, outside the timer) and reports throughput over `bytes`. */
export async function measure(name: string, bytes: number, runs: number, fn: () => unknown): Promise<Measurement> {
  const seconds: number[] = [];
  for (let i = 0; i < runs; i++) {
    gc();
    const t0 = performance.now();
    const r = fn();
    if (r instanceof Promise) await r;
    seconds.push((performance.now() - t0) / 1e3);
  }
  const rates = seconds.map((s) => bytes / 1e6 / s);
  return { name, bytes, seconds, median: median(rates), min: Math.min(...rates), max: Math.max(...rates) };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
