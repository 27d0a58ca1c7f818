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
const raw = async (ref: string) => JSON.parse((await run("skopeo", ["inspect", "--raw", "--tls-verify=false", `docker://${ref}`])).stdout) as { manifests?: Descriptor[]; mediaType?: string };

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
  await run("skopeo", ["copy", "--dest-tls-verify=false", `oci:${layout}:latest`, `docker://${registry.host}/src/app:latest`]);
}, 120_000);

afterAll(async () => {
  await registry?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("soci convert between registry repositories", () => {
  it("pushes the SOCI-enabled image to the destination, layers mounted from the source", async () => {
    const r = await run("node", [soci, "convert", "--plain-http", "--min-layer-size", "0", `${registry.host}/src/app:latest`, `${registry.host}/dst/app:soci`]);
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
    await run("skopeo", ["copy", "--all", "--src-tls-verify=false", "--dest-tls-verify=false", `docker://${registry.host}/dst/app:soci`, `docker://${registry.host}/all/app:soci`]);
    const all = await raw(`${registry.host}/all/app:soci`);
    const original = await raw(`${registry.host}/dst/app:soci`);
    expect(all.manifests!.map((m) => m.digest)).toEqual(original.manifests!.map((m) => m.digest));
    await run("skopeo", ["copy", "--src-tls-verify=false", "--dest-tls-verify=false", `docker://${registry.host}/dst/app:soci`, `docker://${registry.host}/one/app:x`]);
    const one = await raw(`${registry.host}/one/app:x`);
    expect(one.manifests).toBeUndefined(); // a single image manifest: no SOCI index descriptor
  });

  it("fails clearly for a missing source and an untagged destination", async () => {
    const missing = await run("node", [soci, "convert", "--plain-http", `${registry.host}/nope/app:latest`, `${registry.host}/x/app:y`]).catch((e: { stderr: string; code: number }) => e);
    expect((missing as { code: number }).code).toBe(1);
    expect((missing as { stderr: string }).stderr).toMatch(/^soci: .*(not found|unknown)/i);
    const untagged = await run("node", [soci, "convert", "--plain-http", `${registry.host}/src/app:latest`, `${registry.host}/x/app@sha256:${"0".repeat(64)}`]).catch((e: { stderr: string }) => e);
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
    expect(skip.stdout).toMatch(/soci index found in remote repository with digest: sha256:\w+: skipping pushing artifacts for image manifest: sha256:/);
    const warn = await run("node", [soci, "--root", root, "push", "--plain-http", ref]);
    expect(warn.stdout).toMatch(/^\[WARN\] soci index found in remote repository with digest: sha256:\w+: pushing index anyway$/m);
    const bad = await run("node", [soci, "--root", root, "push", "--plain-http", "--existing-index", "maybe", ref]).catch((e: { stderr: string }) => e);
    expect((bad as { stderr: string }).stderr).toMatch(/--existing-index/);
  });
});
