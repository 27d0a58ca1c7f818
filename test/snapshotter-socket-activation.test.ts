// Socket activation (docs/snapshotter.md §5.1, reference startup_test.go TestSnapshotterSystemdStartup):
// systemd holds the snapshotter's socket and starts the server on the first connection, passing
// the listening socket as fd 3 (LISTEN_FDS/LISTEN_PID). systemd-socket-activate does exactly what
// systemd's .socket unit does; containerd is the first client, as after a boot.
import { afterAll, describe, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { lstat, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startContainerd, type Containerd } from "./helpers/containerd.js";
import { systemdListenFds } from "../src/snapshotter/server.js";
import { DAEMON_BIN } from "./helpers/soci-daemon.js";

const driver = new URL("./helpers/socket-activated-snapshotter.mjs", import.meta.url).pathname;

/**
 * A `ctr` call that activates the server: containerd gives up on the handshake after a few
 * seconds, and a Node process may take longer than that to start on a loaded machine, so the call
 * is repeated until the server answers (the first attempt is the one that started it).
 */
async function activatingCall(ctd: Containerd, args: string[]): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await ctd.ctr(args);
      return;
    } catch (e) {
      // containerd's connection backs off after a failed handshake: wait before asking again
      if (attempt >= 10 || !/server handshake|unavailable/.test(String(e))) throw e;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}
let dir = "";
let activator: ChildProcess | undefined;
let ctd: Containerd | undefined;

afterAll(async () => {
  await ctd?.stop().catch(() => undefined);
  if (activator && activator.exitCode === null && activator.signalCode === null) {
    activator.kill("SIGKILL");
    await new Promise((r) => activator!.once("exit", r));
  }
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("socket activation", () => {
  it("finds the sockets systemd passed, and only its own", () => {
    expect(systemdListenFds({ LISTEN_PID: "42", LISTEN_FDS: "1" }, 42)).toEqual([3]);
    expect(systemdListenFds({ LISTEN_PID: "42", LISTEN_FDS: "2" }, 42)).toEqual([3, 4]);
    expect(systemdListenFds({ LISTEN_PID: "41", LISTEN_FDS: "1" }, 42)).toEqual([]); // inherited from a parent
    expect(systemdListenFds({}, 42)).toEqual([]);
    expect(systemdListenFds({ LISTEN_PID: "42", LISTEN_FDS: "x" }, 42)).toEqual([]);
  });

  it("the first containerd request starts the server on the socket systemd holds", async () => {
    dir = await mkdtemp(join(tmpdir(), "soci-sockact-"));
    const sock = join(dir, "soci.sock");
    let output = "";
    activator = spawn("systemd-socket-activate", ["-l", sock, process.execPath, driver, join(dir, "root")], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    activator.stdout!.on("data", (d: Buffer) => (output += d.toString()));
    activator.stderr!.on("data", (d: Buffer) => (output += d.toString()));
    for (let i = 0; i < 100 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 50));
    expect((await lstat(sock)).isSocket()).toBe(true);
    await new Promise((r) => setTimeout(r, 300));
    expect(output).not.toContain("serving on"); // nothing started before a client came

    ctd = await startContainerd({ proxyPlugins: { soci: { address: sock } } });
    await activatingCall(ctd, [
      "--timeout",
      "10s",
      "snapshots",
      "--snapshotter",
      "soci",
      "prepare",
      "activation-probe",
      "",
    ]);
    expect(output).toContain("serving on fd 3");
    const { stdout } = await ctd.ctr(["snapshots", "--snapshotter", "soci", "ls"]);
    expect(stdout).toMatch(/activation-probe\s+Active/);
    await ctd.ctr(["snapshots", "--snapshotter", "soci", "rm", "activation-probe"]);

    // stopping the server leaves systemd's socket in place for the next activation
    const exited = new Promise((r) => activator!.once("exit", r));
    activator.kill("SIGINT");
    await exited;
    expect(output).toContain("closed");
    expect(existsSync(sock)).toBe(true);
  }, 60_000);

  it("soci-snapshotter-grpc --address fd:// serves the socket systemd passed", async () => {
    await ctd?.stop();
    const sock = join(dir, "daemon.sock");
    let output = "";
    const daemon = spawn(
      "systemd-socket-activate",
      ["-l", sock, DAEMON_BIN, "--address", "fd://", "--root", join(dir, "daemon-root")],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    activator = daemon;
    daemon.stdout!.on("data", (d: Buffer) => (output += d.toString()));
    daemon.stderr!.on("data", (d: Buffer) => (output += d.toString()));
    for (let i = 0; i < 100 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 50));
    ctd = await startContainerd({ proxyPlugins: { soci: { address: sock } } });
    await activatingCall(ctd, ["--timeout", "20s", "snapshots", "--snapshotter", "soci", "prepare", "fd-probe", ""]);
    expect(output).toContain("soci-snapshotter-grpc successfully started");
    const { stdout } = await ctd.ctr(["snapshots", "--snapshotter", "soci", "ls"]);
    expect(stdout).toMatch(/fd-probe\s+Active/);
    const exited = new Promise((r) => daemon.once("exit", r));
    daemon.kill("SIGINT");
    await exited;
    expect(existsSync(sock)).toBe(true); // systemd's socket stays for the next activation
  }, 60_000);

  it("with NOTIFY_SOCKET (Type=notify) the daemon reports READY=1 with its own pid once it serves", async () => {
    dir ||= await mkdtemp(join(tmpdir(), "soci-sockact-"));
    const notify = join(dir, "notify.sock");
    // systemd's end of sd_notify: a unix datagram socket (python3: Node has none)
    const listener = spawn(
      "python3",
      [
        "-c",
        [
          "import socket, sys",
          "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)",
          `s.bind(${JSON.stringify(notify)})`,
          "print('listening', flush=True)",
          "s.settimeout(30)",
          "print(s.recv(4096).decode().replace('\\n', ' '), flush=True)",
        ].join("\n"),
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    let heard = "";
    listener.stdout!.on("data", (d: Buffer) => (heard += d.toString()));
    const listenerDone = new Promise((r) => listener.once("exit", r));
    for (let i = 0; i < 100 && !heard.includes("listening"); i++) await new Promise((r) => setTimeout(r, 50));
    let output = "";
    const daemon = spawn(DAEMON_BIN, ["--address", join(dir, "notified.sock"), "--root", join(dir, "notified-root")], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, NOTIFY_SOCKET: notify },
    });
    daemon.stdout!.on("data", (d: Buffer) => (output += d.toString()));
    daemon.stderr!.on("data", (d: Buffer) => (output += d.toString()));
    await listenerDone;
    expect(output).toContain("soci-snapshotter-grpc successfully started"); // READY=1 comes after it
    expect(heard).toContain("READY=1");
    expect(heard).toContain(`MAINPID=${daemon.pid}`);
    const exited = new Promise((r) => daemon.once("exit", r));
    daemon.kill("SIGINT");
    await exited;
  }, 60_000);
});
