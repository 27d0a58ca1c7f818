// The services a lazy pull needs, each in a directory of its own and registered for cleanup:
// Debian's `docker-registry` (Distribution 2.8), a private containerd (root, state, sockets in the
// directory; CRI off; `proxy_plugins.soci` when asked) and our `soci-snapshotter-grpc` daemon
// (with the FUSE host it starts, docs/snapshotter.md §5.8). Used by `soci demo` and by `bench/e2e.ts`.
import { CanceledError, DeadlineExceededError, FailedPreconditionError, UnavailableError } from "../errors/errors.js";
import { SetupError } from "./setup.js";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { FuseHostConnection } from "../fuse-host/connection.js";
import { defaultHostAddress } from "../fuse-host/protocol.js";
import { type Cleanup, unmountUnder } from "./cleanup.js";

const execFileP = promisify(execFile);

export const REGISTRY_BIN = process.env.DOCKER_REGISTRY_BIN ?? "/usr/bin/docker-registry";
export const CONTAINERD_BIN = process.env.CONTAINERD_BIN ?? "/usr/bin/containerd";
export const CTR_BIN = process.env.CTR_BIN ?? "/usr/bin/ctr";
/** This checkout's executables (the module sits at src/demo or dist/demo). */
/** The `soci` executable (SOCI_CLI_BIN overrides it, e.g. to measure another build). */
export const SOCI_BIN = process.env.SOCI_CLI_BIN || fileURLToPath(new URL("../../bin/soci.js", import.meta.url));
/** The daemon executable (SOCI_DAEMON_BIN overrides it, e.g. to measure another build). */
export const DAEMON_BIN =
  process.env.SOCI_DAEMON_BIN || fileURLToPath(new URL("../../bin/soci-snapshotter-grpc.js", import.meta.url));

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      const port = typeof a === "object" && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

function exitOf(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((r) => child.once("exit", () => r()));
}

/** SIGTERM (or `signal`), then SIGKILL after `graceMs`. */
export async function stopProcess(
  child: ChildProcess,
  signal: NodeJS.Signals = "SIGTERM",
  graceMs = 10_000,
): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = exitOf(child);
  child.kill(signal);
  const t = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await exited;
  clearTimeout(t);
}

/** Keeps the last `max` characters a child printed. */
function capture(child: ChildProcess, max = 64 << 10): () => string {
  let out = "";
  const add = (d: Buffer) => {
    out += d.toString();
    if (out.length > 2 * max) out = out.slice(-max);
  };
  child.stdout?.on("data", add);
  child.stderr?.on("data", add);
  return () => out.slice(-max);
}

async function until(
  what: string,
  probe: () => Promise<boolean>,
  died: () => boolean,
  log: () => string,
  ms: number,
  cleanup: Cleanup,
): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (cleanup.aborted) throw new CanceledError(`interrupted while starting ${what}`);
    if (await probe()) return;
    if (died()) throw new UnavailableError(`${what} exited during startup:\n${log()}`);
    if (Date.now() > deadline)
      throw new DeadlineExceededError(`${what} did not become ready within ${ms} ms:\n${log()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface Registry {
  host: string;
  stop(): Promise<void>;
}

/** docker-registry on 127.0.0.1:<free port>, storage under `dir`. */
export async function startRegistry(dir: string, cleanup: Cleanup): Promise<Registry> {
  if (!existsSync(REGISTRY_BIN))
    throw new SetupError(`${REGISTRY_BIN} not found: install the Debian package docker-registry`);
  await mkdir(dir, { recursive: true });
  const host = `127.0.0.1:${await freePort()}`;
  const config = join(dir, "config.yml");
  await writeFile(
    config,
    [
      "version: 0.1",
      "log:",
      "  level: error",
      "  accesslog:",
      "    disabled: true",
      "storage:",
      "  filesystem:",
      `    rootdirectory: ${join(dir, "data")}`,
      "http:",
      `  addr: ${host}`,
      "",
    ].join("\n"),
  );
  const child = spawn(REGISTRY_BIN, ["serve", config], { stdio: ["ignore", "pipe", "pipe"] });
  const log = capture(child);
  const stop = cleanup.add("registry", () => stopProcess(child, "SIGTERM", 3000));
  const dead = () => child.exitCode !== null || child.signalCode !== null;
  await until(
    "docker-registry",
    () =>
      fetch(`http://${host}/v2/`).then(
        (r) => r.ok,
        () => false,
      ),
    dead,
    log,
    15_000,
    cleanup,
  );
  return { host, stop };
}

export interface Containerd {
  socket: string;
  dir: string;
  /** `ctr --address <socket> ...args`; rejects with ctr's stderr. */
  ctr(args: string[]): Promise<{ stdout: string; stderr: string }>;
  /** ctr as a child process (stdout/stderr piped). */
  spawnCtr(args: string[]): ChildProcess;
  log(): string;
  stop(): Promise<void>;
}

/** A private containerd in `dir` (which must be short: unix socket paths end at 108 bytes). */
export async function startContainerd(
  dir: string,
  cleanup: Cleanup,
  opts: { sociSocket?: string } = {},
): Promise<Containerd> {
  if (!existsSync(CONTAINERD_BIN))
    throw new SetupError(`${CONTAINERD_BIN} not found: install the Debian package containerd`);
  const root = join(dir, "root");
  const state = join(dir, "state");
  const socket = join(dir, "c.sock");
  await mkdir(root, { recursive: true });
  await mkdir(state, { recursive: true });
  const q = (s: string) => JSON.stringify(s);
  const lines = [
    "version = 2",
    `root = ${q(root)}`,
    `state = ${q(state)}`,
    `disabled_plugins = ["io.containerd.grpc.v1.cri"]`,
    "[grpc]",
    `  address = ${q(socket)}`,
    "[ttrpc]",
    `  address = ${q(socket + ".ttrpc")}`,
    `[plugins."io.containerd.internal.v1.opt"]`,
    `  path = ${q(join(root, "opt"))}`,
  ];
  if (opts.sociSocket) lines.push(`[proxy_plugins.soci]`, `  type = "snapshot"`, `  address = ${q(opts.sociSocket)}`);
  const configPath = join(dir, "config.toml");
  await writeFile(configPath, lines.join("\n") + "\n");
  const child = spawn(CONTAINERD_BIN, ["--config", configPath], { stdio: ["ignore", "pipe", "pipe"] });
  const log = capture(child);
  const stop = cleanup.add("containerd", async () => {
    await stopProcess(child);
    await unmountUnder(dir);
    await rm(dir, { recursive: true, force: true });
  });
  const ctr = async (args: string[]) => {
    try {
      return await execFileP(CTR_BIN, ["--address", socket, ...args], { maxBuffer: 64 << 20 });
    } catch (e) {
      const err = e as Error & { stderr?: string };
      throw new FailedPreconditionError(`ctr ${args.join(" ")}: ${err.stderr?.trim() || err.message}`, { cause: e });
    }
  };
  const dead = () => child.exitCode !== null || child.signalCode !== null;
  // each probe is an undo step while it runs: a Ctrl-C leaves no `ctr` waiting out its timeout
  const probe = async () => {
    const child = execFile(CTR_BIN, ["--address", socket, "--timeout", "2s", "version"]);
    const exited = new Promise<boolean>((resolve) => child.once("close", (code) => resolve(code === 0)));
    const kill = cleanup.add("ctr version probe", () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    });
    try {
      return await exited;
    } finally {
      await kill();
    }
  };
  await until("containerd", probe, dead, log, 30_000, cleanup);
  return {
    socket,
    dir,
    ctr,
    log,
    stop,
    spawnCtr: (args) => spawn(CTR_BIN, ["--address", socket, ...args], { stdio: ["ignore", "pipe", "pipe"] }),
  };
}

export interface Daemon {
  pid: number;
  socket: string;
  root: string;
  log(): string;
  /**
   * Peak resident set (VmHWM) and CPU time (utime + stime) so far, of the daemon and the FUSE host
   * serving its layers together (each one's peak, summed: an upper bound of their joint peak).
   */
  usage(): Promise<{ peakRssBytes: number; cpuSeconds: number }>;
  stop(): Promise<void>;
}

let clockTicks: number | undefined;

/** Peak RSS and CPU seconds of a live process, from /proc. */
export async function processUsage(pid: number): Promise<{ peakRssBytes: number; cpuSeconds: number }> {
  clockTicks ??=
    Number((await execFileP("getconf", ["CLK_TCK"]).catch(() => ({ stdout: "100" }))).stdout.trim()) || 100;
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const hwm = /^VmHWM:\s+(\d+) kB$/m.exec(status);
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  // fields after the parenthesised command name: state is field 3, utime 14, stime 15
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(rest[11]) + Number(rest[12]);
  return { peakRssBytes: hwm ? Number(hwm[1]) * 1024 : 0, cpuSeconds: ticks / clockTicks };
}

/** Our snapshotter daemon with root, socket and config in `dir`; resolves once it serves. */
export async function startDaemon(
  dir: string,
  cleanup: Cleanup,
  opts: { configToml?: string; logLevel?: string } = {},
): Promise<Daemon> {
  await mkdir(dir, { recursive: true });
  const socket = join(dir, "soci.sock");
  const root = join(dir, "root");
  const config = join(dir, "config.toml");
  await writeFile(config, opts.configToml ?? "");
  const child = spawn(
    DAEMON_BIN,
    ["--address", socket, "--root", root, "--config", config, "--log-level", opts.logLevel ?? "info"],
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let started = false;
  let out = "";
  const onData = (d: Buffer) => {
    out += d.toString();
    if (out.length > 1 << 20) out = out.slice(-(256 << 10));
    if (out.includes("successfully started")) started = true;
  };
  child.stdout!.on("data", onData);
  child.stderr!.on("data", onData);
  // the FUSE host the daemon started (it outlives the daemon by design): asked once it serves
  let host: number | undefined;
  const hostPid = async () => {
    if (host !== undefined) return host;
    const c = new FuseHostConnection(defaultHostAddress(root));
    host = await c.info(5_000).then(
      (i) => i.pid,
      () => undefined,
    );
    c.close();
    return host;
  };
  const stop = cleanup.add("soci-snapshotter-grpc", async () => {
    const h = await hostPid();
    await stopProcess(child, "SIGINT");
    if (h !== undefined) await stopPid(h);
    await unmountUnder(dir);
    await rm(dir, { recursive: true, force: true });
  });
  const dead = () => child.exitCode !== null || child.signalCode !== null;
  await until(
    "soci-snapshotter-grpc",
    async () => started,
    dead,
    () => out,
    30_000,
    cleanup,
  );
  const usage = async () => {
    const d = await processUsage(child.pid!);
    const h = await hostPid();
    const u = h === undefined ? undefined : await processUsage(h).catch(() => undefined);
    return u ? { peakRssBytes: d.peakRssBytes + u.peakRssBytes, cpuSeconds: d.cpuSeconds + u.cpuSeconds } : d;
  };
  return { pid: child.pid!, socket, root, log: () => out, usage, stop };
}

/** Stops a process that is not our child (SIGTERM, SIGKILL after `graceMs`). */
async function stopPid(pid: number, graceMs = 10_000): Promise<void> {
  const alive = () => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  if (!alive()) return;
  process.kill(pid, "SIGTERM");
  for (const end = Date.now() + graceMs; alive() && Date.now() < end; ) await new Promise((r) => setTimeout(r, 50));
  if (alive()) process.kill(pid, "SIGKILL");
}
