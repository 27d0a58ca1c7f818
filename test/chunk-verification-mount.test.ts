// Images converted with `soci convert --chunk-verification`, end to end through `soci mount`: the
// index lists a verification artifact per indexed layer (its own media type, the layer-digest
// annotation) after the reference's blobs, and the ztocs are the very bytes a plain convert writes.
// Mounted with the artifact (ztocs fetched as their TOC part only, windows and chunks by range) and
// without it (`--no-chunk-verification`: ignored, as the reference ignores unknown media types),
// the image equals GNU tar's extraction of its layers. A tampered artifact or ztoc never serves a
// wrong byte: the layer is unpacked locally instead.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { startRegistry, type RegistryServer } from "./helpers/registry-server.js";
import { startFaultProxy, type FaultProxy } from "./helpers/fault-proxy.js";
import { addLayer, busyboxLayer, initLayout, SOCI_BIN } from "./helpers/soci-daemon.js";
import { LayerVerificationMediaType, decodeLayerVerification } from "../src/formats/layer-verification.js";

const run = promisify(execFile);
let registry: RegistryServer;
let proxy: FaultProxy;
let dir = "";
let extracted = "";
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

interface Node {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeMs: number;
  target?: string;
  sha256?: string;
}

async function walk(top: string): Promise<Map<string, Node>> {
  const out = new Map<string, Node>();
  const visit = async (rel: string): Promise<void> => {
    for (const name of (await readdir(join(top, rel))).sort()) {
      const p = rel ? `${rel}/${name}` : name;
      const full = join(top, p);
      const st = await lstat(full);
      const type = st.isDirectory() ? "dir" : st.isFile() ? "reg" : st.isSymbolicLink() ? "symlink" : "other";
      const n: Node = {
        type,
        mode: st.mode & 0o7777,
        uid: st.uid,
        gid: st.gid,
        size: type === "dir" ? 0 : st.size,
        mtimeMs: type === "dir" ? 0 : Math.floor(st.mtimeMs / 1000),
      };
      if (type === "symlink") n.target = await readlink(full);
      if (type === "reg") n.sha256 = sha(await readFile(full));
      out.set(p, n);
      if (type === "dir") await visit(p);
    }
  };
  await visit("");
  return out;
}

interface Raw {
  manifests?: { digest: string; artifactType?: string }[];
  layers?: { digest: string; mediaType: string; size: number; annotations?: Record<string, string> }[];
}
const raw = async (ref: string): Promise<Raw> =>
  JSON.parse((await run("skopeo", ["inspect", "--raw", "--tls-verify=false", `docker://${ref}`])).stdout) as Raw;

async function sociIndexOf(tag: string): Promise<Raw> {
  const top = await raw(`${registry.host}/fine/img:${tag}`);
  const idx = top.manifests!.find((m) => m.artifactType === "application/vnd.amazon.soci.index.v2+json")!;
  return raw(`${registry.host}/fine/img@${idx.digest}`);
}

function startMount(root: string, args: string[]): Promise<{ proc: ChildProcess; stderr: () => string }> {
  const proc = spawn("node", [SOCI_BIN, "--root", root, "mount", "--plain-http", ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  proc.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    proc.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("mounted ")) resolve({ proc, stderr: () => err });
    });
    proc.on("exit", (code) => reject(new Error(`soci mount exited ${code}: ${err}`)));
  });
}

async function stopMount(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null) return;
  const done = new Promise((r) => proc.once("exit", r));
  proc.kill("SIGTERM");
  await done;
}

/** Blob GETs the proxy saw since `from`: digest and Range header. */
const blobGets = (from: number) =>
  proxy.log
    .slice(from)
    .filter((l) => l.method === "GET" && l.path.includes("/blobs/"))
    .map((l) => ({ digest: l.path.slice(l.path.lastIndexOf("/") + 1), range: l.range }));

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "soci-fine-"));
  registry = await startRegistry();
  proxy = await startFaultProxy(registry.host);
  const layout = join(dir, "image");
  await initLayout(layout);
  await addLayer(layout, dir, busyboxLayer);
  await addLayer(layout, dir, async (rootfs) => {
    await mkdir(join(rootfs, "data", "small"), { recursive: true });
    await writeFile(join(rootfs, "data", "random.bin"), randomBytes(3 << 20));
    await writeFile(join(rootfs, "data", "text.txt"), "line of text\n".repeat(200_000));
    for (let i = 0; i < 120; i++)
      await writeFile(join(rootfs, "data", "small", `f${i}.txt`), `file ${i} `.repeat(i * 37 + 1));
    await writeFile(join(rootfs, "data", "empty"), "");
  });
  await run("skopeo", [
    "copy",
    "--dest-tls-verify=false",
    `oci:${layout}:latest`,
    `docker://${registry.host}/fine/img:latest`,
  ]);
  // ground truth: GNU tar extracting the layers in order
  extracted = join(dir, "extracted");
  await mkdir(extracted);
  const index = JSON.parse(await readFile(join(layout, "index.json"), "utf8")) as { manifests: { digest: string }[] };
  const blob = (d: string) => join(layout, "blobs", "sha256", d.slice(7));
  const manifest = JSON.parse(await readFile(blob(index.manifests[0]!.digest), "utf8")) as Raw;
  for (const l of manifest.layers!) await run("tar", ["-xzf", blob(l.digest), "-C", extracted]);
  const convert = (tag: string, extra: string[]) =>
    run("node", [
      SOCI_BIN,
      "--root",
      join(dir, `convert-${tag}`),
      "convert",
      "--plain-http",
      "--min-layer-size",
      "0",
      "--span-size",
      String(256 << 10),
      ...extra,
      `${registry.host}/fine/img:latest`,
      `${registry.host}/fine/img:${tag}`,
    ]);
  await convert("plain", []);
  await convert("fine", ["--chunk-verification", "--chunk-size", "16384"]);
}, 240_000);

afterAll(async () => {
  await proxy?.close();
  await registry?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("soci convert --chunk-verification", () => {
  it("lists one artifact per indexed layer after the reference's blobs; the ztocs are unchanged", async () => {
    const plain = await sociIndexOf("plain");
    const fine = await sociIndexOf("fine");
    const ztocs = (r: Raw) => r.layers!.filter((l) => l.mediaType === "application/octet-stream");
    expect(ztocs(fine)).toEqual(ztocs(plain));
    expect(plain.layers!.some((l) => l.mediaType === LayerVerificationMediaType)).toBe(false);
    const artifacts = fine.layers!.filter((l) => l.mediaType === LayerVerificationMediaType);
    expect(artifacts).toHaveLength(2);
    expect(fine.layers!.slice(0, 2).map((l) => l.mediaType)).toEqual([
      "application/octet-stream",
      "application/octet-stream",
    ]);
    for (const [k, a] of artifacts.entries()) {
      const z = ztocs(fine)[k]!;
      const layer = z.annotations!["com.amazon.soci.image-layer-digest"]!;
      expect(a.annotations).toEqual({ "com.amazon.soci.image-layer-digest": layer });
      // the artifact's own content: fetched as a blob
      const res = await fetch(`http://${registry.host}/v2/fine/img/blobs/${a.digest}`);
      const v = decodeLayerVerification(new Uint8Array(await res.arrayBuffer()));
      expect(v.layerDigest).toBe(layer);
      expect(v.ztocDigest).toBe(z.digest);
      expect(v.chunkSize).toBe(16384);
    }
  });
});

describe("soci mount with and without the artifact", () => {
  for (const useArtifact of [true, false]) {
    it(`${useArtifact ? "uses the artifact" : "--no-chunk-verification ignores the artifact"}: the mount equals GNU tar's extraction`, async () => {
      const root = join(dir, `root-${useArtifact}`);
      const mnt = join(dir, `mnt-${useArtifact}`);
      const fine = await sociIndexOf("fine");
      const mark = proxy.log.length;
      const m = await startMount(root, [
        ...(useArtifact ? [] : ["--no-chunk-verification"]),
        `${proxy.host}/fine/img:fine`,
        mnt,
      ]);
      try {
        const got = await walk(mnt);
        const want = await walk(extracted);
        expect([...got.keys()]).toEqual([...want.keys()]);
        for (const [p, n] of want) expect(got.get(p), p).toEqual(n);
      } finally {
        await stopMount(m.proc);
      }
      const gets = blobGets(mark);
      const ztocDigests = fine.layers!.filter((l) => l.mediaType === "application/octet-stream").map((l) => l.digest);
      const artifactDigests = fine
        .layers!.filter((l) => l.mediaType === LayerVerificationMediaType)
        .map((l) => l.digest);
      if (useArtifact) {
        // artifacts whole; ztocs only by range (TOC part, then windows), never whole
        for (const d of artifactDigests) expect(gets.some((g) => g.digest === d && !g.range)).toBe(true);
        for (const d of ztocDigests) {
          expect(gets.some((g) => g.digest === d && !g.range)).toBe(false);
          expect(gets.some((g) => g.digest === d && g.range)).toBe(true);
        }
      } else {
        for (const d of artifactDigests) expect(gets.some((g) => g.digest === d)).toBe(false);
        for (const d of ztocDigests) expect(gets.some((g) => g.digest === d && !g.range)).toBe(true);
      }
    });
  }

  it("a tampered artifact or ztoc TOC part is never trusted: the layer is unpacked locally, the bytes stay right", async () => {
    const fine = await sociIndexOf("fine");
    const data = fine.layers!.filter((l) => l.mediaType === LayerVerificationMediaType)[1]!;
    const dataZtoc = fine.layers!.filter((l) => l.mediaType === "application/octet-stream")[1]!;
    for (const [what, digest] of [
      ["artifact", data.digest],
      ["ztoc", dataZtoc.digest],
    ] as const) {
      const root = join(dir, `root-tamper-${what}`);
      const mnt = join(dir, `mnt-tamper-${what}`);
      proxy.setRules([
        { method: "GET", path: new RegExp(digest.slice(7)), times: 1, action: { kind: "corrupt", offset: 200 } },
      ]);
      const m = await startMount(root, [`${proxy.host}/fine/img:fine`, mnt]);
      try {
        expect(m.stderr()).toMatch(/unpacking locally/);
        expect(m.stderr()).toMatch(/digest mismatch/);
        const want = await readFile(join(extracted, "data", "text.txt"));
        expect(sha(await readFile(join(mnt, "data", "text.txt")))).toBe(sha(want));
      } finally {
        await stopMount(m.proc);
        proxy.setRules([]);
      }
    }
  });
});
