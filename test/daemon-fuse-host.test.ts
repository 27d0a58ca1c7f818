// The FUSE host (docs/snapshotter.md §5.8) under containerd 1.6 + runc + a registry: the layers
// live in a process of their own, so running containers keep reading lazily loaded files — files
// they never read before — while the daemon is killed (SIGKILL, SIGTERM), restarted five times in a
// row, upgraded to another build, and while the host itself is replaced by its upgrade procedure;
// new containers of pulled and of new images start lazily after each of these; a host that dies is
// logged, counted and repaired; stopping the daemon and the host for good leaves nothing mounted
// in the (tmpfs) root. Reads are asked of a container through a bind-mounted control directory, so
// the test knows exactly which file is read when, and checks every byte by its sha256.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { cp, mkdir, mkdtemp, open, readdir, readFile, readlink, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { FuseHostConnection } from "../src/fuse-host/connection.js";
import { runOnSoci, startContainerd, type Containerd } from "./helpers/containerd.js";
import { startRegistry, type RegistryServer } from "./helpers/registry-server.js";
import {
  addLayer,
  busyboxLayer,
  deadMountsUnder,
  fuseHostPids,
  fuseMountsUnder,
  initLayout,
  scrapeMetrics,
  SOCI_BIN,
  spawnDaemon,
  stopFuseHosts,
  unmountAllUnder,
  waitForSnapshotter,
  type SociDaemon,
} from "./helpers/soci-daemon.js";

const run = promisify(execFile);
const REPO = new URL("..", import.meta.url).pathname;

let dir = "";
let registry: RegistryServer;
let ctd: Containerd | undefined;
let daemon: SociDaemon | undefined;
/** Another build of this checkout (its dist/ and bin/ copied): a daemon or host "upgrade". */
let otherBuild = "";
const images: Record<string, string> = {};
/** sha256 of every file the images hold, by path in the container. */
const expected = new Map<string, string>();
const FILES = 40;

const sock = () => join(dir, "soci.sock");
const metricsSock = () => join(dir, "metrics.sock");
const root = () => join(dir, "root");
const hostSocket = () => join(root(), "fuse-host", "host.sock");
const fuseMounts = () => fuseMountsUnder(root());
const scrape = () => scrapeMetrics(metricsSock());
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

// container ids get a per-run suffix: runc's cgroups are shared with other containerds on the host
const suffix = randomBytes(3).toString("hex");
const cid = (name: string) => `${name}-${suffix}`;

async function startDaemon(bin?: string): Promise<SociDaemon> {
  daemon = spawnDaemon({ address: sock(), root: root(), config: join(dir, "config.toml"), ...(bin ? { bin } : {}) });
  await daemon.ready;
  return daemon;
}

const withLog = (e: Error): never => {
  throw new Error(`${e.message}\ndaemon log:\n${daemon?.log().slice(-6000)}`);
};

async function rpull(image: string): Promise<void> {
  await run("ctr-remote", [
    "--address",
    ctd!.socket,
    "images",
    "rpull",
    "--plain-http",
    "--snapshotter",
    "soci",
    image,
  ]).catch(withLog);
}

/** Runs a container to its end and returns its output. */
function runContainer(image: string, id: string, script: string): Promise<string> {
  return runOnSoci(ctd!, { image, id: cid(id), script, runcRoot: join(dir, "runc") }).catch(withLog);
}

/**
 * A container that keeps running and hashes the files it is asked for: the test writes a file
 * name to `<ctl>/req-<n>`, the container answers `sha256sum` output and its status in `<ctl>/res-<n>`.
 */
interface Reader {
  id: string;
  ask(path: string): Promise<string>;
  /** Asks and checks the answer against the file's sha256. */
  check(path: string): Promise<void>;
  stop(): Promise<void>;
}

async function startReader(image: string, name: string): Promise<Reader> {
  const ctl = join(dir, `ctl-${name}`);
  await mkdir(ctl, { recursive: true });
  const id = cid(name);
  const script = [
    "n=0",
    "while :; do",
    "  if [ -f /ctl/req-$n ]; then",
    "    f=$(cat /ctl/req-$n)",
    '    sha256sum "$f" > /ctl/res.tmp 2>&1; echo "rc=$?" >> /ctl/res.tmp',
    "    busybox mv /ctl/res.tmp /ctl/res-$n; n=$((n + 1))",
    "  fi",
    "  busybox usleep 20000",
    "done",
  ].join("\n");
  await ctd!
    .ctr([
      "run",
      "-d",
      "--snapshotter",
      "soci",
      "--runc-root",
      join(dir, "runc"),
      "--mount",
      `type=bind,src=${ctl},dst=/ctl,options=rbind:rw`,
      image,
      id,
      "/bin/sh",
      "-c",
      script,
    ])
    .catch(withLog);
  let n = 0;
  const ask = async (path: string) => {
    const i = n++;
    await writeFile(join(ctl, `req-${i}.tmp`), path);
    await run("mv", [join(ctl, `req-${i}.tmp`), join(ctl, `req-${i}`)]);
    for (let t = 0; t < 600; t++) {
      const res = await readFile(join(ctl, `res-${i}`), "utf8").catch(() => undefined);
      if (res !== undefined) return res;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`container ${id} did not answer for ${path}`);
  };
  return {
    id,
    ask,
    async check(path) {
      expect(await ask(path)).toBe(`${expected.get(path)}  ${path}\nrc=0\n`);
    },
    async stop() {
      await ctd!.ctr(["task", "kill", "-s", "SIGKILL", id]).catch(() => undefined);
      for (let i = 0; i < 100; i++) {
        const ls = (await ctd!.ctr(["task", "ls"])).stdout;
        if (!new RegExp(`${id}\\s+\\d+\\s+RUNNING`).test(ls)) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      await ctd!.ctr(["task", "delete", "--force", id]).catch(() => undefined);
      await ctd!.ctr(["containers", "delete", id]).catch(() => undefined);
    },
  };
}

async function running(id: string): Promise<boolean> {
  return new RegExp(`${id}\\s+\\d+\\s+RUNNING`).test((await ctd!.ctr(["task", "ls"])).stdout);
}

/** The layers the host (and its retired predecessors) serve, with the pid serving each. */
async function served(): Promise<Array<{ mountpoint: string; pid: number }>> {
  const c = new FuseHostConnection(hostSocket());
  try {
    return await c.list();
  } finally {
    c.close();
  }
}

function metric(text: string, name: string): number | undefined {
  const m = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
  return m ? Number(m[1]) : undefined;
}

/** Waits until `cond` holds (polling), or fails with `what`. */
async function until(what: string, cond: () => Promise<boolean>, ms = 30_000): Promise<void> {
  for (const end = Date.now() + ms; !(await cond()); ) {
    if (Date.now() > end) throw new Error(`timed out waiting: ${what}\ndaemon log:\n${daemon?.log().slice(-4000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** No dead FUSE mount, no half-made snapshot directory. */
async function nothingStray(): Promise<void> {
  expect(await deadMountsUnder(root())).toEqual([]);
  const snapshots = await readdir(join(root(), "snapshotter", "snapshots")).catch(() => [] as string[]);
  expect(snapshots.filter((n) => n.startsWith("new-"))).toEqual([]);
}

/** An image: the shared busybox layer plus one layer of incompressible files under `/<name>/`. */
async function buildImage(base: string, name: string): Promise<string> {
  const layout = join(dir, `image-${name}`);
  await cp(base, layout, { recursive: true });
  await addLayer(layout, dir, async (rootfs) => {
    await mkdir(join(rootfs, name), { recursive: true });
    for (let i = 0; i < FILES; i++) {
      const data = randomBytes(96 << 10);
      await writeFile(join(rootfs, name, `f${i}`), data);
      expected.set(`/${name}/f${i}`, sha(data));
    }
  });
  const ref = `${registry.host}/fusehost/${name}`;
  await run("skopeo", ["copy", "--dest-tls-verify=false", `oci:${layout}:latest`, `docker://${ref}:latest`]);
  await run("node", [
    SOCI_BIN,
    "--root",
    join(dir, "convert-root"),
    "convert",
    "--plain-http",
    "--min-layer-size",
    "0",
    "--span-size",
    String(64 << 10),
    `${ref}:latest`,
    `${ref}:soci`,
  ]);
  return `${ref}:soci`;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "soci-fh-"));
  registry = await startRegistry();
  const base = join(dir, "base");
  await initLayout(base);
  await addLayer(base, dir, busyboxLayer);
  for (const name of ["a", "b", "c"]) images[name] = await buildImage(base, name);

  // another build: this checkout's dist/ and bin/ copied elsewhere (what an upgrade installs)
  otherBuild = join(dir, "other-build");
  await mkdir(otherBuild);
  for (const d of ["dist", "bin", "proto", "build", "package.json"])
    await cp(join(REPO, d), join(otherBuild, d), { recursive: true });
  await symlink(join(REPO, "node_modules"), join(otherBuild, "node_modules"));

  // the root is a tmpfs: at the end it unmounts only if nothing is left mounted in it
  await mkdir(root(), { recursive: true });
  await run("mount", ["-t", "tmpfs", "-o", "size=2g", "soci-fuse-host-root", root()]);
  await writeFile(
    join(dir, "config.toml"),
    [
      `metrics_address = "${metricsSock()}"`,
      `metrics_network = "unix"`,
      // nothing but what containers read is fetched: unread files stay unfetched across restarts
      "[background_fetch]",
      "disable = true",
      "[fuse_manager]",
      "enable = true",
      "",
    ].join("\n"),
  );
  await startDaemon();
  ctd = await startContainerd({ proxyPlugins: { soci: { address: sock() } } });
  await waitForSnapshotter((args) => ctd!.ctr(args));
}, 300_000);

afterAll(async () => {
  await ctd?.stop().catch(() => undefined);
  await daemon?.stop("SIGKILL").catch(() => undefined);
  if (dir) {
    await stopFuseHosts(root()).catch(() => undefined);
    await unmountAllUnder(dir);
    await run("umount", ["-l", root()]).catch(() => undefined);
  }
  await registry?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 120_000);

describe("the FUSE host keeps running containers' layers across daemon restarts", () => {
  let reader: Reader;

  it("SIGKILL of the daemon: the running container reads files it never read before, during and after the restart; new containers start", async () => {
    await rpull(images.a!);
    expect(
      daemon!.lines("remote-snapshot-prepared").filter((l) => l["remote-snapshot-prepared"] === "true"),
    ).toHaveLength(2);
    const mounts = await fuseMounts();
    expect(mounts).toHaveLength(2);
    const [hostPid] = await fuseHostPids(root());
    expect(hostPid).toBeDefined();
    expect((await served()).map((l) => l.pid)).toEqual([hostPid, hostPid]);

    reader = await startReader(images.a!, "reader");
    await reader.check("/a/f0");
    await daemon!.stop("SIGKILL");
    await reader.check("/a/f1"); // no daemon at all: the host serves
    await startDaemon();
    expect(daemon!.log()).toContain("adopted remote snapshot");
    expect(daemon!.log()).not.toContain("restored remote snapshot");
    expect((await fuseMounts()).sort()).toEqual([...mounts].sort());
    expect(await fuseHostPids(root())).toEqual([hostPid]);
    await reader.check("/a/f2");
    expect(await running(reader.id)).toBe(true);

    await waitForSnapshotter((args) => ctd!.ctr(args));
    expect(await runContainer(images.a!, "after-kill", "sha256sum /a/f3")).toBe(`${expected.get("/a/f3")}  /a/f3\n`);
    // metrics of the adopted layers come from the host
    const text = await scrape();
    expect(text.split("\n").filter((l) => l.startsWith("soci_fs_layer_size_bytes{"))).toHaveLength(2);
    expect(metric(text, "soci_fuse_host_failures_total")).toBe(0);
    await nothingStray();
  }, 180_000);

  it("SIGTERM of the daemon leaves the layers serving; the restarted daemon's new config reaches the host with its next mounts; another image is pulled lazily and runs", async () => {
    const hosts = await fuseHostPids(root());
    await daemon!.stop("SIGTERM");
    expect(await daemon!.exited).toMatchObject({ code: 0 });
    expect(await fuseMounts()).toHaveLength(2);
    await reader.check("/a/f4");
    // a setting only the host uses, changed across the restart: it comes with every mount
    const config = await readFile(join(dir, "config.toml"), "utf8");
    await writeFile(join(dir, "config.toml"), `${config}[fuse]\nlog_fuse_operations = true\n`);
    await startDaemon();
    await reader.check("/a/f5");
    await waitForSnapshotter((args) => ctd!.ctr(args));
    await rpull(images.b!);
    expect(await fuseMounts()).toHaveLength(3); // busybox is shared: only b's data layer is new
    expect(await runContainer(images.b!, "b-after-term", "sha256sum /b/f0")).toBe(`${expected.get("/b/f0")}  /b/f0\n`);
    const ops = () =>
      daemon!.lines("operation").filter((l) => l.msg === "FUSE operation" && l.operation === "file.Read");
    await until("the new layer's reads are logged", async () => ops().some((l) => l.path === "/b/f0"));
    // the layer mounted before the change keeps its settings; the host is the same process
    expect(ops().some((l) => l.path === "/a/f5")).toBe(false);
    expect(await fuseHostPids(root())).toEqual(hosts);
    await writeFile(join(dir, "config.toml"), config);
    await nothingStray();
  }, 180_000);

  it("five SIGKILL/restart cycles in a row while a reader loop hashes files: every hash is right, the loop never stops", async () => {
    const ctl = join(dir, "ctl-loop");
    await mkdir(ctl, { recursive: true });
    const loop = cid("loop");
    // walks the files in a scrambled order, one every 100 ms; any error is written out
    const script = [
      "i=0",
      "while :; do",
      `  i=$(( (i * 7 + 3) % ${FILES} ))`,
      '  sha256sum /a/f$i >> /ctl/log 2>&1 || echo "FAILED /a/f$i" >> /ctl/log',
      "  busybox usleep 100000",
      "done",
    ].join("\n");
    await ctd!.ctr([
      "run",
      "-d",
      "--snapshotter",
      "soci",
      "--runc-root",
      join(dir, "runc"),
      "--mount",
      `type=bind,src=${ctl},dst=/ctl,options=rbind:rw`,
      images.a!,
      loop,
      "/bin/sh",
      "-c",
      script,
    ]);
    const lines = async () => (await readFile(join(ctl, "log"), "utf8").catch(() => "")).split("\n").filter(Boolean);
    await until("the reader loop runs", async () => (await lines()).length > 0);
    for (let cycle = 0; cycle < 5; cycle++) {
      const before = (await lines()).length;
      await daemon!.stop("SIGKILL");
      await reader.check(`/a/f${6 + cycle}`);
      await startDaemon();
      expect(daemon!.log()).not.toContain("restored remote snapshot");
      await until("the loop goes on", async () => (await lines()).length > before);
      // and new containers start, of either image
      const name = cycle % 2 === 0 ? "b" : "a";
      const file = `/${name}/f${30 + cycle}`;
      await waitForSnapshotter((args) => ctd!.ctr(args));
      expect(await runContainer(images[name]!, `cycle-${cycle}`, `sha256sum ${file}`)).toBe(
        `${expected.get(file)}  ${file}\n`,
      );
    }
    await ctd!.ctr(["task", "kill", "-s", "SIGKILL", loop]);
    await until("the loop stops", async () => !(await running(loop)));
    await ctd!.ctr(["task", "delete", "--force", loop]).catch(() => undefined);
    await ctd!.ctr(["containers", "delete", loop]);
    const log = await lines();
    expect(log.length).toBeGreaterThan(5);
    for (const line of log) {
      const [hash, path] = line.split(/\s+/);
      expect(line).not.toMatch(/FAILED|error/i);
      expect(hash).toBe(expected.get(path!));
    }
    await waitForSnapshotter((args) => ctd!.ctr(args));
    expect(await runContainer(images.b!, "b-after-cycles", "sha256sum /b/f1")).toBe(
      `${expected.get("/b/f1")}  /b/f1\n`,
    );
    await nothingStray();
  }, 240_000);

  it("a daemon upgrade (another build on the same root) adopts the host's layers; so does the way back", async () => {
    await daemon!.stop("SIGTERM");
    await startDaemon(join(otherBuild, "bin", "soci-snapshotter-grpc.js"));
    expect(daemon!.log()).toContain("adopted remote snapshot");
    expect(daemon!.log()).not.toContain("restored remote snapshot");
    await reader.check("/a/f11");
    await waitForSnapshotter((args) => ctd!.ctr(args));
    await rpull(images.c!);
    expect(await runContainer(images.c!, "c-after-upgrade", "sha256sum /c/f0")).toBe(
      `${expected.get("/c/f0")}  /c/f0\n`,
    );
    await daemon!.stop("SIGTERM");
    await startDaemon();
    await reader.check("/a/f12");
    expect(await fuseMounts()).toHaveLength(4);
    await nothingStray();
    await reader.stop();
  }, 180_000);
});

describe("the FUSE host's own upgrade", () => {
  it("SIGHUP (the upgrade procedure) and a takeover by another build: the running container never sees an error; a retired host exits once its last layer is unmounted", async () => {
    await waitForSnapshotter((args) => ctd!.ctr(args));
    const reader = await startReader(images.c!, "reader-c");
    await reader.check("/c/f1");
    const [first] = await fuseHostPids(root());
    // the upgrade procedure (`systemctl reload soci-fuse-host` sends it): a successor takes over
    process.kill(first!, "SIGHUP");
    await until("a successor serves", async () => (await fuseHostPids(root())).length === 2);
    const second = (await fuseHostPids(root())).find((p) => p !== first);
    await until("the daemon follows the successor", async () =>
      daemon!.log().includes("the FUSE host retired; connecting to its successor"),
    );
    // it started as a child of the first host, whose FUSE connections it must not keep alive (it
    // closes them as it starts: by now it serves)
    const fds = await readdir(`/proc/${second}/fd`);
    const targets = await Promise.all(fds.map((fd) => readlink(`/proc/${second}/fd/${fd}`).catch(() => "")));
    expect(targets).not.toContain("/dev/fuse");
    await reader.check("/c/f2"); // still served by the retired host
    // another build's host takes over from the successor (started by hand, as after installing it)
    const out = await open(join(dir, "other-host.log"), "a");
    const other = spawn(
      process.execPath,
      [join(otherBuild, "bin", "soci-fuse-host.js"), "--root", root(), "--takeover", "--idle-exit-sec", "60"],
      { detached: true, stdio: ["ignore", out.fd, out.fd] },
    );
    other.unref();
    await out.close();
    await until("the other build's host serves", async () => (await fuseHostPids(root())).includes(other.pid!));
    // the successor retired before it ever mounted a layer: it is gone at once
    await until("the layerless successor exits", async () => !(await fuseHostPids(root())).includes(second!));
    expect((await readdir(join(root(), "fuse-host"))).filter((n) => n.startsWith("retired-"))).toEqual([
      `retired-${first}.sock`,
    ]);
    await reader.check("/c/f3");
    expect(await running(reader.id)).toBe(true);

    // an unmount through the active host reaches the retired one serving the layer; a new mount
    // goes to the active host; every layer is listed with the host serving it
    await waitForSnapshotter((args) => ctd!.ctr(args));
    await ctd!.ctr(["images", "rm", "--sync", images.b!]);
    await until("b's layer is unmounted", async () => (await fuseMounts()).length === 3);
    await rpull(images.b!);
    const layers = await served();
    expect(layers.filter((l) => l.pid === first)).toHaveLength(3);
    expect(layers.filter((l) => l.pid === other.pid)).toHaveLength(1);
    const text = await scrape();
    expect(text.split("\n").filter((l) => l.startsWith("soci_fs_layer_size_bytes{"))).toHaveLength(4);
    // a daemon restart now adopts layers of a retired host through the active one
    await daemon!.stop("SIGKILL");
    await startDaemon();
    expect(daemon!.log()).not.toContain("restored remote snapshot");
    await reader.check("/c/f4");
    await waitForSnapshotter((args) => ctd!.ctr(args)); // containerd's removals below reach the daemon

    // the first host's layers go once no container and no image needs them: then it exits
    await reader.stop();
    await ctd!.ctr(["images", "rm", "--sync", images.a!, images.b!, images.c!]);
    await until("the first host exits", async () => !(await fuseHostPids(root())).includes(first!), 60_000);
    expect(await fuseHostPids(root())).toEqual([other.pid]);
    expect((await readdir(join(root(), "fuse-host"))).filter((n) => n.startsWith("retired-"))).toEqual([]);
    expect(await fuseMounts()).toEqual([]);
    await nothingStray();
  }, 240_000);
});

describe("losing the FUSE host", () => {
  it("a host killed under a running daemon is logged, counted, and its layers are mounted again for new containers", async () => {
    await waitForSnapshotter((args) => ctd!.ctr(args));
    await rpull(images.a!);
    const mounts = (await fuseMounts()).sort();
    expect(mounts).toHaveLength(2);
    const before = await fuseHostPids(root());
    await stopFuseHosts(root(), "SIGKILL");
    await until("the daemon mounts the layers again", async () => {
      const pids = await fuseHostPids(root());
      return pids.length === 1 && !before.includes(pids[0]!) && (await deadMountsUnder(root())).length === 0;
    });
    await until("both layers are served again", async () => (await served()).length === 2);
    expect(daemon!.lines("msg").some((l) => l.msg?.startsWith("the FUSE host died") && l.level === "error")).toBe(true);
    expect(metric(await scrape(), "soci_fuse_host_failures_total")).toBe(1);
    expect((await fuseMounts()).sort()).toEqual(mounts);
    expect(await runContainer(images.a!, "a-after-host-kill", "sha256sum /a/f20")).toBe(
      `${expected.get("/a/f20")}  /a/f20\n`,
    );
    await nothingStray();
  }, 180_000);

  it("host and daemon killed together: the next daemon start logs and counts it, and repairs everything", async () => {
    await daemon!.stop("SIGKILL");
    await stopFuseHosts(root(), "SIGKILL");
    expect(await deadMountsUnder(root())).toHaveLength(2);
    await startDaemon();
    expect(daemon!.lines("msg").some((l) => l.msg?.startsWith("a FUSE host died") && l.level === "error")).toBe(true);
    expect(daemon!.log()).toContain("restored remote snapshot");
    expect(metric(await scrape(), "soci_fuse_host_failures_total")).toBe(1);
    await waitForSnapshotter((args) => ctd!.ctr(args));
    expect(await runContainer(images.a!, "a-after-both", "sha256sum /a/f21")).toBe(
      `${expected.get("/a/f21")}  /a/f21\n`,
    );
    await nothingStray();
  }, 180_000);
});

describe("stopping for good", () => {
  it("the daemon stopped leaves the host serving; the host stopped unmounts its layers; the next start mounts what containerd references; the tmpfs root unmounts at the end", async () => {
    await daemon!.stop("SIGTERM");
    expect(await fuseMounts()).toHaveLength(2);
    await stopFuseHosts(root(), "SIGTERM");
    expect(await fuseHostPids(root())).toEqual([]);
    expect(await fuseMounts()).toEqual([]);
    await nothingStray();

    await startDaemon();
    expect(await fuseMounts()).toHaveLength(2); // containerd still references them
    expect(daemon!.log()).not.toContain("a FUSE host died"); // a stop is no failure
    await waitForSnapshotter((args) => ctd!.ctr(args));
    expect(await runContainer(images.a!, "a-after-stop", "sha256sum /a/f22")).toBe(
      `${expected.get("/a/f22")}  /a/f22\n`,
    );

    await ctd!.ctr(["images", "rm", "--sync", images.a!]);
    await until("the layers are unmounted", async () => (await fuseMounts()).length === 0);
    await daemon!.stop("SIGINT");
    expect(await daemon!.exited).toMatchObject({ code: 0 });
    await stopFuseHosts(root(), "SIGTERM");
    await nothingStray();
    await run("umount", [root()]);
  }, 180_000);
});
