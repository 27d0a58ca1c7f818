// `soci --content-store containerd …` against a real private containerd: an image built with
// umoci is imported with `ctr images import`, indexed with `soci create` through the real CLI,
// inspected with `soci index/ztoc`, and compared byte for byte with what `soci create` writes
// to the SOCI store from the same OCI layout. GC labels are checked by letting containerd's GC run.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { mkdtemp, mkdir, readFile, readdir, rm, writeFile, cp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { startContainerd, type Containerd } from "./helpers/containerd.js";
import { ContainerdClient } from "../src/containerd/client.js";
import { createHash } from "node:crypto";
import { parseSociIndex, SociIndexArtifactTypeV1, SociIndexArtifactTypeV2 } from "../src/formats/soci-index.js";
import { parseIndex, parseManifest } from "../src/formats/oci.js";
import { ArtifactsDb } from "../src/store/artifacts-db.js";

const run = promisify(execFile);
const soci = new URL("../bin/soci.js", import.meta.url).pathname;
const IMAGE = "example.com/soci/test:latest";

let dir = "";
let layout = "";
let ctd: Containerd;
let client: ContainerdClient;

async function cli(args: string[]) {
  try {
    const r = await run("node", [soci, ...args], { maxBuffer: 64 << 20 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

/** The CLI on the private containerd with its own --root. */
const ctdCli = (root: string, args: string[]) =>
  cli(["--content-store", "containerd", "--address", ctd.address, "--namespace", "default", "--root", root, ...args]);

const BUILD = ["--min-layer-size", "0", "--span-size", "1048576"];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "soci-cli-ctd-"));
  layout = join(dir, "image");
  // two layers: files with random data, then a change on top
  await run("umoci", ["init", "--layout", layout]);
  await run("umoci", ["new", "--image", `${layout}:latest`]);
  const bundle = join(dir, "bundle");
  await run("umoci", ["unpack", "--rootless", "--image", `${layout}:latest`, bundle]);
  await mkdir(join(bundle, "rootfs/app"), { recursive: true });
  await writeFile(join(bundle, "rootfs/app/random.bin"), randomBytes(3 << 20));
  await writeFile(join(bundle, "rootfs/app/hello.txt"), "hello from containerd\n");
  await cp("/usr/share/common-licenses", join(bundle, "rootfs/usr/share/common-licenses"), {
    recursive: true,
    verbatimSymlinks: true,
  });
  await run("umoci", ["repack", "--image", `${layout}:latest`, bundle]);
  const bundle2 = join(dir, "bundle2");
  await run("umoci", ["unpack", "--rootless", "--image", `${layout}:latest`, bundle2]);
  await writeFile(join(bundle2, "rootfs/app/second.txt"), "second layer\n".repeat(20000));
  await run("umoci", ["repack", "--image", `${layout}:latest`, bundle2]);
  const archive = join(dir, "image.tar");
  await run("tar", ["-C", layout, "-cf", archive, "."]);

  ctd = await startContainerd();
  client = ContainerdClient.connect({ address: ctd.address, namespace: "default" });
  await ctd.ctr(["images", "import", "--no-unpack", "--base-name", "example.com/soci/test", archive]);
}, 120_000);

afterAll(async () => {
  client?.close();
  await ctd?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const blobIn = (root: string, digest: string) => readFile(join(root, "content", "blobs", ...digest.split(":")));

describe("soci --content-store containerd create", () => {
  let root = "";
  let indexDigest = "";
  let ztocs: string[] = [];

  beforeAll(async () => {
    root = join(dir, "root-ctd");
  });

  it("builds a v1 index for an image in containerd, writing ztocs and the index into containerd's content store", async () => {
    const img = await client.images.get(IMAGE);
    expect(img.target.mediaType).toBe("application/vnd.oci.image.manifest.v1+json");
    const manifest = parseManifest(await client.content.readAll(img.target.digest));

    const r = await ctdCli(root, ["create", ...BUILD, IMAGE]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const lines = r.stdout.match(/^layer sha256:[0-9a-f]{64} -> ztoc sha256:[0-9a-f]{64}$/gm) ?? [];
    expect(lines).toHaveLength(2);
    const printed = lines.map((l) => l.split(" ").pop()!);

    // the image is labelled with its SOCI index
    const labelled = await client.images.get(IMAGE);
    indexDigest = labelled.labels["containerd.io/gc.ref.content.soci-index"]!;
    expect(indexDigest).toMatch(/^sha256:[0-9a-f]{64}$/);

    // the index in containerd: v1, subject = the image manifest, GC references to config and ztocs
    const index = parseSociIndex(await client.content.readAll(indexDigest));
    expect(index.config.mediaType).toBe(SociIndexArtifactTypeV1);
    expect(index.subject?.digest).toBe(img.target.digest);
    // layers are indexed in parallel, so the lines come in any order; the index lists ztocs in layer order
    ztocs = index.blobs!.map((l) => l.digest);
    expect([...ztocs].sort()).toEqual([...printed].sort());
    const info = await client.content.info(indexDigest);
    expect(info.labels).toEqual({
      "containerd.io/gc.ref.content.config": index.config.digest,
      "containerd.io/gc.ref.content.ztoc.0": ztocs[0],
      "containerd.io/gc.ref.content.ztoc.1": ztocs[1],
    });
    for (const z of ztocs) expect(await client.content.exists(z)).toBe(true);
    expect(await client.content.exists(index.config.digest)).toBe(true);
    // each ztoc describes one of the image's layers
    expect(index.blobs!.map((l) => l.annotations?.["com.amazon.soci.image-layer-digest"])).toEqual(
      manifest.layers!.map((l) => l.digest),
    );

    // nothing went to the SOCI content store; the artifacts DB has the records
    const blobs = await readdir(join(root, "content", "blobs", "sha256")).catch(() => []);
    expect(blobs).toEqual([]);
    const db = ArtifactsDb.open(join(root, "artifacts.db"));
    try {
      const entry = db.find(indexDigest)!;
      expect(entry).toMatchObject({
        type: "soci_index",
        ociDigest: img.target.digest,
        imageDigest: img.target.digest,
        platform: "linux/amd64",
      });
      expect(ztocs.map((z) => db.find(z)?.type)).toEqual(["soci_layer", "soci_layer"]);
    } finally {
      db.close();
    }
    // the build's lease is gone
    expect(await client.leases.list()).toEqual([]);
  });

  it("produces exactly the ztocs and index that soci create writes from the same OCI layout", async () => {
    const sociRoot = join(dir, "root-soci");
    const r = await cli(["--content-store", "soci", "--root", sociRoot, "create", ...BUILD, `oci:${layout}:latest`]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const viaLayout = (r.stdout.match(/-> ztoc (sha256:[0-9a-f]{64})$/gm) ?? []).map((l) => l.split(" ").pop()!);
    expect(viaLayout.sort()).toEqual([...ztocs].sort());
    for (const z of ztocs) {
      expect(Buffer.from(await client.content.readAll(z)).equals(await blobIn(sociRoot, z))).toBe(true);
    }
    expect(Buffer.from(await client.content.readAll(indexDigest)).equals(await blobIn(sociRoot, indexDigest))).toBe(
      true,
    );
  });

  it("lists and inspects the artifacts through containerd (index list/info, ztoc list/get-file)", async () => {
    const all = await ctdCli(root, ["index", "list"]);
    expect(all.code).toBe(0);
    const row = all.stdout.split("\n").find((l) => l.startsWith(indexDigest))!;
    expect(row.split(/\s+/)).toEqual(
      expect.arrayContaining(["linux/amd64", "application/vnd.oci.image.manifest.v1+json", "v1"]),
    );
    expect(row.split(/\s+/)[2]).toBe(IMAGE); // IMAGE REF: the containerd image whose target the index serves

    const byRef = await ctdCli(root, ["index", "list", "-q", "--ref", IMAGE]);
    expect(byRef.stderr).toBe("");
    expect(byRef.stdout).toBe(`${indexDigest}\n`);

    const z = await ctdCli(root, ["ztoc", "list", "-q", "--image-ref", IMAGE]);
    expect(z.stderr).toBe("");
    expect(z.stdout.trim().split("\n").sort()).toEqual([...ztocs].sort());

    const info = await ctdCli(root, ["index", "info", indexDigest]);
    expect(info.code).toBe(0);
    expect(JSON.parse(info.stdout).subject.digest).toBe((await client.images.get(IMAGE)).target.digest);

    // the layer is read from containerd's content store (hello.txt is in the first layer)
    const file = await ctdCli(root, ["ztoc", "get-file", ztocs[0]!, "app/hello.txt"]);
    expect(file.stderr).toBe("");
    expect(file.stdout).toBe("hello from containerd\n\n");
  });

  it("keeps the artifacts through containerd's GC while the image lives, and lets them go with it", async () => {
    // a synchronous image delete runs the garbage collector
    const t = (await client.images.get(IMAGE)).target;
    await client.images.create({ name: "gc-trigger", target: t });
    await client.images.delete("gc-trigger", { sync: true });
    for (const d of [indexDigest, ...ztocs]) expect(await client.content.exists(d)).toBe(true);

    await client.images.create({ name: "example.com/soci/copy:1", target: t }); // keeps the image content
    await client.images.delete(IMAGE, { sync: true });
    for (const d of [indexDigest, ...ztocs]) expect(await client.content.exists(d)).toBe(false);
    expect(await client.content.exists(t.digest)).toBe(true);
    await client.images.create({ name: IMAGE, target: t });
    await client.images.delete("example.com/soci/copy:1");
  });

  it("removes indexes by image ref", async () => {
    const rm1 = await ctdCli(root, ["index", "rm", "--ref", IMAGE]);
    expect(rm1.stderr).toBe("");
    expect(rm1.code).toBe(0);
    const left = await ctdCli(root, ["index", "list", "-q"]);
    expect(left.stdout).toBe("");
    // the index blob left containerd's content store with its entry
    expect(await client.content.exists(indexDigest)).toBe(false);
  });

  it("reports an unknown image and an unreachable containerd clearly", async () => {
    const r = await ctdCli(join(dir, "root-x"), ["create", ...BUILD, "example.com/nope:1"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`soci: image "example.com/nope:1": not found\n`);

    const list = await ctdCli(join(dir, "root-x"), ["index", "list", "--ref", "example.com/nope:1"]);
    expect(list.code).toBe(1);
    expect(list.stderr).toBe(`soci: image "example.com/nope:1": not found\n`);

    const gone = await cli([
      "--content-store",
      "containerd",
      "--address",
      "unix:///tmp/no-containerd-here.sock",
      "--root",
      join(dir, "root-x"),
      "create",
      IMAGE,
    ]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toBe(
      "soci: containerd at /tmp/no-containerd-here.sock is not reachable (images.Get): connect ENOENT /tmp/no-containerd-here.sock\n",
    );
  });
});

describe("soci --content-store containerd convert", () => {
  it("creates a SOCI-enabled image in containerd whose index, manifests and ztocs are GC-linked", async () => {
    const root = join(dir, "root-convert");
    const DEST = "example.com/soci/test:soci";
    const src = (await client.images.get(IMAGE)).target;
    const r = await ctdCli(root, ["convert", ...BUILD, IMAGE, DEST]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const printed = r.stdout.match(/^converted image index: (sha256:[0-9a-f]{64})$/m)?.[1];

    const img = await client.images.get(DEST);
    expect(img.target.mediaType).toBe("application/vnd.oci.image.index.v1+json");
    expect(img.target.digest).toBe(printed);
    const top = parseIndex(await client.content.readAll(img.target.digest));
    const [manifestDesc, sociDesc] = top.manifests!;
    expect(top.manifests).toHaveLength(2);
    expect(sociDesc!.artifactType).toBe(SociIndexArtifactTypeV2);
    expect(sociDesc!.annotations?.["com.amazon.soci.image-manifest-digest"]).toBe(manifestDesc!.digest);

    const manifest = parseManifest(await client.content.readAll(manifestDesc!.digest));
    expect(manifest.annotations?.["com.amazon.soci.index-digest"]).toBe(sociDesc!.digest);
    const sociIndex = parseSociIndex(await client.content.readAll(sociDesc!.digest));
    const ztocs = sociIndex.blobs!.map((b) => b.digest);
    expect(ztocs).toHaveLength(2);

    // GC references: index → manifests, manifest → config and layers, SOCI index → config and ztocs
    expect((await client.content.info(img.target.digest)).labels).toEqual({
      "containerd.io/gc.ref.content.m.0": manifestDesc!.digest,
      "containerd.io/gc.ref.content.m.1": sociDesc!.digest,
    });
    expect((await client.content.info(manifestDesc!.digest)).labels).toEqual({
      "containerd.io/gc.ref.content.config": manifest.config.digest,
      "containerd.io/gc.ref.content.l.0": manifest.layers![0]!.digest,
      "containerd.io/gc.ref.content.l.1": manifest.layers![1]!.digest,
    });
    expect((await client.content.info(sociDesc!.digest)).labels).toEqual({
      "containerd.io/gc.ref.content.config": sociIndex.config.digest,
      "containerd.io/gc.ref.content.ztoc.0": ztocs[0],
      "containerd.io/gc.ref.content.ztoc.1": ztocs[1],
    });

    // with only the converted image left, GC keeps everything it references
    await client.images.delete(IMAGE, { sync: true });
    try {
      for (const d of [
        img.target.digest,
        manifestDesc!.digest,
        sociDesc!.digest,
        sociIndex.config.digest,
        ...ztocs,
        ...manifest.layers!.map((l) => l.digest),
      ]) {
        expect(await client.content.exists(d)).toBe(true);
      }
      // the original manifest is referenced by nothing now
      expect(await client.content.exists(src.digest)).toBe(false);
    } finally {
      await ctd.ctr([
        "images",
        "import",
        "--no-unpack",
        "--base-name",
        "example.com/soci/test",
        join(dir, "image.tar"),
      ]);
    }

    // same SOCI index and ztocs as a standalone convert of the OCI layout
    const out = join(dir, "standalone-out");
    const sa = await cli(["convert", "--standalone", "--format", "oci-dir", ...BUILD, layout, out]);
    expect(sa.code).toBe(0);
    for (const d of [sociDesc!.digest, ...ztocs, manifestDesc!.digest]) {
      expect(
        Buffer.from(await client.content.readAll(d)).equals(await readFile(join(out, "blobs", ...d.split(":")))),
      ).toBe(true);
    }

    // the artifacts DB points the v2 index at the new manifest and image index
    const db = ArtifactsDb.open(join(root, "artifacts.db"));
    try {
      expect(db.find(sociDesc!.digest)).toMatchObject({
        type: "soci_index",
        ociDigest: manifestDesc!.digest,
        imageDigest: img.target.digest,
      });
    } finally {
      db.close();
    }
    expect(await client.leases.list()).toEqual([]);
  });

  it("requires a tagged destination and an existing source", async () => {
    const root = join(dir, "root-convert-bad");
    const untagged = await ctdCli(root, ["convert", ...BUILD, IMAGE, "example.com/soci/test"]);
    expect(untagged.code).toBe(1);
    expect(untagged.stderr).toBe(
      `soci: the destination image must be a tagged ref of the form "registry/repository:tag"\n`,
    );
    const missing = await ctdCli(root, ["convert", ...BUILD, "example.com/nope:1", "example.com/nope:soci"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe(`soci: image "example.com/nope:1": not found\n`);
  });
});

describe("namespaces and multi-platform images", () => {
  const sha256 = (b: Uint8Array) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

  it("works in the namespace given by --namespace only", async () => {
    await ctd.ctr(["images", "import", "--no-unpack", "--base-name", "example.com/soci/team", join(dir, "image.tar")], {
      namespace: "team",
    });
    const root = join(dir, "root-team");
    const wrongNs = await ctdCli(root, ["create", ...BUILD, "example.com/soci/team:latest"]);
    expect(wrongNs.stderr).toBe(`soci: image "example.com/soci/team:latest": not found\n`);
    const r = await cli([
      "--content-store",
      "containerd",
      "--address",
      ctd.address,
      "--namespace",
      "team",
      "--root",
      root,
      "create",
      ...BUILD,
      "example.com/soci/team:latest",
    ]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const team = client.withNamespace("team");
    const index = (await team.images.get("example.com/soci/team:latest")).labels[
      "containerd.io/gc.ref.content.soci-index"
    ]!;
    expect(await team.content.exists(index)).toBe(true);
    expect(await client.content.exists(index)).toBe(false);
  });

  it("indexes every platform of an image index in containerd, selected by --platform or --all-platforms", async () => {
    // an OCI index of the amd64 image and an arm64 twin (same layers, its own config)
    const amd = (await client.images.get(IMAGE)).target;
    const amdManifest = parseManifest(await client.content.readAll(amd.digest));
    const amdConfig = JSON.parse(
      Buffer.from(await client.content.readAll(amdManifest.config.digest)).toString(),
    ) as Record<string, unknown>;
    const json = (v: unknown) => Buffer.from(JSON.stringify(v));
    const armConfig = json({ ...amdConfig, architecture: "arm64", variant: "v8" });
    const armConfigDesc = {
      mediaType: "application/vnd.oci.image.config.v1+json",
      digest: sha256(armConfig),
      size: armConfig.length,
    };
    const armManifest = json({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: armConfigDesc,
      layers: amdManifest.layers,
    });
    const armDesc = {
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      digest: sha256(armManifest),
      size: armManifest.length,
    };
    const index = json({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [
        { ...amd, platform: { architecture: "amd64", os: "linux" } },
        { ...armDesc, platform: { architecture: "arm64", os: "linux", variant: "v8" } },
      ],
    });
    const indexDesc = {
      mediaType: "application/vnd.oci.image.index.v1+json",
      digest: sha256(index),
      size: index.length,
    };
    const lease = await client.leases.create({ expiresInMs: 600_000 });
    const leased = client.withLease(lease.id);
    await leased.content.write(armConfig, armConfigDesc);
    await leased.content.write(armManifest, armDesc, {
      labels: { "containerd.io/gc.ref.content.config": armConfigDesc.digest },
    });
    await leased.content.write(index, indexDesc, {
      labels: { "containerd.io/gc.ref.content.m.0": amd.digest, "containerd.io/gc.ref.content.m.1": armDesc.digest },
    });
    const MULTI = "example.com/soci/multi:1";
    await client.images.create({ name: MULTI, target: indexDesc });
    await client.leases.delete(lease.id);

    const root = join(dir, "root-multi");
    const arm = await ctdCli(root, ["create", ...BUILD, "--platform", "linux/arm64", MULTI]);
    expect(arm.stderr).toBe("");
    const armOnly = await ctdCli(root, ["index", "list", "-q", "--ref", MULTI]);
    expect(armOnly.stdout.trim().split("\n")).toHaveLength(1);
    const armIndex = armOnly.stdout.trim();
    expect(parseSociIndex(await client.content.readAll(armIndex)).subject?.digest).toBe(armDesc.digest);

    const all = await ctdCli(root, ["create", ...BUILD, "--all-platforms", MULTI]);
    expect(all.stderr).toBe("");
    // the layers are shared, so the ztocs are reused; both platforms now have an index
    expect(all.stdout).toMatch(/\(already exists\)/);
    const both = (await ctdCli(root, ["index", "list", "-q", "--ref", MULTI])).stdout.trim().split("\n");
    expect(both).toHaveLength(2);
    const amdOnly = (await ctdCli(root, ["index", "list", "-q", "--ref", MULTI, "-p", "linux/amd64"])).stdout.trim();
    expect(parseSociIndex(await client.content.readAll(amdOnly)).subject?.digest).toBe(amd.digest);
    // the reference's label names the last platform's index; one label per platform keeps each alive
    expect((await client.images.get(MULTI)).labels).toEqual({
      "containerd.io/gc.ref.content.soci-index": armIndex,
      "containerd.io/gc.ref.content.soci-index.linux.amd64": amdOnly,
      "containerd.io/gc.ref.content.soci-index.linux.arm64": armIndex, // normalized: arm64/v8 is arm64
    });
    const t = (await client.images.get(MULTI)).target;
    await client.images.create({ name: "gc-trigger-2", target: t });
    await client.images.delete("gc-trigger-2", { sync: true });
    expect(await client.content.exists(amdOnly)).toBe(true);
    expect(await client.content.exists(armIndex)).toBe(true);

    const zt = await ctdCli(root, ["ztoc", "list", "-q", "--image-ref", MULTI]);
    expect(new Set(zt.stdout.trim().split("\n")).size).toBe(2);
    await client.images.delete(MULTI);
  });
});
