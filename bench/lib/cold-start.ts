// One measured cold start for bench/e2e.ts, in any of its modes: a fresh containerd (and, for the
// lazy modes, a fresh snapshotter daemon) in a new directory, the page cache dropped, then the
// clock runs from the start of the pull until the container prints its ready line.
//   overlayfs   `ctr images pull --plain-http <img>:latest` + `ctr run` (containerd's default snapshotter)
//   soci        `soci image rpull --plain-http <img>:soci` + `ctr run --snapshotter soci`
//   soci-chunked  the same on <img>:soci-chunked (`soci convert --chunk-verification`: layer
//               verification artifacts, docs/formats.md §9), daemon default config
//   soci-recorded the same on <img>:soci-recorded (also `--prefetch-files-json` with the list
//               `soci prefetch record` wrote for the image's workload), daemon `[prefetch] enable = true`
//   parallel    the same daemon in parallel pull mode on <img>:latest (downloaded whole, unpacked while it streams)
//   stargz      `ctr-remote images rpull --plain-http --snapshotter stargz <img>:esgz` + `ctr run --snapshotter stargz`
//   stargz-opt  the same on <img>:esgz-opt (`ctr-remote image optimize`: files the workload reads first, prefetched)
// readAll() instead times pulling the whole image: containerd's pull + unpack against a lazy pull,
// a mount of the image's snapshot and `tar -cf - .` of it read to the end.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { Cleanup } from "../../src/demo/cleanup.js";
import { SOCI_BIN, startDaemon } from "../../src/demo/services.js";
import type { ShapingProxy } from "../../src/demo/shaping-proxy.js";
import { type BenchContainerd, startBenchContainerd } from "./containerd.js";
import { dropPageCache, treeUsage } from "./proc.js";
import { CTR_REMOTE_BIN, ESGZ_OPT_TAG, ESGZ_TAG, startStargzDaemon } from "./stargz.js";
import { DeadlineExceededError, FailedPreconditionError } from "../../src/errors/errors.js";

const run = promisify(execFile);

export const MODES = [
  "overlayfs",
  "soci",
  "soci-chunked",
  "soci-recorded",
  "parallel",
  "stargz",
  "stargz-opt",
] as const;
export type Mode = (typeof MODES)[number];

/** The tag each mode pulls (bench/e2e.ts pushes them). */
const TAGS: Record<Mode, string> = {
  overlayfs: "latest",
  soci: "soci",
  "soci-chunked": "soci-chunked",
  "soci-recorded": "soci-recorded",
  parallel: "latest",
  stargz: ESGZ_TAG,
  "stargz-opt": ESGZ_OPT_TAG,
};
export const tagOf = (mode: Mode): string => TAGS[mode];

/**
 * What a mode adds to the soci daemon's config: parallel pull mode (the blobs are not kept: no
 * content store to point at), or prefetching the files the index lists once a layer is mounted.
 */
const MODE_CONFIG: Partial<Record<Mode, string>> = {
  parallel: "[pull_modes.parallel_pull_unpack]\nenable = true\ndiscard_unpacked_layers = true\n",
  "soci-recorded": "[prefetch]\nenable = true\n",
};
const daemonConfigOf = (mode: Mode, base: string | undefined): string | undefined =>
  MODE_CONFIG[mode] ? `${base ?? ""}\n${MODE_CONFIG[mode]}` : base;

const snapshotterOf = (mode: Mode): string | undefined =>
  mode === "overlayfs" ? undefined : mode.startsWith("stargz") ? "stargz" : "soci";

export interface RunContext {
  /** host:port of the registry (the shaping proxy, or the registry itself for readAll). */
  registry: string;
  /** The stargz daemon executable (stargz modes only). */
  stargzBin?: string;
  /** A new directory for this run (short: socket paths live below it). */
  dir: string;
  /** The caller's cleanup: this run's own steps are registered there while it lasts (Ctrl-C). */
  cleanup: Cleanup;
  log: (l: string) => void;
  /** soci daemon config (TOML); a mode's own settings are appended (MODE_CONFIG). */
  daemonConfig?: string;
}

export interface ColdStart {
  mode: Mode;
  /** Pull start → ready line. */
  seconds: number;
  /** Pull start → pull command done (layers mounted, or downloaded and unpacked). */
  pullSeconds: number;
  /** Bytes the proxy delivered (registry → client) from pull start to ready. */
  bytes: number;
  /** Lazy modes: the daemon's process tree at ready (see bench/lib/proc.ts). */
  daemonPeakRssBytes?: number;
  daemonMaxProcessRssBytes?: number;
  /** Peak RSS of each of the daemon's processes, by program. */
  daemonRssByProcess?: Record<string, number>;
  daemonProcesses?: number;
  daemonCpuSeconds?: number;
  pageCacheDropped: boolean;
  /** soci: `N of M layers provided by soci`. */
  pullSummary?: string;
}

interface Started {
  ctd: BenchContainerd;
  snapshotter?: string;
  daemon?: { pid: number; marker: string; log(): string };
}

/** The daemon the mode needs (if any) and a containerd pointed at it. */
async function startServices(mode: Mode, ctx: RunContext, cleanup: Cleanup): Promise<Started> {
  await mkdir(ctx.dir, { recursive: true });
  const snapshotter = snapshotterOf(mode);
  if (snapshotter === "soci") {
    const d = await startDaemon(join(ctx.dir, "d"), cleanup, {
      configToml: daemonConfigOf(mode, ctx.daemonConfig),
    });
    const ctd = await startBenchContainerd(join(ctx.dir, "c"), cleanup, { soci: d.socket });
    return { ctd, snapshotter, daemon: { pid: d.pid, marker: d.root, log: d.log } };
  }
  if (snapshotter === "stargz") {
    if (!ctx.stargzBin) throw new FailedPreconditionError("stargz modes need the stargz daemon");
    const d = await startStargzDaemon(ctx.stargzBin, join(ctx.dir, "g"), cleanup, [ctx.registry]);
    const ctd = await startBenchContainerd(join(ctx.dir, "c"), cleanup, { stargz: d.socket });
    return { ctd, snapshotter, daemon: { pid: d.pid, marker: d.dir, log: d.log } };
  }
  return { ctd: await startBenchContainerd(join(ctx.dir, "c"), cleanup) };
}

/** The pull command of `mode`; returns what it printed. */
async function pull(mode: Mode, ref: string, s: Started): Promise<string> {
  const withLog = (e: Error) =>
    new FailedPreconditionError(`${e.message}${s.daemon ? `\ndaemon log:\n${s.daemon.log().slice(-4000)}` : ""}`, {
      cause: e,
    });
  if (mode === "overlayfs") return (await s.ctd.ctr(["images", "pull", "--plain-http", ref])).stdout;
  if (s.snapshotter === "soci")
    return (await s.ctd.ctr(["image", "rpull", "--plain-http", ref], SOCI_BIN).catch((e) => Promise.reject(withLog(e))))
      .stdout;
  return (
    await s.ctd
      .ctr(["images", "rpull", "--plain-http", "--snapshotter", "stargz", ref], CTR_REMOTE_BIN)
      .catch((e) => Promise.reject(withLog(e)))
  ).stdout;
}

/** Resolves with the time `line` appeared on the child's stdout; rejects if it exits first or `timeoutMs` passes. */
function whenPrinted(
  child: ChildProcess,
  line: string,
  timeoutMs: number,
): Promise<{ at: number; exited: Promise<number | null> }> {
  let out = "";
  let err = "";
  const exited = new Promise<number | null>((resolve) => child.once("close", (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new DeadlineExceededError(`no "${line}" within ${timeoutMs} ms: ${out}${err}`)),
      timeoutMs,
    );
    child.stdout!.on("data", (d: Buffer) => {
      const at = performance.now();
      const had = out.split("\n").includes(line);
      out += d.toString();
      if (!had && out.split("\n").includes(line)) {
        clearTimeout(timer);
        resolve({ at, exited });
      }
    });
    child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new FailedPreconditionError(`the container exited ${code} before printing "${line}": ${out}${err}`));
    });
  });
}

/** One cold start through `proxy`; everything it started is stopped and removed before it returns. */
export async function coldStart(
  mode: Mode,
  repo: string,
  command: string[],
  proxy: ShapingProxy,
  ctx: RunContext,
  timeoutMs = 300_000,
): Promise<ColdStart> {
  const cleanup = new Cleanup();
  const detach = ctx.cleanup.add(`${mode} run`, () => cleanup.run());
  try {
    const s = await startServices(mode, ctx, cleanup);
    const ref = `${ctx.registry}/${repo}:${tagOf(mode)}`;
    const pageCacheDropped = await dropPageCache(ctx.log);
    proxy.resetCounters();
    const t0 = performance.now();
    const printed = await pull(mode, ref, s);
    const t1 = performance.now();
    const child = s.ctd.spawnCtr([
      "run",
      "--rm",
      ...(s.snapshotter ? ["--snapshotter", s.snapshotter] : []),
      "--runc-root",
      join(ctx.dir, "runc"),
      ref,
      `bench-${mode}`,
      ...command,
    ]);
    cleanup.add("ctr run", () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    });
    const ready = await whenPrinted(child, "ready", timeoutMs).catch((e: Error) => {
      throw new FailedPreconditionError(
        `${e.message}${s.daemon ? `\ndaemon log:\n${s.daemon.log().slice(-4000)}` : ""}`,
        {
          cause: e,
        },
      );
    });
    const bytes = proxy.downstreamBytes();
    const usage = s.daemon ? await treeUsage(s.daemon.pid, s.daemon.marker) : undefined;
    const code = await ready.exited;
    if (code !== 0) throw new FailedPreconditionError(`ctr run exited ${code}`);
    const summary = /provided by soci/.test(printed) ? printed.trim().split("\n").pop() : undefined;
    return {
      mode,
      seconds: (ready.at - t0) / 1000,
      pullSeconds: (t1 - t0) / 1000,
      bytes,
      ...(usage
        ? {
            daemonPeakRssBytes: usage.peakRssBytes,
            daemonMaxProcessRssBytes: usage.maxProcessPeakRssBytes,
            daemonRssByProcess: usage.byProcess,
            daemonProcesses: usage.processes,
            daemonCpuSeconds: usage.cpuSeconds,
          }
        : {}),
      pageCacheDropped,
      ...(summary ? { pullSummary: summary } : {}),
    };
  } finally {
    await detach();
  }
}

export interface ReadAll {
  mode: Mode;
  /** Pull start → the image is on disk (overlayfs) or its whole tree has been read (lazy modes). */
  seconds: number;
  pullSeconds: number;
  /** Lazy modes: pull start → the image's snapshot mounted. */
  mountSeconds?: number;
  /** Lazy modes: bytes of the tar stream (every file read to its end). */
  tarBytes?: number;
  daemonPeakRssBytes?: number;
  /** Peak RSS of each of the daemon's processes, by program; CPU seconds of them all. */
  daemonRssByProcess?: Record<string, number>;
  daemonCpuSeconds?: number;
  pageCacheDropped: boolean;
}

/** `tar -cf - .` in `dir`, its output counted (GNU tar skips reading files when it writes to /dev/null itself). */
function tarBytes(dir: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const tar = spawn("tar", ["-C", dir, "-cf", "-", "."], { stdio: ["ignore", "pipe", "pipe"] });
    let n = 0;
    let err = "";
    tar.stdout!.on("data", (d: Buffer) => (n += d.length));
    tar.stderr!.on("data", (d: Buffer) => (err += d.toString()));
    tar.on("error", reject);
    tar.on("close", (code) =>
      code === 0 ? resolve(n) : reject(new FailedPreconditionError(`tar -C ${dir} exited ${code}: ${err.trim()}`)),
    );
  });
}

/**
 * The whole image, from a registry with no shaping: overlayfs = containerd's pull (download +
 * unpack); lazy modes = their pull, a mount of the image's snapshot and a full `tar` read of it.
 */
export async function readAll(mode: Mode, repo: string, ctx: RunContext): Promise<ReadAll> {
  const cleanup = new Cleanup();
  const detach = ctx.cleanup.add(`${mode} read-all`, () => cleanup.run());
  try {
    const s = await startServices(mode, ctx, cleanup);
    const ref = `${ctx.registry}/${repo}:${tagOf(mode)}`;
    const pageCacheDropped = await dropPageCache(ctx.log);
    const t0 = performance.now();
    await pull(mode, ref, s);
    const t1 = performance.now();
    if (!s.snapshotter) return { mode, seconds: (t1 - t0) / 1000, pullSeconds: (t1 - t0) / 1000, pageCacheDropped };
    // `ctr images mount` would unpack again (it wants the layer blobs in the content store, which a
    // lazy pull leaves empty): mount the top of the pulled snapshot chain by hand instead
    const sn = ["snapshots", "--snapshotter", s.snapshotter];
    const rows = (await s.ctd.ctr([...sn, "ls"])).stdout
      .trim()
      .split("\n")
      .slice(1)
      .map((l) => l.trim().split(/\s+/));
    const parents = new Set(rows.map((r) => (r.length === 3 ? r[1] : "")));
    const tops = rows.filter((r) => r.at(-1) === "Committed" && !parents.has(r[0]));
    if (tops.length !== 1)
      throw new FailedPreconditionError(`expected one top snapshot after the pull, got: ${JSON.stringify(rows)}`);
    const target = join(ctx.dir, "m");
    await mkdir(target, { recursive: true });
    await s.ctd.ctr([...sn, "prepare", "read-all", tops[0]![0]!]);
    const mount = (await s.ctd.ctr([...sn, "mounts", target, "read-all"])).stdout.trim();
    await run("sh", ["-c", mount]);
    cleanup.add("read-all mount", () => run("umount", [target]).then(() => undefined));
    const t2 = performance.now();
    const n = await tarBytes(target);
    const t3 = performance.now();
    const usage = s.daemon ? await treeUsage(s.daemon.pid, s.daemon.marker) : undefined;
    return {
      mode,
      seconds: (t3 - t0) / 1000,
      pullSeconds: (t1 - t0) / 1000,
      mountSeconds: (t2 - t0) / 1000,
      tarBytes: n,
      ...(usage
        ? {
            daemonPeakRssBytes: usage.peakRssBytes,
            daemonRssByProcess: usage.byProcess,
            daemonCpuSeconds: usage.cpuSeconds,
          }
        : {}),
      pageCacheDropped,
    };
  } finally {
    await detach();
  }
}
