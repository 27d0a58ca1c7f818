// Runs this checkout's `soci-snapshotter-grpc` (bin/, built with tsc) as a child process for the
// end-to-end daemon tests, and builds small OCI images with umoci (a busybox-static shell plus
// data layers). The daemon is a separate process, so the test may read its FUSE mounts.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { cp, mkdir, readdir, readFile, rm, symlink } from "node:fs/promises";
import { request } from "node:http";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);
export const DAEMON_BIN = new URL("../../bin/soci-snapshotter-grpc.js", import.meta.url).pathname;
export const SOCI_BIN = new URL("../../bin/soci.js", import.meta.url).pathname;

export interface SociDaemon {
  readonly proc: ChildProcess;
  /** stdout+stderr so far */
  log(): string;
  /** the JSON log lines that carry `key` */
  lines(key: string): Array<Record<string, string>>;
  /** resolves when the daemon logged "successfully started"; rejects if it exits first */
  ready: Promise<void>;
  /** resolves with the exit status */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** sends `signal` and waits for the exit (SIGKILL after 20 s; no-op when already gone) */
  stop(signal: NodeJS.Signals): Promise<void>;
}

export function spawnDaemon(opts: {
  address: string;
  root: string;
  config: string;
  logLevel?: string;
  env?: NodeJS.ProcessEnv;
  /** another build's daemon executable (an upgrade) */
  bin?: string;
}): SociDaemon {
  let output = "";
  const proc = spawn(
    opts.bin ?? DAEMON_BIN,
    ["--address", opts.address, "--root", opts.root, "--config", opts.config, "--log-level", opts.logLevel ?? "debug"],
    {
      stdio: ["ignore", "pipe", "pipe"],
      ...(opts.env ? { env: opts.env } : {}),
    },
  );
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once("exit", (code, signal) => resolve({ code, signal })),
  );
  // never leave a daemon behind if the test process ends early
  const killOnExit = () => proc.kill("SIGKILL");
  process.once("exit", killOnExit);
  void exited.then(() => process.off("exit", killOnExit));
  const ready = new Promise<void>((resolve, reject) => {
    const onData = (d: Buffer) => {
      output += d.toString();
      if (output.includes("successfully started")) resolve();
    };
    proc.stdout!.on("data", onData);
    proc.stderr!.on("data", onData);
    void exited.then(({ code, signal }) =>
      reject(new Error(`daemon exited (${code ?? signal}) before it started:\n${output.slice(-4000)}`)),
    );
  });
  ready.catch(() => undefined);
  return {
    proc,
    log: () => output,
    lines: (key) =>
      output
        .split("\n")
        .filter((l) => l.startsWith("{") && l.includes(`"${key}"`))
        .map((l) => JSON.parse(l) as Record<string, string>),
    ready,
    exited,
    async stop(signal) {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill(signal);
      // a daemon that does not stop within 20 s is killed, so a failing run leaves no process behind
      const timer = setTimeout(() => proc.kill("SIGKILL"), 20_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** `fuse.rawBridge` mount points under `root` (from /proc/mounts). */
export async function fuseMountsUnder(root: string): Promise<string[]> {
  return (await readFile("/proc/mounts", "utf8"))
    .split("\n")
    .filter((l) => l.includes(" fuse.rawBridge ") && l.includes(root))
    .map((l) => l.split(" ")[1]!);
}

/** Mount points under `dir` whose server is gone (stat fails: "transport endpoint is not connected"). */
export async function deadMountsUnder(dir: string): Promise<string[]> {
  const dead: string[] = [];
  for (const m of await mountsUnder(dir)) {
    // in a child: never stat a FUSE mount from a process that might serve it; a name that cannot
    // exist, so that the lookup reaches the server (the mountpoint's attributes may be cached)
    const ok = await run("stat", ["-c", "%i", `${m}/.probe-${randomBytes(6).toString("hex")}`], {
      timeout: 10_000,
      env: { ...process.env, LC_ALL: "C" },
    }).then(
      () => true,
      (e: { stderr?: string }) => (e.stderr ?? "").includes("No such file or directory"),
    );
    if (!ok) dead.push(m);
  }
  return dead;
}

/** Every FUSE host process of `root` (docs/snapshotter.md §5.8), active or retired: by its command line's exact `--root`. */
export async function fuseHostPids(root: string): Promise<number[]> {
  const pids: number[] = [];
  for (const pid of await readdir("/proc").catch(() => [] as string[])) {
    if (!/^\d+$/.test(pid)) continue;
    const argv = (await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).split("\0");
    const i = argv.indexOf("--root");
    if (argv.some((a) => a.endsWith("soci-fuse-host.js")) && i >= 0 && argv[i + 1] === root) pids.push(Number(pid));
  }
  return pids.sort((a, b) => a - b);
}

/** Stops the FUSE hosts of `root` running now (SIGTERM: each unmounts its layers) and waits for them to exit. */
export async function stopFuseHosts(root: string, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  const pids = await fuseHostPids(root);
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // gone already
    }
  }
  const left = async () => (await fuseHostPids(root)).filter((p) => pids.includes(p));
  for (let i = 0; i < 200 && (await left()).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
  for (const pid of await left()) process.kill(pid, "SIGKILL");
}

/** Every mount point under `dir` (deepest first): for cleanup. */
export async function mountsUnder(dir: string): Promise<string[]> {
  return (await readFile("/proc/self/mounts", "utf8"))
    .split("\n")
    .map((l) => l.split(" ")[1] ?? "")
    .filter((m) => m === dir || m.startsWith(dir + "/"))
    .sort((a, b) => b.length - a.length);
}

export async function unmountAllUnder(dir: string): Promise<void> {
  for (const m of await mountsUnder(dir)) await run("umount", ["-l", m]).catch(() => undefined);
}

/** A fresh OCI layout `<layout>:latest` with no layers. */
export async function initLayout(layout: string): Promise<void> {
  await run("umoci", ["init", "--layout", layout]);
  await run("umoci", ["new", "--image", `${layout}:latest`]);
  await run("umoci", ["config", "--image", `${layout}:latest`, "--config.cmd", "/bin/sh"]);
}

/** Adds one layer to `<layout>:latest`: `fill` writes into an unpacked rootfs; the diff is repacked. */
export async function addLayer(
  layout: string,
  scratch: string,
  fill: (rootfs: string) => Promise<void>,
): Promise<void> {
  const bundle = join(scratch, `bundle-${randomBytes(4).toString("hex")}`);
  await run("umoci", ["unpack", "--image", `${layout}:latest`, bundle]);
  await fill(join(bundle, "rootfs"));
  await run("umoci", ["repack", "--image", `${layout}:latest`, bundle]);
  await rm(bundle, { recursive: true, force: true });
}

/** The busybox-static shell layer: /bin/busybox and a few applet links. */
export async function busyboxLayer(rootfs: string): Promise<void> {
  await mkdir(join(rootfs, "bin"), { recursive: true });
  await cp("/bin/busybox", join(rootfs, "bin", "busybox"));
  for (const tool of ["sh", "cat", "sha256sum", "ls", "find", "sort", "wc", "head"])
    await symlink("busybox", join(rootfs, "bin", tool));
}

/**
 * containerd redials a restarted proxy plugin with backoff: wait until the snapshotter answers
 * through it. The probe must reach the daemon: `ctr snapshots ls` is answered from containerd's own
 * metadata, so a Prepare (and Remove) of a throwaway snapshot is used instead.
 */
export async function waitForSnapshotter(ctr: (args: string[]) => Promise<unknown>): Promise<void> {
  for (let i = 0; ; i++) {
    const key = `wait-probe-${randomBytes(6).toString("hex")}`;
    try {
      await ctr(["snapshots", "--snapshotter", "soci", "prepare", key]);
      await ctr(["snapshots", "--snapshotter", "soci", "rm", key]);
      return;
    } catch (e) {
      if (i >= 150) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/** The daemon's Prometheus exposition from its `/metrics` unix socket. */
export function scrapeMetrics(socketPath: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path: "/metrics" }, (res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d.toString()));
      res.on("end", () => resolve(body));
    });
    req.on("error", reject);
    req.end();
  });
}
