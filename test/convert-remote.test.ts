// soci convert <src-ref> <dst-ref> between repositories of a real registry on loopback, and what
// skopeo does with the result (the SOCI index v2 travels with `copy --all`, not with one platform).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { startRegistry, type RegistryServer } from "./helpers/registry-server.js";
import { parseManifest, type Descriptor } from "../src/formats/oci.js";
import { parseSociIndex, SociIndexArtifactTypeV2 } from "../src/formats/soci-index.js";
import { decodeZtoc } from "../src/formats/ztoc.js";
import { RegistryClient } from "../src/registry/client.js";

const run = promisify(execFile);
const soci = new URL("../bin/soci.js", import.meta.url).pathname;
let registry: RegistryServer;
let dir = "";
const raw = async (ref: string) =>
  JSON.parse((await run("skopeo", ["inspect", "--raw", "--tls-verify=false", `docker://${ref}`])).stdout) as {
    manifests?: Descriptor[];
    mediaType?: string;
  };

beforeAll(async () => {
  registry = await startRegistry();
  dir = await mkdtemp(join(tmpdir(), "soci-remote-"));
  const layout = join(dir, "image");
  await run("umoci", ["init", "--layout", layout]);
  await run("umoci", ["new", "--image", `${layout}:latest`]);
  await run("umoci", ["unpack", "--rootless", "--image", `${layout}:latest`, join(dir, "bundle")]);
  await writeFile(join(dir, "bundle/rootfs/data.bin"), randomBytes(2 << 20));
  await writeFile(join(dir, "bundle/rootfs/hello.txt"), "hello\n");
  await run("umoci", ["repack", "--image", `${layout}:latest`, join(dir, "bundle")]);
  await run("skopeo", [
    "copy",
    "--dest-tls-verify=false",
    `oci:${layout}:latest`,
    `docker://${registry.host}/src/app:latest`,
  ]);
}, 120_000);

afterAll(async () => {
  await registry?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("soci convert between registry repositories", () => {
  it("pushes the SOCI-enabled image to the destination, layers mounted from the source", async () => {
    const r = await run("node", [
      soci,
      "convert",
      "--plain-http",
      "--min-layer-size",
      "0",
      `${registry.host}/src/app:latest`,
      `${registry.host}/dst/app:soci`,
    ]);
    expect(r.stdout).toMatch(/^layer sha256:\w+ -> ztoc sha256:\w+$/m);
    const index = await raw(`${registry.host}/dst/app:soci`);
    expect(index.mediaType).toBe("application/vnd.oci.image.index.v1+json");
    const [image, sociDesc] = index.manifests as [Descriptor, Descriptor];
    expect(sociDesc.artifactType).toBe(SociIndexArtifactTypeV2);
    expect(image.annotations?.["com.amazon.soci.index-digest"]).toBe(sociDesc.digest);

    const client = new RegistryClient({ plainHttp: true });
    try {
      const ref = `${registry.host}/dst/app:soci`;
      const sociIndex = parseSociIndex((await client.getManifest(ref, sociDesc)).bytes);
      const manifest = parseManifest((await client.getManifest(ref, image)).bytes);
      const ztoc = decodeZtoc(await client.getBlob(ref, sociIndex.blobs![0]!.digest));
      expect(ztoc.compressedArchiveSize).toBe(manifest.layers![0]!.size);
      expect(ztoc.toc.map((e) => Buffer.from(e.name).toString())).toContain("hello.txt");
      // the source is untouched
      const src = await raw(`${registry.host}/src/app:latest`);
      expect(src.mediaType).not.toBe("application/vnd.oci.image.index.v1+json");
    } finally {
      await client.close();
    }
  });

  it("skopeo copy --all carries the SOCI index along; copying one platform drops it", async () => {
    await run("skopeo", [
      "copy",
      "--all",
      "--src-tls-verify=false",
      "--dest-tls-verify=false",
      `docker://${registry.host}/dst/app:soci`,
      `docker://${registry.host}/all/app:soci`,
    ]);
    const all = await raw(`${registry.host}/all/app:soci`);
    const original = await raw(`${registry.host}/dst/app:soci`);
    expect(all.manifests!.map((m) => m.digest)).toEqual(original.manifests!.map((m) => m.digest));
    await run("skopeo", [
      "copy",
      "--src-tls-verify=false",
      "--dest-tls-verify=false",
      `docker://${registry.host}/dst/app:soci`,
      `docker://${registry.host}/one/app:x`,
    ]);
    const one = await raw(`${registry.host}/one/app:x`);
    expect(one.manifests).toBeUndefined(); // a single image manifest: no SOCI index descriptor
  });

  it("fails clearly for a missing source and an untagged destination", async () => {
    const missing = await run("node", [
      soci,
      "convert",
      "--plain-http",
      `${registry.host}/nope/app:latest`,
      `${registry.host}/x/app:y`,
    ]).catch((e: { stderr: string; code: number }) => e);
    expect((missing as { code: number }).code).toBe(1);
    expect((missing as { stderr: string }).stderr).toMatch(/^soci: .*(not found|unknown)/i);
    const untagged = await run("node", [
      soci,
      "convert",
      "--plain-http",
      `${registry.host}/src/app:latest`,
      `${registry.host}/x/app@sha256:${"0".repeat(64)}`,
    ]).catch((e: { stderr: string }) => e);
    expect((untagged as { stderr: string }).stderr).toContain("the destination image must be a tagged ref");
  });
});

describe("soci create + soci push (SOCI index v1)", () => {
  it("builds v1 from the registry image, pushes it, and it is found again through the referrers fallback tag", async () => {
    const root = join(dir, "root");
    const ref = `${registry.host}/src/app:latest`;
    const created = await run("node", [soci, "--root", root, "create", "--plain-http", "--min-layer-size", "0", ref]);
    expect(created.stdout).toMatch(/^layer sha256:\w+ -> ztoc sha256:\w+$/m);
    const pushed = await run("node", [soci, "--root", root, "push", "--plain-http", ref]);
    const indexDigest = /pushing soci index with digest: (sha256:\w+)/.exec(pushed.stdout)?.[1];
    expect(indexDigest).toBeDefined();
    expect(pushed.stdout).toMatch(/successfully pushed artifact with digest: sha256:/);

    const client = new RegistryClient({ plainHttp: true });
    try {
      const image = await client.resolve(ref);
      const found = await client.referrers(ref, image.digest, "application/vnd.amazon.soci.index.v1+json");
      expect(found.map((d) => d.digest)).toEqual([indexDigest]);
      const index = parseSociIndex((await client.getManifest(`${registry.host}/src/app@${indexDigest}`)).bytes);
      expect(index.version).toBe(1);
      expect(index.subject?.digest).toBe(image.digest);
      // the fallback tag holds a Go-JSON OCI index
      const tag = await raw(`${registry.host}/src/app:${image.digest.replace(":", "-")}`);
      expect(tag.mediaType).toBe("application/vnd.oci.image.index.v1+json");
    } finally {
      await client.close();
    }

    const skip = await run("node", [soci, "--root", root, "push", "--plain-http", "--existing-index", "skip", ref]);
    expect(skip.stdout).toMatch(
      /soci index found in remote repository with digest: sha256:\w+: skipping pushing artifacts for image manifest: sha256:/,
    );
    const warn = await run("node", [soci, "--root", root, "push", "--plain-http", ref]);
    expect(warn.stdout).toMatch(
      /^\[WARN\] soci index found in remote repository with digest: sha256:\w+: pushing index anyway$/m,
    );
    const bad = await run("node", [
      soci,
      "--root",
      root,
      "push",
      "--plain-http",
      "--existing-index",
      "maybe",
      ref,
    ]).catch((e: { stderr: string }) => e);
    expect((bad as { stderr: string }).stderr).toMatch(/--existing-index/);
  });
});

describe("multi-platform images", () => {
  it("converts every platform with --all-platforms and only the asked one with --platform", async () => {
    // an OCI index with linux/amd64 and linux/arm64/v8 images, each with its own gzip layer
    const { ContentStore } = await import("../src/store/content-store.js");
    const { marshalManifest, marshalIndex } = await import("../src/formats/oci.js");
    const zlib = await import("node:zlib");
    const { createHash } = await import("node:crypto");
    const layout = join(dir, "multi");
    const store = await ContentStore.open(layout);
    const sha = (b: Uint8Array) => `sha256:${createHash("sha256").update(b).digest("hex")}`;
    const entries: Descriptor[] = [];
    for (const [arch, variant] of [
      ["amd64", undefined],
      ["arm64", "v8"],
    ] as const) {
      const tar = (
        await run("tar", ["-C", join(dir, "bundle/rootfs"), "-cf", "-", "hello.txt"], { encoding: "buffer" })
      ).stdout as unknown as Buffer;
      // the same layer for both: their SOCI indexes are byte-identical, yet each platform keeps its own entry
      const layer = zlib.gzipSync(tar);
      const layerBytes = Buffer.concat([layer]);
      const lInfo = await store.put(layerBytes);
      const config = Buffer.from(
        JSON.stringify({
          architecture: arch,
          os: "linux",
          ...(variant ? { variant } : {}),
          rootfs: { type: "layers", diff_ids: [sha(tar)] },
          config: { Env: [arch] },
        }),
      );
      const cInfo = await store.put(config);
      const manifest = marshalManifest({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: { mediaType: "application/vnd.oci.image.config.v1+json", ...cInfo },
        layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", ...lInfo }],
      });
      const desc = {
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        digest: sha(manifest),
        size: manifest.length,
        platform: { architecture: arch, os: "linux", ...(variant ? { variant } : {}) },
      };
      await store.put(manifest, { digest: desc.digest, size: desc.size });
      entries.push(desc);
    }
    const index = marshalIndex({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: entries,
    });
    const idesc = { mediaType: "application/vnd.oci.image.index.v1+json", digest: sha(index), size: index.length };
    await store.putDescriptor(idesc, index);
    await store.tag(idesc, "latest");
    await run("skopeo", [
      "copy",
      "--all",
      "--dest-tls-verify=false",
      `oci:${layout}:latest`,
      `docker://${registry.host}/multi/app:latest`,
    ]);

    await run("node", [
      soci,
      "convert",
      "--plain-http",
      "--all-platforms",
      "--min-layer-size",
      "0",
      `${registry.host}/multi/app:latest`,
      `${registry.host}/multi/app:soci`,
    ]);
    const all = await raw(`${registry.host}/multi/app:soci`);
    const socis = all.manifests!.filter((m) => m.artifactType === SociIndexArtifactTypeV2);
    expect(socis.map((m) => m.platform)).toEqual([
      { architecture: "amd64", os: "linux" },
      { architecture: "arm64", os: "linux", variant: "v8" },
    ]);
    const images = all.manifests!.filter((m) => !m.artifactType);
    expect(images).toHaveLength(2);
    for (const img of images) {
      const s = socis.find((x) => x.annotations?.["com.amazon.soci.image-manifest-digest"] === img.digest);
      expect(s, img.digest).toBeDefined();
      expect(img.annotations?.["com.amazon.soci.index-digest"]).toBe(s!.digest);
    }

    await run("node", [
      soci,
      "convert",
      "--plain-http",
      "--platform",
      "linux/arm64",
      "--min-layer-size",
      "0",
      `${registry.host}/multi/app:latest`,
      `${registry.host}/multi/app:arm`,
    ]);
    const arm = await raw(`${registry.host}/multi/app:arm`);
    const armSoci = arm.manifests!.filter((m) => m.artifactType === SociIndexArtifactTypeV2);
    expect(armSoci.map((m) => m.platform?.architecture)).toEqual(["arm64"]);
    // every platform's manifest is still listed (re-encoded), only arm64 gets an index
    expect(arm.manifests!.filter((m) => !m.artifactType)).toHaveLength(2);
  });
});
