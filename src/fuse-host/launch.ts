// Starting a FUSE host so that nothing that stops the daemon stops it (docs/snapshotter.md §5.8):
// outside systemd a detached process (its own session, stdio on a log file, not waited for); under
// systemd a transient unit of its own (`systemd-run`), because a unit's stop or restart kills every
// process of its control group, however detached (stargz-snapshotter's issue #2387). The same
// command line serves an upgrade: the running host starts its successor with `--takeover`.
import { spawn, execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, open, rename, stat } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { UnavailableError } from "../errors/errors.js";
import { hostDir } from "./protocol.js";

const execFileP = promisify(execFile);

/** `[fuse_manager] start`: how the daemon starts a host when none answers. */
export type StartMode = "auto" | "spawn" | "systemd" | "none";

/** What the bin's `#!` line gives node (see bin/soci-snapshotter-grpc.js): the daemon's memory settings. */
export const HOST_NODE_FLAGS = ["--max-semi-space-size=2", "--expose-gc"];
export const HOST_GLIBC_TUNABLES = "glibc.malloc.arena_max=1";

/** This package's host executable. */
export function defaultHostExecutable(): string {
  return fileURLToPath(new URL("../../bin/soci-fuse-host.js", import.meta.url));
}

export interface HostCommand {
  root: string;
  address: string;
  /** `[fuse_manager] path`; default: this package's bin/soci-fuse-host.js */
  executable?: string;
  logLevel: string;
  /** Exit when idle this long (0: never). */
  idleExitSec: number;
  takeover?: boolean;
}

/** The argv that runs a host: a script is run by this node with the memory flags, anything else directly. */
export function hostArgv(cmd: HostCommand, node: { execPath: string; flags: string[] } = defaultNode()): string[] {
  const exe = cmd.executable || defaultHostExecutable();
  const args = [
    "--root",
    cmd.root,
    "--address",
    cmd.address,
    "--log-level",
    cmd.logLevel,
    "--idle-exit-sec",
    String(cmd.idleExitSec),
    ...(cmd.takeover ? ["--takeover"] : []),
  ];
  return /\.[cm]?js$/.test(exe) ? [node.execPath, ...node.flags, exe, ...args] : [exe, ...args];
}

function defaultNode(): { execPath: string; flags: string[] } {
  return { execPath: process.execPath, flags: HOST_NODE_FLAGS };
}

/**
 * The environment a host runs with: ours, plus the malloc settings, minus systemd's hand-over to
 * this process (its readiness socket, socket activation): a host telling the daemon's unit that it
 * is ready would become that unit's main process.
 */
export function hostEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const { NOTIFY_SOCKET: _n, LISTEN_PID: _p, LISTEN_FDS: _f, LISTEN_FDNAMES: _fn, ...rest } = env;
  return { ...rest, GLIBC_TUNABLES: env.GLIBC_TUNABLES ?? HOST_GLIBC_TUNABLES };
}

/** Whether systemd is the init system here (sd_booted). */
export function systemdBooted(): boolean {
  return existsSync("/run/systemd/system");
}

/** The transient unit a daemon starts for the host of `root`. */
export function transientUnitName(root: string): string {
  return `soci-fuse-host-${createHash("sha256").update(root).digest("hex").slice(0, 12)}.service`;
}

/**
 * `systemd-run` for a host in a unit of its own: `Type=notify` with `NotifyAccess=all` so that an
 * upgrade can hand the main pid to the successor, control-group kill so that a stop reaches the
 * retired hosts too (each unmounts what it serves).
 */
export function systemdRunArgv(cmd: HostCommand, env: NodeJS.ProcessEnv = process.env): string[] {
  const keep = ["DOCKER_CONFIG", "HOME", "PATH"].filter((k) => env[k] !== undefined);
  return [
    "systemd-run",
    `--unit=${transientUnitName(cmd.root)}`,
    "--collect",
    "--quiet",
    "--description=soci snapshotter FUSE host",
    "--property=Type=notify",
    "--property=NotifyAccess=all",
    "--property=KillMode=control-group",
    "--property=TimeoutStopSec=90",
    "--property=LimitNOFILE=1048576",
    `--setenv=GLIBC_TUNABLES=${hostEnv(env).GLIBC_TUNABLES}`,
    ...keep.map((k) => `--setenv=${k}=${env[k]}`),
    "--",
    ...hostArgv(cmd),
  ];
}

/** Where a host started by the daemon (outside systemd) writes its log. */
export function hostLogFile(root: string): string {
  return join(hostDir(root), "host.log");
}

/** Log files above this size are moved to `host.log.1` when a host starts. */
const LOG_ROTATE_BYTES = 16 << 20;

export interface Started {
  /** The spawned process' pid (spawn), or undefined (systemd). */
  pid?: number;
  /** Resolves with the exit code if the spawned process ends (spawn only). */
  exited?: Promise<number | null>;
  /** Where its output goes. */
  log: string;
}

/** Starts a host the way `mode` says; returns without waiting for it to serve. */
export async function startHost(mode: Exclude<StartMode, "none">, cmd: HostCommand): Promise<Started> {
  const viaSystemd = mode === "systemd" || (mode === "auto" && systemdBooted());
  if (viaSystemd) {
    const [bin, ...args] = systemdRunArgv(cmd);
    try {
      await execFileP(bin!, args, { timeout: 30_000 });
    } catch (e) {
      throw new UnavailableError(
        `systemd-run could not start the FUSE host: ${(e as { stderr?: string }).stderr?.trim() || (e as Error).message}`,
        { cause: e },
      );
    }
    return { log: `journalctl -u ${transientUnitName(cmd.root)}` };
  }
  return spawnDetached(cmd);
}

/** A host as a detached process: its own session, output appended to `<root>/fuse-host/host.log`. */
export async function spawnDetached(cmd: HostCommand): Promise<Started> {
  await mkdir(hostDir(cmd.root), { recursive: true, mode: 0o700 });
  const logPath = hostLogFile(cmd.root);
  const size = await stat(logPath).then(
    (s) => s.size,
    () => 0,
  );
  if (size > LOG_ROTATE_BYTES) await rename(logPath, `${logPath}.1`).catch(() => undefined);
  const out = await open(logPath, "a", 0o600);
  try {
    const [bin, ...args] = hostArgv(cmd);
    const child = spawn(bin!, args, {
      detached: true,
      stdio: ["ignore", out.fd, out.fd],
      env: hostEnv(),
    });
    const exited = new Promise<number | null>((resolve) => {
      child.once("exit", (code) => resolve(code));
      child.once("error", () => resolve(-1));
    });
    child.unref();
    return { pid: child.pid, exited, log: logPath };
  } finally {
    await out.close();
  }
}

/**
 * An upgrade (SIGHUP): the running host starts its successor from the executable path it was
 * started with (after a package upgrade, the new files), with `--takeover`, sharing its output and
 * its environment (under systemd the successor tells the host's unit it is the main process now).
 */
export function spawnSuccessor(cmd: HostCommand): number | undefined {
  const [bin, ...args] = hostArgv({ ...cmd, takeover: true });
  const env = { ...process.env, GLIBC_TUNABLES: process.env.GLIBC_TUNABLES ?? HOST_GLIBC_TUNABLES };
  const child = spawn(bin!, args, { detached: true, stdio: ["ignore", "inherit", "inherit"], env });
  child.unref();
  return child.pid;
}
