// One cold start, measured: a fresh containerd (and, for soci, a fresh daemon) in a new directory,
// then the clock runs from the start of the pull until the container prints its ready line.
//   overlayfs: `ctr images pull --plain-http <ref>` (containerd's default snapshotter), `ctr run`
//   soci:      `soci image rpull --plain-http <ref>` (layers mounted lazily), `ctr run --snapshotter soci`
//   parallel:  the same against a daemon in parallel pull mode (every layer downloaded and unpacked
//              by the daemon, unpacks overlapping downloads), for images without a SOCI index
// The registry is reached through a shaping proxy whose byte counter tells what crossed the link.
import { DeadlineExceededError, errorCodeOf, FailedPreconditionError, SociError } from "../errors/errors.js";
import { execFile, type ChildProcess } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { Cleanup } from "./cleanup.js";
import { SOCI_BIN, startContainerd, startDaemon, type Daemon } from "./services.js";
import type { ShapingProxy } from "./shaping-proxy.js";

const execFileP = promisify(execFile);

export type Mode = "overlayfs" | "soci" | "parallel";

/** The daemon's config in parallel pull mode (the blobs are not kept: no content store to point at). */
const PARALLEL_CONFIG = "[pull_modes.parallel_pull_unpack]\nenable = true\ndiscard_unpacked_layers = true\n";

export interface PullToReadyOptions {
  mode: Mode;
  /** The image ref through the proxy (host = proxy). */
  ref: string;
  proxy: ShapingProxy;
  /** A new directory for this run's containerd/daemon (short: socket paths). */
  dir: string;
  /** The container's command line. */
  command: string[];
  /** The line the workload prints when ready (default `ready`). */
  readyLine?: string;
  /** Daemon config (TOML) for soci runs. */
  daemonConfig?: string;
  /** Gives up after this long (default 10 min). */
  timeoutMs?: number;
  /** The caller's cleanup: this run's own steps are registered there too while it lasts (Ctrl-C). */
  cleanup?: Cleanup;
}

export interface PullToReadyResult {
  mode: Mode;
  /** Pull start → ready line. */
  seconds: number;
  /** Pull start → pull command done. */
  pullSeconds: number;
  /** Bytes the proxy delivered (registry → client) from pull start to ready. */
  bytes: number;
  /** soci only: the daemon's peak RSS (VmHWM) and CPU time (utime + stime) at ready. */
  daemonPeakRssBytes?: number;
  daemonCpuSeconds?: number;
  /** soci only: `N of M layers provided by soci`. */
  pullSummary?: string;
  /** What the container printed. */
  output: string;
}

function waitForLine(
  child: ChildProcess,
  line: string,
  timeoutMs: number,
): Promise<{ at: number; exited: Promise<{ code: number | null; out: string }> }> {
  let out = "";
  let err = "";
  const exited = new Promise<{ code: number | null; out: string }>((resolve) =>
    child.once("close", (code) => resolve({ code, out })),
  );
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new DeadlineExceededError(`no "${line}" line within ${timeoutMs} ms; output: ${out}${err}`)),
      timeoutMs,
    );
    child.stdout!.on("data", (d: Buffer) => {
      const at = performance.now();
      const before = out;
      out += d.toString();
      if (!before.split("\n").includes(line) && out.split("\n").includes(line)) {
        clearTimeout(timer);
        resolve({ at, exited });
      }
    });
    child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
    void exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new FailedPreconditionError(`the container exited ${code} before printing "${line}": ${out}${err}`));
    });
  });
}

/** One measured cold start; everything it started is stopped and removed before it returns. */
export async function pullToReady(opts: PullToReadyOptions): Promise<PullToReadyResult> {
  const cleanup = new Cleanup();
  const detach = opts.cleanup?.add(`${opts.mode} run`, () => cleanup.run());
  const readyLine = opts.readyLine ?? "ready";
  const timeoutMs = opts.timeoutMs ?? 600_000;
  try {
    await mkdir(opts.dir, { recursive: true });
    let daemon: Daemon | undefined;
    const ours = opts.mode !== "overlayfs";
    if (ours)
      daemon = await startDaemon(join(opts.dir, "d"), cleanup, {
        configToml: opts.mode === "parallel" ? `${opts.daemonConfig ?? ""}\n${PARALLEL_CONFIG}` : opts.daemonConfig,
      });
    const ctd = await startContainerd(join(opts.dir, "c"), cleanup, daemon ? { sociSocket: daemon.socket } : {});
    const snap = ours ? ["--snapshotter", "soci"] : [];

    opts.proxy.resetCounters();
    const t0 = performance.now();
    let pullSummary: string | undefined;
    if (ours) {
      const r = await execFileP(
        process.execPath,
        [SOCI_BIN, "--address", ctd.socket, "image", "rpull", "--plain-http", opts.ref],
        { maxBuffer: 16 << 20 },
      ).catch((e: Error & { stderr?: string }) => {
        throw new FailedPreconditionError(
          `soci image rpull: ${e.stderr?.trim() || e.message}\ndaemon log:\n${daemon!.log().slice(-4000)}`,
        );
      });
      pullSummary = /provided by soci/.test(r.stdout) ? r.stdout.trim().split("\n").pop() : undefined;
    } else {
      await ctd.ctr(["images", "pull", "--plain-http", opts.ref]);
    }
    const t1 = performance.now();
    const child = ctd.spawnCtr([
      "run",
      "--rm",
      ...snap,
      "--runc-root",
      join(opts.dir, "runc"),
      opts.ref,
      `bench-${opts.mode}`,
      ...opts.command,
    ]);
    const killCtr = cleanup.add("ctr run", () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    });
    const ready = await waitForLine(child, readyLine, timeoutMs).catch((e: Error) => {
      const withLog = `${e.message}${daemon ? `\ndaemon log:\n${daemon.log().slice(-4000)}` : ""}`;
      throw new SociError(errorCodeOf(e) ?? "Unknown", withLog, { cause: e });
    });
    const bytes = opts.proxy.downstreamBytes();
    const usage = daemon ? await daemon.usage() : undefined;
    const done = await ready.exited;
    if (done.code !== 0) throw new FailedPreconditionError(`ctr run exited ${done.code}`);
    await killCtr();
    return {
      mode: opts.mode,
      seconds: (ready.at - t0) / 1000,
      pullSeconds: (t1 - t0) / 1000,
      bytes,
      ...(usage ? { daemonPeakRssBytes: usage.peakRssBytes, daemonCpuSeconds: usage.cpuSeconds } : {}),
      ...(pullSummary ? { pullSummary } : {}),
      output: done.out,
    };
  } finally {
    await (detach ? detach() : cleanup.run());
  }
}
