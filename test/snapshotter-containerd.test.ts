// The snapshots service as containerd 1.6.20 really uses it: a private containerd with
// `[proxy_plugins.soci]` pointing at our socket, an image built here (busybox-static shell, two
// layers, a whiteout) imported and unpacked into our snapshotter, containers run with runc over
// the overlay mounts we hand out, snapshot inspection with ctr, restart of our server, and image
// removal driving containerd's GC (Remove leaves first, then Cleanup).
import * as grpc from "@grpc/grpc-js";
import { execFile, execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { cp, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mountPointsUnder } from "../src/snapshotter/mountinfo.js";
import { snapshotsService } from "../src/snapshotter/proto.js";
import type { RemotePreparer, RemotePrepareRequest } from "../src/snapshotter/remote.js";
import { startSnapshotterServer, type SnapshotterServer } from "../src/snapshotter/server.js";
import { startContainerd, type Containerd } from "./helpers/containerd.js";

const run = promisify(execFile);
const IMAGE = "example.com/soci/snaptest:latest";

let dir = "";
let snapRoot = "";
let sock = "";
let archive = "";
let server: SnapshotterServer | undefined;
let ctd: Containerd | undefined;
/** RPCs our server saw, in order (from its debug log of failures and its own operations). */
const calls: string[] = [];

const logger = {
  debug: (msg: string) => calls.push(msg),
  info: (msg: string) => calls.push(msg),
  warn: (msg: string, f?: object) => calls.push(`WARN ${msg} ${JSON.stringify(f)}`),
  error: (msg: string, f?: object) => calls.push(`ERROR ${msg} ${JSON.stringify(f)}`),
};

/**
 * Stands in for the FUSE layer: a Prepare carrying a layer digest label is "mounted remotely" as
 * a tmpfs holding one file named after the layer. Everything else is left to containerd.
 */
const remoteRequests: RemotePrepareRequest[] = [];
const remote: RemotePreparer = {
  async prepare(req) {
    const digest = req.labels["containerd.io/snapshot/cri.layer-digest"];
    if (!digest) return { outcome: "defer", reason: "no layer digest" };
    remoteRequests.push(req);
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m", "soci-test", req.mountpoint]);
    writeFileSync(join(req.mountpoint, digest.replace(":", "-")), `${digest}\n`);
    return { outcome: "remote" };
  },
  async unmount(mountpoint) {
    execFileSync("umount", [mountpoint]);
  },
};

const startServer = async () => {
  server = await startSnapshotterServer({
    address: sock,
    root: snapRoot,
    logger,
    remote,
    allowInvalidMountsOnRestart: true,
  });
};

/** Builds a two-layer OCI image: busybox + /etc/x + /etc/gone, then /etc/y and /etc/gone deleted. */
async function buildImage(): Promise<string> {
  const layout = join(dir, "layout");
  await run("umoci", ["init", "--layout", layout]);
  await run("umoci", ["new", "--image", `${layout}:latest`]);
  const b1 = join(dir, "bundle1");
  await run("umoci", ["unpack", "--image", `${layout}:latest`, b1]);
  const rootfs = join(b1, "rootfs");
  await mkdir(join(rootfs, "bin"), { recursive: true });
  await mkdir(join(rootfs, "etc"), { recursive: true });
  await cp("/bin/busybox", join(rootfs, "bin", "busybox"));
  for (const tool of ["sh", "echo", "cat", "ls", "test"]) await symlink("busybox", join(rootfs, "bin", tool));
  await writeFile(join(rootfs, "etc", "x"), "x from the first layer\n");
  await writeFile(join(rootfs, "etc", "gone"), "deleted by the second layer\n");
  await run("umoci", ["repack", "--image", `${layout}:latest`, b1]);
  const b2 = join(dir, "bundle2");
  await run("umoci", ["unpack", "--image", `${layout}:latest`, b2]);
  await writeFile(join(b2, "rootfs", "etc", "y"), "y from the second layer\n");
  await rm(join(b2, "rootfs", "etc", "gone"));
  await run("umoci", ["repack", "--image", `${layout}:latest`, b2]);
  await run("umoci", ["config", "--image", `${layout}:latest`, "--config.cmd", "/bin/sh"]);
  const tar = join(dir, "image.tar");
  await run("tar", ["-C", layout, "-cf", tar, "."]);
  return tar;
}

/**
 * Calls containerd's own snapshots API (same proto as ours) for the soci snapshotter, in a
 * namespace, under the test's lease: snapshots without a lease, gc.root label or image reference
 * are fair game for containerd's garbage collector, which runs whenever something is deleted.
 */
async function ctdSnapshots<T = unknown>(ns: string, rpc: string, req: object): Promise<T> {
  const Ctor = snapshotsService();
  // the service's methods are generated at run time, looked up by name
  const c = new Ctor(`unix:${ctd!.socket}`, grpc.credentials.createInsecure()) as grpc.Client &
    Record<string, (this: grpc.Client, ...args: unknown[]) => unknown>;
  const md = new grpc.Metadata();
  md.set("containerd-namespace", ns);
  md.set("containerd-lease", LEASE);
  try {
    return await new Promise<T>((ok, fail) =>
      c[rpc]!.call(c, { snapshotter: "soci", ...req }, md, (e: Error | null, r: T) => (e ? fail(e) : ok(r))),
    );
  } finally {
    c.close();
  }
}
const LEASE = "snapshotter-test";

/** Runs a container of IMAGE on our snapshotter and returns its stdout. */
async function runContainer(id: string, script: string): Promise<string> {
  const r = await ctd!.ctr([
    "run",
    "--rm",
    "--snapshotter",
    "soci",
    "--runc-root",
    join(dir, "runc"),
    IMAGE,
    id,
    "/bin/sh",
    "-c",
    script,
  ]);
  return r.stdout;
}

/** `ctr snapshots --snapshotter soci ls` as {key, parent, kind} rows. */
async function ctrSnapshots(): Promise<Array<{ key: string; parent: string; kind: string }>> {
  const { stdout } = await ctd!.ctr(["snapshots", "--snapshotter", "soci", "ls"]);
  return stdout
    .trim()
    .split("\n")
    .slice(1)
    .filter((l) => l.trim() !== "")
    .map((l) => {
      const f = l.trim().split(/\s+/);
      return f.length === 3 ? { key: f[0]!, parent: f[1]!, kind: f[2]! } : { key: f[0]!, parent: "", kind: f[1]! };
    });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "snap-ctd-"));
  snapRoot = join(dir, "soci", "snapshotter");
  sock = join(dir, "soci.sock");
  archive = await buildImage();
  await startServer();
  ctd = await startContainerd({ proxyPlugins: { soci: { address: sock } } });
  for (const ns of ["default", "lazy"]) await ctd.ctr(["leases", "create", "--id", LEASE], { namespace: ns });
}, 120_000);

afterAll(async () => {
  await ctd?.stop();
  await server?.close();
  if (dir) {
    for (const mp of await mountPointsUnder(dir)) await run("umount", ["-l", mp]).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
});

describe("containerd 1.6 with soci as a proxy snapshotter", () => {
  it("lists the proxy plugin as a working snapshotter", async () => {
    const { stdout } = await ctd!.ctr(["plugins", "ls"]);
    expect(stdout).toMatch(/io\.containerd\.snapshotter\.v1\s+soci\s+-\s+ok/);
  });

  it("unpacks an imported image into our snapshots", async () => {
    await ctd!.ctr(["images", "import", "--snapshotter", "soci", "--base-name", "example.com/soci/snaptest", archive]);
    const snaps = await ctrSnapshots();
    expect(snaps.map((s) => s.kind)).toEqual(["Committed", "Committed"]);
    const bottom = snaps.find((s) => s.parent === "")!;
    const top = snaps.find((s) => s.parent === bottom.key)!;
    expect(top).toBeDefined();
    // our store holds them under containerd's backend names `<ns>/<seq>/<chain id>`
    const names = server!.snapshotter.list([]).map((i) => i.name);
    expect(names).toHaveLength(2);
    for (const s of [bottom, top])
      expect(names.some((n) => n.startsWith("default/") && n.endsWith("/" + s.key))).toBe(true);

    const info = JSON.parse((await ctd!.ctr(["snapshots", "--snapshotter", "soci", "info", top.key])).stdout);
    expect(info).toMatchObject({ Kind: "Committed", Name: top.key, Parent: bottom.key });
    const usage = (await ctd!.ctr(["snapshots", "--snapshotter", "soci", "usage", bottom.key])).stdout;
    // busybox-static is about 2 MB: the bottom layer's usage says so
    const m = /(\d+(?:\.\d+)?)\s*([kMG]i?B)\s+(\d+)/.exec(usage);
    expect(m, usage).not.toBeNull();
    expect(m![2]).toMatch(/^Mi?B$/);
    expect(Number(m![3])).toBeGreaterThanOrEqual(8);
  });

  it("runs a container on the layers with runc", async () => {
    const out = await runContainer(
      "c1",
      "echo hello; cat /etc/x /etc/y; test -e /etc/gone || echo gone; echo scratch > /etc/x; cat /etc/x",
    );
    expect(out).toBe("hello\nx from the first layer\ny from the second layer\ngone\nscratch\n");
    // the write went to the container's own snapshot, removed with it
    expect(await runContainer("c2", "cat /etc/x")).toBe("x from the first layer\n");
    expect((await ctrSnapshots()).length).toBe(2);
  });

  it("serves ctr snapshots prepare/view/mounts/label/rm", async () => {
    const top = (await ctrSnapshots()).find((s) => s.parent !== "")!;
    await ctd!.ctr(["snapshots", "--snapshotter", "soci", "prepare", "work1", top.key]);
    const mounts = (await ctd!.ctr(["snapshots", "--snapshotter", "soci", "mounts", "/mnt", "work1"])).stdout;
    expect(mounts).toMatch(
      /^mount -t overlay overlay \/mnt -o workdir=.*\/work,upperdir=.*\/fs,lowerdir=.*\/fs:.*\/fs\n?$/,
    );
    await ctdSnapshots("default", "View", { key: "view1", parent: top.key });
    const view = (await ctd!.ctr(["snapshots", "--snapshotter", "soci", "mounts", "/mnt", "view1"])).stdout;
    expect(view).toMatch(/^mount -t overlay overlay \/mnt -o lowerdir=[^,]*\n?$/);
    await ctd!.ctr([
      "snapshots",
      "--snapshotter",
      "soci",
      "label",
      "work1",
      "purpose=test",
      "containerd.io/snapshot/purpose=test",
    ]);
    const info = JSON.parse((await ctd!.ctr(["snapshots", "--snapshotter", "soci", "info", "work1"])).stdout);
    expect(info).toMatchObject({
      Kind: "Active",
      Labels: { purpose: "test", "containerd.io/snapshot/purpose": "test" },
    });
    // containerd forwards only `containerd.io/snapshot/…` labels to a backend (Update by path)
    const backend = server!.snapshotter.list(["name~=work1$"])[0]!;
    expect(backend.labels).toEqual({ "containerd.io/snapshot/purpose": "test" });
    await ctd!.ctr(["snapshots", "--snapshotter", "soci", "rm", "work1", "view1"]);
    expect((await ctrSnapshots()).length).toBe(2);
  });

  it("keeps its store across a restart of the snapshotter", async () => {
    await server!.close();
    server = undefined;
    // containerd meanwhile gets an error, not a hang
    await expect(ctd!.ctr(["snapshots", "--snapshotter", "soci", "ls"])).rejects.toThrow();
    await startServer();
    // containerd redials with backoff (at most 3 s between attempts)
    const t0 = Date.now();
    for (;;) {
      const ok = await ctd!.ctr(["snapshots", "--snapshotter", "soci", "ls"]).then(
        () => true,
        () => false,
      );
      if (ok) break;
      expect(Date.now() - t0).toBeLessThan(15_000);
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(await runContainer("c3", "echo again; cat /etc/y")).toBe("again\ny from the second layer\n");
  });

  it("takes remote snapshots through containerd's AlreadyExists handshake", async () => {
    // containerd's own snapshots API, called the way its client unpacker calls it (namespace
    // header to containerd; containerd itself sends none to us)
    const call = <T = unknown>(rpc: string, req: object) => ctdSnapshots<T>("lazy", rpc, req);
    const layer = (chain: string, digest: string) => ({
      "containerd.io/snapshot.ref": chain,
      "containerd.io/snapshot/cri.layer-digest": digest,
      "containerd.io/snapshot/cri.image-ref": "example.com/lazy:1",
    });
    {
      const e1 = await call<never>("Prepare", {
        key: "extract-1 sha256:ch1",
        parent: "",
        labels: layer("sha256:ch1", "sha256:d1"),
      }).catch((e: grpc.ServiceError) => e);
      expect(e1.code).toBe(grpc.status.ALREADY_EXISTS);
      const e2 = await call<never>("Prepare", {
        key: "extract-2 sha256:ch2",
        parent: "sha256:ch1",
        labels: layer("sha256:ch2", "sha256:d2"),
      }).catch((e: grpc.ServiceError) => e);
      expect(e2.code).toBe(grpc.status.ALREADY_EXISTS);
      // the namespace came from the backend key's prefix
      expect(remoteRequests.map((r) => [r.namespace, r.target, r.parent])).toEqual([
        ["lazy", "sha256:ch1", ""],
        ["lazy", "sha256:ch2", "sha256:ch1"],
      ]);
      // containerd found our commits by List and recorded them under the chain IDs
      expect((await call<{ info: object }>("Stat", { key: "sha256:ch2" })).info).toMatchObject({
        name: "sha256:ch2",
        parent: "sha256:ch1",
        kind: "COMMITTED",
      });

      // a container snapshot on the remote layers: containerd hands out our overlay of both
      await ctd!.ctr(["snapshots", "--snapshotter", "soci", "prepare", "lazy-ctr", "sha256:ch2"], {
        namespace: "lazy",
      });
      const cmd = (
        await ctd!.ctr(["snapshots", "--snapshotter", "soci", "mounts", join(dir, "lazy-mnt"), "lazy-ctr"], {
          namespace: "lazy",
        })
      ).stdout;
      await mkdir(join(dir, "lazy-mnt"));
      execFileSync("sh", ["-c", cmd]);
      try {
        expect((await readdir(join(dir, "lazy-mnt"))).sort()).toEqual(["sha256-d1", "sha256-d2"]);
        expect(await readFile(join(dir, "lazy-mnt", "sha256-d1"), "utf8")).toBe("sha256:d1\n");
      } finally {
        execFileSync("umount", [join(dir, "lazy-mnt")]);
      }
      await ctd!.ctr(["snapshots", "--snapshotter", "soci", "rm", "lazy-ctr", "sha256:ch2", "sha256:ch1"], {
        namespace: "lazy",
      });
    }
  });

  it("removes the snapshots and their directories when the image is removed", async () => {
    const before = await readdir(join(snapRoot, "snapshots"));
    expect(before.length).toBeGreaterThanOrEqual(2);
    for (const ns of ["default", "lazy"]) await ctd!.ctr(["leases", "rm", LEASE], { namespace: ns });
    await ctd!.ctr(["images", "rm", "--sync", IMAGE]);
    expect(await ctrSnapshots()).toEqual([]);
    expect(server!.snapshotter.list([])).toEqual([]);
    // containerd's GC ends with Cleanup, which deleted the directories
    expect(await readdir(join(snapRoot, "snapshots"))).toEqual([]);
    // the remote layers were unmounted by Cleanup
    expect(await mountPointsUnder(join(snapRoot, "snapshots"))).toEqual([]);
    expect(calls.filter((c) => c.startsWith("ERROR"))).toEqual([]);
  });
});
