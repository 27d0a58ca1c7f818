// Restart and recovery of the snapshotter daemon that serves its FUSE layers itself
// (`[fuse_manager] enable = false`, as the reference; the FUSE host is daemon-fuse-host.test.ts):
// docs/snapshotter.md §5.1 and the reference's TestRunMultipleContainers / TestRestartAfterSigint
// (§7), against containerd 1.6 with runc: two SOCI-converted images sharing their two bottom
// layers, lazily pulled with ctr-remote through a proxy that can take the registry away; several
// containers at once; the daemon killed with SIGKILL while layers are mounted and restarted;
// SIGTERM unmounting every layer cleanly (they die with the process) and the next start mounting
// them again; a restart while the registry is unreachable with `allow_invalid_mounts_on_restart`
// false (the reference refuses to start) and true (starts, the layers report Unavailable); SIGINT
// unmounting everything. The daemon's root is a tmpfs, which can be unmounted at the end: nothing
// is left mounted in it.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { cp, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { startRegistry, type RegistryServer } from "./helpers/registry-server.js";
import { startSwitchProxy, type SwitchProxy } from "./helpers/switch-proxy.js";
import { runOnSoci, startContainerd, type Containerd } from "./helpers/containerd.js";
import {
  deadMountsUnder,
  SOCI_BIN,
  addLayer,
  busyboxLayer,
  fuseMountsUnder,
  initLayout,
  spawnDaemon,
  unmountAllUnder,
  waitForSnapshotter,
  type SociDaemon,
} from "./helpers/soci-daemon.js";

const run = promisify(execFile);

let dir = "";
let registry: RegistryServer;
let proxy: SwitchProxy;
let ctd: Containerd | undefined;
let daemon: SociDaemon | undefined;
let imageA = "";
let imageB = "";
const content = { shared: Buffer.alloc(0), a: Buffer.alloc(0), b: Buffer.alloc(0) };
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

const sock = () => join(dir, "soci.sock");
const daemonRoot = () => join(dir, "soci-root");
const snapshotsDir = () => join(daemonRoot(), "snapshotter", "snapshots");
const config = (name: string) => join(dir, name);

async function startDaemon(cfg = "config.toml"): Promise<SociDaemon> {
  daemon = spawnDaemon({ address: sock(), root: daemonRoot(), config: config(cfg) });
  await daemon.ready;
  return daemon;
}

const fuseMounts = () => fuseMountsUnder(daemonRoot());

// container ids get a per-run suffix: runc's cgroups are shared with other containerds on the host
const suffix = randomBytes(3).toString("hex");
const cid = (name: string) => `${name}-${suffix}`;

function runContainer(image: string, id: string, script: string): Promise<string> {
  return runOnSoci(ctd!, { image, id: cid(id), script, runcRoot: join(dir, "runc") }).catch((e: Error) => {
    throw new Error(`${e.message}\ndaemon log:\n${daemon?.log().slice(-4000)}`);
  });
}

const scriptA = "sha256sum /shared/s.bin /a/a.bin; cat /shared/note /a/note";
const scriptB = "sha256sum /shared/s.bin /b/b.bin; cat /shared/note /b/note";
const expectedA = () => `${sha(content.shared)}  /shared/s.bin\n${sha(content.a)}  /a/a.bin\nshared layer\nimage a\n`;
const expectedB = () => `${sha(content.shared)}  /shared/s.bin\n${sha(content.b)}  /b/b.bin\nshared layer\nimage b\n`;

/** Reads a directory from this (test) process: the daemon serving it is another process. */
function listDir(path: string): Promise<string[]> {
  return readdir(path);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "soci-restart-"));
  registry = await startRegistry();
  proxy = await startSwitchProxy(registry.host);

  // base: busybox + a shared data layer; A and B each add their own data layer on a copy of it
  const base = join(dir, "base");
  await initLayout(base);
  await addLayer(base, dir, busyboxLayer);
  content.shared = Buffer.concat([randomBytes(1 << 20), Buffer.alloc(1 << 20, "shared")]);
  await addLayer(base, dir, async (rootfs) => {
    await mkdir(join(rootfs, "shared"), { recursive: true });
    await writeFile(join(rootfs, "shared", "s.bin"), content.shared);
    await writeFile(join(rootfs, "shared", "note"), "shared layer\n");
  });
  for (const name of ["a", "b"] as const) {
    const layout = join(dir, `image-${name}`);
    await cp(base, layout, { recursive: true });
    content[name] = randomBytes(1 << 20);
    await addLayer(layout, dir, async (rootfs) => {
      await mkdir(join(rootfs, name), { recursive: true });
      await writeFile(join(rootfs, name, `${name}.bin`), content[name]);
      await writeFile(join(rootfs, name, "note"), `image ${name}\n`);
    });
    await run("skopeo", [
      "copy",
      "--dest-tls-verify=false",
      `oci:${layout}:latest`,
      `docker://${registry.host}/restart/${name}:latest`,
    ]);
    await run("node", [
      SOCI_BIN,
      "--root",
      join(dir, "convert-root"),
      "convert",
      "--plain-http",
      "--min-layer-size",
      "100000",
      "--span-size",
      String(128 << 10),
      `${registry.host}/restart/${name}:latest`,
      `${registry.host}/restart/${name}:soci`,
    ]);
  }
  // pulled through the proxy: the registry can be taken away under the daemon
  imageA = `${proxy.host}/restart/a:soci`;
  imageB = `${proxy.host}/restart/b:soci`;

  // a tmpfs root: at the end it unmounts only if the daemon left nothing mounted in it
  await mkdir(daemonRoot(), { recursive: true });
  await run("mount", ["-t", "tmpfs", "-o", "size=1g", "soci-restart-root", daemonRoot()]);
  const common = [
    "[fuse_manager]",
    "enable = false",
    "[background_fetch]",
    "disable = true",
    "[http]",
    "DialTimeoutMsec = 1000",
    "[blob]",
    "max_retries = 1",
    "min_wait_msec = 20",
    "max_wait_msec = 50",
  ];
  await writeFile(config("config.toml"), common.join("\n") + "\n");
  await writeFile(
    config("config-allow-invalid.toml"),
    [...common, "[snapshotter]", "allow_invalid_mounts_on_restart = true"].join("\n") + "\n",
  );
  await startDaemon();
  ctd = await startContainerd({ proxyPlugins: { soci: { address: sock() } } });
}, 240_000);

afterAll(async () => {
  await ctd?.stop().catch(() => undefined);
  await daemon?.stop("SIGINT").catch(() => undefined);
  await unmountAllUnder(dir);
  await run("umount", ["-l", daemonRoot()]).catch(() => undefined);
  await proxy?.close().catch(() => undefined);
  await registry?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("daemon restart and recovery", () => {
  it("several containers at once, from one image and from two images sharing layers, share the FUSE mounts", async () => {
    // both at once: their shared layers are prepared concurrently
    await Promise.all(
      [imageA, imageB].map((image) =>
        run("ctr-remote", [
          "--address",
          ctd!.socket,
          "images",
          "rpull",
          "--plain-http",
          "--snapshotter",
          "soci",
          image,
        ]).catch((e: Error) => {
          throw new Error(`${e.message}\ndaemon log:\n${daemon!.log().slice(-4000)}`);
        }),
      ),
    );
    // busybox + shared (once) + a + b: the shared layers are neither mounted twice nor unpacked
    expect(
      daemon!.lines("remote-snapshot-prepared").filter((l) => l["remote-snapshot-prepared"] === "true"),
    ).toHaveLength(4);
    expect(daemon!.lines("local-snapshot-prepared")).toHaveLength(0);
    expect(await fuseMounts()).toHaveLength(4);

    const runs = [
      ...[1, 2, 3].map((i) => runContainer(imageA, `multi-a-${i}`, scriptA)),
      ...[1, 2, 3].map((i) => runContainer(imageB, `multi-b-${i}`, scriptB)),
    ];
    const outs = await Promise.all(runs);
    expect(outs).toEqual([expectedA(), expectedA(), expectedA(), expectedB(), expectedB(), expectedB()]);
    expect(await fuseMounts()).toHaveLength(4);
    expect(daemon!.lines("defer-snapshot-runtime")).toHaveLength(0);
  }, 180_000);

  it("SIGKILL leaves dead mounts; a restart repairs them and new containers run", async () => {
    const before = await fuseMounts();
    // a container that keeps running across the restart (its overlay holds the old mounts)
    const running = cid("running-a");
    await ctd!.ctr([
      "run",
      "-d",
      "--snapshotter",
      "soci",
      "--runc-root",
      join(dir, "runc"),
      imageA,
      running,
      "/bin/sh",
      "-c",
      "cat /a/note >/dev/null && exec busybox sleep 120",
    ]);
    // wait until it has read what it needs (from the FUSE layers) and sleeps
    for (let i = 0; ; i++) {
      const pid = /\s(\d+)\s+RUNNING/.exec((await ctd!.ctr(["task", "ls"])).stdout)?.[1];
      const cmd = pid ? await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "") : "";
      if (cmd.split("\0").join(" ").trim() === "busybox sleep 120") break;
      if (i > 100) throw new Error(`container ${running} did not get to sleep: ${cmd}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await daemon!.stop("SIGKILL");
    // the kernel keeps the mounts; with no server behind them they fail with ENOTCONN
    expect(await fuseMounts()).toEqual(before);
    await expect(listDir(before[0]!)).rejects.toMatchObject({ code: "ENOTCONN" });

    await startDaemon();
    expect(daemon!.log()).toContain("restored remote snapshot");
    const after = await fuseMounts();
    expect(after.sort()).toEqual([...before].sort()); // re-mounted in place, not stacked
    for (const mp of after) expect((await listDir(mp)).length).toBeGreaterThan(0);
    // the daemon's restart did not take the running container down
    expect((await ctd!.ctr(["task", "ls"])).stdout).toMatch(new RegExp(`${running}\\s+\\d+\\s+RUNNING`));

    await waitForSnapshotter((args) => ctd!.ctr(args));
    expect(await runContainer(imageA, "after-kill-a", scriptA)).toBe(expectedA());
    expect(await runContainer(imageB, "after-kill-b", scriptB)).toBe(expectedB());

    // the container that ran across the restart stops and is deleted normally (its own lazily
    // loaded files went with the old mounts: without a FUSE host a daemon restart breaks running
    // containers' reads, as in the reference)
    await ctd!.ctr(["task", "delete", "--force", running]);
    await ctd!.ctr(["containers", "delete", running]);
    expect(await fuseMounts()).toHaveLength(4);
  }, 120_000);

  it("SIGTERM unmounts every layer (they die with the daemon): no dead mounts are left, and the next start mounts them again", async () => {
    const before = await fuseMounts();
    expect(before).toHaveLength(4);
    await daemon!.stop("SIGTERM");
    expect(await daemon!.exited).toMatchObject({ code: 0 });
    expect(await fuseMounts()).toEqual([]);
    expect(await deadMountsUnder(daemonRoot())).toEqual([]);
    // the metadata a restart needs is kept: the same layers come back at the same places
    await startDaemon();
    expect((await fuseMounts()).sort()).toEqual([...before].sort());
    await waitForSnapshotter((args) => ctd!.ctr(args));
    expect(await runContainer(imageA, "after-term-a", scriptA)).toBe(expectedA());
  }, 120_000);

  it("a second daemon on the same root refuses to start and leaves the first one's layers alone", async () => {
    const mounts = await fuseMounts();
    const second = spawnDaemon({
      address: join(dir, "second.sock"),
      root: daemonRoot(),
      config: config("config.toml"),
    });
    expect(await second.exited).toMatchObject({ code: 1 });
    expect(second.log()).toContain(`another snapshotter is already running on ${join(daemonRoot(), "snapshotter")}`);
    expect(second.log()).not.toContain("unmounting leftover mount");
    expect(await fuseMounts()).toEqual(mounts);
    for (const mp of mounts) expect((await listDir(mp)).length).toBeGreaterThan(0);
    expect(await runContainer(imageB, "beside-second-b", scriptB)).toBe(expectedB());
  }, 60_000);

  it("registry unreachable at restart: refused by default, tolerated with allow_invalid_mounts_on_restart", async () => {
    await daemon!.stop("SIGKILL");
    await proxy.down();

    // the reference's default: a remote snapshot that cannot be restored aborts startup
    const strict = spawnDaemon({ address: sock(), root: daemonRoot(), config: config("config.toml") });
    daemon = strict;
    const exit = await Promise.race([
      strict.exited,
      new Promise<"timeout">((r) => setTimeout(() => r("timeout"), 60_000)),
    ]);
    expect(exit).not.toBe("timeout");
    expect(exit).toMatchObject({ code: 1 });
    expect(strict.log()).toContain("failed to restore remote snapshot");
    expect(strict.log()).not.toContain("successfully started");

    // allow_invalid_mounts_on_restart = true: starts, warns, and the layers report Unavailable
    await startDaemon("config-allow-invalid.toml");
    expect(daemon!.log()).toContain("failed to restore remote snapshot");
    expect(await fuseMounts()).toHaveLength(0);
    await waitForSnapshotter((args) => ctd!.ctr(args));
    await expect(
      ctd!.ctr([
        "run",
        "--rm",
        "--snapshotter",
        "soci",
        "--runc-root",
        join(dir, "runc"),
        imageA,
        cid("unavailable-a"),
        "/bin/true",
      ]),
    ).rejects.toThrow(/unavailable/i);

    // as in the reference, a snapshot that failed to restore stays Unavailable (even with the
    // registry back) until the daemon restarts or the image is removed
    await proxy.up();
    await expect(
      ctd!.ctr([
        "run",
        "--rm",
        "--snapshotter",
        "soci",
        "--runc-root",
        join(dir, "runc"),
        imageA,
        cid("unavailable-a2"),
        "/bin/true",
      ]),
    ).rejects.toThrow(/unavailable/i);

    // a restart with the registry back: everything is mounted again and runs
    await daemon!.stop("SIGINT");
    await startDaemon();
    expect(await fuseMounts()).toHaveLength(4);
    await waitForSnapshotter((args) => ctd!.ctr(args));
    expect(await runContainer(imageA, "after-outage-a", scriptA)).toBe(expectedA());
  }, 180_000);

  it("SIGINT unmounts everything; the next start mounts the layers again (TestRestartAfterSigint); removing the images then cleans up", async () => {
    await daemon!.stop("SIGINT");
    expect(await daemon!.exited).toMatchObject({ code: 0 });
    expect(await fuseMounts()).toHaveLength(0);
    const leftovers = (await readdir(snapshotsDir())).filter((n) => n.startsWith("new-"));
    expect(leftovers).toEqual([]);

    await startDaemon();
    expect(await fuseMounts()).toHaveLength(4);
    await waitForSnapshotter((args) => ctd!.ctr(args));
    expect(await runContainer(imageB, "after-sigint-b", scriptB)).toBe(expectedB());

    // after all these restarts, removing the images still takes every layer and directory away
    await ctd!.ctr(["images", "rm", "--sync", imageA, imageB]);
    for (let i = 0; i < 50 && ((await fuseMounts()).length > 0 || (await readdir(snapshotsDir())).length > 0); i++) {
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(await fuseMounts()).toHaveLength(0);
    expect(await readdir(snapshotsDir())).toEqual([]);
    expect((await ctd!.ctr(["snapshots", "--snapshotter", "soci", "ls"])).stdout.trim().split("\n")).toHaveLength(1); // header only
    await daemon!.stop("SIGINT");
    expect(await daemon!.exited).toMatchObject({ code: 0 });
    // nothing of the daemon's is mounted in its root any more: the tmpfs unmounts
    await run("umount", [daemonRoot()]);
  }, 120_000);
});
