// The span manager, span cache and blob fetchers on local layers (GNU tar + gzip/pigz): span
// states, verification and refetch limits, gzip header checks, ztoc consistency checks, cache
// file formats and damage, the memory bound, and reads when the disk cache cannot be written.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFile, readdir, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import {
  setUpTestLayers,
  tearDownTestLayers,
  entryOf,
  sha256,
  type TestLayer,
  type TestLayers,
} from "./helpers/span-layers.js";
import { coalesce, FileBlobFetcher, type BlobFetcher, type ByteRange } from "../src/fs/blob-fetcher.js";
import { SpanCache } from "../src/fs/span-cache.js";
import {
  checkGzipHeader,
  ReadActivity,
  SpanManager,
  verificationRetries,
  type SpanManagerOptions,
} from "../src/fs/span-manager.js";
import { extract } from "../src/wasm/extract.js";

let dir = "";
let fx: TestLayers;
const fetchers: FileBlobFetcher[] = [];
const inThread = {
  extract: async (b: Uint8Array, cp: Parameters<typeof extract>[1], o: number, n: number) => extract(b, cp, o, n),
};

/** A local blob that counts what is asked of it. */
class CountingFetcher implements BlobFetcher {
  calls: ByteRange[][] = [];
  constructor(readonly inner: FileBlobFetcher) {}
  get digest() {
    return this.inner.digest;
  }
  get size() {
    return this.inner.size;
  }
  fetch(ranges: ByteRange[], signal?: AbortSignal) {
    this.calls.push(ranges);
    return this.inner.fetch(ranges, signal);
  }
}

function fileFetcher(l: TestLayer, path = l.path): CountingFetcher {
  const f = new FileBlobFetcher(path, l.digest, l.size);
  fetchers.push(f);
  return new CountingFetcher(f);
}

let roots = 0;
function open(l: TestLayer, opts: Partial<SpanManagerOptions> & { root?: string; memoryBytes?: number } = {}) {
  const cache = new SpanCache({ root: opts.root ?? join(dir, `c${roots++}`), memoryBytes: opts.memoryBytes });
  return SpanManager.open({
    ztoc: l.ztoc,
    digest: l.digest,
    fetcher: fileFetcher(l),
    cache: cache.layer(l.digest),
    inflater: inThread,
    ...opts,
  });
}

const layer = (n: TestLayer["name"]) => fx.layers.find((l) => l.name === n)!;
let tarBytes: Buffer;

beforeAll(async () => {
  ({ dir, fx, tarBytes } = await setUpTestLayers("soci-fs-spans-"));
}, 120_000);

afterAll(() => tearDownTestLayers(dir, fetchers));

describe("a layer blob cut short", () => {
  it("a read past the cut fails naming the layer; reads before it succeed", async () => {
    const l = layer("gzip");
    const cut = join(dir, "cut.tar.gz");
    await writeFile(cut, (await readFile(l.path)).subarray(0, l.size >> 1));
    const m = await SpanManager.open({
      ztoc: l.ztoc,
      digest: l.digest,
      fetcher: fileFetcher(l, cut),
      cache: new SpanCache({ root: join(dir, `c${roots++}`) }).layer(l.digest),
      inflater: inThread,
    });
    expect(Buffer.from(await m.read(0, 1000)).equals(tarBytes.subarray(0, 1000))).toBe(true);
    const end = l.ztoc.uncompressedArchiveSize;
    await expect(m.read(end - 1000, end)).rejects.toThrow(
      new RegExp(`^fetching span \\d+ of layer ${l.digest}: short read: 0 of \\d+ bytes at \\d+$`),
    );
  });
});

describe("configuration and checks", () => {
  it("max_span_verification_retries: default 0, negative means 3", () => {
    expect(verificationRetries(undefined)).toBe(0);
    expect(verificationRetries(0)).toBe(0);
    expect(verificationRetries(2)).toBe(2);
    expect(verificationRetries(-1)).toBe(3);
  });

  it("gzip headers are checked as Go's gzip.NewReader does", () => {
    const plain = gzipSync(Buffer.from("x")).subarray(0, 10);
    expect(() => checkGzipHeader(plain)).not.toThrow();
    const named = Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0x08, 0, 0, 0, 0, 0, 3]), Buffer.from("name\0")]);
    expect(() => checkGzipHeader(named)).not.toThrow();
    expect(() => checkGzipHeader(named.subarray(0, 12))).toThrow(/truncated/);
    const extra = Buffer.from([0x1f, 0x8b, 8, 0x04, 0, 0, 0, 0, 0, 3, 3, 0, 1, 2, 3]);
    expect(() => checkGzipHeader(extra)).not.toThrow();
    expect(() => checkGzipHeader(extra.subarray(0, 14))).toThrow(/truncated/);
    const hcrc = Buffer.from([0x1f, 0x8b, 8, 0x02, 0, 0, 0, 0, 0, 3, 0, 0]);
    hcrc.writeUInt16LE(headerCrc16(hcrc.subarray(0, 10)), 10);
    expect(() => checkGzipHeader(hcrc)).not.toThrow();
    hcrc[10]! ^= 1;
    expect(() => checkGzipHeader(hcrc)).toThrow(/checksum/);
    expect(() => checkGzipHeader(Buffer.from([0x1f, 0x8c, 8, 0, 0, 0, 0, 0, 0, 3]))).toThrow(/magic/);
    expect(() => checkGzipHeader(Buffer.from([0x1f, 0x8b, 8, 0x20, 0, 0, 0, 0, 0, 3]))).toThrow(/reserved/);
    expect(() => checkGzipHeader(Buffer.from([0x1f, 0x8b, 8]))).toThrow(/3 bytes/);
  });

  it("a ztoc that disagrees with its zinfo or its blob is refused", async () => {
    const l = layer("gzip");
    await expect(open(l, { ztoc: { ...l.ztoc, maxSpanId: l.ztoc.maxSpanId + 1 } })).rejects.toThrow(/max span id/);
    await expect(open(l, { ztoc: { ...l.ztoc, spanDigests: l.ztoc.spanDigests.slice(1) } })).rejects.toThrow(
      /span digests/,
    );
    await expect(open(l, { ztoc: { ...l.ztoc, compressedArchiveSize: l.size + 1 } })).rejects.toThrow(/ztoc describes/);
    // a gzip blob whose header bytes are not a gzip header
    const bad = Buffer.from(l.blob);
    bad[0] = 0;
    const badPath = join(dir, "bad-header.gz");
    await writeFile(badPath, bad);
    const cache = new SpanCache({ root: join(dir, `c${roots++}`) });
    await expect(
      SpanManager.open({
        ztoc: l.ztoc,
        digest: l.digest,
        fetcher: fileFetcher(l, badPath),
        cache: cache.layer(l.digest),
        inflater: inThread,
      }),
    ).rejects.toThrow(/invalid gzip header/);
  });

  it("coalesces touching and overlapping ranges; refuses ranges outside the blob", async () => {
    expect(
      coalesce([
        { start: 10, end: 20 },
        { start: 0, end: 5 },
        { start: 19, end: 30 },
        { start: 30, end: 31 },
        { start: 40, end: 40 },
      ]),
    ).toEqual([
      { start: 0, end: 5 },
      { start: 10, end: 31 },
    ]);
    const f = fileFetcher(layer("gzip"));
    await expect(f.fetch([{ start: 0, end: layer("gzip").size + 1 }])).rejects.toThrow(/invalid byte range/);
    const [a, b] = await f.fetch([
      { start: 5, end: 15 },
      { start: 14, end: 20 },
    ]);
    expect(Buffer.from(a!).equals(layer("gzip").blob.subarray(5, 15))).toBe(true);
    expect(Buffer.from(b!).equals(layer("gzip").blob.subarray(14, 20))).toBe(true);
    expect(f.calls).toHaveLength(2);
  });
});

function headerCrc16(b: Uint8Array): number {
  // CRC-32 (IEEE) low 16 bits, computed independently of the module under test
  let c = ~0;
  for (const x of b) {
    c ^= x;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return (~c >>> 0) & 0xffff;
}

describe("span states and the cache", () => {
  it("background fetch → fetched (compressed on disk) → read → uncompressed; fully local at the end", async () => {
    const l = layer("pigz");
    const root = join(dir, "states");
    const m = await open(l, { root });
    const layerDir = join(root, l.digest.slice(7));
    expect(m.state(2)).toBe("unrequested");
    await m.fetchCompressed(2);
    expect(m.state(2)).toBe("fetched");
    expect((await readdir(layerDir)).sort()).toEqual(["2.z", "header", "wip"]);
    const { start, end } = m.uncompressedRange(2);
    const got = await m.read(start, end);
    expect(Buffer.from(got).equals(tarBytes.subarray(start, end))).toBe(true);
    expect(m.state(2)).toBe("uncompressed");
    expect((await readdir(layerDir)).sort()).toEqual(["2", "header", "wip"]);
    expect(m.counters.spansFetched).toBe(1); // inflated from the cached compressed bytes
    expect(m.fetchedSize).toBe(m.compressedRange(0).start + m.compressedRange(2).end - m.compressedRange(2).start);
    expect(m.fullyLocal).toBe(false);
    expect(m.nextMissing(0)).toBe(0);
    expect(m.nextMissing(2)).toBe(3);
    for (let i = m.nextMissing(0); i >= 0; i = m.nextMissing(i)) await m.fetchCompressed(i);
    expect(m.fullyLocal).toBe(true);
    expect(m.fetchedSize).toBe(l.size);
    // a new manager on the same root knows the states without any I/O to the blob
    const again = await open(l, { root });
    expect(again.fullyLocal).toBe(true);
    const all = await again.read(0, l.ztoc.uncompressedArchiveSize);
    expect(Buffer.from(all).equals(tarBytes.subarray(0, l.ztoc.uncompressedArchiveSize))).toBe(true);
    expect(again.counters.bytesFetched).toBe(0);
  });

  it("a span that never matches its digest is refetched the configured times, then fails; other spans read fine", async () => {
    const l = layer("gzip");
    const bad = Buffer.from(l.blob);
    const m0 = await open(l);
    const s = 3;
    const r = m0.compressedRange(s);
    bad[r.start + 10]! ^= 0x40;
    const badPath = join(dir, "bad-span.gz");
    await writeFile(badPath, bad);
    for (const [configured, attempts] of [
      [undefined, 1],
      [2, 3],
      [-1, 4],
    ] as const) {
      const cache = new SpanCache({ root: join(dir, `c${roots++}`) });
      const f = fileFetcher(l, badPath);
      const m = await SpanManager.open({
        ztoc: l.ztoc,
        digest: l.digest,
        fetcher: f,
        cache: cache.layer(l.digest),
        inflater: inThread,
        maxSpanVerificationRetries: configured,
      });
      const u = m.uncompressedRange(s);
      await expect(m.read(u.start, u.start + 1)).rejects.toThrow(
        new RegExp(`span ${s} of layer ${l.digest}: digest mismatch`),
      );
      expect(m.counters.verificationFailures).toBe(attempts);
      expect(f.calls.length).toBe(1 + attempts); // header + attempts
      expect(m.state(s)).toBe("unrequested");
      expect(m.lastError?.message).toMatch(/digest mismatch/);
      const ok = m.uncompressedRange(s + 2);
      expect(Buffer.from(await m.read(ok.start, ok.end)).equals(tarBytes.subarray(ok.start, ok.end))).toBe(true);
    }
  });

  it("temp files a crashed writer left behind are swept when the layer is opened again", async () => {
    const l = layer("tar");
    const root = join(dir, "sweep");
    const m = await open(l, { root });
    const u = m.uncompressedRange(1);
    await m.read(u.start, u.end);
    const wip = join(root, l.digest.slice(7), "wip");
    await writeFile(join(wip, "1-deadbeef"), "half a span");
    await writeFile(join(wip, "2-cafe"), "a live writer's file");
    const old = new Date(Date.now() - 3600_000);
    await utimes(join(wip, "1-deadbeef"), old, old);
    await open(l, { root });
    expect(await readdir(wip)).toEqual(["2-cafe"]);
  });

  it("the memory LRU stays within its bound", async () => {
    const l = layer("gzip");
    const cache = new SpanCache({ root: join(dir, `c${roots++}`), memoryBytes: 300_000 });
    const m = await SpanManager.open({
      ztoc: l.ztoc,
      digest: l.digest,
      fetcher: fileFetcher(l),
      cache: cache.layer(l.digest),
      inflater: inThread,
    });
    for (let i = 0; i < 20; i++) {
      const u = m.uncompressedRange(i);
      expect(Buffer.from(await m.read(u.start, u.end)).equals(tarBytes.subarray(u.start, u.end))).toBe(true);
      expect(cache.memoryBytes).toBeLessThanOrEqual(300_000);
    }
    expect(cache.memoryBytes).toBeGreaterThan(0);
    // evicted spans come back from disk, not the blob
    const before = m.counters.bytesFetched;
    const u = m.uncompressedRange(0);
    expect(m.readHot(u.start, u.end)).toBeUndefined();
    expect(Buffer.from(await m.read(u.start, u.end)).equals(tarBytes.subarray(u.start, u.end))).toBe(true);
    expect(m.counters.bytesFetched).toBe(before);
  });

  it("without the memory LRU, parts of spans come from disk; truncated or altered files are fetched again", async () => {
    const l = layer("pigz");
    const root = join(dir, `c${roots++}`);
    const cache = new SpanCache({ root, memoryBytes: 0 });
    const m = await SpanManager.open({
      ztoc: l.ztoc,
      digest: l.digest,
      fetcher: fileFetcher(l),
      cache: cache.layer(l.digest),
      inflater: inThread,
    });
    const size = l.ztoc.uncompressedArchiveSize;
    for (let off = 0; off < size; off += 65536) {
      const end = Math.min(size, off + 65536);
      expect(Buffer.from(await m.read(off, end)).equals(tarBytes.subarray(off, end))).toBe(true);
    }
    expect(cache.memoryBytes).toBe(0);
    const fetched = m.counters.bytesFetched;
    // span-crossing and 1-byte reads from the disk cache alone
    for (const [a, b] of [
      [m.uncompressedRange(1).end - 5000, m.uncompressedRange(3).start + 7],
      [12345, 12346],
      [size - 3, size],
    ] as const) {
      expect(Buffer.from(await m.read(a, b)).equals(tarBytes.subarray(a, b))).toBe(true);
    }
    expect(m.counters.bytesFetched).toBe(fetched);

    // a span file cut short after it was checked: the short read is noticed and the span refetched
    const layerDir = join(root, l.digest.slice(7));
    const u1 = m.uncompressedRange(1);
    await writeFile(join(layerDir, "1"), (await readFile(join(layerDir, "1"))).subarray(0, 100));
    expect(Buffer.from(await m.read(u1.end - 10, u1.end)).equals(tarBytes.subarray(u1.end - 10, u1.end))).toBe(true);
    expect(m.counters.bytesFetched).toBeGreaterThan(fetched);

    // a new process (a new cache) checks each file whole before trusting it: an altered byte is refetched
    const u2 = m.uncompressedRange(2);
    const f2 = await readFile(join(layerDir, "2"));
    f2[10]! ^= 0xff;
    await writeFile(join(layerDir, "2"), f2);
    const again = new SpanCache({ root, memoryBytes: 0 });
    const m2 = await SpanManager.open({
      ztoc: l.ztoc,
      digest: l.digest,
      fetcher: fileFetcher(l),
      cache: again.layer(l.digest),
      inflater: inThread,
    });
    expect(Buffer.from(await m2.read(u2.start, u2.start + 20)).equals(tarBytes.subarray(u2.start, u2.start + 20))).toBe(
      true,
    );
    expect(m2.counters.spansFetched).toBe(1);
  });

  it("reads still succeed when the disk cache cannot be written", async () => {
    const l = layer("tar");
    const blocked = join(dir, "not-a-dir");
    await writeFile(blocked, "file in the way");
    const m = await open(l, { root: blocked });
    const e = entryOf(l.ztoc, "big/random.bin");
    const got = await m.read(e.uncompressedOffset, e.uncompressedOffset + e.uncompressedSize);
    // an uncompressed layer is its own tar
    expect(
      Buffer.from(got).equals(l.blob.subarray(e.uncompressedOffset, e.uncompressedOffset + e.uncompressedSize)),
    ).toBe(true);
    expect(m.state(m.spanOf(e.uncompressedOffset))).toBe("unrequested");
    expect(m.lastError?.message).toMatch(/ENOTDIR|EEXIST/);
    expect(m.counters.readErrors).toBe(0);
  });

  it("reads out of the layer are refused; on-demand waits are counted for the background fetcher", async () => {
    const l = layer("gzip");
    const activity = new ReadActivity();
    const m = await open(l, { activity });
    await expect(m.read(0, l.ztoc.uncompressedArchiveSize + 1)).rejects.toThrow(/invalid read/);
    await expect(m.read(5, 4)).rejects.toThrow(/invalid read/);
    expect((await m.read(7, 7)).length).toBe(0);
    let idle = false;
    const u = m.uncompressedRange(5);
    const p = m.read(u.start, u.end);
    expect(activity.waiting).toBe(1);
    const w = activity.idle().then(() => (idle = true));
    await p;
    await w;
    expect(idle).toBe(true);
    expect(activity.waiting).toBe(0);
    // a hot read never counts as waiting
    await m.read(u.start, u.end);
    expect(activity.waiting).toBe(0);
    expect(sha256(await m.read(u.start, u.end))).toBe(sha256(tarBytes.subarray(u.start, u.end)));
  });
});
