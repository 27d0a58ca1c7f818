// What the end-to-end benchmark reads from /proc and writes to it: the memory and CPU of a
// snapshotter daemon counted over its whole process tree (our daemon may run helpers beside its
// main process, e.g. a FUSE host), and the page cache dropped before each cold start.
import { execFile } from "node:child_process";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { promisify } from "node:util";
import { processUsage } from "../../src/demo/services.js";

const run = promisify(execFile);

export interface TreeUsage {
  /** Sum over the processes of each one's peak RSS (VmHWM): an upper bound of the tree's peak. */
  peakRssBytes: number;
  /** The largest single process's peak RSS. */
  maxProcessPeakRssBytes: number;
  /** utime + stime summed over the live processes. */
  cpuSeconds: number;
  /** How many processes were counted. */
  processes: number;
  /** Each process's peak RSS by its program (`soci-snapshotter-grpc`, `soci-fuse-host`, …). */
  byProcess: Record<string, number>;
}

/** The program a node process runs (its script's name without `.js`), else the executable's name. */
function programOf(cmdline: string): string {
  const words = cmdline.trim().split(" ");
  const script = words.find((w) => /\.[cm]?js$/.test(w));
  return (script ?? words[0] ?? "?").replace(/^.*\//, "").replace(/\.[cm]?js$/, "");
}

async function statOf(pid: number): Promise<{ ppid: number; cmdline: string } | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    const cmdline = (await readFile(`/proc/${pid}/cmdline`, "utf8")).replace(/\0/g, " ");
    return { ppid, cmdline };
  } catch {
    return undefined; // exited meanwhile
  }
}

/**
 * `root` and every live process below it, plus any process whose command line mentions `marker`
 * (a helper that was re-parented away from the tree still names the daemon's directory or socket).
 */
export async function processTree(root: number, marker?: string): Promise<number[]> {
  const all = new Map<number, { ppid: number; cmdline: string }>();
  for (const e of await readdir("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    const s = await statOf(Number(e));
    if (s) all.set(Number(e), s);
  }
  const found = new Set<number>([root]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const [pid, s] of all)
      if (!found.has(pid) && (found.has(s.ppid) || (marker !== undefined && s.cmdline.includes(marker)))) {
        found.add(pid);
        grew = true;
      }
  }
  return [...found].filter((p) => p === root || all.has(p));
}

/** Peak RSS and CPU of the process tree of `root` (see processTree). */
export async function treeUsage(root: number, marker?: string): Promise<TreeUsage> {
  const out: TreeUsage = { peakRssBytes: 0, maxProcessPeakRssBytes: 0, cpuSeconds: 0, processes: 0, byProcess: {} };
  for (const pid of await processTree(root, marker)) {
    const u = await processUsage(pid).catch(() => undefined);
    if (!u) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    const name = programOf(cmdline.replace(/\0/g, " "));
    out.byProcess[name] = Math.max(out.byProcess[name] ?? 0, u.peakRssBytes);
    out.peakRssBytes += u.peakRssBytes;
    out.maxProcessPeakRssBytes = Math.max(out.maxProcessPeakRssBytes, u.peakRssBytes);
    out.cpuSeconds += u.cpuSeconds;
    out.processes++;
  }
  return out;
}

let dropWarned = false;

/** `sync` and `echo 3 > /proc/sys/vm/drop_caches`; false (with one warning) where that is not allowed. */
export async function dropPageCache(log: (l: string) => void): Promise<boolean> {
  try {
    await run("sync");
    await writeFile("/proc/sys/vm/drop_caches", "3\n");
    return true;
  } catch (e) {
    if (!dropWarned) log(`e2e: cannot drop the page cache (${(e as Error).message}); runs start with it warm`);
    dropWarned = true;
    return false;
  }
}
