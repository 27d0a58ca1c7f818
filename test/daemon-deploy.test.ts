// The operations files in deploy/: the systemd units (daemon, socket, FUSE host), the example daemon
// config and the containerd snippet. They must parse, agree with each other and with the daemon's
// defaults, and be accepted by the real programs: systemd-analyze verifies the units, the daemon
// loads and serves with the example config, and containerd (private root, CRI plugin on) loads the
// snippet and lists the soci proxy plugin as ok, with its CRI plugin set up for lazy pulls. The
// units' kill semantics are what keeps containers' layers alive across daemon restarts
// (docs/snapshotter.md §5.8): checked key by key, as is the transient unit the daemon starts a
// host in when the host's unit is not installed.
import { afterAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { parse } from "smol-toml";
import { startContainerd, type Containerd } from "./helpers/containerd.js";
import { HOST_NODE_FLAGS, systemdRunArgv, transientUnitName } from "../src/fuse-host/launch.js";
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

/** The keys of a unit file's `[Service]` (or another) section (last value wins, as systemd reads them). */
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
    expect(argv.slice(0, 1 + HOST_NODE_FLAGS.length)).toEqual(["/usr/bin/node", ...HOST_NODE_FLAGS]);
    expect(svc.Environment).toMatch(/^GLIBC_TUNABLES=\S+$/);
    expect((await readFile(DAEMON_BIN, "utf8")).split("\n")[0]).toBe(
      `#!/usr/bin/env -S ${svc.Environment} node ${argv.slice(1, 1 + HOST_NODE_FLAGS.length).join(" ")}`,
    );
    expect(argv[1 + HOST_NODE_FLAGS.length]).toBe(
      join("/usr/lib/node_modules", pkg.name, pkg.bin["soci-snapshotter-grpc"]!),
    );
    const flag = (name: string) => argv[argv.indexOf(name) + 1];
    expect(flag("--address")).toBe("fd://"); // socket activation
    expect(flag("--config")).toBe("/etc/soci-snapshotter-grpc/config.toml");
    expect(flag("--root")).toBe("/var/lib/soci-snapshotter-grpc");
    // the flags the unit spells out are the daemon's defaults
    const { stdout: help } = await run("node", [DAEMON_BIN, "--help"]);
    for (const v of [SOCKET, "/etc/soci-snapshotter-grpc/config.toml", "/var/lib/soci-snapshotter-grpc"])
      expect(help).toContain(v); // fd:// falls back to SOCKET
  });

  it("the FUSE host's unit: its own unit the daemon's restart never reaches, stopped as a whole, upgraded by reload", async () => {
    const { stderr } = await run("systemd-analyze", [
      "verify",
      deploy("soci-fuse-host.service"),
      deploy("soci-snapshotter-grpc.service"),
      deploy("soci-snapshotter-grpc.socket"),
    ]);
    expect(stderr).toBe("");
    const daemonUnit = await serviceKeys(deploy("soci-snapshotter-grpc.service"), "Unit");
    const hostUnit = await serviceKeys(deploy("soci-fuse-host.service"), "Unit");
    const host = await serviceKeys(deploy("soci-fuse-host.service"));
    const daemonSvc = await serviceKeys(deploy("soci-snapshotter-grpc.service"));
    // the daemon pulls the host in and starts after it, and nothing ties the host's life to the
    // daemon's: a `systemctl restart soci-snapshotter-grpc` does not propagate to the host
    expect(daemonUnit.Wants).toBe("soci-fuse-host.service");
    expect(daemonUnit.After!.split(/\s+/)).toContain("soci-fuse-host.service");
    for (const key of ["PartOf", "BindsTo", "Requisite", "PropagatesStopTo", "StopPropagatedFrom"]) {
      expect(hostUnit[key], `host [Unit] ${key}`).toBeUndefined();
      expect(daemonUnit[key], `daemon [Unit] ${key}`).toBeUndefined();
    }
    expect(daemonUnit.Requires).not.toContain("soci-fuse-host");
    expect(daemonSvc.KillMode ?? "control-group").toBe("control-group"); // the daemon's cgroup holds only the daemon
    // a stop reaches every host of the unit (the retired ones too), each unmounting its layers
    expect(host.KillMode).toBe("control-group");
    // an upgrade: SIGHUP, the successor becomes the main process through sd_notify
    expect(host.ExecReload).toBe("/bin/kill -HUP $MAINPID");
    expect([host.Type, host.NotifyAccess]).toEqual(["notify", "all"]);
    expect(host.Restart).toBe("on-failure");
    // the same node and memory settings as the daemon, the same root, never an idle exit
    const argv = host.ExecStart!.split(/\s+/);
    const daemonArgv = daemonSvc.ExecStart!.split(/\s+/);
    expect(argv.slice(0, 1 + HOST_NODE_FLAGS.length)).toEqual(daemonArgv.slice(0, 1 + HOST_NODE_FLAGS.length));
    expect(host.Environment).toBe(daemonSvc.Environment);
    const pkg = JSON.parse(await readFile(join(repo, "package.json"), "utf8")) as {
      name: string;
      bin: Record<string, string>;
    };
    expect(argv[1 + HOST_NODE_FLAGS.length]).toBe(join("/usr/lib/node_modules", pkg.name, pkg.bin["soci-fuse-host"]!));
    const flag = (a: string[], name: string) => a[a.indexOf(name) + 1];
    expect(flag(argv, "--root")).toBe(flag(daemonArgv, "--root"));
    expect(flag(argv, "--idle-exit-sec")).toBe("0");
    // run directly, the host's executable gives node what the unit gives it
    const hostBin = join(repo, pkg.bin["soci-fuse-host"]!);
    expect((await readFile(hostBin, "utf8")).split("\n")[0]).toBe(
      `#!/usr/bin/env -S ${host.Environment} node ${argv.slice(1, 1 + HOST_NODE_FLAGS.length).join(" ")}`,
    );
    const { stdout: help } = await run("node", [hostBin, "--help"]);
    expect(help).toContain("--takeover");
  });

  it("the transient unit a daemon starts a host in (no host unit installed) has the host unit's kill semantics", () => {
    const argv = systemdRunArgv(
      {
        root: "/var/lib/soci-snapshotter-grpc",
        address: "/var/lib/soci-snapshotter-grpc/fuse-host/host.sock",
        logLevel: "info",
        idleExitSec: 60,
      },
      { PATH: "/usr/bin" },
    );
    expect(argv[0]).toBe("systemd-run");
    const props = argv.filter((a) => a.startsWith("--property=")).map((a) => a.slice("--property=".length));
    expect(props).toEqual(expect.arrayContaining(["KillMode=control-group", "Type=notify", "NotifyAccess=all"]));
    // its own unit, named after the root: not a scope of the daemon's unit
    expect(argv).toContain(`--unit=${transientUnitName("/var/lib/soci-snapshotter-grpc")}`);
    expect(argv).not.toContain("--scope");
    const cmd = argv.slice(argv.indexOf("--") + 1);
    expect(cmd.slice(1, 1 + HOST_NODE_FLAGS.length)).toEqual(HOST_NODE_FLAGS);
    expect(cmd[1 + HOST_NODE_FLAGS.length]).toMatch(/\/bin\/soci-fuse-host\.js$/);
    expect(cmd.slice(1 + HOST_NODE_FLAGS.length)).toEqual(
      expect.arrayContaining(["--root", "/var/lib/soci-snapshotter-grpc"]),
    );
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
