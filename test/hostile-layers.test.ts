// Hostile and broken layers, end to end through `soci convert`, a real registry and `soci mount`
// (real FUSE): a layer cut short names itself in every error (index build, local unpack, span
// fetch); a tampered registry blob gives EIO for the bytes it covers and the right bytes around
// them; a 5 GiB-of-zeros gzip bomb is indexed in bounded memory; a layer of 100 000 empty files
// mounts and lists; a 64 MiB PAX header is refused.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdtemp, open, readdir, readFile, rm, stat, truncate } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { constants, crc32, deflateRawSync, gzipSync } from "node:zlib";
import { startRegistry, type RegistryServer } from "./helpers/registry-server.js";
import { mountsUnder, SOCI_BIN } from "./helpers/soci-daemon.js";
import { archive, concat, entry, header } from "./helpers/tar-build.js";
import { pushOciImage, sha256, writeOciLayout, type LayerBlob } from "./helpers/oci-image.js";
import { RegistryClient } from "../src/registry/client.js";
import { parseIndex, parseManifest } from "../src/formats/oci.js";
import { decodeZtoc } from "../src/formats/ztoc.js";

const run = promisify(execFile);
const MiB = 1 << 20;

let dir = "";
let registry: RegistryServer;
let client: RegistryClient;

/** `soci` as a child process: its exit status and output. */
async function soci(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return run("node", [SOCI_BIN, ...args], { maxBuffer: 64 << 20 }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

/** A gzip tar layer of `parts` (tar-build entries), with its diff ID. */
function gzipLayer(...parts: Uint8Array[]): { gz: Buffer; tar: Uint8Array; layer: LayerBlob } {
  const tar = archive(...parts);
  const gz = gzipSync(tar);
  return { gz, tar, layer: { data: gz, diffId: sha256(tar) } };
}

/** Converts `src` to `dst` in the registry, indexing layers of at least `minLayerSize` bytes. */
async function convert(src: string, dst: string, minLayerSize = 0): Promise<void> {
  const r = await soci([
    "--root",
    join(dir, "convert-root"),
    "convert",
    "--plain-http",
    "--min-layer-size",
    String(minLayerSize),
    "--span-size",
    String(256 << 10),
    src,
    dst,
  ]);
  expect(r, r.stderr).toMatchObject({ code: 0 });
}

/** A `soci mount` child process; resolves once it printed its "mounted" line. */
function startMount(ref: string, mnt: string, root: string): Promise<{ proc: ChildProcess; stderr: () => string }> {
  const proc = spawn("node", [SOCI_BIN, "--root", root, "mount", "--plain-http", ref, mnt], {
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
    proc.on("exit", (code) => reject(Object.assign(new Error(`soci mount exited ${code}: ${err}`), { stderr: err })));
  });
}

async function stopMount(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null) return;
  const exited = new Promise((r) => proc.once("exit", r));
  proc.kill("SIGTERM");
  await exited;
}

/** The file the registry stores a blob in (Distribution's filesystem driver). */
function registryBlobFile(digest: string): string {
  const hex = digest.slice("sha256:".length);
  return join(registry.dir, "data", "docker", "registry", "v2", "blobs", "sha256", hex.slice(0, 2), hex, "data");
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "soci-hostile-"));
  registry = await startRegistry();
  client = new RegistryClient({ plainHttp: true });
}, 60_000);

afterAll(async () => {
  for (const m of await mountsUnder(dir).catch(() => [])) await run("umount", ["-l", m]).catch(() => undefined);
  await client?.close();
  await registry?.stop();
  await rm(dir, { recursive: true, force: true });
}, 60_000);

describe("a layer cut short names itself in every error", () => {
  const big = randomBytes(3 * MiB);
  const full = gzipLayer(entry({ name: "data.bin" }, big), entry({ name: "small.txt" }, "small\n"));
  const cut = full.gz.subarray(0, full.gz.length >> 1);
  const cutDigest = sha256(cut);

  it("soci convert: the index build of the truncated layer", async () => {
    const layout = join(dir, "cut-layout");
    await writeOciLayout(layout, [{ data: cut, diffId: full.layer.diffId }]);
    const r = await soci(["convert", "--standalone", "--min-layer-size", "0", layout, join(dir, "cut-out")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`soci: layer ${cutDigest}: unexpected end of compressed data\n`);
  });

  it("soci mount: the local unpack of an unindexed truncated layer", async () => {
    const ref = `${registry.host}/cut/local:latest`;
    const small = gzipLayer(entry({ name: "etc/hello" }, "hello\n".repeat(20_000)));
    const smallCut = small.gz.subarray(0, small.gz.length - 100);
    await pushOciImage(client, ref, [full.layer, { data: smallCut, diffId: small.layer.diffId }]);
    await convert(ref, `${registry.host}/cut/local:soci`, 100_000); // the small layer stays unindexed
    const err = await startMount(`${registry.host}/cut/local:soci`, join(dir, "mnt-cut-local"), join(dir, "root")).then(
      () => "",
      (e: { stderr: string }) => e.stderr,
    );
    expect(err).toContain(`soci: unpacking layer ${sha256(smallCut)}: gzip stream is truncated`);
  }, 120_000);

  it("a lazily loaded layer whose registry blob lost its tail: EIO, and the layer's state names it", async () => {
    const ref = `${registry.host}/cut/lazy:latest`;
    await pushOciImage(client, ref, [full.layer]);
    await convert(ref, `${registry.host}/cut/lazy:soci`);
    const digest = sha256(full.gz);
    // the registry answers a range over the cut with fewer bytes than asked for (the registry client
    // refuses the answer; a local blob cut short is test/fs-span-manager.test.ts's)
    await truncate(registryBlobFile(digest), full.gz.length - 1000);
    const root = join(dir, "root");
    const mnt = join(dir, "mnt-cut-lazy");
    const m = await startMount(`${registry.host}/cut/lazy:soci`, mnt, root);
    try {
      // the head of the file reads; the last span (the file's end, and the next file) cannot
      const head = await readPart(join(mnt, "data.bin"), 0, 64 << 10);
      expect(head.equals(big.subarray(0, 64 << 10))).toBe(true);
      await expect(readFile(join(mnt, "small.txt"))).rejects.toMatchObject({ code: "EIO" });
      const [key] = await readdir(join(root, "mounts"));
      const state = JSON.parse(
        await readFile(join(root, "mounts", key!, "layers", "0", ".soci-snapshotter", `${digest}.json`), "utf8"),
      ) as { error: string };
      expect(state.error).toMatch(new RegExp(`^file\\.Read: fetching span \\d+ of layer ${digest}: `));
    } finally {
      await stopMount(m.proc);
    }
  }, 120_000);
});

async function readPart(path: string, offset: number, length: number): Promise<Buffer> {
  const fh = await open(path, "r");
  try {
    const buf = Buffer.alloc(length);
    const { bytesRead } = await fh.read(buf, 0, length, offset);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

describe("probes that hold", () => {
  it("a tampered registry blob: EIO for the span it covers, the right bytes on both sides", async () => {
    const ref = `${registry.host}/tamper/img:latest`;
    const data = randomBytes(4 * MiB);
    const layer = gzipLayer(entry({ name: "data.bin" }, data));
    await pushOciImage(client, ref, [layer.layer]);
    await convert(ref, `${registry.host}/tamper/img:soci`);
    // flip one byte in the middle of the stored blob (same length: the registry serves it as is)
    const digest = sha256(layer.gz);
    const fh = await open(registryBlobFile(digest), "r+");
    const at = layer.gz.length >> 1;
    await fh.write(Buffer.from([layer.gz[at]! ^ 0xff]), 0, 1, at);
    await fh.close();
    const m = await startMount(`${registry.host}/tamper/img:soci`, join(dir, "mnt-tamper"), join(dir, "root"));
    try {
      // page by page (a longer read that reaches the bad span returns the good bytes before it)
      const page = 4096;
      const status: ("ok" | "EIO")[] = [];
      for (let off = 0; off < data.length; off += page) {
        const got = await readPart(join(dir, "mnt-tamper", "data.bin"), off, page).catch((e: NodeJS.ErrnoException) => {
          if (e.code !== "EIO") throw e;
          return undefined;
        });
        if (got) expect(got.equals(data.subarray(off, off + page)), `bytes at ${off}`).toBe(true);
        status.push(got ? "ok" : "EIO");
      }
      const bad = status.flatMap((s, i) => (s === "EIO" ? [i] : []));
      // one span refuses (256 KiB up to the next deflate block boundary, and the pages straddling its
      // edges); everything around it reads right
      expect(bad.length).toBeGreaterThan((256 << 10) / page / 2);
      expect(bad.length).toBeLessThanOrEqual((512 << 10) / page);
      expect(bad.at(-1)! - bad[0]! + 1).toBe(bad.length);
      expect(status[bad[0]! - 1]).toBe("ok");
      expect(status[bad.at(-1)! + 1]).toBe("ok");
    } finally {
      await stopMount(m.proc);
    }
  }, 120_000);

  it("a 5 GiB-of-zeros gzip bomb is indexed in bounded memory (peak RSS < 300 MB)", async () => {
    // built from deflate segments that each end in a full flush (so they can be repeated): one for
    // the tar header, 5120 identical ones for 1 MiB of zeros each, one for the end-of-archive blocks
    const size = 5 * 1024 * MiB;
    const tarHeader = header({ name: "zeros.bin", size });
    const tail = Buffer.alloc(1024);
    const flush = { finishFlush: constants.Z_FULL_FLUSH, level: 9 };
    const zeroMiB = Buffer.alloc(MiB);
    const zeroSegment = deflateRawSync(zeroMiB, flush);
    const file = join(dir, "bomb.gz");
    const out = createWriteStream(file);
    const diffId = createHash("sha256").update(tarHeader);
    let crc = crc32(tarHeader);
    out.write(Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]));
    out.write(deflateRawSync(tarHeader, flush));
    for (let i = 0; i < size / MiB; i++) {
      if (!out.write(zeroSegment)) await new Promise<void>((r) => out.once("drain", () => r()));
      crc = crc32(zeroMiB, crc);
      diffId.update(zeroMiB);
    }
    out.write(deflateRawSync(tail)); // the final block
    crc = crc32(tail, crc);
    diffId.update(tail);
    const trailer = Buffer.alloc(8);
    trailer.writeUInt32LE(crc >>> 0, 0);
    trailer.writeUInt32LE((512 + size + 1024) % 2 ** 32, 4);
    out.end(trailer);
    await new Promise<void>((r) => out.once("finish", () => r()));
    expect((await stat(file)).size).toBeLessThan(6 * MiB);

    const layout = join(dir, "bomb-layout");
    await writeOciLayout(layout, [{ data: { file }, diffId: `sha256:${diffId.digest("hex")}` }]);
    await rm(file);
    const converted = join(dir, "bomb-out");
    const child = spawn(
      "node",
      [SOCI_BIN, "convert", "--standalone", "--format", "oci-dir", "--min-layer-size", "0", layout, converted],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => child.once("exit", r));
    // VmHWM is the peak resident set of the whole process (worker threads included)
    let peakKb = 0;
    const sample = async () => {
      const status = await readFile(`/proc/${child.pid}/status`, "utf8").catch(() => "");
      peakKb = Math.max(peakKb, Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1] ?? 0));
    };
    const timer = setInterval(() => void sample(), 50);
    const code = await exited;
    clearInterval(timer);
    expect(code, stderr).toBe(0);
    expect(peakKb).toBeGreaterThan(0);
    expect(peakKb * 1024).toBeLessThan(300e6);
    // the ztoc lists the 5 GiB file
    const top = parseIndex(await readFile(join(converted, "index.json"))).manifests![0]!;
    const blob = (d: string) => readFile(join(converted, "blobs", "sha256", d.slice(7)));
    const sociIndex = parseIndex(await blob(top.digest)).manifests!.find(
      (m) => m.artifactType === "application/vnd.amazon.soci.index.v2+json",
    )!;
    const zDesc = parseManifest(await blob(sociIndex.digest)).layers![0]!;
    const z = decodeZtoc(await blob(zDesc.digest));
    expect(z.toc.map((e) => [Buffer.from(e.name).toString(), e.uncompressedSize])).toEqual([["zeros.bin", size]]);
    expect(z.uncompressedArchiveSize).toBe(512 + size + 1024);
  }, 300_000);

  it("a layer of 100 000 empty files converts, mounts and lists", async () => {
    const n = 100_000;
    const name = (i: number) => `many/f${String(i).padStart(6, "0")}`;
    const parts = [entry({ name: "many/", typeflag: "5", mode: 0o755 })];
    for (let i = 0; i < n; i++) parts.push(header({ name: name(i), mode: 0o644, size: 0 }));
    const layer = gzipLayer(concat(...parts));
    const ref = `${registry.host}/many/img:latest`;
    await pushOciImage(client, ref, [layer.layer]);
    await convert(ref, `${registry.host}/many/img:soci`);
    const mnt = join(dir, "mnt-many");
    const m = await startMount(`${registry.host}/many/img:soci`, mnt, join(dir, "root"));
    try {
      const { stdout } = await run("sh", ["-c", `ls ${join(mnt, "many")} | wc -l`]);
      expect(stdout.trim()).toBe(String(n));
      for (const i of [0, 1, 4242, 54_321, n - 1]) {
        const st = await stat(join(mnt, name(i)));
        expect({ i, size: st.size, mode: st.mode & 0o7777, file: st.isFile() }).toEqual({
          i,
          size: 0,
          mode: 0o644,
          file: true,
        });
      }
      await expect(stat(join(mnt, name(n)))).rejects.toMatchObject({ code: "ENOENT" });
    } finally {
      await stopMount(m.proc);
    }
  }, 180_000);

  it("a 64 MiB PAX header is refused, naming the layer", async () => {
    const body = Buffer.alloc(64 * MiB, "c");
    const layer = gzipLayer(entry({ name: "PaxHeaders/f", typeflag: "x" }, body), entry({ name: "f" }, "f\n"));
    const layout = join(dir, "pax-layout");
    await writeOciLayout(layout, [layer.layer]);
    const r = await soci(["convert", "--standalone", "--min-layer-size", "0", layout, join(dir, "pax-out")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `soci: layer ${sha256(layer.gz)}: error while reading tar header: archive/tar: header field too long\n`,
    );
  }, 60_000);
});
