// `soci demo` end to end with a small sample image: it runs the same container through containerd
// with overlayfs and lazily through our daemon, prints both timings, and leaves nothing behind
// (no mounts, no processes, no temporary root) — also when interrupted with Ctrl-C mid-run.
import { describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";

const soci = new URL("../bin/soci.js", import.meta.url).pathname;

function demo(
  args: string[],
  onLine?: (line: string, kill: (s: NodeJS.Signals) => void) => void,
): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [soci, "demo", "--no-install", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => {
    const lines = (stdout + d.toString()).split("\n").slice(stdout.split("\n").length - 1, -1);
    stdout += d.toString();
    for (const l of lines) onLine?.(l, (s) => child.kill(s));
  });
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr })));
}

/** Processes whose command line mentions `dir` (containerd, the daemon, registry, shims). */
function processesUsing(dir: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ");
      if (cmd.includes(dir)) found.push(`${pid}: ${cmd}`);
    } catch {
      // gone
    }
  }
  return found;
}

const mountsUnder = (dir: string) =>
  readFileSync("/proc/mounts", "utf8")
    .split("\n")
    .filter((l) => l.split(" ")[1]?.startsWith(dir));

function workDir(stdout: string): string {
  const m = /(\/tmp\/soci-demo-[A-Za-z0-9]+)/.exec(stdout);
  expect(m, stdout).not.toBeNull();
  return m![1]!;
}

describe("soci demo", () => {
  it("times a lazy pull + run against overlayfs and cleans up", async () => {
    const r = await demo(["--size-mb", "8"]);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(/sample image: busybox layer \(\d+\.\d MB gzip\) \+ data layer of 3 files/);
    expect(r.stdout).toMatch(
      /converted the sample image into demo\/app:soci in \d+\.\d\d s \(SOCI index v2 sha256:[0-9a-f]{12}…, span size 4 MiB\)/,
    );
    expect(r.stdout).toContain('container output (both runs): "hello from a lazily pulled image\\nready\\n"');
    expect(r.stdout).toMatch(/pull start → "ready"\s+\d+\.\d\d s\s+\d+\.\d\d s/);
    expect(r.stdout).toMatch(/fetched before "ready"\s+\d+\.\d MB\s+\d+\.\d MB/);
    // both layers came from soci: the data layer mounted lazily, busybox unpacked by the daemon
    expect(r.stdout).toMatch(/\(2 of 2 layers provided by soci\)/);
    const dir = workDir(r.stdout);
    expect(r.stdout).toContain(`nothing mounted, ${dir} removed`);
    expect(existsSync(dir)).toBe(false);
    expect(mountsUnder(dir)).toEqual([]);
    expect(processesUsing(dir)).toEqual([]);
  }, 180_000);

  it("Ctrl-C during the lazy run stops everything it started", async () => {
    let interrupted = false;
    const r = await demo(["--size-mb", "8"], (line, kill) => {
      if (line.startsWith("run 2: soci") && !interrupted) {
        interrupted = true;
        setTimeout(() => kill("SIGINT"), 300);
      }
    });
    expect(interrupted, r.stdout).toBe(true);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(130);
    expect(r.stderr).toContain("SIGINT: cleaning up");
    const dir = workDir(r.stdout);
    expect(existsSync(dir)).toBe(false);
    expect(mountsUnder(dir)).toEqual([]);
    expect(processesUsing(dir)).toEqual([]);
  }, 180_000);

  it("refuses to run without root, with a clear message", async () => {
    if (process.getuid?.() !== 0) return;
    const child = spawn(
      "setpriv",
      ["--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, soci, "demo", "--no-install"],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let err = "";
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const code = await new Promise((r) => child.on("close", r));
    expect(code).toBe(1);
    expect(err).toContain("run it as root");
  }, 30_000);
});
