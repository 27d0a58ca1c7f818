// Benchmark settings from the environment, shared by every benchmark.

/** Where generated corpora and result files live (SOCI_BENCH_DIR, default /var/tmp/soci-bench). */
export function benchDir(): string {
  return process.env.SOCI_BENCH_DIR || "/var/tmp/soci-bench";
}

/** A positive integer from the environment, or `fallback` when unset. */
export function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got "${raw}"`);
  return n;
}

/** Corpus size in MB (10^6 bytes) — SOCI_BENCH_MB, default 400. */
export const corpusMB = (): number => envInt("SOCI_BENCH_MB", 400);

/** Timed runs per method — SOCI_BENCH_RUNS, default 5. */
export const benchRuns = (): number => envInt("SOCI_BENCH_RUNS", 5);
