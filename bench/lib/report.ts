// Reporting helpers: machine description, the command line, aligned tables, JSON result files.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join, relative } from "node:path";
import { benchDir } from "./env.js";

export interface MachineInfo {
  cpu: string;
  cores: number;
  memoryGB: number;
  node: string;
  v8: string;
  platform: string;
}

export function machineInfo(): MachineInfo {
  let cpu = cpus()[0]?.model ?? "unknown";
  try {
    cpu = /^model name\s*:\s*(.+)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1]?.trim() ?? cpu;
  } catch {
    // not Linux: keep os.cpus()
  }
  return {
    cpu,
    cores: cpus().length,
    memoryGB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    v8: process.versions.v8,
    platform: `${process.platform}-${process.arch}`,
  };
}

/** The command that launched this benchmark, with the SOCI_BENCH_* settings in effect. */
export function commandLine(): string {
  const env = Object.entries(process.env)
    .filter(([k]) => k.startsWith("SOCI_BENCH_"))
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${v}`);
  const script = relative(process.cwd(), process.argv[1] ?? "");
  // Under tsx, execArgv holds its loader hooks; keep only the flags a user would type.
  const flags = process.execArgv.filter(
    (a, i, all) => !/tsx/.test(a) && !["--require", "--import"].includes(a) && !/tsx/.test(all[i + 1] ?? ""),
  );
  const runner = process.execArgv.some((a) => /tsx/.test(a)) ? "npx tsx" : "node";
  return [...env, runner, ...flags, script].join(" ");
}

/** Renders rows as a plain aligned table; numeric-looking cells are right-aligned. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const numeric = (s: string) => /^[-+]?[\d.,]+[x%]?$/.test(s);
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (numeric(c) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

/** Writes `<bench dir>/<name>-results.json` and returns its path. */
export function writeResults(name: string, data: unknown): string {
  const dir = benchDir();
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${name}-results.json`);
  writeFileSync(path, JSON.stringify(data, null, 2) + "\n");
  return path;
}

export const fmt = (n: number, digits = 1): string => n.toFixed(digits);
export const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(1)} MB`;
