// The snapshots gRPC service over a real unix socket, driven by our own gRPC client the way
// containerd drives it (docs/snapshotter.md §1.1–1.7, §2.3): every RPC, containerd's error codes, List
// batching and filters, real overlayfs/bind mounts of the returned mount specs, the
// RemotePreparer hook with real (tmpfs) mounts, Cleanup and restart.
import * as grpc from "@grpc/grpc-js";
import { execFileSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { mountPointsUnder } from "../src/snapshotter/mountinfo.js";
import { snapshotsService } from "../src/snapshotter/proto.js";
import type { RemotePreparer, RemotePrepareRequest, RemotePrepareResult } from "../src/snapshotter/remote.js";
import { startSnapshotterServer, type SnapshotterServer } from "../src/snapshotter/server.js";

interface Mount {
  type: string;
  source: string;
  target: string;
  options: string[];
}
interface Info {
  name: string;
  parent: string;
  kind: string;
  createdAt: { seconds: number; nanos: number };
  updatedAt: { seconds: number; nanos: number };
  labels: Record<string, string>;
}

type GrpcMethod = (this: grpc.Client, ...args: unknown[]) => unknown;

/** A promise-returning client of the Snapshots service. */
class Client {
  // the service's methods are generated at run time, looked up by name
  private readonly c: grpc.Client & Record<string, GrpcMethod>;
  constructor(address: string) {
    const Ctor = snapshotsService();
    this.c = new Ctor(`unix:${address}`, grpc.credentials.createInsecure(), {
      "grpc.use_local_subchannel_pool": 1,
    }) as grpc.Client & Record<string, GrpcMethod>;
  }
  call<T = unknown>(rpc: string, req: object, md = new grpc.Metadata()): Promise<T> {
    return new Promise((ok, fail) =>
      this.c[rpc]!.call(this.c, { snapshotter: "soci", ...req }, md, (err: Error | null, res: T) =>
        err ? fail(err) : ok(res),
      ),
    );
  }
  prepare = (key: string, parent = "", labels?: Record<string, string>, md?: grpc.Metadata) =>
    this.call<{ mounts: Mount[] }>("Prepare", { key, parent, labels }, md).then((r) => r.mounts);
  view = (key: string, parent = "") => this.call<{ mounts: Mount[] }>("View", { key, parent }).then((r) => r.mounts);
  mounts = (key: string) => this.call<{ mounts: Mount[] }>("Mounts", { key }).then((r) => r.mounts);
  commit = (name: string, key: string, labels?: Record<string, string>) => this.call("Commit", { name, key, labels });
  remove = (key: string) => this.call("Remove", { key });
  stat = (key: string) => this.call<{ info: Info }>("Stat", { key }).then((r) => r.info);
  usage = (key: string) => this.call<{ size: number; inodes: number }>("Usage", { key });
  update = (info: Partial<Info>, paths?: string[]) =>
    this.call<{ info: Info }>("Update", { info, updateMask: paths ? { paths } : undefined }).then((r) => r.info);
  cleanup = () => this.call("Cleanup", {});
  /** Every message of the List stream (one array per message). */
  listMessages(filters: string[] = []): Promise<Info[][]> {
    return new Promise((ok, fail) => {
      const out: Info[][] = [];
      const stream = this.c.List!.call(this.c, { snapshotter: "soci", filters }) as grpc.ClientReadableStream<{
        info: Info[];
      }>;
      stream.on("data", (m) => out.push(m.info));
      stream.on("error", fail);
      stream.on("end", () => ok(out));
    });
  }
  list = async (filters: string[] = []) => (await this.listMessages(filters)).flat();
  close = () => this.c.close();
}

/** The gRPC status code and message a call failed with. */
async function failure(p: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await p;
  } catch (err) {
    const e = err as grpc.ServiceError;
    return { code: e.code, details: e.details };
  }
  throw new Error("expected the call to fail");
}

const tmpRoots: string[] = [];
function tmp(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  tmpRoots.push(d);
  return d;
}

/** Performs a returned mount spec on `target` for real (as containerd would), then unmounts. */
function withMounted<T>(mounts: Mount[], fn: (dir: string) => T): T {
  expect(mounts).toHaveLength(1);
  const m = mounts[0]!;
  const target = tmp("snap-mnt-");
  const args = m.type === "bind" ? ["--bind", m.source, target] : ["-t", m.type, m.source, target];
  execFileSync("mount", [...args, "-o", m.options.join(",")]);
  try {
    return fn(target);
  } finally {
    execFileSync("umount", [target]);
  }
}

let root: string;
let sock: string;
let server: SnapshotterServer | undefined;
let client: Client;

async function start(remote?: RemotePreparer) {
  server = await startSnapshotterServer({ address: sock, root, remote });
  client = new Client(sock);
}
async function stop(unmount = true) {
  client?.close();
  await server?.close({ unmount });
  server = undefined;
}

beforeEach(() => {
  const base = tmp("snap-svc-");
  root = join(base, "root");
  sock = join(base, "run", "snap.sock");
});
afterEach(async () => {
  await stop();
  // a failed test may leave mounts in our own temp dirs (never anyone else's)
  for (const d of tmpRoots) for (const mp of await mountPointsUnder(d)) execFileSync("umount", ["-l", mp]);
});
afterAll(() => {
  for (const d of tmpRoots) rmSync(d, { recursive: true, force: true });
});

describe("snapshots service: plain overlay snapshots", () => {
  beforeEach(() => start());

  it("prepares, mounts for real, commits and stacks layers with overlayfs", async () => {
    const m1 = await client.prepare("default/1/extract-a sha256:l1");
    expect(m1).toEqual([
      { type: "bind", source: join(root, "snapshots", "1", "fs"), target: "", options: ["rw", "rbind"] },
    ]);
    expect(statSync(join(root, "snapshots", "1", "fs")).mode & 0o777).toBe(0o755);
    expect(statSync(join(root, "snapshots", "1", "work")).mode & 0o777).toBe(0o711);
    withMounted(m1, (d) => {
      mkdirSync(join(d, "etc"));
      writeFileSync(join(d, "etc", "x"), "from layer 1\n");
      writeFileSync(join(d, "gone"), "deleted above\n");
    });
    await client.commit("default/2/sha256:l1", "default/1/extract-a sha256:l1");

    const m2 = await client.prepare("default/3/extract-b sha256:l2", "default/2/sha256:l1");
    const s = (id: string, d: string) => join(root, "snapshots", id, d);
    expect(m2).toEqual([
      {
        type: "overlay",
        source: "overlay",
        target: "",
        options: [`workdir=${s("2", "work")}`, `upperdir=${s("2", "fs")}`, `lowerdir=${s("1", "fs")}`],
      },
    ]);
    withMounted(m2, (d) => {
      expect(readFileSync(join(d, "etc", "x"), "utf8")).toBe("from layer 1\n");
      writeFileSync(join(d, "etc", "y"), "from layer 2\n");
      rmSync(join(d, "gone"));
    });
    await client.commit("default/4/sha256:l2", "default/3/extract-b sha256:l2");

    // a container on top: three layers, nearest parent first
    const m3 = await client.prepare("default/5/ctr", "default/4/sha256:l2");
    expect(m3[0]!.options).toContain(`lowerdir=${s("2", "fs")}:${s("1", "fs")}`);
    withMounted(m3, (d) => {
      expect(readFileSync(join(d, "etc", "y"), "utf8")).toBe("from layer 2\n");
      expect(existsSync(join(d, "gone"))).toBe(false);
    });

    // views: one parent ⇒ read-only bind of the parent; two ⇒ overlay of lowers only
    expect(await client.view("default/6/v1", "default/2/sha256:l1")).toEqual([
      { type: "bind", source: s("1", "fs"), target: "", options: ["ro", "rbind"] },
    ]);
    const v2 = await client.view("default/7/v2", "default/4/sha256:l2");
    expect(v2).toEqual([
      { type: "overlay", source: "overlay", target: "", options: [`lowerdir=${s("2", "fs")}:${s("1", "fs")}`] },
    ]);
    withMounted(v2, (d) => expect(readFileSync(join(d, "etc", "x"), "utf8")).toBe("from layer 1\n"));
    expect(existsSync(s("5", "work"))).toBe(false);
    expect(await client.view("default/8/v0")).toEqual([
      { type: "bind", source: s("6", "fs"), target: "", options: ["ro", "rbind"] },
    ]);

    // Mounts repeats what Prepare/View answered
    expect(await client.mounts("default/5/ctr")).toEqual(m3);
    expect(await client.mounts("default/7/v2")).toEqual(v2);
  });

  it("answers Stat, Usage and Update", async () => {
    await client.prepare("k1", "", { "containerd.io/snapshot.ref": "sha256:c", other: "x" });
    writeFileSync(join(root, "snapshots", "1", "fs", "data"), Buffer.alloc(10000, 1));
    const active = await client.stat("k1");
    expect(active).toMatchObject({
      name: "k1",
      parent: "",
      kind: "ACTIVE",
      labels: { "containerd.io/snapshot.ref": "sha256:c", other: "x" },
    });
    expect(active.createdAt.seconds).toBeGreaterThan(1.7e9);
    expect(active.updatedAt).toEqual(active.createdAt);

    // active: measured now (the fs/ dir and the 10 000-byte file, in 4 KiB blocks)
    const u1 = await client.usage("k1");
    expect(u1.inodes).toBe(2);
    expect(u1.size).toBeGreaterThanOrEqual(12288);
    writeFileSync(join(root, "snapshots", "1", "fs", "more"), Buffer.alloc(5000, 2));
    expect((await client.usage("k1")).inodes).toBe(3);

    await client.commit("c1", "k1", { kept: "yes" });
    const committed = await client.stat("c1");
    expect(committed).toMatchObject({ name: "c1", kind: "COMMITTED", labels: { kept: "yes" } });
    // committed: the usage measured at commit
    const u2 = await client.usage("c1");
    expect(u2.inodes).toBe(3);
    writeFileSync(join(root, "snapshots", "1", "fs", "late"), "x");
    expect(await client.usage("c1")).toEqual(u2);

    const upd = await client.update({ name: "c1", labels: { a: "1", kept: "" } }, ["labels.a", "labels.kept"]);
    expect(upd.labels).toEqual({ a: "1" });
    expect(upd.updatedAt.seconds * 1e9 + upd.updatedAt.nanos).toBeGreaterThan(
      committed.updatedAt.seconds * 1e9 + committed.updatedAt.nanos,
    );
    expect((await client.update({ name: "c1", labels: { b: "2" } })).labels).toEqual({ b: "2" });
    expect((await client.stat("c1")).labels).toEqual({ b: "2" });
  });

  it("maps failures to containerd's error codes", async () => {
    const S = grpc.status;
    await client.prepare("a");
    await client.commit("base", "a");
    await client.prepare("b", "base");
    await client.view("v", "base");

    expect(await failure(client.prepare("b", "base"))).toEqual({
      code: S.ALREADY_EXISTS,
      details: "snapshot b: already exists",
    });
    expect(await failure(client.prepare("c", "nope"))).toEqual({
      code: S.NOT_FOUND,
      details: 'missing parent "nope" bucket: not found',
    });
    expect(await failure(client.prepare("c", "b"))).toEqual({
      code: S.INVALID_ARGUMENT,
      details: 'parent "b" is not committed snapshot: invalid argument',
    });
    expect((await failure(client.prepare(""))).code).toBe(S.INVALID_ARGUMENT);
    expect(await failure(client.mounts("base"))).toEqual({
      code: S.FAILED_PRECONDITION,
      details: "failed to get active mount: requested snapshot base not active or view: failed precondition",
    });
    expect(await failure(client.mounts("zz"))).toEqual({
      code: S.NOT_FOUND,
      details: "failed to get active mount: snapshot does not exist: not found",
    });
    expect(await failure(client.commit("x", "v"))).toEqual({
      code: S.FAILED_PRECONDITION,
      details: 'snapshot "v" is not active: failed precondition',
    });
    expect((await failure(client.commit("base", "b"))).code).toBe(S.ALREADY_EXISTS);
    expect((await failure(client.commit("x", "zz"))).code).toBe(S.NOT_FOUND);
    expect(await failure(client.remove("base"))).toEqual({
      code: S.FAILED_PRECONDITION,
      details: "cannot remove snapshot with child: failed precondition",
    });
    expect(await failure(client.remove("zz"))).toEqual({ code: S.NOT_FOUND, details: "snapshot zz: not found" });
    expect(await failure(client.stat("zz"))).toEqual({
      code: S.NOT_FOUND,
      details: "snapshot does not exist: not found",
    });
    expect((await failure(client.usage("zz"))).code).toBe(S.NOT_FOUND);
    expect((await failure(client.update({ name: "base", parent: "x" }, ["parent"]))).code).toBe(S.INVALID_ARGUMENT);
    expect((await failure(client.update({ name: "zz" }))).code).toBe(S.NOT_FOUND);
    expect((await failure(client.list(["name=="]))).code).toBe(S.INVALID_ARGUMENT);
    // a failed Prepare leaves no directory behind
    expect(readdirSync(join(root, "snapshots")).sort()).toEqual(["1", "2", "3"]);
  });

  it("streams List in batches of 100 and applies filters", async () => {
    await client.prepare("base");
    await client.commit("base-c", "base", { "containerd.io/snapshot.ref": "sha256:base" });
    for (let i = 0; i < 250; i++)
      await client.prepare(`default/${i}/k${String(i).padStart(3, "0")}`, "base-c", { n: String(i % 3) });
    const msgs = await client.listMessages();
    expect(msgs.map((m) => m.length)).toEqual([100, 100, 51]);
    expect(msgs.flat()[0]).toMatchObject({ name: "base-c", kind: "COMMITTED" });
    expect(await client.listMessages(["name==nothing"])).toEqual([]);

    // containerd's remote-snapshot handshake filter
    const hs = await client.list(['labels."containerd.io/snapshot.ref"==sha256:base,parent==""']);
    expect(hs.map((i) => i.name)).toEqual(["base-c"]);
    expect((await client.list(["labels.n==2", "name~=k00[01]$"])).map((i) => i.name)).toEqual(
      ["default/0/k000", "default/1/k001"]
        .concat(
          Array.from({ length: 83 }, (_, j) => 3 * j + 2).map((i) => `default/${i}/k${String(i).padStart(3, "0")}`),
        )
        .sort(),
    );
    expect((await client.list(["kind==committed"])).length).toBe(1);
  });

  it("Cleanup removes the directories of removed snapshots only", async () => {
    await client.prepare("a");
    await client.commit("base", "a");
    await client.prepare("b", "base");
    await client.prepare("c");
    mkdirSync(join(root, "snapshots", "new-leftover"));
    // an orphan with something still mounted on it: unmounted, never deleted through
    const outside = tmp("snap-outside-");
    writeFileSync(join(outside, "keep"), "must survive");
    mkdirSync(join(root, "snapshots", "999", "fs"), { recursive: true });
    execFileSync("mount", ["--bind", outside, join(root, "snapshots", "999", "fs")]);
    await client.remove("b");
    expect(existsSync(join(root, "snapshots", "2"))).toBe(true); // Remove only forgets
    await client.cleanup();
    expect(readdirSync(join(root, "snapshots")).sort()).toEqual(["1", "3"]);
    expect(readFileSync(join(outside, "keep"), "utf8")).toBe("must survive");
    expect(await mountPointsUnder(join(root, "snapshots"))).toEqual([]);
    await client.remove("base");
    await client.remove("c");
    await client.cleanup();
    expect(readdirSync(join(root, "snapshots"))).toEqual([]);
  });

  it("stays consistent under concurrent Prepare, Commit, Remove and Cleanup", async () => {
    await client.prepare("a");
    await client.commit("base", "a");
    const keys = Array.from({ length: 40 }, (_, i) => `default/${i}/k${i}`);
    // all at once, Cleanups interleaved with creations and removals
    await Promise.all([
      ...keys.map(async (k, i) => {
        await client.prepare(k, "base");
        if (i % 2 === 0) await client.commit(`c${i}`, k);
        if (i % 4 === 0) await client.remove(`c${i}`);
        if (i % 4 === 1) await client.remove(k);
      }),
      ...Array.from({ length: 5 }, () => client.cleanup()),
    ]);
    await client.cleanup();
    const live = await client.list();
    expect(live).toHaveLength(1 + 40 - 10 - 10);
    // exactly one directory per live snapshot, each with its fs/
    const ids = readdirSync(join(root, "snapshots")).sort((x, y) => Number(x) - Number(y));
    expect(ids).toHaveLength(live.length);
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) expect(existsSync(join(root, "snapshots", id, "fs"))).toBe(true);
    // and every live active snapshot's mounts point at an existing directory
    for (const info of live.filter((i) => i.kind === "ACTIVE")) {
      const upper = (await client.mounts(info.name))[0]!.options.find((o) => o.startsWith("upperdir="))!.slice(9);
      expect(existsSync(upper)).toBe(true);
    }
  });

  it("keeps its store across a restart and replaces a stale socket", async () => {
    await client.prepare("a", "", { l: "1" });
    await client.commit("base", "a");
    await stop();
    await start();
    expect(await client.stat("base")).toMatchObject({ kind: "COMMITTED" });
    expect((await client.prepare("b", "base"))[0]!.options).toContain(`upperdir=${join(root, "snapshots", "2", "fs")}`);
    // a second server on the same root is refused (even through another path to it), and the
    // first one keeps serving
    const other = join(root, "..", "other.sock");
    await expect(startSnapshotterServer({ address: other, root: join(root, "..", ".", "root") })).rejects.toThrow(
      `another snapshotter is already running on ${root}`,
    );
    expect(existsSync(other)).toBe(false);
    expect(await client.stat("base")).toMatchObject({ kind: "COMMITTED" });
    // a second server on the same socket path takes it over
    const second = await startSnapshotterServer({ address: sock, root: join(root, "..", "root2") });
    const c2 = new Client(sock);
    expect(await c2.list()).toEqual([]);
    c2.close();
    await second.close();
  });

  it("refuses to start where overlayfs cannot work (unless told to skip the check)", async () => {
    // overlayfs cannot be the upper layer of another overlay
    const d = tmp("snap-ovl-");
    for (const x of ["l", "u", "w", "m"]) mkdirSync(join(d, x));
    execFileSync("mount", [
      "-t",
      "overlay",
      "overlay",
      join(d, "m"),
      "-o",
      `lowerdir=${join(d, "l")},upperdir=${join(d, "u")},workdir=${join(d, "w")}`,
    ]);
    try {
      const opts = { address: join(d, "s.sock"), root: join(d, "m", "root") };
      await expect(startSnapshotterServer(opts)).rejects.toThrow(`overlayfs is not usable on ${opts.root}`);
      expect(readdirSync(opts.root)).toEqual(["snapshots"]); // scratch removed
      const s2 = await startSnapshotterServer({ ...opts, skipOverlayCheck: true });
      await s2.close();
    } finally {
      execFileSync("umount", [join(d, "m")]);
    }
  });

  it("refuses a socket path that is not a socket", async () => {
    const p = join(tmp("snap-sock-"), "file");
    writeFileSync(p, "");
    await expect(startSnapshotterServer({ address: p, root: join(root, "..", "r3") })).rejects.toThrow(
      `${p} exists and is not a socket`,
    );
  });
});

/** A RemotePreparer that "mounts a layer" as a tmpfs holding one file named after the target. */
class TmpfsPreparer implements RemotePreparer {
  calls: RemotePrepareRequest[] = [];
  restored: string[] = [];
  unmounted: string[] = [];
  broken = new Set<string>();
  constructor(
    private readonly answer: (req: RemotePrepareRequest) => RemotePrepareResult | Promise<RemotePrepareResult>,
  ) {}
  async prepare(req: RemotePrepareRequest) {
    this.calls.push(req);
    const result = await this.answer(req);
    if (result.outcome === "remote") this.mountLayer(req.mountpoint, req.target);
    if (result.outcome === "local")
      writeFileSync(join(req.mountpoint, "local-" + req.target.replace(/\W/g, "")), Buffer.alloc(8192, 1));
    return result;
  }
  mountLayer(mountpoint: string, target: string) {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m", "soci-test", mountpoint]);
    writeFileSync(join(mountpoint, "layer-" + target.replace(/\W/g, "")), target);
  }
  async check(mountpoint: string) {
    if (this.broken.has(mountpoint)) throw new Error("registry unreachable");
  }
  async restore(req: { mountpoint: string; name: string }) {
    this.restored.push(req.name);
    this.mountLayer(req.mountpoint, req.name);
  }
  async unmount(mountpoint: string) {
    this.unmounted.push(mountpoint);
    execFileSync("umount", [mountpoint]);
  }
}

describe("snapshots service: remote snapshot hook", () => {
  const ref = "containerd.io/snapshot.ref";

  it("commits a remote layer under the target name and answers AlreadyExists", async () => {
    const remote = new TmpfsPreparer(() => ({ outcome: "remote", labels: { extra: "1" } }));
    await start(remote);
    const labels = { [ref]: "sha256:c1", "containerd.io/snapshot/cri.image-ref": "reg/img:1" };
    expect(await failure(client.prepare("ns1/3/extract-1 sha256:c1", "", labels))).toEqual({
      code: grpc.status.ALREADY_EXISTS,
      details: 'target snapshot "sha256:c1": already exists',
    });
    expect(remote.calls[0]).toMatchObject({
      key: "ns1/3/extract-1 sha256:c1",
      target: "sha256:c1",
      parent: "",
      namespace: "ns1", // from the key: no header
      snapshotId: "1",
      mountpoint: join(root, "snapshots", "1", "fs"),
      parentDirs: [],
    });
    // what containerd does next: List with the handshake filter, then Stat
    const found = await client.list([`labels."${ref}"==sha256:c1,parent==""`]);
    expect(found.map((i) => [i.name, i.kind])).toEqual([["sha256:c1", "COMMITTED"]]);
    expect(found[0]!.labels).toEqual({
      ...labels,
      extra: "1",
      "containerd.io/snapshot/remote/namespace": "ns1",
      "containerd.io/snapshot/remote": "remote snapshot",
      "containerd.io/snapshot/remote/has.soci.index.digest": "true",
    });
    expect(await client.usage("sha256:c1")).toEqual({ size: 0, inodes: 0 });

    // the same layer again (another namespace): answered from the store, not mounted twice
    expect((await failure(client.prepare("ns2/1/extract-9 sha256:c1", "", labels))).code).toBe(
      grpc.status.ALREADY_EXISTS,
    );
    expect(remote.calls).toHaveLength(1);
    expect(readdirSync(join(root, "snapshots"))).toEqual(["1"]);

    // the next layer: namespace from the header wins; parents' dirs passed along
    const md = new grpc.Metadata();
    md.set("containerd-namespace", "hdr");
    await failure(client.prepare("ns1/4/extract-2 sha256:c2", "sha256:c1", { [ref]: "sha256:c2" }, md));
    expect(remote.calls[1]).toMatchObject({
      namespace: "hdr",
      parentDirs: [join(root, "snapshots", "1", "fs")],
      snapshotId: "2",
    });

    // a container on the remote layers sees their contents through overlayfs
    const m = await client.prepare("ns1/5/ctr", "sha256:c2");
    withMounted(m, (d) => {
      expect(readFileSync(join(d, "layer-sha256c1"), "utf8")).toBe("sha256:c1");
      expect(readFileSync(join(d, "layer-sha256c2"), "utf8")).toBe("sha256:c2");
    });

    // an unusable lower layer: Unavailable before any mount is handed out
    remote.broken.add(join(root, "snapshots", "1", "fs"));
    expect(await failure(client.prepare("ns1/6/ctr2", "sha256:c2"))).toEqual({
      code: grpc.status.UNAVAILABLE,
      details: 'layer "1" unavailable: unavailable',
    });
    expect((await failure(client.mounts("ns1/5/ctr"))).code).toBe(grpc.status.UNAVAILABLE);
    remote.broken.clear();

    // an invalid namespace header is refused
    const bad = new grpc.Metadata();
    bad.set("containerd-namespace", "a/b");
    expect((await failure(client.prepare("x/1/k", "", { [ref]: "sha256:z" }, bad))).code).toBe(
      grpc.status.INVALID_ARGUMENT,
    );

    // removal then Cleanup unmounts the layers and deletes their directories
    for (const k of ["ns1/5/ctr", "ns1/6/ctr2", "sha256:c2", "sha256:c1"]) await client.remove(k);
    expect(await mountPointsUnder(join(root, "snapshots"))).toHaveLength(2);
    await client.cleanup();
    expect(remote.unmounted.sort()).toEqual([join(root, "snapshots", "1", "fs"), join(root, "snapshots", "2", "fs")]);
    expect(await mountPointsUnder(join(root, "snapshots"))).toEqual([]);
    expect(readdirSync(join(root, "snapshots"))).toEqual([]);
  });

  it("commits a locally unpacked layer with its measured usage", async () => {
    await start(new TmpfsPreparer(() => ({ outcome: "local" })));
    expect((await failure(client.prepare("default/1/extract sha256:l", "", { [ref]: "sha256:l" }))).code).toBe(
      grpc.status.ALREADY_EXISTS,
    );
    const info = await client.stat("sha256:l");
    expect(info.labels["containerd.io/snapshot/remote"]).toBeUndefined();
    expect(info.labels["containerd.io/snapshot/remote/has.soci.index.digest"]).toBe("true");
    expect((await client.usage("sha256:l")).size).toBeGreaterThanOrEqual(8192);
  });

  it("defers to containerd when the preparer declines or fails", async () => {
    let n = 0;
    const remote = new TmpfsPreparer((req) => {
      if (n++ === 0) return { outcome: "defer", reason: "no valid SOCI index found; deferring to container runtime" };
      // a failure after the layer got mounted: the mount must not stay in containerd's way
      remote.mountLayer(req.mountpoint, req.target);
      throw new Error("index fetch failed");
    });
    await start(remote);
    for (const key of ["default/1/extract-a sha256:a", "default/2/extract-b sha256:b"]) {
      const m = await client.prepare(key, "", { [ref]: key.split(" ")[1]! });
      expect(m[0]).toMatchObject({ type: "bind", options: ["rw", "rbind"] });
      // containerd applies the layer and commits under its own name
      await client.commit(key.replace("extract", "c"), key);
    }
    expect((await client.list()).map((i) => i.name)).toEqual(["default/1/c-a sha256:a", "default/2/c-b sha256:b"]);
    expect(remote.unmounted).toEqual([join(root, "snapshots", "2", "fs")]);
    expect(await mountPointsUnder(join(root, "snapshots"))).toEqual([]);
    // no label: the preparer is never asked
    await client.prepare("default/3/plain");
  });

  it("provides a layer once when two pulls ask for it at the same time", async () => {
    // two images sharing a layer, pulled at once: containerd sends both Prepares before either
    // has committed the target
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const remote = new TmpfsPreparer(async () => {
      await gate;
      return { outcome: "remote" };
    });
    await start(remote);
    const labels = { [ref]: "sha256:shared" };
    const first = failure(client.prepare("default/1/extract-1 sha256:shared", "", labels));
    const second = failure(client.prepare("default/2/extract-2 sha256:shared", "", labels));
    await new Promise((r) => setTimeout(r, 100));
    release();
    expect((await first).code).toBe(grpc.status.ALREADY_EXISTS);
    expect((await second).code).toBe(grpc.status.ALREADY_EXISTS);
    expect(remote.calls).toHaveLength(1);
    expect(await mountPointsUnder(join(root, "snapshots"))).toEqual([join(root, "snapshots", "1", "fs")]);
    expect((await client.list()).map((i) => [i.name, i.kind])).toEqual([["sha256:shared", "COMMITTED"]]);

    // a Prepare whose target name is taken by a snapshot on another parent: the layer it mounted
    // cannot be committed, so it is taken down at once instead of waiting for containerd's GC
    expect((await failure(client.prepare("default/3/extract-3 sha256:shared", "sha256:shared", labels))).code).toBe(
      grpc.status.ALREADY_EXISTS,
    );
    expect(remote.calls).toHaveLength(2);
    expect(remote.unmounted).toEqual([join(root, "snapshots", "2", "fs")]);
    expect(await mountPointsUnder(join(root, "snapshots"))).toEqual([join(root, "snapshots", "1", "fs")]);
    expect((await client.list()).map((i) => i.name)).toEqual(["sha256:shared"]);
    await client.cleanup();
    expect(readdirSync(join(root, "snapshots"))).toEqual(["1"]);
  });

  it("re-mounts remote snapshots at restart after clearing leftover mounts", async () => {
    const first = new TmpfsPreparer(() => ({ outcome: "remote" }));
    await start(first);
    await failure(client.prepare("default/1/extract sha256:r", "", { [ref]: "sha256:r" }));
    // like SIGTERM: the mount stays behind
    await stop(false);
    const mp = join(root, "snapshots", "1", "fs");
    expect(await mountPointsUnder(join(root, "snapshots"))).toEqual([mp]);

    const second = new TmpfsPreparer(() => ({ outcome: "remote" }));
    await start(second);
    expect(second.restored).toEqual(["sha256:r"]);
    expect(await mountPointsUnder(join(root, "snapshots"))).toEqual([mp]); // one mount: old one gone
    withMounted(await client.view("default/2/v", "sha256:r"), (d) => expect(readdirSync(d)).toEqual(["layer-sha256r"]));
    // SIGINT-style close unmounts
    await stop(true);
    expect(await mountPointsUnder(join(root, "snapshots"))).toEqual([]);

    // a failing restore stops the start unless invalid mounts are allowed
    const failing: RemotePreparer = {
      prepare: async () => ({ outcome: "defer" }),
      restore: async () => Promise.reject(new Error("registry down")),
    };
    await expect(startSnapshotterServer({ address: sock, root, remote: failing })).rejects.toThrow(
      "failed to restore remote snapshot sha256:r (id 1): registry down",
    );
    server = await startSnapshotterServer({ address: sock, root, remote: failing, allowInvalidMountsOnRestart: true });
    client = new Client(sock);
    expect((await client.stat("sha256:r")).kind).toBe("COMMITTED");
  });
});
