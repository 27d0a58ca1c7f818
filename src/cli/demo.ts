// `soci demo`: what exists so far, end to end on one machine (no registry or containerd yet).
// Builds a sample OCI image, converts it into a SOCI-enabled image with the same code as
// `soci convert --standalone`, then reads files lazily through the layer's ztoc: only the spans
// holding each file are read (their digests checked) and inflated from their checkpoints, and every
// byte is compared with the file on disk.
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, mkdtemp, open, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import zlib from "node:zlib";
import { ContentStore } from "../store/content-store.js";
import { convertStandalone } from "../build/standalone.js";
import { extractFile, zinfoOf } from "../build/extract-file.js";
import { decodeZtoc } from "../formats/ztoc.js";
import { parseSociIndex, SociIndexArtifactTypeV2 } from "../formats/soci-index.js";
import { marshalManifest, MediaTypeImageConfig, MediaTypeImageLayerGzip, MediaTypeImageManifest, parseIndex, parseManifest } from "../formats/oci.js";

const run = promisify(execFile);

export interface DemoOptions {
  sizeMB: number;
  spanSize: number;
  reads: number;
}

const WORDS = "layer span checkpoint window inflate registry snapshot container image lazy fetch verify".split(" ");

// Files that compress like a real rootfs: text, structured binary, and incompressible blobs.
async function writeSampleTree(root: string, totalBytes: number): Promise<number> {
  let written = 0;
  let n = 0;
  while (written < totalBytes) {
    const dir = join(root, `usr/share/demo/d${n % 16}`);
    await mkdir(dir, { recursive: true });
    const kind = n % 3;
    const size = Math.min(totalBytes - written, 64 * 1024 + ((n * 7919) % (2 << 20)));
    let data: Buffer;
    if (kind === 0) {
      const parts: string[] = [];
      let len = 0;
      for (let i = 0; len < size; i++) {
        const w = `${WORDS[(i * 31 + n) % WORDS.length]}${i % 17 === 0 ? "\n" : " "}`;
        parts.push(w);
        len += w.length;
      }
      data = Buffer.from(parts.join("")).subarray(0, size);
    } else if (kind === 1) {
      data = Buffer.alloc(size);
      for (let i = 0; i + 4 <= size; i += 4) data.writeUInt32LE(((i * 2654435761) >>> 8) & 0xffff, i);
    } else {
      data = randomBytes(size);
    }
    await writeFile(join(dir, `file${n}.bin`), data);
    written += size;
    n++;
  }
  return n;
}

const sha256 = (b: Uint8Array) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

/** A one-layer OCI image layout around `layerPath`. */
async function writeImage(dir: string, layerPath: string, diffId: string): Promise<void> {
  const store = await ContentStore.open(dir);
  const layer = await store.put(createReadStream(layerPath));
  const config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [diffId] }, config: {} }));
  const cfg = await store.put(config);
  const manifest = marshalManifest({
    schemaVersion: 2,
    mediaType: MediaTypeImageManifest,
    config: { mediaType: MediaTypeImageConfig, digest: cfg.digest, size: cfg.size },
    layers: [{ mediaType: MediaTypeImageLayerGzip, digest: layer.digest, size: layer.size }],
  });
  await store.putDescriptor({ mediaType: MediaTypeImageManifest, digest: sha256(manifest), size: manifest.length }, manifest);
}

export async function runDemo(opts: DemoOptions): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), "soci-demo-"));
  const log = (s: string) => process.stdout.write(`${s}\n`);
  const row = (label: string, value: string) => log(`  ${label.padEnd(44)}: ${value}`);
  try {
    // 1. a sample image
    const rootfs = join(work, "rootfs");
    const files = await writeSampleTree(rootfs, opts.sizeMB * 1024 * 1024);
    const tarPath = join(work, "layer.tar");
    const gzPath = join(work, "layer.tar.gz");
    await run("tar", ["-C", rootfs, "-cf", tarPath, "."]);
    await pipeline(createReadStream(tarPath), zlib.createGzip({ level: 6 }), createWriteStream(gzPath));
    const tarSize = (await stat(tarPath)).size;
    const gzSize = (await stat(gzPath)).size;
    await writeImage(join(work, "image"), gzPath, sha256(await readFile(tarPath)));
    log(`sample image: one layer, ${files} files, tar ${(tarSize / 1e6).toFixed(1)} MB, gzip -6 ${(gzSize / 1e6).toFixed(1)} MB`);

    // 2. convert it (soci convert --standalone --format oci-dir)
    let t = performance.now();
    const out = join(work, "image-soci");
    const converted = await convertStandalone(join(work, "image"), out, {
      format: "oci-dir", spanSize: opts.spanSize, minLayerSize: 0, log: (l) => log(`  ${l}`),
    });
    const convertMs = performance.now() - t;
    const blob = (d: string) => readFile(join(out, "blobs", ...d.split(":")));
    const entries = parseIndex(await blob(converted.digest)).manifests ?? [];
    const sociDesc = entries.find((m) => m.artifactType === SociIndexArtifactTypeV2)!;
    const manifest = parseManifest(await blob(entries[0]!.digest));
    const ztocDesc = parseSociIndex(await blob(sociDesc.digest)).blobs![0]!;
    const ztoc = decodeZtoc(await blob(ztocDesc.digest));
    const zinfo = zinfoOf(ztoc);
    log(`converted: image index ${converted.digest.slice(0, 19)}…, SOCI index v2, ztoc of ${(ztocDesc.size / 1e6).toFixed(1)} MB ` +
      `(${ztoc.toc.length} entries, ${zinfo.maxSpanId + 1} spans) in ${convertMs.toFixed(0)} ms`);

    // 3. baseline: a normal pull must download and decompress the whole layer before the first read
    t = performance.now();
    await pipeline(createReadStream(join(out, "blobs", ...manifest.layers![0]!.digest.split(":"))), zlib.createGunzip(), async function* (src) {
      for await (const _ of src) void _;
    });
    const fullMs = performance.now() - t;

    // 4. lazy reads through the ztoc, with span digests checked like the snapshotter will
    const layer = await open(join(out, "blobs", ...manifest.layers![0]!.digest.split(":")), "r");
    const regular = ztoc.toc.filter((e) => e.type === "reg" && e.uncompressedSize > 0);
    const spansRead = new Set<number>();
    let needed = 0;
    t = performance.now();
    for (let k = 0; k < opts.reads; k++) {
      const e = regular[Math.floor(Math.random() * regular.length)]!;
      const read = async (start: number, end: number) => {
        const bytes = Buffer.alloc(end - start);
        await layer.read(bytes, 0, bytes.length, start);
        const first = zinfo.spanForOffset(e.uncompressedOffset);
        const last = zinfo.spanForOffset(e.uncompressedOffset + e.uncompressedSize - 1);
        for (let s = first; s <= last; s++) {
          const a = zinfo.startCompressedOffset(s);
          const b = zinfo.endCompressedOffset(s, gzSize);
          if (sha256(bytes.subarray(a - start, b - start)) !== ztoc.spanDigests[s]) throw new Error(`span ${s}: digest mismatch`);
          if (!spansRead.has(s)) needed += b - a;
          spansRead.add(s);
        }
        return bytes;
      };
      const got = await extractFile(ztoc, e, read, zinfo);
      const want = await readFile(join(rootfs, Buffer.from(e.name).toString("utf8")));
      if (!Buffer.from(got).equals(want)) throw new Error(`lazy read of ${Buffer.from(e.name)} returned wrong bytes`);
    }
    const lazyMs = performance.now() - t;
    await layer.close();
    log(`lazy: ${opts.reads} whole files read through the ztoc and verified against the originals`);
    log("");
    row("normal pull: gunzip the whole layer first", `${fullMs.toFixed(0)} ms (node:zlib, no network)`);
    row(`${opts.reads} files served lazily`, `${lazyMs.toFixed(0)} ms (${(lazyMs / opts.reads).toFixed(1)} ms per file)`);
    row("compressed bytes needed", `${((100 * needed) / gzSize).toFixed(1)}% of the layer (${spansRead.size} of ${zinfo.maxSpanId + 1} spans)`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
