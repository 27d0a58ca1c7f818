// `[content_store] type = "containerd"` (docs/snapshotter.md §3.3): our `soci-snapshotter-grpc` daemon,
// as containerd 1.6's proxy snapshotter, keeps the SOCI artifacts it fetches (the SOCI index, its
// ztocs and prefetch artifacts) in that containerd's content store, in the namespace of the pull,
// instead of `<root>/content`. The index is a GC root (`containerd.io/gc.root`) referencing every
// layers[] entry (`containerd.io/gc.ref.content.ztoc.<i>`), so the artifacts survive containerd's
// garbage collection, and a restarted daemon remounts the layers from them without the registry
// serving the index again. An image converted with `soci convert` (with a prefetch artifact) in a
// real registry is pulled with `soci image rpull` and run with runc.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { startRegistry, type RegistryServer } from "./helpers/registry-server.js";
import { startContainerd, type Containerd } from "./helpers/containerd.js";
import {
  fuseMountsUnder,
  SOCI_BIN,
  spawnDaemon,
  unmountAllUnder,
  waitForSnapshotter,
  type SociDaemon,
} from "./helpers/soci-daemon.js";
import { pushTestImage, type PushedImage } from "./helpers/test-image.js";
import { RegistryClient } from "../src/registry/client.js";
import { RegistryAuthorizer } from "../src/registry/auth.js";
import { ContainerdClient } from "../src/containerd/client.js";
import { GC_REF_CONTENT, GC_ROOT } from "../src/containerd/gc-labels.js";

const run = promisify(execFile);
const NS = "cstore-ns";
const REPO = "cstore/img";

let dir = "";
let registry: RegistryServer;
let ctd: Containerd | undefined;
let ctdClient: ContainerdClient | undefined;
let daemon: SociDaemon | undefined;
let pushed: PushedImage;
let image = "";

const sock = () => join(dir, "soci.sock");
const daemonRoot = () => join(dir, "soci-root");
const fuseMounts = () => fuseMountsUnder(daemonRoot());
const content = () => ctdClient!.withNamespace(NS).content;

async function startDaemon(): Promise<void> {
  daemon = spawnDaemon({ address: sock(), root: daemonRoot(), config: join(dir, "config.toml") });
  await daemon.ready;
}

async function runContainer(id: string, script: string): Promise<string> {
  const r = await ctd!
    .ctr(
      ["run", "--rm", "--snapshotter", "soci", "--runc-root", join(dir, "runc"), image, id, "/bin/sh", "-c", script],
      { namespace: NS },
    )
    .catch((e: Error) => {
      throw new Error(`${e.message}\ndaemon log:\n${daemon?.log().slice(-6000)}`);
    });
  return r.stdout;
}

/** The SOCI index digest the daemon logged (one index for the image). */
function loggedIndexDigests(): string[] {
  return [
    ...new Set(
      daemon!
        .lines("digest")
        .filter((l) => l.msg === "fetching SOCI artifacts using index descriptor")
        .map((l) => l.digest!),
    ),
  ];
}

/** The blob files (`<alg>/<hex>`) below `path` (none if it does not exist). */
async function blobsUnder(path: string): Promise<string[]> {
  return (await readdir(path, { recursive: true }).catch(() => [] as string[])).filter((p) => /[0-9a-f]{64}$/.test(p));
}

const getRequests = (path: string) => registry.requests.filter((r) => r.startsWith(`GET /v2/${REPO}/${path} `));

let indexDigest = "";
let indexLayers: Array<{ digest: string; mediaType: string }> = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "soci-cstore-"));
  registry = await startRegistry({ accessLog: true });
  const client = new RegistryClient({ plainHttp: true, authorizer: new RegistryAuthorizer({ dockerConfig: false }) });
  pushed = await pushTestImage(client, registry.host, REPO, "latest", 4 << 20);
  image = `${registry.host}/${REPO}:soci`;
  // the busybox and data layers get ztocs (and the data layer a prefetch artifact); /etc stays unindexed
  await run("node", [
    SOCI_BIN,
    "--root",
    join(dir, "convert-root"),
    "convert",
    "--plain-http",
    "--min-layer-size",
    "100000",
    "--span-size",
    String(256 << 10),
    "--prefetch-file",
    "/data/f7.txt",
    pushed.ref,
    image,
  ]);
  ctd = await startContainerd({ proxyPlugins: { soci: { address: sock() } } });
  ctdClient = ContainerdClient.connect({ address: ctd.address });
  await writeFile(
    join(dir, "config.toml"),
    [
      "[background_fetch]",
      "disable = true",
      "[prefetch]",
      "enable = true",
      "[content_store]",
      `type = "containerd"`,
      `containerd_address = "${ctd.address}"`,
      "",
    ].join("\n"),
  );
  await startDaemon();
  await waitForSnapshotter((args) => ctd!.ctr(args));
}, 240_000);

afterAll(async () => {
  ctdClient?.close();
  await ctd?.stop().catch(() => undefined);
  await daemon?.stop("SIGINT").catch(() => undefined);
  await unmountAllUnder(dir);
  await registry?.stop();
  await rm(dir, { recursive: true, force: true });
}, 60_000);

describe("[content_store] type = containerd", () => {
  it("soci image rpull in a namespace mounts the indexed layers lazily, and a container runs", async () => {
    const r = await run("node", [
      SOCI_BIN,
      "--address",
      ctd!.socket,
      "--namespace",
      NS,
      "image",
      "rpull",
      "--plain-http",
      image,
    ]).catch((e: Error) => {
      throw new Error(`${e.message}\ndaemon log:\n${daemon?.log().slice(-6000)}`);
    });
    expect(r.stdout).toMatch(/: 3 of 3 layers provided by soci\n$/);
    expect(
      daemon!.lines("remote-snapshot-prepared").filter((l) => l["remote-snapshot-prepared"] === "true"),
    ).toHaveLength(2);
    expect(await fuseMounts()).toHaveLength(2);
    const sha = createHash("sha256").update(pushed.files.big).digest("hex");
    expect(await runContainer("cstore-1", "cat /etc/hello /data/f7.txt; sha256sum /data/big.bin")).toBe(
      `${pushed.files.hello}${pushed.files.id} file 7\n${sha}  /data/big.bin\n`,
    );
    expect(daemon!.log()).toContain("Successfully loaded prefetch artifact with 1 span ranges");
  }, 120_000);

  it("the SOCI index, its ztocs and its prefetch artifact are in containerd's content store, in the pull's namespace", async () => {
    const digests = loggedIndexDigests();
    expect(digests).toHaveLength(1);
    indexDigest = digests[0]!;
    const bytes = await content().readAll(indexDigest);
    expect(`sha256:${createHash("sha256").update(bytes).digest("hex")}`).toBe(indexDigest);
    indexLayers = (
      JSON.parse(Buffer.from(bytes).toString("utf8")) as { layers: Array<{ digest: string; mediaType: string }> }
    ).layers;
    // two ztocs and one prefetch artifact
    expect(indexLayers.filter((l) => l.mediaType === "application/octet-stream")).toHaveLength(2);
    expect(indexLayers).toHaveLength(3);
    for (const l of indexLayers) expect(await content().exists(l.digest)).toBe(true);
    // the artifacts went to the pull's namespace only
    const other = ctdClient!.withNamespace("default").content;
    expect(await other.exists(indexDigest)).toBe(false);
    for (const l of indexLayers) expect(await other.exists(l.digest)).toBe(false);
    // and the same as ctr sees it
    const { stdout } = await ctd!.ctr(["content", "ls", "-q"], { namespace: NS });
    for (const d of [indexDigest, ...indexLayers.map((l) => l.digest)]) expect(stdout.split("\n")).toContain(d);
  });

  it("the index is a GC root referencing every layers[] entry", async () => {
    const info = await content().info(indexDigest);
    expect(info.labels[GC_ROOT]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)$/);
    indexLayers.forEach((l, i) => {
      expect(info.labels[`${GC_REF_CONTENT}.ztoc.${i}`]).toBe(l.digest);
    });
  });

  it("<root>/content holds no blobs", async () => {
    expect(await blobsUnder(join(daemonRoot(), "content", "blobs"))).toEqual([]);
  });

  it("the daemon leaves no lease behind", async () => {
    const leases = ctdClient!.withNamespace(NS).leases;
    // the batch lease ends once the ztocs fetched ahead are in
    for (let i = 0; i < 50 && (await leases.list()).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(await leases.list()).toEqual([]);
  });

  it("after SIGTERM and a restart the layers are mounted again from containerd's store, and a new container runs", async () => {
    const indexGets = getRequests(`manifests/${indexDigest}`).length;
    expect(indexGets).toBe(1);
    await daemon!.stop("SIGTERM");
    await startDaemon();
    expect(await fuseMounts()).toHaveLength(2);
    await waitForSnapshotter((args) => ctd!.ctr(args));
    expect(await runContainer("cstore-2", "cat /data/f3.txt")).toBe(`${pushed.files.id} file 3\n`);
    // the restored mounts read the index and the ztocs back from containerd
    expect(getRequests(`manifests/${indexDigest}`)).toHaveLength(1);
    for (const l of indexLayers) expect(getRequests(`blobs/${l.digest}`)).toHaveLength(1);
    expect(await blobsUnder(join(daemonRoot(), "content", "blobs"))).toEqual([]);
  }, 120_000);

  it("removing the image leaves the artifacts: containerd's garbage collection keeps the index and what it references", async () => {
    // the converted image's OCI index references the SOCI index too; once the image is gone only
    // the index's own gc.root label keeps it (and its gc.ref labels the ztocs and prefetch artifact)
    const target = (await ctdClient!.withNamespace(NS).images.get(image)).target.digest;
    expect(await content().exists(target)).toBe(true);
    await ctd!.ctr(["images", "rm", "--sync", image], { namespace: NS });
    for (let i = 0; i < 50 && (await fuseMounts()).length > 0; i++) await new Promise((r) => setTimeout(r, 200));
    expect(await fuseMounts()).toHaveLength(0);
    // deleting a lease with sync runs the collector once more before answering
    const leases = ctdClient!.withNamespace(NS).leases;
    const l = await leases.create();
    await leases.delete(l.id, { sync: true });
    expect(await content().exists(target)).toBe(false); // the image's own documents went
    expect(await content().exists(indexDigest)).toBe(true);
    for (const x of indexLayers) expect(await content().exists(x.digest)).toBe(true);
  }, 60_000);
});
