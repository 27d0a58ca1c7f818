// `soci convert` / `soci create` between registry refs, OCI layout directories (oci:<dir>[:tag]) and
// OCI layout archives (oci-archive:<file>[:tag]), through the real CLI against a real registry.
// skopeo reads every result (ground truth), our decoders check the ztocs, and converting the same
// image from any location gives the same converted index digest.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHash, randomBytes } from "node:crypto";
import { startRegistry, type RegistryServer } from "./helpers/registry-server.js";
import { startFaultProxy, type FaultAction } from "./helpers/fault-proxy.js";
import { parseIndex, parseManifest, type Descriptor } from "../src/formats/oci.js";
import { parseSociIndex, SociIndexArtifactTypeV2 } from "../src/formats/soci-index.js";
import { decodeZtoc } from "../src/formats/ztoc.js";
import { ContentStore } from "../src/store/content-store.js";
import { parseImageLocation } from "../src/indexer/image-location.js";

const run = promisify(execFile);
const soci = new URL("../bin/soci.js", import.meta.url).pathname;
let registry: RegistryServer;
let dir = "";
let layout = "";
let archive = "";

type Raw = { manifests?: Descriptor[]; mediaType?: string; layers?: Descriptor[] };
const skopeoRaw = async (ref: string): Promise<Raw> =>
  JSON.parse((await run("skopeo", ["inspect", "--raw", "--tls-verify=false", ref])).stdout) as Raw;

async function cli(...args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  return cliWith({}, ...args);
}

async function cliWith(
  env: NodeJS.ProcessEnv,
  ...args: string[]
): Promise<{ stdout: string; stderr: string; code: number }> {
  return run("node", [soci, ...args], { env: { ...process.env, ...env } }).then(
    (r) => ({ stdout: r.stdout, stderr: r.stderr, code: 0 }),
    (e: { stdout: string; stderr: string; code: number }) => ({ stdout: e.stdout, stderr: e.stderr, code: e.code }),
  );
}

async function convert(src: string, dst: string): Promise<string> {
  const r = await cli("convert", "--plain-http", "--min-layer-size", "0", src, dst);
  expect(r.stderr).toBe("");
  const digest = /^converted image index: (sha256:\w+)$/m.exec(r.stdout)?.[1];
  expect(digest).toBeDefined();
  return digest!;
}

/** The ztoc TOC names of the converted index's SOCI index, read with our decoders from a layout. */
async function ztocNames(store: ContentStore, indexDigest: string): Promise<string[]> {
  const idx = parseIndex(await store.get(indexDigest));
  const sociDesc = idx.manifests!.find((m) => m.artifactType === SociIndexArtifactTypeV2)!;
  const soci = parseSociIndex(await store.get(sociDesc.digest));
  const names: string[] = [];
  for (const b of soci.blobs ?? [])
    names.push(...decodeZtoc(await store.get(b.digest)).toc.map((e) => Buffer.from(e.name).toString()));
  return names;
}

beforeAll(async () => {
  registry = await startRegistry({ accessLog: true });
  dir = await mkdtemp(join(tmpdir(), "soci-locations-"));
  layout = join(dir, "image");
  // two layers: a random blob, then a small text file
  await run("umoci", ["init", "--layout", layout]);
  await run("umoci", ["new", "--image", `${layout}:latest`]);
  await run("umoci", ["unpack", "--rootless", "--image", `${layout}:latest`, join(dir, "bundle")]);
  await writeFile(join(dir, "bundle/rootfs/data.bin"), randomBytes(512 << 10));
  await run("umoci", ["repack", "--image", `${layout}:latest`, join(dir, "bundle")]);
  await run("umoci", ["unpack", "--rootless", "--image", `${layout}:latest`, join(dir, "bundle2")]);
  await writeFile(join(dir, "bundle2/rootfs/hello.txt"), "hello\n");
  await run("umoci", ["repack", "--image", `${layout}:latest`, join(dir, "bundle2")]);
  archive = join(dir, "image.tar");
  await run("skopeo", ["copy", `oci:${layout}:latest`, `oci-archive:${archive}:latest`]);
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

describe("image location syntax", () => {
  it("parses oci:, oci-archive: (optional tag after the last colon) and registry refs", () => {
    expect(parseImageLocation("oci:/a/b:v1")).toEqual({ kind: "oci", path: "/a/b", tag: "v1" });
    expect(parseImageLocation("oci:./rel")).toEqual({ kind: "oci", path: "./rel" });
    expect(parseImageLocation("oci-archive:/x/y.tar")).toEqual({ kind: "oci-archive", path: "/x/y.tar" });
    expect(parseImageLocation("oci-archive:/x:1/y.tar:tag")).toEqual({
      kind: "oci-archive",
      path: "/x:1/y.tar",
      tag: "tag",
    });
    expect(parseImageLocation("127.0.0.1:5000/a/b:c")).toEqual({ kind: "registry", ref: "127.0.0.1:5000/a/b:c" });
    expect(parseImageLocation("/layout", { pathsAreLayouts: true })).toEqual({ kind: "oci", path: "/layout" });
    expect(() => parseImageLocation("oci:")).toThrow(/missing path/);
    expect(() => parseImageLocation("oci:/a:")).toThrow(/empty tag/);
  });
});

describe("soci convert between disk and registry", () => {
  const digests: Record<string, string> = {};

  it("registry → oci-archive: skopeo reads the archive, our decoders read its ztocs", async () => {
    const out = join(dir, "out.tar");
    registry.requests.length = 0;
    digests.reg = await convert(`${registry.host}/src/app:latest`, `oci-archive:${out}:soci`);
    // each layer was downloaded once: the builder's stream also filled the archive
    const m = parseManifest(
      Buffer.from(
        (await run("skopeo", ["inspect", "--raw", "--tls-verify=false", `docker://${registry.host}/src/app:latest`]))
          .stdout,
      ),
    );
    await new Promise((r) => setTimeout(r, 200)); // access log lines land just after responses
    for (const l of m.layers!)
      expect(registry.requests.filter((r) => r.startsWith(`GET /v2/src/app/blobs/${l.digest} 200`))).toHaveLength(1);
    const index = await skopeoRaw(`oci-archive:${out}:soci`);
    expect(index.mediaType).toBe("application/vnd.oci.image.index.v1+json");
    expect(index.manifests!.map((m) => m.artifactType ?? "image")).toEqual(["image", SociIndexArtifactTypeV2]);
    // every blob of the image is inside: skopeo copies the whole thing out again
    await run("skopeo", ["copy", "--all", `oci-archive:${out}:soci`, `oci:${join(dir, "copied")}:x`]);
    // the archive itself, unpacked by tar and read with our decoders
    const unpacked = join(dir, "unpacked");
    await mkdir(unpacked);
    await run("tar", ["-xf", out, "-C", unpacked]);
    const store = await ContentStore.open(unpacked);
    expect(store.resolve("soci")?.digest).toBe(digests.reg);
    expect(await ztocNames(store, digests.reg)).toEqual(expect.arrayContaining(["data.bin", "hello.txt"]));
  });

  it("oci → registry and oci-archive → registry give the same converted image", async () => {
    digests.dir = await convert(`oci:${layout}:latest`, `${registry.host}/fromdir/app:soci`);
    digests.archive = await convert(`oci-archive:${archive}`, `${registry.host}/fromarchive/app:soci`);
    expect(digests.dir).toBe(digests.reg);
    expect(digests.archive).toBe(digests.reg);
    for (const repo of ["fromdir", "fromarchive"]) {
      const index = await skopeoRaw(`docker://${registry.host}/${repo}/app:soci`);
      const [image, sociDesc] = index.manifests as [Descriptor, Descriptor];
      expect(sociDesc.artifactType).toBe(SociIndexArtifactTypeV2);
      expect(image.annotations?.["com.amazon.soci.index-digest"]).toBe(sociDesc.digest);
      // all blobs (image layers from disk, ztocs) were pushed: skopeo copies the image out whole
      const copy = join(dir, `copy-${repo}`);
      await run("skopeo", [
        "copy",
        "--all",
        "--src-tls-verify=false",
        `docker://${registry.host}/${repo}/app:soci`,
        `oci:${copy}:x`,
      ]);
      const m = parseManifest(await (await ContentStore.open(copy)).get(image.digest));
      expect(m.layers).toHaveLength(2);
    }
  });

  it("oci → oci: a layout directory gains the converted image under its tag, keeping what it had", async () => {
    const out = join(dir, "outdir");
    await run("skopeo", ["copy", `oci:${layout}:latest`, `oci:${out}:original`]);
    const d = await convert(`oci:${layout}:latest`, `oci:${out}:soci`);
    expect(d).toBe(digests.reg);
    expect((await skopeoRaw(`oci:${out}:soci`)).manifests).toHaveLength(2);
    expect((await skopeoRaw(`oci:${out}:original`)).layers).toHaveLength(2);
    const store = await ContentStore.open(out);
    expect(await ztocNames(store, d)).toContain("hello.txt");
    await expect(stat(join(out, "ingest"))).rejects.toThrow();
  });

  it("fails clearly for missing layouts, untagged multi-image layouts and untagged registry destinations", async () => {
    const missing = await cli("convert", `oci:${join(dir, "nope")}`, `oci-archive:${join(dir, "x.tar")}`);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^soci: oci:.*nope: no OCI layout/m);
    const noArchive = await cli("convert", `oci-archive:${join(dir, "nope.tar")}`, `oci:${join(dir, "y")}`);
    expect(noArchive.stderr).toMatch(/nope\.tar: no such file or directory/);
    const notag = await cli("convert", `oci:${join(dir, "outdir")}`, `oci-archive:${join(dir, "z.tar")}`);
    expect(notag.stderr).toMatch(/holds 2 images; name one as oci:<dir>:<tag>/);
    const badTag = await cli("convert", `oci:${layout}:nosuch`, `oci-archive:${join(dir, "z.tar")}`);
    expect(badTag.stderr).toMatch(/no image tagged nosuch/);
    const untagged = await cli(
      "convert",
      "--plain-http",
      `oci:${layout}:latest`,
      `${registry.host}/x/app@sha256:${"0".repeat(64)}`,
    );
    expect(untagged.stderr).toContain("the destination image must be a tagged ref");
    for (const f of ["x.tar", "y", "z.tar"]) await expect(stat(join(dir, f))).rejects.toThrow();
    const unwritable = await cli(
      "convert",
      "--min-layer-size",
      "0",
      `oci:${layout}:latest`,
      `oci-archive:${join(dir, "no/such/dir/out.tar")}`,
    );
    expect(unwritable.code).toBe(1);
    expect(unwritable.stderr).toMatch(
      /^soci: .*no\/such\/dir\/out\.tar: cannot write the OCI archive: tar: .*No such file or directory/m,
    );
  });
});

describe("soci create from an OCI archive", () => {
  it("builds SOCI index v1 for the archive's image into the local store", async () => {
    const root = join(dir, "root");
    await mkdir(root);
    const r = await cli("--root", root, "create", "--min-layer-size", "0", `oci-archive:${archive}:latest`);
    expect(r.stderr).toBe("");
    expect(r.stdout.match(/^layer sha256:\w+ -> ztoc sha256:\w+$/gm)).toHaveLength(2);
    const list = await cli("--root", root, "index", "list");
    const row = list.stdout.split("\n").find((l) => /\sv1\s/.test(l));
    const indexDigest = /^(sha256:\w+)\s/.exec(row ?? "")?.[1];
    expect(indexDigest).toBeDefined();
    const info = await cli("--root", root, "index", "info", indexDigest!);
    const index = parseSociIndex(info.stdout);
    const manifestDigest = parseIndex(await readFile(join(layout, "index.json"))).manifests![0]!.digest;
    expect(index.subject?.digest).toBe(manifestDigest);
    expect(index.blobs).toHaveLength(2);
  });
});

/** Every file and directory under `root`: path → sha256 of the content and mode (dirs: mode only). */
async function treeHashes(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string): Promise<void> => {
    const st = await stat(join(root, rel));
    if (st.isDirectory()) {
      out[`${rel}/`] = st.mode.toString(8);
      for (const name of (await readdir(join(root, rel))).sort()) await walk(rel ? `${rel}/${name}` : name);
    } else {
      const sum = createHash("sha256")
        .update(await readFile(join(root, rel)))
        .digest("hex");
      out[rel] = `${st.mode.toString(8)} ${st.size} ${sum}`;
    }
  };
  await walk("");
  return out;
}

describe("a failed convert leaves the destination as it was", () => {
  let proxy: Awaited<ReturnType<typeof startFaultProxy>>;
  let bigLayer: Descriptor;
  let work = "";
  let tmp = "";

  beforeAll(async () => {
    proxy = await startFaultProxy(registry.host);
    const m = parseManifest(
      Buffer.from(
        (await run("skopeo", ["inspect", "--raw", "--tls-verify=false", `docker://${registry.host}/src/app:latest`]))
          .stdout,
      ),
    );
    bigLayer = [...m.layers!].sort((a, b) => b.size - a.size)[0]!;
    expect(bigLayer.size).toBeGreaterThan(400 << 10); // the random data layer
    work = await mkdtemp(join(dir, "failed-"));
  });

  afterAll(async () => {
    await proxy?.close();
  });

  /**
   * `soci convert` from the registry (through the proxy, which breaks the big layer's download)
   * to `dst`; it must fail, and leave nothing in its own temp dir.
   */
  async function failingConvert(dst: string, fault: FaultAction): Promise<string> {
    proxy.setRules([{ method: "GET", path: new RegExp(`/blobs/${bigLayer.digest}$`), action: fault }]);
    tmp = await mkdtemp(join(work, "tmp-"));
    const r = await cliWith(
      { TMPDIR: tmp },
      "convert",
      "--plain-http",
      "--min-layer-size",
      "0",
      `${proxy.host}/src/app:latest`,
      dst,
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^soci: /);
    // the faulty blob was asked for (so the convert got as far as the layers)
    expect(proxy.log.some((l) => l.path.endsWith(bigLayer.digest) && l.fault)).toBe(true);
    expect(await readdir(tmp)).toEqual([]);
    return r.stderr;
  }

  it.each<[string, FaultAction]>([
    ["a layer whose digest does not match", { kind: "corrupt", offset: 300 << 10 }],
    ["a registry that dies mid-blob", { kind: "drop", afterBytes: 64 << 10 }],
  ])("a new oci: directory does not exist afterwards (%s)", async (_what, fault) => {
    const parent = join(work, `new-${fault.kind}`);
    const dst = join(parent, "deeper", "layout");
    const stderr = await failingConvert(`oci:${dst}:soci`, fault);
    if (fault.kind === "corrupt") expect(stderr).toMatch(/digest|does not match/);
    await expect(stat(join(parent))).rejects.toThrow(/ENOENT/);
  });

  it("an empty directory given as oci: stays an empty directory", async () => {
    const dst = join(work, "empty");
    await mkdir(dst);
    await failingConvert(`oci:${dst}:soci`, { kind: "corrupt", offset: 300 << 10 });
    expect(await readdir(dst)).toEqual([]);
    expect((await readdir(work)).filter((n) => n.startsWith("."))).toEqual([]);
  });

  it.each<[string, FaultAction]>([
    ["a layer whose digest does not match", { kind: "corrupt", offset: 300 << 10 }],
    ["a registry that dies mid-blob", { kind: "drop", afterBytes: 64 << 10 }],
  ])("an existing layout is byte-identical afterwards (%s)", async (_what, fault) => {
    const dst = join(work, `existing-${fault.kind}`);
    // a layout holding another image (no layers): the failed convert would have had to add the
    // source's layers, and the one that downloads fine is teed towards the destination
    await run("umoci", ["init", "--layout", dst]);
    await run("umoci", ["new", "--image", `${dst}:original`]);
    const original = parseIndex(await readFile(join(dst, "index.json"))).manifests!.find(
      (m) => m.annotations?.["org.opencontainers.image.ref.name"] === "original",
    );
    expect(original).toBeDefined();
    const before = await treeHashes(dst);
    expect(Object.keys(before).length).toBeGreaterThan(4);
    await failingConvert(`oci:${dst}:soci`, fault);
    expect(await treeHashes(dst)).toEqual(before);
    expect((await readdir(work)).filter((n) => n.startsWith("."))).toEqual([]);
    // and a convert that succeeds afterwards still adds the image, keeping the original
    proxy.setRules([]);
    const d = await convert(`${proxy.host}/src/app:latest`, `oci:${dst}:soci`);
    expect((await skopeoRaw(`oci:${dst}:soci`)).manifests).toHaveLength(2);
    const store = await ContentStore.open(dst);
    expect(store.resolve("original")).toEqual(original);
    expect(store.resolve("soci")?.digest).toBe(d);
    expect((await readdir(dst)).sort()).toEqual(["blobs", "index.json", "oci-layout"]);
  });

  it("oci-archive: leaves no file", async () => {
    const out = join(work, "out.tar");
    await failingConvert(`oci-archive:${out}:soci`, { kind: "corrupt", offset: 300 << 10 });
    await expect(stat(out)).rejects.toThrow(/ENOENT/);
  });
});
