// `soci demo`: the foundation end to end on one machine, no registry needed yet.
// Builds a sample gzip layer, indexes it (checkpoints + span digests) on the worker pool, then
// serves random reads lazily: fetch only the covering spans' compressed bytes, verify their
// digests, inflate them from their checkpoints, and check every byte against the plain tar.
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, mkdtemp, open, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import zlib from "node:zlib";
import { InflatePool } from "../wasm/pool.js";
import { GzipZinfo } from "../formats/gzip-zinfo.js";

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
      for (let i = 0; i + 4 <= size; i += 4) data.writeUInt32LE((i * 2654435761) >>> 8 & 0xffff, i);
    } else {
      data = randomBytes(size);
    }
    await writeFile(join(dir, `file${n}.bin`), data);
    written += size;
    n++;
  }
  return n;
}

function mbps(bytes: number, ms: number): string {
  return `${(bytes / 1e6 / (ms / 1000)).toFixed(0)} MB/s`;
}

export async function runDemo(opts: DemoOptions): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), "soci-demo-"));
  const pool = new InflatePool();
  const log = (s: string) => process.stdout.write(`${s}\n`);
  try {
    const rootfs = join(work, "rootfs");
    const files = await writeSampleTree(rootfs, opts.sizeMB * 1024 * 1024);
    const tarPath = join(work, "layer.tar");
    const gzPath = join(work, "layer.tar.gz");
    await run("tar", ["-C", rootfs, "-cf", tarPath, "."]);
    let t = performance.now();
    await pipeline(createReadStream(tarPath), zlib.createGzip({ level: 6 }), createWriteStream(gzPath));
    const gzipMs = performance.now() - t;
    const tarSize = (await stat(tarPath)).size;
    const gzSize = (await stat(gzPath)).size;
    log(`sample layer: ${files} files, tar ${(tarSize / 1e6).toFixed(1)} MB, gzip -6 ${(gzSize / 1e6).toFixed(1)} MB (${gzipMs.toFixed(0)} ms)`);

    // Index: one streaming pass on a worker (checkpoints), then span digests over the compressed bytes.
    t = performance.now();
    const built = await pool.buildCheckpoints(createReadStream(gzPath, { highWaterMark: 1 << 20 }), opts.spanSize);
    const zinfo = new GzipZinfo(built.checkpoints, opts.spanSize);
    const gz = await open(gzPath, "r");
    const digests: string[] = [];
    for (let i = 0; i <= zinfo.maxSpanId; i++) {
      const bytes = await readRange(gz, zinfo.startCompressedOffset(i), zinfo.endCompressedOffset(i, gzSize));
      digests.push(`sha256:${createHash("sha256").update(bytes).digest("hex")}`);
    }
    const indexMs = performance.now() - t;
    log(`index: ${zinfo.maxSpanId + 1} spans of >= ${opts.spanSize} bytes, checkpoint blob ${(zinfo.toBlob().length / 1e6).toFixed(1)} MB, ${indexMs.toFixed(0)} ms (${mbps(tarSize, indexMs)} uncompressed)`);

    // Baseline: what a non-lazy pull must do before the first read.
    t = performance.now();
    await pipeline(createReadStream(gzPath), zlib.createGunzip(), async function* (src) {
      for await (const _ of src) void _;
    });
    const fullMs = performance.now() - t;

    // Lazy reads.
    const tar = await open(tarPath, "r");
    let fetched = 0; // without a span cache: every read fetches its spans
    let needed = 0; // with one: each span once
    const spansTouched = new Set<number>();
    t = performance.now();
    for (let k = 0; k < opts.reads; k++) {
      const off = Math.floor(Math.random() * Math.max(1, tarSize - 4096));
      const len = Math.min(4096, tarSize - off);
      const first = zinfo.spanForOffset(off);
      const last = zinfo.spanForOffset(off + len - 1);
      const start = zinfo.startCompressedOffset(first);
      const end = zinfo.endCompressedOffset(last, gzSize);
      const compressed = await readRange(gz, start, end);
      fetched += compressed.length;
      for (let s = first; s <= last; s++) {
        const a = zinfo.startCompressedOffset(s) - start;
        const b = zinfo.endCompressedOffset(s, gzSize) - start;
        const d = `sha256:${createHash("sha256").update(compressed.subarray(a, b)).digest("hex")}`;
        if (d !== digests[s]) throw new Error(`span ${s} digest mismatch`);
        if (!spansTouched.has(s)) needed += b - a;
        spansTouched.add(s);
      }
      const got = await pool.extract(compressed, zinfo.checkpoint(first), off, len);
      const want = await readRange(tar, off, off + len);
      if (!Buffer.from(got).equals(want)) throw new Error(`lazy read at ${off} returned wrong bytes`);
    }
    const lazyMs = performance.now() - t;
    await gz.close();
    await tar.close();
    log(`lazy: ${opts.reads} random 4 KiB reads verified against the tar, ${spansTouched.size} spans fetched ` +
      `(${(needed / 1e6).toFixed(1)} MB of ${(gzSize / 1e6).toFixed(1)} MB compressed; ${(fetched / 1e6).toFixed(1)} MB read without a span cache), ${lazyMs.toFixed(0)} ms`);
    log("");
    const row = (label: string, value: string) => log(`  ${label.padEnd(44)}: ${value}`);
    row("first byte after full download + gunzip", `${fullMs.toFixed(0)} ms (node:zlib)`);
    row(`${opts.reads} reads served lazily`, `${lazyMs.toFixed(0)} ms (${(lazyMs / opts.reads).toFixed(1)} ms per read)`);
    row("compressed bytes needed", `${((100 * needed) / gzSize).toFixed(1)}% of the layer`);
  } finally {
    await pool.destroy();
    await rm(work, { recursive: true, force: true });
  }
}

async function readRange(fh: Awaited<ReturnType<typeof open>>, start: number, end: number): Promise<Buffer> {
  const buf = Buffer.alloc(end - start);
  let pos = 0;
  while (pos < buf.length) {
    const { bytesRead } = await fh.read(buf, pos, buf.length - pos, start + pos);
    if (bytesRead === 0) throw new Error(`unexpected end of file at ${start + pos}`);
    pos += bytesRead;
  }
  return buf;
}
