// A LayerFileReader over a layer blob on local disk: a small but real implementation of the seam
// (span arithmetic from the ztoc's zinfo, sha256 of every span checked against the ztoc's span
// digest, gzip spans inflated from their checkpoints with the project's `extract`, shared in-flight
// span loads, a bounded cache of inflated spans). Used by the FUSE tests independently of the
// daemon's span manager.
//
// Reads use the blob's FileHandle (libuv threadpool). The process serving a FUSE mount with this
// reader must not itself read that mount through the threadpool (see test/fs-mount.test.ts).
import { open, type FileHandle } from "node:fs/promises";
import { createHash } from "node:crypto";
import { extract } from "../../src/wasm/extract.js";
import { zinfoOf } from "../../src/formats/zinfo.js";
import { GzipZinfo } from "../../src/formats/gzip-zinfo.js";
import type { Ztoc } from "../../src/formats/ztoc.js";
import type { Zinfo } from "../../src/formats/zinfo.js";
import type { FileMetadata } from "../../src/formats/toc.js";
import type { LayerFileReader, LayerState } from "../../src/fs/types.js";

export interface FileLayerReaderOptions {
  /** Inflated spans kept in memory (default 64). */
  cacheSpans?: number;
}

export class FileLayerReader implements LayerFileReader {
  private readonly zinfo: Zinfo;
  private readonly cache = new Map<number, Uint8Array>();
  private readonly loading = new Map<number, Promise<Uint8Array>>();
  private readonly fetched = new Set<number>();
  private readonly cacheSpans: number;
  private headerFetched = 0;
  private lastError: string | undefined;
  /** Spans loaded from disk (each load reads, verifies and inflates one span). */
  spanLoads = 0;
  readCalls = 0;

  private constructor(
    private readonly fh: FileHandle,
    readonly ztoc: Ztoc,
    readonly digest: string,
    readonly size: number,
    opts: FileLayerReaderOptions,
  ) {
    this.zinfo = zinfoOf(ztoc);
    this.cacheSpans = opts.cacheSpans ?? 64;
  }

  static async open(
    blobPath: string,
    ztoc: Ztoc,
    digest: string,
    opts: FileLayerReaderOptions = {},
  ): Promise<FileLayerReader> {
    const fh = await open(blobPath, "r");
    const { size } = await fh.stat();
    const r = new FileLayerReader(fh, ztoc, digest, size, opts);
    // like the reference's span manager: the bytes before span 0 (the gzip header) are read at once
    if (r.zinfo.maxSpanId >= 0) {
      const head = r.zinfo.startCompressedOffset(0);
      if (head > 0) {
        const b = await r.readBlob(0, head);
        if (r.zinfo.algorithm === "gzip" && (b[0] !== 0x1f || b[1] !== 0x8b)) throw new Error("invalid gzip header");
        r.headerFetched = head;
      }
    }
    return r;
  }

  async close(): Promise<void> {
    await this.fh.close();
  }

  read(entry: FileMetadata, offset: number, length: number): Promise<Uint8Array> {
    this.readCalls++;
    const size = entry.uncompressedSize;
    if (offset >= size || length <= 0) return Promise.resolve(new Uint8Array(0));
    const start = entry.uncompressedOffset + offset;
    const end = entry.uncompressedOffset + Math.min(size, offset + length);
    return this.readRange(start, end);
  }

  /** Uncompressed tar bytes [start, end). */
  async readRange(start: number, end: number): Promise<Uint8Array> {
    const first = this.zinfo.spanForOffset(start);
    const last = this.zinfo.spanForOffset(end - 1);
    if (first === last) {
      const span = await this.span(first);
      const base = this.zinfo.startUncompressedOffset(first);
      return span.subarray(start - base, end - base);
    }
    const spans = [];
    for (let i = first; i <= last; i++) spans.push(this.span(i));
    const out = new Uint8Array(end - start);
    const loaded = await Promise.all(spans);
    for (let i = first; i <= last; i++) {
      const base = this.zinfo.startUncompressedOffset(i);
      const s = loaded[i - first]!;
      const from = Math.max(start, base);
      const to = Math.min(end, base + s.length);
      out.set(s.subarray(from - base, to - base), from - start);
    }
    return out;
  }

  private span(i: number): Promise<Uint8Array> {
    const hit = this.cache.get(i);
    if (hit) {
      // LRU: move to the back
      this.cache.delete(i);
      this.cache.set(i, hit);
      return Promise.resolve(hit);
    }
    let p = this.loading.get(i);
    if (!p) {
      p = this.loadSpan(i).finally(() => this.loading.delete(i));
      this.loading.set(i, p);
    }
    return p;
  }

  private async loadSpan(i: number): Promise<Uint8Array> {
    this.spanLoads++;
    const z = this.zinfo;
    const cStart = z.startCompressedOffset(i);
    const cEnd = z.endCompressedOffset(i, this.ztoc.compressedArchiveSize);
    const bytes = await this.readBlob(cStart, cEnd);
    const digest = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
    if (digest !== this.ztoc.spanDigests[i])
      throw new Error(`span ${i}: digest mismatch: ${digest} != ${this.ztoc.spanDigests[i]}`);
    this.fetched.add(i);
    const uStart = z.startUncompressedOffset(i);
    const uEnd = z.endUncompressedOffset(i, this.ztoc.uncompressedArchiveSize);
    const data =
      z instanceof GzipZinfo
        ? extract(bytes, z.checkpoint(i), uStart, uEnd - uStart)
        : bytes.subarray(0, uEnd - uStart);
    this.cache.set(i, data);
    while (this.cache.size > this.cacheSpans) this.cache.delete(this.cache.keys().next().value!);
    return data;
  }

  private async readBlob(start: number, end: number): Promise<Uint8Array> {
    const buf = new Uint8Array(end - start);
    let got = 0;
    while (got < buf.length) {
      const { bytesRead } = await this.fh.read(buf, got, buf.length - got, start + got);
      if (bytesRead === 0) throw new Error(`short read of the layer blob at ${start + got}`);
      got += bytesRead;
    }
    return buf;
  }

  /** Compressed bytes read so far (distinct ranges: gzip spans share a boundary byte). */
  fetchedSize(): number {
    const ranges = [...this.fetched]
      .sort((a, b) => a - b)
      .map(
        (i) =>
          [
            this.zinfo.startCompressedOffset(i),
            this.zinfo.endCompressedOffset(i, this.ztoc.compressedArchiveSize),
          ] as const,
      );
    let total = this.headerFetched;
    let reach = this.headerFetched;
    for (const [s, e] of ranges) {
      const from = Math.max(s, reach);
      if (e > from) total += e - from;
      reach = Math.max(reach, e);
    }
    return total;
  }

  state(): LayerState {
    const s: LayerState = { digest: this.digest, size: this.size, fetchedSize: this.fetchedSize() };
    if (this.lastError !== undefined) s.error = this.lastError;
    return s;
  }

  noteError(err: unknown): void {
    this.lastError = err instanceof Error ? err.message : String(err);
  }
}
