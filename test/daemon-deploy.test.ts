// The operations files in deploy/: the systemd unit, the example daemon config and the containerd
// snippet. They must parse, agree with each other and with the daemon's defaults, and be accepted
// by the real programs: systemd-analyze verifies the unit, the daemon loads and serves with the
// example config, and containerd (private root, CRI plugin on) loads the snippet and lists the
// soci proxy plugin as ok, with its CRI plugin set up for lazy pulls.
import { afterAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { parse } from "smol-toml";
import { startContainerd, type Containerd } from "./helpers/containerd.js";
import {
  DAEMON_BIN,
  spawnDaemon,
  unmountAllUnder,
  waitForSnapshotter,
  type SociDaemon,
} from "./helpers/soci-daemon.js";

const run = promisify(execFile);
const repo = new URL("..", import.meta.url).pathname;
const deploy = (f: string) => join(repo, "deploy", f);
const SOCKET = "/run/soci-snapshotter-grpc/soci-snapshotter-grpc.sock";

type Table = Record<string, unknown>;
const table = (v: unknown): Table => v as Table;

let dir = "";
let ctd: Containerd | undefined;
let daemon: SociDaemon | undefined;

afterAll(async () => {
  await ctd?.stop().catch(() => undefined);
  await daemon?.stop("SIGINT").catch(() => undefined);
  if (dir) {
    await unmountAllUnder(dir);
    await rm(dir, { recursive: true, force: true });
  }
});

/** `[Service]` keys of a unit file (last value wins, as systemd reads them). */
/** The keys of a unit file's `[Service]` (or another) section. */
async function serviceKeys(path: string, want = "Service"): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  let section = "";
  for (const raw of (await readFile(path, "utf8")).split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = /^\[(.+)\]$/.exec(line);
    if (m) section = m[1]!;
    else if (section === want) {
      const i = line.indexOf("=");
      out[line.slice(0, i)] = line.slice(i + 1);
    }
  }
  return out;
}

describe("deploy/", () => {
  it("the systemd unit verifies and starts the installed daemon on the socket containerd is told about", async () => {
    const { stderr } = await run("systemd-analyze", [
      "verify",
      deploy("soci-snapshotter-grpc.service"),
      deploy("soci-snapshotter-grpc.socket"),
    ]);
    expect(stderr).toBe(""); // not even an unknown key
    const socket = await serviceKeys(deploy("soci-snapshotter-grpc.socket"), "Socket");
    expect(socket.ListenStream).toBe(SOCKET); // systemd holds the socket containerd is told about
    const svc = await serviceKeys(deploy("soci-snapshotter-grpc.service"));
    expect(svc.Restart).toBe("always");
    expect([svc.Type, svc.NotifyAccess]).toEqual(["notify", "all"]); // READY=1 comes from a systemd-notify child
    expect(svc.KillMode ?? "control-group").toBe("control-group"); // SIGTERM: mounts stay for the next start
    const argv = svc.ExecStart!.split(/\s+/);
    const pkg = JSON.parse(await readFile(join(repo, "package.json"), "utf8")) as {
      name: string;
      bin: Record<string, string>;
    };
    // node with the daemon's memory settings, the ones the executable's `#!` line gives it
    expect(argv.slice(0, 4)).toEqual([
      "/usr/bin/node",
      "--max-semi-space-size=2",
      "--expose-gc",
      "--optimize-for-size",
    ]);
    expect(svc.Environment).toMatch(/^GLIBC_TUNABLES=\S+$/);
    expect((await readFile(DAEMON_BIN, "utf8")).split("\n")[0]).toBe(
      `#!/usr/bin/env -S ${svc.Environment} node ${argv.slice(1, 4).join(" ")}`,
    );
    expect(argv[4]).toBe(join("/usr/lib/node_modules", pkg.name, pkg.bin["soci-snapshotter-grpc"]!));
    const flag = (name: string) => argv[argv.indexOf(name) + 1];
    expect(flag("--address")).toBe("fd://"); // socket activation
    expect(flag("--config")).toBe("/etc/soci-snapshotter-grpc/config.toml");
    expect(flag("--root")).toBe("/var/lib/soci-snapshotter-grpc");
    // the flags the unit spells out are the daemon's defaults
    const { stdout: help } = await run("node", [DAEMON_BIN, "--help"]);
    for (const v of [SOCKET, "/etc/soci-snapshotter-grpc/config.toml", "/var/lib/soci-snapshotter-grpc"])
      expect(help).toContain(v); // fd:// falls back to SOCKET
  });

  it("the example daemon config is the reference's defaults, spelled out, and the daemon accepts it", async () => {
    const text = await readFile(deploy("config.toml"), "utf8");
    const cfg = parse(text);
    expect(table(table(cfg.pull_modes).soci_v2).enable).toBe(true);
    expect(table(table(cfg.pull_modes).soci_v1).enable).toBe(false);
    expect(table(cfg.snapshotter).allow_invalid_mounts_on_restart).toBe(false);
    const dump = await run("node", [DAEMON_BIN, "--config", deploy("config.toml"), "config", "dump"]);
    const defaults = await run("node", [DAEMON_BIN, "config", "default"]);
    expect(dump.stdout).toBe(defaults.stdout);
    // the commented mirror example is valid too once uncommented
    const mirrors = text
      .split("\n")
      .filter((l) => /^# *(\[|host|insecure)/.test(l))
      .map((l) => l.replace(/^# ?/, ""))
      .join("\n");
    expect(mirrors).toContain("[resolver.host.");
    dir = await mkdtemp(join(tmpdir(), "soci-deploy-"));
    const withMirror = join(dir, "with-mirror.toml");
    await writeFile(withMirror, `${text}\n${mirrors}\n`);
    const dumped = await run("node", [DAEMON_BIN, "--config", withMirror, "config", "dump"]);
    expect(dumped.stdout).toMatch(
      /\[\[resolver\.host\.'registry\.example\.com'\.mirrors\]\]\n\s+host = 'mirror\.example\.com:5000'\n\s+insecure = true/,
    );
  });

  it("containerd accepts the snippet with the daemon running on deploy/config.toml (CRI plugin on)", async () => {
    const snippet = await readFile(deploy("containerd-config.toml"), "utf8");
    const parsed = parse(snippet);
    expect(parsed.version).toBe(2);
    expect(table(table(parsed.proxy_plugins).soci)).toEqual({ type: "snapshot", address: SOCKET });
    const criContainerd = table(table(table(table(parsed.plugins)["io.containerd.grpc.v1.cri"]).containerd));
    expect(criContainerd).toEqual({ snapshotter: "soci", disable_snapshot_annotations: false });

    dir ||= await mkdtemp(join(tmpdir(), "soci-deploy-"));
    const sock = join(dir, "soci.sock");
    daemon = spawnDaemon({ address: sock, root: join(dir, "root"), config: deploy("config.toml"), logLevel: "info" });
    await daemon.ready;

    // the snippet as-is, only the socket moved into the test's directory; the helper writes its
    // own `version = 2` and private root/state/sockets, and the CRI plugin gets a private CNI dir
    // and a free streaming port so that it starts beside anything else on this machine
    await mkdir(join(dir, "cni", "net.d"), { recursive: true });
    const merged = snippet.replace(/^version = 2$/m, "").replaceAll(SOCKET, sock);
    expect(merged).toContain(sock);
    ctd = await startContainerd({
      cri: true,
      startTimeoutMs: 60_000,
      extraConfig: [
        merged,
        `[plugins."io.containerd.grpc.v1.cri"]`,
        `  stream_server_address = "127.0.0.1"`,
        `  stream_server_port = "0"`,
        `[plugins."io.containerd.grpc.v1.cri".cni]`,
        `  bin_dir = ${JSON.stringify(join(dir, "cni", "bin"))}`,
        `  conf_dir = ${JSON.stringify(join(dir, "cni", "net.d"))}`,
      ].join("\n"),
    });
    const { stdout } = await ctd.ctr(["plugins", "ls"]);
    expect(stdout).toMatch(/io\.containerd\.snapshotter\.v1\s+soci\s+-\s+ok/);
    expect(stdout).toMatch(/io\.containerd\.grpc\.v1\s+cri\s+\S+\s+ok/);
    expect(ctd.log()).toMatch(
      /Start cri plugin with config \{PluginConfig:\{ContainerdConfig:\{Snapshotter:soci .*DisableSnapshotAnnotations:false/,
    );
    // the reference's startup probe: a snapshot prepared through containerd reaches the daemon
    await waitForSnapshotter((args) => ctd!.ctr(args));
    await ctd.ctr(["snapshots", "--snapshotter", "soci", "prepare", "deploy-probe", ""]);
    const { stdout: ls } = await ctd.ctr(["snapshots", "--snapshotter", "soci", "ls"]);
    expect(ls).toMatch(/deploy-probe\s+Active/);
    await ctd.ctr(["snapshots", "--snapshotter", "soci", "rm", "deploy-probe"]);
  }, 120_000);
});
