// Starts a private containerd (the system's /usr/bin/containerd, as root) with its own config,
// root, state and sockets in a temp dir, beside any other instance. The CRI plugin is disabled
// unless asked for; `proxyPlugins` adds proxy snapshotters (e.g. `soci` → our daemon's socket).
// stop() kills it, unmounts anything left under its directories and removes them.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const execFileP = promisify(execFile);

export const CONTAINERD_BIN = process.env.CONTAINERD_BIN ?? "/usr/bin/containerd";
export const CTR_BIN = process.env.CTR_BIN ?? "/usr/bin/ctr";

export interface ContainerdOptions {
  /** `[proxy_plugins.<name>]` entries: type `snapshot` (default) and the plugin's socket. */
  proxyPlugins?: Record<string, { address: string; type?: string }>;
  /** Keep the CRI plugin (off by default: it is slow to start and not needed). */
  cri?: boolean;
  /** Extra TOML appended to the config. */
  extraConfig?: string;
  /** How long to wait for the socket to answer (default 20 s). */
  startTimeoutMs?: number;
}

export interface Containerd {
  /** `unix://<socket>` */
  address: string;
  socket: string;
  dir: string;
  root: string;
  state: string;
  configPath: string;
  /** containerd's stdout+stderr so far (for failure messages). */
  log(): string;
  /** Runs `ctr --address <socket> ...args`; rejects with ctr's stderr on failure. */
  ctr(args: string[], opts?: { namespace?: string }): Promise<{ stdout: string; stderr: string }>;
  stop(): Promise<void>;
}

function toml(s: string): string {
  return JSON.stringify(s);
}

/** Mount points at or below `dir`, deepest first. */
function mountsUnder(dir: string): string[] {
  const out: string[] = [];
  for (const line of readFileSync("/proc/self/mounts", "utf8").split("\n")) {
    const target = line.split(" ")[1]?.replace(/\\040/g, " ");
    if (target && (target === dir || target.startsWith(dir + "/"))) out.push(target);
  }
  return out.sort((a, b) => b.length - a.length);
}

async function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return true;
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    child.once("exit", () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

export async function startContainerd(opts: ContainerdOptions = {}): Promise<Containerd> {
  // short path: unix socket paths are limited to 108 bytes
  const dir = mkdtempSync(join(tmpdir(), "ctd-"));
  const root = join(dir, "root");
  const state = join(dir, "state");
  const socket = join(dir, "containerd.sock");
  const configPath = join(dir, "config.toml");
  await mkdir(root, { recursive: true });
  await mkdir(state, { recursive: true });
  const lines = [
    "version = 2",
    `root = ${toml(root)}`,
    `state = ${toml(state)}`,
    opts.cri ? "" : `disabled_plugins = ["io.containerd.grpc.v1.cri"]`,
    "[grpc]",
    `  address = ${toml(socket)}`,
    "[ttrpc]",
    `  address = ${toml(socket + ".ttrpc")}`,
    // the opt plugin would otherwise use /opt/containerd
    `[plugins."io.containerd.internal.v1.opt"]`,
    `  path = ${toml(join(root, "opt"))}`,
  ];
  for (const [name, p] of Object.entries(opts.proxyPlugins ?? {})) {
    lines.push(
      `[proxy_plugins.${toml(name)}]`,
      `  type = ${toml(p.type ?? "snapshot")}`,
      `  address = ${toml(p.address)}`,
    );
  }
  if (opts.extraConfig) lines.push(opts.extraConfig);
  writeFileSync(configPath, lines.join("\n") + "\n");

  let output = "";
  const child = spawn(CONTAINERD_BIN, ["--config", configPath], { stdio: ["ignore", "pipe", "pipe"] });
  child.stdout!.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  // if the test process ends without stop() (a timed-out hook), do not leave containerd running
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);
  void exited.then(() => process.off("exit", killOnExit));

  const ctr = async (args: string[], o: { namespace?: string } = {}) => {
    const ns = o.namespace ? ["--namespace", o.namespace] : [];
    try {
      return await execFileP(CTR_BIN, ["--address", socket, ...ns, ...args], { maxBuffer: 64 << 20 });
    } catch (e) {
      const err = e as Error & { stderr?: string };
      throw new Error(`ctr ${args.join(" ")}: ${err.stderr?.trim() || err.message}`, { cause: e });
    }
  };

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      if (!(await waitExit(child, 10_000))) {
        child.kill("SIGKILL");
        await waitExit(child, 5_000);
      }
    }
    for (const m of mountsUnder(dir)) {
      await execFileP("umount", ["-l", m]).catch(() => undefined);
    }
    rmSync(dir, { recursive: true, force: true });
  };

  // ready when `ctr version` reaches the server
  const deadline = Date.now() + (opts.startTimeoutMs ?? 20_000);
  for (;;) {
    const died = await Promise.race([
      exited.then(() => true),
      new Promise<false>((r) => setTimeout(() => r(false), 100)),
    ]);
    if (died) {
      await stop();
      throw new Error(`containerd exited during startup:\n${output}`);
    }
    const ok = await execFileP(CTR_BIN, ["--address", socket, "--timeout", "2s", "version"]).then(
      () => true,
      () => false,
    );
    if (ok) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`containerd did not answer on ${socket} within ${opts.startTimeoutMs ?? 20_000} ms:\n${output}`);
    }
  }
  return { address: `unix://${socket}`, socket, dir, root, state, configPath, log: () => output, ctr, stop };
}

/** `ctr run --rm` of a shell `script` in `image` on the soci snapshotter (runc state in `runcRoot`); its stdout. */
export async function runOnSoci(
  ctd: Containerd,
  opts: { image: string; id: string; script: string; runcRoot: string },
): Promise<string> {
  const args = ["run", "--rm", "--snapshotter", "soci", "--runc-root", opts.runcRoot, opts.image, opts.id];
  return (await ctd.ctr([...args, "/bin/sh", "-c", opts.script])).stdout;
}
