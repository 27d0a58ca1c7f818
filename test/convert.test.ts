// soci convert --standalone and soci create on OCI layouts made by umoci, read back by skopeo.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { mkdtemp, mkdir, readFile, rm, writeFile, cp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { parseIndex, parseManifest, type Descriptor } from "../src/formats/oci.js";
import { parseSociIndex, SociIndexArtifactTypeV1, SociIndexArtifactTypeV2 } from "../src/formats/soci-index.js";
import { decodeZtoc } from "../src/formats/ztoc.js";
import { extractFile } from "../src/indexer/extract-file.js";
import { ArtifactsDb } from "../src/store/artifacts-db.js";
import { sociChild, sociInProcess } from "./helpers/soci-cli.js";

const run = promisify(execFile);
// soci runs in this process (helpers/soci-cli.ts); the tests marked "child process" spawn bin/soci.js
const cli = sociInProcess;

let dir = "";
let layout = "";
const blob = (root: string, d: string) => readFile(join(root, "blobs", ...d.split(":")));

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "soci-convert-"));
  layout = join(dir, "image");
  // a two-layer image: system files, then an update with new data and a deletion
  await run("umoci", ["init", "--layout", layout]);
  await run("umoci", ["new", "--image", `${layout}:latest`]);
  const bundle = join(dir, "bundle");
  await run("umoci", ["unpack", "--rootless", "--image", `${layout}:latest`, bundle]);
  const rootfs = join(bundle, "rootfs");
  await cp("/usr/share/perl5", join(rootfs, "usr/share/perl5"), { recursive: true, verbatimSymlinks: true }).catch(
    async () => {
      await cp("/usr/lib/x86_64-linux-gnu/perl-base", join(rootfs, "usr/lib/perl-base"), {
        recursive: true,
        verbatimSymlinks: true,
      });
    },
  );
  await mkdir(join(rootfs, "app"), { recursive: true });
  await writeFile(join(rootfs, "app/random.bin"), randomBytes(3 << 20));
  await writeFile(join(rootfs, "app/hello.txt"), "hello\n");
  await run("umoci", ["repack", "--image", `${layout}:latest`, bundle]);
  // umoci diffs against the unpacked image, so unpack again for the second layer
  const bundle2 = join(dir, "bundle2");
  await run("umoci", ["unpack", "--rootless", "--image", `${layout}:latest`, bundle2]);
  await writeFile(join(bundle2, "rootfs/app/second.txt"), "second layer\n".repeat(10000));
  await rm(join(bundle2, "rootfs/app/hello.txt"));
  await run("umoci", ["repack", "--image", `${layout}:latest`, bundle2]);
}, 120_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function imageIndexOf(out: string): Promise<{ top: Descriptor; entries: Descriptor[] }> {
  const top = parseIndex(await readFile(join(out, "index.json")));
  expect(top.manifests).toHaveLength(1);
  const d = top.manifests![0]!;
  expect(d.mediaType).toBe("application/vnd.oci.image.index.v1+json");
  const idx = parseIndex(await blob(out, d.digest));
  return { top: d, entries: idx.manifests ?? [] };
}

describe("soci convert --standalone", () => {
  it("writes a SOCI-enabled OCI layout that skopeo reads", async () => {
    const out = join(dir, "out-dir");
    const r = await cli([
      "convert",
      "--standalone",
      "--format",
      "oci-dir",
      "--min-layer-size",
      "0",
      "--span-size",
      "1048576",
      layout,
      out,
    ]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout.match(/^layer sha256:[0-9a-f]{64} -> ztoc sha256:[0-9a-f]{64}$/gm)).toHaveLength(2);

    const { entries } = await imageIndexOf(out);
    expect(entries).toHaveLength(2);
    const [image, sociDesc] = entries as [Descriptor, Descriptor];
    expect(image.mediaType).toBe("application/vnd.oci.image.manifest.v1+json");
    expect(image.platform).toEqual({ architecture: "amd64", os: "linux" });
    expect(sociDesc.artifactType).toBe(SociIndexArtifactTypeV2);
    expect(sociDesc.platform).toEqual(image.platform);
    expect(image.annotations).toEqual({ "com.amazon.soci.index-digest": sociDesc.digest });
    expect(sociDesc.annotations).toEqual({ "com.amazon.soci.image-manifest-digest": image.digest });

    const manifest = parseManifest(await blob(out, image.digest));
    expect(manifest.annotations?.["com.amazon.soci.index-digest"]).toBe(sociDesc.digest);
    const index = parseSociIndex(await blob(out, sociDesc.digest));
    expect(index.version).toBe(2);
    expect(index.subject).toBeUndefined();
    expect(index.annotations).toEqual({ "com.amazon.soci.build-tool-identifier": "AWS SOCI CLI v0.2" });
    expect(index.blobs).toHaveLength(2);

    // every ztoc describes its layer: every regular file reads back equal to GNU tar's extraction
    for (const [i, z] of index.blobs!.entries()) {
      const layer = manifest.layers![i]!;
      expect(z.annotations).toEqual({
        "com.amazon.soci.image-layer-digest": layer.digest,
        "com.amazon.soci.image-layer-mediaType": layer.mediaType,
        "com.amazon.soci.span-size": "1048576",
      });
      const ztoc = decodeZtoc(await blob(out, z.digest));
      const layerBytes = await blob(out, layer.digest);
      expect(ztoc.compressedArchiveSize).toBe(layerBytes.length);
      const extracted = join(dir, `layer${i}`);
      await mkdir(extracted);
      await run("tar", ["-xzf", join(out, "blobs", ...layer.digest.split(":")), "-C", extracted]);
      let files = 0;
      for (const e of ztoc.toc) {
        if (e.type !== "reg" || Buffer.from(e.name).toString().includes(".wh.")) continue;
        const got = await extractFile(ztoc, e, async (a, b) => layerBytes.subarray(a, b));
        expect(
          Buffer.from(got).equals(await readFile(join(extracted, Buffer.from(e.name).toString()))),
          Buffer.from(e.name).toString(),
        ).toBe(true);
        files++;
      }
      expect(files).toBeGreaterThan(0);
    }

    const inspect = await run("skopeo", ["inspect", `oci:${out}`]);
    expect(JSON.parse(inspect.stdout).Layers).toEqual(manifest.layers!.map((l) => l.digest));
  });

  it("is deterministic (child process and in-process runs) and idempotent; the archive format reads back with skopeo", async () => {
    const a = join(dir, "a.tar");
    const b = join(dir, "b.tar");
    expect((await sociChild(["convert", "--standalone", "--min-layer-size", "0", layout, a])).code).toBe(0);
    const rb = await cli(["convert", "--standalone", "--min-layer-size", "0", layout, b]);
    expect(rb.code).toBe(0);
    const da = /converted image index: (sha256:\w+)/.exec(
      (await cli(["convert", "--standalone", "--min-layer-size", "0", a, join(dir, "c-dir"), "--format", "oci-dir"]))
        .stdout,
    )?.[1];
    const first = /converted image index: (sha256:\w+)/.exec(rb.stdout)?.[1];
    expect(first).toMatch(/^sha256:/);
    expect(da).toBe(first); // converting the converted image changes nothing
    expect(
      (await run("cmp", [a, b]).then(
        () => true,
        () => false,
      )) ||
        (await run("skopeo", ["inspect", "--raw", `oci-archive:${a}`])).stdout ===
          (await run("skopeo", ["inspect", "--raw", `oci-archive:${b}`])).stdout,
    ).toBe(true);
    const raw = JSON.parse((await run("skopeo", ["inspect", "--raw", `oci-archive:${a}`])).stdout) as {
      manifests: Descriptor[];
    };
    expect(raw.manifests.map((m) => m.artifactType ?? "")).toEqual(["", SociIndexArtifactTypeV2]);
  });

  it("skips small layers and refuses an image with nothing to index (child process)", async () => {
    const r = await sociChild(["convert", "--standalone", layout, join(dir, "none.tar")]); // default min size 10 MiB
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(
      /ztoc skipped - layer sha256:\w+ \(application\/vnd\.oci\.image\.layer\.v1\.tar\+gzip\) size \d+ is less than min-layer-size 10485760/,
    );
    expect(r.stderr).toBe("soci: no ztocs created, all layers either skipped or produced errors\n");
  });

  it("rejects bad input clearly", async () => {
    const garbage = join(dir, "garbage.tar");
    await writeFile(garbage, "not a tar");
    expect((await cli(["convert", "--standalone", garbage, join(dir, "x.tar")])).stderr).toMatch(
      /^soci: .*not a readable OCI archive/,
    );
    expect((await cli(["convert", "--standalone", dir, join(dir, "x.tar")])).stderr).toMatch(
      /^soci: .*not an OCI image layout/,
    );
    expect((await cli(["convert", "--standalone", "--format", "zip", layout, join(dir, "x.tar")])).stderr).toMatch(
      /invalid format zip/,
    );
    expect(
      (await cli(["convert", "--standalone", "--optimizations", "speed", layout, join(dir, "x.tar")])).stderr,
    ).toBe("soci: optimization speed is not a valid optimization [xattr]\n");
  });
});

describe("soci create", () => {
  it("builds a v1 index with the image manifest as subject into the local store, reusing ztocs", async () => {
    const root = join(dir, "root");
    const r = await cli(["--root", root, "create", "--min-layer-size", "0", `oci:${layout}:latest`]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const top = parseIndex(await readFile(join(root, "content", "index.json")));
    const idxDesc = top.manifests!.find((m) => m.artifactType === SociIndexArtifactTypeV1)!;
    const index = parseSociIndex(await blob(join(root, "content"), idxDesc.digest));
    const image = parseIndex(await readFile(join(layout, "index.json"))).manifests![0]!;
    expect(index.version).toBe(1);
    expect(index.subject).toEqual({ mediaType: image.mediaType, digest: image.digest, size: image.size });
    expect(index.annotations).toEqual({ "com.amazon.soci.build-tool-identifier": "AWS SOCI CLI v0.2" });
    const db = ArtifactsDb.open(join(root, "artifacts.db"));
    try {
      const entry = db.get(idxDesc.digest);
      expect(entry).toMatchObject({
        type: "soci_index",
        ociDigest: image.digest,
        platform: "linux/amd64",
        artifactType: SociIndexArtifactTypeV1,
      });
      expect(db.listByType("soci_layer")).toHaveLength(2);
    } finally {
      db.close();
    }
    const again = await cli(["--root", root, "create", "--min-layer-size", "0", layout]);
    expect(again.stdout.match(/\(already exists\)$/gm)).toHaveLength(2);
  });
});

describe("tampered images", () => {
  it("a layer blob that does not match its digest fails the build clearly", async () => {
    const bad = join(dir, "tampered");
    await cp(layout, bad, { recursive: true });
    const image = parseIndex(await readFile(join(bad, "index.json"))).manifests![0]!;
    const layer = parseManifest(await blob(bad, image.digest)).layers![0]!;
    const path = join(bad, "blobs", ...layer.digest.split(":"));
    const bytes = await readFile(path);
    bytes[bytes.length - 100] ^= 0xff; // still the right size; the trailer CRC may even pass
    await rm(path, { force: true });
    await writeFile(path, bytes);
    const r = await cli(["convert", "--standalone", "--min-layer-size", "0", bad, join(dir, "t.tar")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^soci: /);
    expect(r.stderr).toMatch(/does not match its descriptor|incorrect data check|invalid/);
    // a change that still decodes (the gzip header's MTIME): only the digest check can catch it
    const fine = Buffer.from(bytes);
    fine[bytes.length - 100] ^= 0xff; // undo
    fine[4] ^= 0x01;
    await rm(path, { force: true });
    await writeFile(path, fine);
    const r2 = await cli(["convert", "--standalone", "--min-layer-size", "0", bad, join(dir, "t2.tar")]);
    expect(r2.code).toBe(1);
    expect(r2.stderr).toMatch(new RegExp(`^soci: layer ${layer.digest}: content does not match its descriptor`));
  });
});
