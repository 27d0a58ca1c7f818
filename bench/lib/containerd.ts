// A private containerd for one benchmark run with any set of proxy snapshotters (`soci`, `stargz`):
// the demo's startContainerd (src/demo/services.ts) knows only `soci`. Same layout and settings:
// root, state and sockets below `dir`, CRI off.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { type Cleanup, unmountUnder } from "../../src/demo/cleanup.js";
import { CONTAINERD_BIN, CTR_BIN, stopProcess } from "../../src/demo/services.js";
import {
  CanceledError,
  DeadlineExceededError,
  FailedPreconditionError,
  UnavailableError,
} from "../../src/errors/errors.js";

const execFileP = promisify(execFile);

export interface BenchContainerd {
  socket: string;
  /** `<bin> --address <socket> ...args` (default bin: ctr); rejects with its stderr. */
  ctr(args: string[], bin?: string): Promise<{ stdout: string; stderr: string }>;
  /** ctr as a child process (stdout/stderr piped). */
  spawnCtr(args: string[]): ChildProcess;
  log(): string;
  stop(): Promise<void>;
}

/** containerd in `dir` (short: socket paths end at 108 bytes) with `snapshotters` (name → socket) as proxy plugins. */
export async function startBenchContainerd(
  dir: string,
  cleanup: Cleanup,
  snapshotters: Record<string, string> = {},
): Promise<BenchContainerd> {
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
    `  address = ${q(`${socket}.ttrpc`)}`,
    `[plugins."io.containerd.internal.v1.opt"]`,
    `  path = ${q(join(root, "opt"))}`,
  ];
  for (const [name, address] of Object.entries(snapshotters))
    lines.push(`[proxy_plugins.${name}]`, `  type = "snapshot"`, `  address = ${q(address)}`);
  const configPath = join(dir, "config.toml");
  await writeFile(configPath, `${lines.join("\n")}\n`);
  const child = spawn(CONTAINERD_BIN, ["--config", configPath], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  const keep = (d: Buffer) => (out = (out + d.toString()).slice(-(64 << 10)));
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  const stop = cleanup.add("containerd", async () => {
    await stopProcess(child);
    await unmountUnder(dir);
    await rm(dir, { recursive: true, force: true });
  });
  const ctr = async (args: string[], bin = CTR_BIN) => {
    try {
      return await execFileP(bin, ["--address", socket, ...args], { maxBuffer: 64 << 20 });
    } catch (e) {
      const err = e as Error & { stderr?: string };
      throw new FailedPreconditionError(`${bin} ${args.join(" ")}: ${err.stderr?.trim() || err.message}`, { cause: e });
    }
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (cleanup.aborted) throw new CanceledError("interrupted while starting containerd");
    if (child.exitCode !== null || child.signalCode !== null) throw new UnavailableError(`containerd exited:\n${out}`);
    const up = await execFileP(CTR_BIN, ["--address", socket, "--timeout", "2s", "version"]).then(
      () => true,
      () => false,
    );
    if (up) break;
    if (Date.now() > deadline) throw new DeadlineExceededError(`containerd did not start within 30 s:\n${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    socket,
    ctr,
    log: () => out,
    stop,
    spawnCtr: (args) => spawn(CTR_BIN, ["--address", socket, ...args], { stdio: ["ignore", "pipe", "pipe"] }),
  };
}
