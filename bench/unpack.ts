// The local unpacker (unpackLayer: small and unindexed layers, parallel pull mode) against GNU
// `tar -xzpf` of the same layer, alternating, in the same run.
//
//   npm run bench:unpack          (npm run build && tsx bench/unpack.ts)
//   SOCI_BENCH_RUNS=3 SOCI_BENCH_UNPACK=fixture npx tsx bench/unpack.ts
//
// Layers: "fixture" — the unpacker tests' realistic tree (test/helpers/unpack-fixtures.ts: small
// files, symlinks, hardlinks, xattrs, devices, odd modes and times; ~21 MB tar, ~3 200 entries);
// "usr150" — the 150 MB /usr corpus of bench:index (≈ 7 500 files). Both `gzip -6`, read from
// disk in 1 MiB chunks; tar reads the same file. Each run unpacks into a fresh directory (removed
// untimed, after a sync); the ratio is tar's time over ours (≥ 1: we are faster).
import { execFileSync } from "node:child_process";
import { createReadStream, mkdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { unpackLayer } from "../src/fs/unpack-layer.js";
import { ensureCorpus } from "./lib/corpus.js";
import { benchDir, benchRuns } from "./lib/env.js";
import { median } from "./lib/timing.js";
import { fixtureLayer } from "./lib/unpack-layers.js";
import { commandLine, fmt, machineInfo, mb, table, writeResults } from "./lib/report.js";

const fresh = (d: string) => {
  rmSync(d, { recursive: true, force: true });
  execFileSync("sync");
};

async function ours(gz: string, dest: string): Promise<number> {
  const t = performance.now();
  await unpackLayer(createReadStream(gz, { highWaterMark: 1 << 20 }), dest);
  return performance.now() - t;
}

function gnu(gz: string, dest: string): number {
  const t = performance.now();
  mkdirSync(dest);
  execFileSync("tar", ["-xzpf", gz, "--xattrs", "--xattrs-include=*", "--numeric-owner", "-C", dest], {
    stdio: ["ignore", "ignore", "ignore"],
  });
  return performance.now() - t;
}

async function main(): Promise<void> {
  const runs = benchRuns();
  const which = (process.env.SOCI_BENCH_UNPACK ?? "fixture,usr150").split(",");
  const layers: { name: string; gz: string; tarBytes: number }[] = [];
  if (which.includes("fixture")) {
    const gz = await fixtureLayer();
    layers.push({ name: "fixture", gz, tarBytes: statSync(gz.replace(/\.gz$/, "")).size });
  }
  if (which.includes("usr150")) {
    const c = await ensureCorpus(150);
    layers.push({ name: "usr150", gz: c.gzPath, tarBytes: c.tarSize });
  }
  console.log(`machine: ${JSON.stringify(machineInfo())}`);
  console.log(`command: ${commandLine()}`);
  const work = join(benchDir(), "unpack-work");
  const rows: string[][] = [];
  const results: unknown[] = [];
  for (const l of layers) {
    const a: number[] = [];
    const b: number[] = [];
    for (let i = 0; i < runs + 1; i++) {
      fresh(work);
      mkdirSync(work, { recursive: true });
      const t1 = await ours(l.gz, join(work, "ours"));
      fresh(join(work, "ours"));
      const t2 = gnu(l.gz, join(work, "tar"));
      if (i > 0) {
        a.push(t1);
        b.push(t2);
      }
    }
    fresh(work);
    const mo = median(a);
    const mt = median(b);
    rows.push([
      l.name,
      mb(statSync(l.gz).size),
      mb(l.tarBytes),
      fmt(mt, 0),
      fmt(mo, 0),
      `${fmt(mt / mo, 2)}x`,
      `ratios ${a.map((x, i) => fmt(b[i]! / x, 2)).join(" ")}`,
    ]);
    results.push({ layer: l.name, gzBytes: statSync(l.gz).size, tarBytes: l.tarBytes, oursMs: a, tarMs: b });
  }
  console.log("");
  console.log(
    table(["layer", "gzip", "tar", "tar -xzpf ms", "unpackLayer ms", "tar ÷ ours", "per run (tar ÷ ours)"], rows),
  );
  console.log("\ntarget: unpackLayer at least as fast as tar -xzpf (≥ 1.00x)");
  writeResults("unpack", { runs, results });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
