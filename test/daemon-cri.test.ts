// The Kubernetes path (docs/snapshotter.md §2.2 "CRI plugin", reference cri_test.go TestCRIImagePull):
// containerd 1.6's CRI plugin with `snapshotter = "soci"` and `disable_snapshot_annotations =
// false` pulls a SOCI-converted image when the kubelet's call, runtime.v1 ImageService/PullImage,
// arrives over gRPC. The CRI plugin adds the cri.* labels itself; our daemon mounts the indexed
// layers with FUSE (remote-snapshot-prepared=true), unpacks the small one, and never lets
// containerd download the big ones. A container of the image then runs in the k8s.io namespace.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { startRegistry, type RegistryServer } from "./helpers/registry-server.js";
import type { Containerd } from "./helpers/containerd.js";
import { startCriContainerd } from "./helpers/cri/containerd.js";
import { criImageClient, type CriImageClient } from "./helpers/cri/client.js";
import {
  SOCI_BIN,
  addLayer,
  busyboxLayer,
  fuseMountsUnder,
  initLayout,
  spawnDaemon,
  stopFuseHosts,
  unmountAllUnder,
  waitForSnapshotter,
  type SociDaemon,
} from "./helpers/soci-daemon.js";

const run = promisify(execFile);
const K8S = "k8s.io";

let dir = "";
let registry: RegistryServer;
let ctd: Containerd | undefined;
let daemon: SociDaemon | undefined;
let cri: CriImageClient | undefined;
let image = "";
let big = Buffer.alloc(0);
/** digests of the layers that have a ztoc (never to be downloaded by containerd) */
let lazyLayers: string[] = [];

const sock = () => join(dir, "soci.sock");
const daemonRoot = () => join(dir, "soci-root");
const fuseMounts = () => fuseMountsUnder(daemonRoot());
const MIN_LAYER_SIZE = 100_000;

/** Layer descriptors of `<layout>:latest` (OCI layout: index.json → manifest). */
async function layoutLayers(layout: string): Promise<Array<{ digest: string; size: number }>> {
  const blob = (d: string) => readFile(join(layout, "blobs", "sha256", d.slice("sha256:".length)), "utf8");
  const index = JSON.parse(await readFile(join(layout, "index.json"), "utf8")) as {
    manifests: Array<{ digest: string }>;
  };
  const manifest = JSON.parse(await blob(index.manifests[0]!.digest)) as {
    layers: Array<{ digest: string; size: number }>;
  };
  return manifest.layers;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "soci-cri-"));
  registry = await startRegistry();
  const layout = join(dir, "image");
  await initLayout(layout);
  await addLayer(layout, dir, busyboxLayer);
  big = Buffer.concat([randomBytes(2 << 20), Buffer.alloc(2 << 20, "cri data ")]);
  await addLayer(layout, dir, async (rootfs) => {
    await mkdir(join(rootfs, "data"), { recursive: true });
    await writeFile(join(rootfs, "data", "big.bin"), big);
    for (let i = 0; i < 20; i++) await writeFile(join(rootfs, "data", `f${i}.txt`), `file ${i}\n`);
  });
  await addLayer(layout, dir, async (rootfs) => {
    await mkdir(join(rootfs, "etc"), { recursive: true });
    await writeFile(join(rootfs, "etc", "hello"), "hello from kubernetes\n");
  });
  lazyLayers = (await layoutLayers(layout)).filter((l) => l.size >= MIN_LAYER_SIZE).map((l) => l.digest);
  expect(lazyLayers).toHaveLength(2);
  await run("skopeo", [
    "copy",
    "--dest-tls-verify=false",
    `oci:${layout}:latest`,
    `docker://${registry.host}/cri/img:latest`,
  ]);
  image = `${registry.host}/cri/img:soci`;
  await run("node", [
    SOCI_BIN,
    "--root",
    join(dir, "convert-root"),
    "convert",
    "--plain-http",
    "--min-layer-size",
    String(MIN_LAYER_SIZE),
    "--span-size",
    String(256 << 10),
    `${registry.host}/cri/img:latest`,
    image,
  ]);

  await writeFile(join(dir, "config.toml"), "[background_fetch]\ndisable = true\n");
  daemon = spawnDaemon({ address: sock(), root: daemonRoot(), config: join(dir, "config.toml") });
  await daemon.ready;

  ctd = await startCriContainerd({ dir, sociSocket: sock(), registryHost: registry.host });
  cri = criImageClient(ctd.socket);
}, 240_000);

afterAll(async () => {
  cri?.close();
  await ctd?.stop().catch(() => undefined);
  await daemon?.stop("SIGINT").catch(() => undefined);
  await unmountAllUnder(dir);
  await registry?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("CRI ImageService pulls through the soci snapshotter", () => {
  it("the CRI plugin is up and has no image yet", async () => {
    const { stdout } = await ctd!.ctr(["plugins", "ls"]);
    expect(stdout).toMatch(/io\.containerd\.grpc\.v1\s+cri\s+\S+\s+ok/);
    expect(stdout).toMatch(/io\.containerd\.snapshotter\.v1\s+soci\s+-\s+ok/);
    expect(await cri!.imageStatus(image)).toBeNull();
  });

  it("PullImage gives remote snapshots for the indexed layers and downloads none of them", async () => {
    const ref = await cri!
      .pullImage(image, { sandbox: { name: "lazy-pod", namespace: "default", uid: "0a1b2c" } })
      .catch((e: Error) => {
        throw new Error(
          `${e.message}\ncontainerd log:\n${ctd!.log().slice(-3000)}\ndaemon log:\n${daemon!.log().slice(-4000)}`,
        );
      });
    expect(ref).toMatch(/^sha256:[0-9a-f]{64}$/);

    // the CRI plugin's labels (cri.*, namespace k8s.io) reached the daemon
    const remote = daemon!.lines("remote-snapshot-prepared").filter((l) => l["remote-snapshot-prepared"] === "true");
    expect(remote).toHaveLength(2);
    for (const l of remote) expect(l.key).toMatch(/^k8s\.io\/\d+\/extract-/);
    expect(
      daemon!.lines("local-snapshot-prepared").filter((l) => l["local-snapshot-prepared"] === "true"),
    ).toHaveLength(1);
    expect(daemon!.lines("defer-snapshot-runtime")).toHaveLength(0);
    expect(await fuseMounts()).toHaveLength(2);
    // and the FUSE mounts serve the layer's files to another process
    const listings = await Promise.all((await fuseMounts()).map((mp) => readdir(mp)));
    expect(listings.flat().sort()).toEqual(expect.arrayContaining(["bin", "data"]));

    // containerd's content store (k8s.io) has the manifest and config, never the lazy layers
    const { stdout } = await ctd!.ctr(["content", "ls", "-q"], { namespace: K8S });
    const digests = stdout.split("\n").filter(Boolean);
    expect(digests.length).toBeGreaterThan(0);
    for (const d of lazyLayers) expect(digests).not.toContain(d);
  }, 120_000);

  it("ImageStatus and ListImages report the pulled image", async () => {
    const status = await cri!.imageStatus(image);
    expect(status).not.toBeNull();
    expect(status!.repo_tags).toContain(image);
    expect(status!.repo_digests[0]).toMatch(new RegExp(`^${registry.host}/cri/img@sha256:[0-9a-f]{64}$`));
    expect(status!.size).toBeGreaterThan(0);
    const listed = await cri!.listImages();
    expect(listed.map((i) => i.id)).toContain(status!.id);
    // containerd's own view of the k8s.io namespace has the image, on the soci snapshotter
    const { stdout } = await ctd!.ctr(["images", "ls", "-q"], { namespace: K8S });
    expect(stdout.split("\n")).toContain(image);
  });

  it("a container of the CRI-pulled image runs in the k8s.io namespace", async () => {
    const sha = createHash("sha256").update(big).digest("hex");
    const r = await ctd!
      .ctr(
        [
          "run",
          "--rm",
          "--snapshotter",
          "soci",
          "--runc-root",
          join(dir, "runc"),
          image,
          `cri-lazy-${randomBytes(3).toString("hex")}`,
          "/bin/sh",
          "-c",
          "cat /etc/hello /data/f13.txt; sha256sum /data/big.bin",
        ],
        { namespace: K8S },
      )
      .catch((e: Error) => {
        throw new Error(`${e.message}\ndaemon log:\n${daemon!.log().slice(-4000)}`);
      });
    expect(r.stdout).toBe(`hello from kubernetes\nfile 13\n${sha}  /data/big.bin\n`);
    expect(await fuseMounts()).toHaveLength(2);
  }, 120_000);

  it("after a SIGKILL of the daemon and its FUSE host, a restart mounts the CRI-pulled layers again (from their cri.* labels)", async () => {
    const before = (await fuseMounts()).sort();
    await daemon!.stop("SIGKILL");
    await stopFuseHosts(daemonRoot(), "SIGKILL"); // the layers must be mounted anew, not adopted
    daemon = spawnDaemon({ address: sock(), root: daemonRoot(), config: join(dir, "config.toml") });
    await daemon.ready;
    expect((await fuseMounts()).sort()).toEqual(before);
    expect(daemon.log()).toContain("restored remote snapshot");
    await waitForSnapshotter((args) => ctd!.ctr(args, { namespace: K8S }));
    const r = await ctd!.ctr(
      [
        "run",
        "--rm",
        "--snapshotter",
        "soci",
        "--runc-root",
        join(dir, "runc"),
        image,
        `cri-lazy-${randomBytes(3).toString("hex")}`,
        "/bin/sh",
        "-c",
        "cat /data/f4.txt",
      ],
      { namespace: K8S },
    );
    expect(r.stdout).toBe("file 4\n");
    // the kubelet still sees the image
    expect(await cri!.imageStatus(image)).not.toBeNull();
  }, 120_000);

  it("RemoveImage takes the image away and its FUSE mounts with it", async () => {
    await cri!.removeImage(image);
    expect(await cri!.imageStatus(image)).toBeNull();
    for (let i = 0; i < 50 && (await fuseMounts()).length > 0; i++) {
      await ctd!.ctr(["snapshots", "--snapshotter", "soci", "ls"], { namespace: K8S }); // let GC reach the snapshotter
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(await fuseMounts()).toHaveLength(0);
    // RemoveImage is idempotent
    await cri!.removeImage(image);
  }, 60_000);
});
