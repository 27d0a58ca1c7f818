// Lazy reads verified by chunks (docs/formats.md §9): GNU tar layers (gzip -6, two-member pigz,
// plain tar) with their ztocs and verification artifacts in a real docker-registry, read through a
// request-logging proxy with only the ztoc's TOC part fetched up front. Every file equals GNU tar's
// extraction; the log shows a read fetching its span only up to the chunk it needs (and the span's
// window from the ztoc), later reads extending it; a tampered chunk, window or TOC part is an error,
// never wrong bytes.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startRegistry, type RegistryServer } from "./helpers/registry-server.js";
import { startFaultProxy, type FaultProxy, type LoggedRequest } from "./helpers/fault-proxy.js";
import { buildTestLayers, entryOf, nameOf, type TestLayer, type TestLayers } from "./helpers/span-layers.js";
import { RegistryClient } from "../src/registry/client.js";
import { InflatePool } from "../src/wasm/pool.js";
import { RegistryBlobFetcher } from "../src/fs/blob-fetcher.js";
import { SpanCache } from "../src/fs/span-cache.js";
import { createLayerReader, type LayerReader, type LayerReaderOptions } from "../src/fs/layer-reader.js";
import { LayerIndexer } from "../src/indexer/layer-indexer.js";
import {
  buildLayerVerification,
  chunkRange,
  encodeLayerVerification,
  tocPartRanges,
  tocPartZtoc,
  verifyTocPart,
  windowRange,
  type LayerVerification,
} from "../src/formats/layer-verification.js";
import { decodeZtoc, type Ztoc } from "../src/formats/ztoc.js";
import type { FileMetadata } from "../src/formats/toc.js";

const REPO = "lazy/chunks";
const SPAN = 256 << 10;
const CHUNK = 16 << 10;
let dir = "";
let fx: TestLayers;
let registry: RegistryServer;
let faults: FaultProxy;
let pool: InflatePool;
let client: RegistryClient;
const disk = new Map<string, Buffer>();
const sha = (b: Uint8Array) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

interface ChunkedLayer {
  layer: TestLayer;
  ztocBytes: Uint8Array;
  ztocDigest: string;
  v: LayerVerification;
  /** The ztoc as the daemon sees it from the TOC part alone. */
  tocOnly: Ztoc;
}
const chunked = new Map<string, ChunkedLayer>();

function build(layer: TestLayer): ChunkedLayer {
  const ix = new LayerIndexer({
    spanSize: SPAN,
    compression: layer.name === "tar" ? "uncompressed" : "gzip",
    chunkSize: CHUNK,
  });
  for (let i = 0; i < layer.blob.length; i += 1 << 20) ix.push(layer.blob.subarray(i, i + (1 << 20)));
  const built = ix.finish();
  const v = buildLayerVerification({
    ztoc: built.bytes,
    zinfoKind: layer.name === "tar" ? "tar" : "gzip",
    layerDigest: layer.digest,
    layerSize: layer.size,
    chunks: built.chunks!,
  });
  const [[a0, a1], [b0, b1]] = tocPartRanges(v);
  const head = built.bytes.subarray(a0, a1);
  const tail = built.bytes.subarray(b0, b1);
  verifyTocPart(v, head, tail);
  return {
    layer,
    ztocBytes: built.bytes,
    ztocDigest: built.digest,
    v,
    tocOnly: decodeZtoc(tocPartZtoc(v, head, tail)),
  };
}

let roots = 0;
function open(c: ChunkedLayer, opts: Partial<LayerReaderOptions> = {}): Promise<LayerReader> {
  const ref = `${faults.host}/${REPO}:x`;
  return createLayerReader({
    ztoc: c.tocOnly,
    digest: c.layer.digest,
    ztocDigest: c.ztocDigest,
    fetcher: new RegistryBlobFetcher(client, ref, c.layer.digest, c.layer.size),
    verification: {
      artifact: c.v,
      ztocFetcher: new RegistryBlobFetcher(client, ref, c.ztocDigest, c.ztocBytes.length),
    },
    cache: new SpanCache({ root: join(dir, `cache-${roots++}`), memoryBytes: 0 }),
    inflater: pool,
    fetchTimeoutMs: 10_000,
    fileAheadBytes: 0,
    readAheadSpans: 0,
    ...opts,
  });
}

async function want(e: FileMetadata): Promise<Buffer> {
  const n = nameOf(e);
  let b = disk.get(n);
  if (!b) {
    b = await readFile(join(fx.extracted, n));
    disk.set(n, b);
  }
  return b;
}

/** Blob range requests logged since `from`: blob digest and [start, end) ranges. */
function rangesSince(from: number): { digest: string; ranges: [number, number][] }[] {
  return faults.log
    .slice(from)
    .filter((l: LoggedRequest) => l.method === "GET" && l.path.includes("/blobs/"))
    .map((req) => ({
      digest: req.path.slice(req.path.lastIndexOf("/") + 1),
      ranges: (req.range ?? "")
        .replace(/^bytes=/, "")
        .split(",")
        .filter(Boolean)
        .map((s) => {
          const [a, b] = s.split("-").map(Number);
          return [a!, b! + 1] as [number, number];
        }),
    }));
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "soci-fs-chunks-"));
  [fx, registry, pool] = await Promise.all([
    buildTestLayers(dir),
    startRegistry(),
    Promise.resolve(new InflatePool({ threads: 2 })),
  ]);
  client = new RegistryClient({ plainHttp: true, retries: 0 });
  for (const l of fx.layers) {
    const c = build(l);
    chunked.set(l.name, c);
    const ref = `${registry.host}/${REPO}:x`;
    await client.pushBlob(ref, l.blob, { digest: l.digest, size: l.size });
    await client.pushBlob(ref, c.ztocBytes, { digest: c.ztocDigest, size: c.ztocBytes.length });
  }
  faults = await startFaultProxy(registry.host);
}, 120_000);

afterAll(async () => {
  await client?.close();
  await faults?.close();
  await pool?.destroy();
  await registry?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("reads verified by chunks against GNU tar", () => {
  for (const name of ["gzip", "pigz", "tar"] as const) {
    it(`every file of the ${name} layer, read in 128 KiB pieces by eight readers`, async () => {
      const c = chunked.get(name)!;
      const r = await open(c);
      expect(r.spans.chunkVerified).toBe(true);
      const files = c.tocOnly.toc.filter((e) => e.type === "reg");
      const queue = [...files];
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          for (let e = queue.shift(); e; e = queue.shift()) {
            const parts: Uint8Array[] = [];
            for (let off = 0; off < e.uncompressedSize; off += 128 << 10) parts.push(await r.read(e, off, 128 << 10));
            expect(Buffer.concat(parts).equals(await want(e)), nameOf(e)).toBe(true);
          }
        }),
      );
      expect(r.counters.readErrors).toBe(0);
      expect(r.counters.verificationFailures).toBe(0);
      if (name !== "tar") expect(r.counters.windowsFetched).toBeGreaterThan(0);
      // a second reader of the same cache: no network, the same bytes (prefix files included)
      const mark = faults.log.length;
      const again = await createLayerReader({
        ztoc: c.tocOnly,
        digest: c.layer.digest,
        ztocDigest: c.ztocDigest,
        fetcher: new RegistryBlobFetcher(client, `${faults.host}/${REPO}:x`, c.layer.digest, c.layer.size),
        verification: { artifact: c.v },
        cache: new SpanCache({ root: join(dir, `cache-${roots - 1}`), memoryBytes: 0 }),
        inflater: pool,
      }).catch((e: Error) => e);
      // without the ztoc blob there are no windows to fetch: refused for gzip, fine for tar
      if (name !== "tar") expect(again).toBeInstanceOf(Error);
      else {
        const e = entryOf(c.tocOnly, "big/mixed.bin");
        expect(Buffer.from(await (again as LayerReader).read(e, 0, e.uncompressedSize)).equals(await want(e))).toBe(
          true,
        );
        expect(faults.log.length).toBe(mark);
      }
    });
  }
});

describe("what a read fetches", () => {
  it("a span only up to the chunk holding the read's last byte, plus its window; a later read extends it", async () => {
    const c = chunked.get("gzip")!;
    const r = await open(c, { disableVerification: true });
    const e = entryOf(c.tocOnly, "big/text.bin");
    // a 4 KiB read some way into a span, in a span that starts before the file
    const s = r.spans.spanOf(e.uncompressedOffset + 300_000);
    const u = r.spans.uncompressedRange(s);
    const cr = r.spans.compressedRange(s);
    const off = u.start - e.uncompressedOffset + 20_000;
    const mark = faults.log.length;
    expect(Buffer.from(await r.read(e, off, 4096)).equals((await want(e)).subarray(off, off + 4096))).toBe(true);
    const reqs = rangesSince(mark);
    const layerReqs = reqs.filter((q) => q.digest === c.layer.digest);
    const ztocReqs = reqs.filter((q) => q.digest === c.ztocDigest);
    expect(ztocReqs.flatMap((q) => q.ranges)).toEqual([windowRange(c.v, s)]);
    const got = layerReqs.flatMap((q) => q.ranges);
    expect(got).toHaveLength(1);
    const [a, b] = got[0]!;
    // from the chunk holding the span's first byte to the first chunk whose output end covers the read
    expect(a).toBe(Math.floor(cr.start / CHUNK) * CHUNK);
    const need = e.uncompressedOffset + off + 4096;
    const j = (b - 1 - ((b - 1) % CHUNK)) / CHUNK;
    expect(chunkRange(c.v, j)[1]).toBe(b);
    expect(c.v.chunkOutEnds[j]).toBeGreaterThanOrEqual(need);
    if (j > 0 && (j - 1) * CHUNK >= a) expect(c.v.chunkOutEnds[j - 1]).toBeLessThan(need);
    expect(b).toBeLessThan(cr.end); // less than the whole span
    expect(r.spans.state(s)).toBe("partial");
    // a read further into the same span fetches only the chunks after those, and no window
    const mark2 = faults.log.length;
    const off2 = u.end - e.uncompressedOffset - 100;
    expect(Buffer.from(await r.read(e, off2, 100)).equals((await want(e)).subarray(off2, off2 + 100))).toBe(true);
    const more = rangesSince(mark2).flatMap((q) => q.ranges);
    expect(more).toHaveLength(1);
    expect(more[0]![0]).toBe(b);
    expect(r.spans.state(s)).toBe("uncompressed");
    expect(r.counters.windowsFetched).toBe(1);
  });

  it("a file's first read with file-ahead fetches its whole byte range, the last span only as far as the file", async () => {
    const c = chunked.get("gzip")!;
    const e = entryOf(c.tocOnly, "small/f100.txt");
    const r = await open(c, { fileAheadBytes: 64 << 20 });
    const mark = faults.log.length;
    expect(Buffer.from(await r.read(e, 0, 10)).equals((await want(e)).subarray(0, 10))).toBe(true);
    // the whole (small) file is local now, read without the network
    const mark2 = faults.log.length;
    expect(Buffer.from(await r.read(e, 0, e.uncompressedSize)).equals(await want(e))).toBe(true);
    expect(faults.log.length).toBe(mark2);
    const s = r.spans.spanOf(e.uncompressedOffset);
    const layerBytes = rangesSince(mark)
      .filter((q) => q.digest !== c.ztocDigest)
      .reduce((n, q) => n + q.ranges.reduce((m, [x, y]) => m + y - x, 0), 0);
    const cr = r.spans.compressedRange(s);
    expect(layerBytes).toBeLessThanOrEqual(cr.end - Math.floor(cr.start / CHUNK) * CHUNK);
  });

  it("resumes a partial span from the disk cache after a restart, without refetching what it has", async () => {
    const c = chunked.get("pigz")!;
    const root = join(dir, `cache-${roots++}`);
    const r = await open(c, { cache: new SpanCache({ root, memoryBytes: 0 }), disableVerification: true });
    const e = entryOf(c.tocOnly, "big/mixed.bin");
    const s = r.spans.spanOf(e.uncompressedOffset) + 1; // a span inside the file
    const u = r.spans.uncompressedRange(s);
    const off = u.start - e.uncompressedOffset + 10;
    await r.read(e, off, 100);
    expect(r.spans.state(s)).toBe("partial");
    const files = await readdir(join(root, (await readdir(root))[0]!));
    expect(files).toEqual(expect.arrayContaining([`${s}.up`, `${s}.zp`]));
    const r2 = await open(c, { cache: new SpanCache({ root, memoryBytes: 0 }), disableVerification: true });
    expect(r2.spans.state(s)).toBe("partial");
    const mark = faults.log.length;
    expect(Buffer.from(await r2.read(e, off, 100)).equals((await want(e)).subarray(off, off + 100))).toBe(true);
    expect(faults.log.length).toBe(mark); // the prefix on disk
    const end = u.end - e.uncompressedOffset - 1;
    expect(Buffer.from(await r2.read(e, end, 1)).equals((await want(e)).subarray(end, end + 1))).toBe(true);
    const more = rangesSince(mark);
    expect(more.every((q) => q.digest !== c.ztocDigest)).toBe(true); // the window came from the resume file
    expect(r2.counters.windowsFetched).toBe(0);
  });
});

describe("tampering is an error, never wrong bytes", () => {
  it("a corrupted chunk or window fails the read (EIO), and the next read succeeds", async () => {
    const c = chunked.get("gzip")!;
    const e = entryOf(c.tocOnly, "big/random.bin");
    const src = await want(e);
    // a chunk: the layer blob served with a flipped byte
    const r = await open(c, { disableVerification: true });
    faults.setRules([
      { method: "GET", path: new RegExp(c.layer.digest.slice(7)), times: 1, action: { kind: "corrupt", offset: 100 } },
    ]);
    await expect(r.read(e, 0, 1000)).rejects.toThrow(/layer chunk \d+ digest mismatch/);
    expect(r.counters.verificationFailures).toBe(1);
    expect(r.counters.readErrors).toBe(1);
    faults.setRules([]);
    expect(Buffer.from(await r.read(e, 0, 1000)).equals(src.subarray(0, 1000))).toBe(true);
    // a window: the ztoc served with a flipped byte
    const r2 = await open(c, { disableVerification: true });
    faults.setRules([
      { method: "GET", path: new RegExp(c.ztocDigest.slice(7)), times: 1, action: { kind: "corrupt", offset: 5 } },
    ]);
    await expect(r2.read(e, 0, 1000)).rejects.toThrow(/checkpoint window \d+ digest mismatch/);
    faults.setRules([]);
    expect(Buffer.from(await r2.read(e, 0, 1000)).equals(src.subarray(0, 1000))).toBe(true);
    // with retries, a corrupted chunk is refetched and the read succeeds
    const r3 = await open(c, { disableVerification: true, maxSpanVerificationRetries: 1 });
    faults.setRules([
      { method: "GET", path: new RegExp(c.layer.digest.slice(7)), times: 1, action: { kind: "corrupt", offset: 100 } },
    ]);
    expect(Buffer.from(await r3.read(e, 0, 1000)).equals(src.subarray(0, 1000))).toBe(true);
    expect(r3.counters.verificationFailures).toBe(1);
    faults.setRules([]);
  });

  it("a resume file altered on disk is not trusted: the span is fetched again", async () => {
    const c = chunked.get("gzip")!;
    const root = join(dir, `cache-${roots++}`);
    const r = await open(c, { cache: new SpanCache({ root, memoryBytes: 0 }), disableVerification: true });
    const e = entryOf(c.tocOnly, "big/text.bin");
    const s = r.spans.spanOf(e.uncompressedOffset) + 1; // a span inside the file
    const off = r.spans.uncompressedRange(s).start - e.uncompressedOffset + 10;
    await r.read(e, off, 100);
    const layerDir = join(root, (await readdir(root))[0]!);
    // rewrite the resume file with a flipped chunk byte and a valid trailer (as a disk the cache
    // cannot tell from its own would hold it): the chunk digest catches it
    const zp = await readFile(join(layerDir, `${s}.zp`));
    const data = Buffer.from(zp.subarray(0, zp.length - 40));
    data[32768 + 5]! ^= 1;
    const trailer = Buffer.concat([Buffer.from("SOCISPN1"), createHash("sha256").update(data).digest()]);
    await writeFile(join(layerDir, `${s}.zp`), Buffer.concat([data, trailer]));
    const r2 = await open(c, { cache: new SpanCache({ root, memoryBytes: 0 }), disableVerification: true });
    const end = r2.spans.uncompressedRange(s).end - e.uncompressedOffset - 1;
    expect(Buffer.from(await r2.read(e, end, 1)).equals((await want(e)).subarray(end, end + 1))).toBe(true);
    expect(r2.counters.windowsFetched).toBe(1); // started over: window and chunks from the registry
  });

  it("a TOC part that does not match the artifact is refused", () => {
    const c = chunked.get("tar")!;
    const [[a0, a1], [b0, b1]] = tocPartRanges(c.v);
    const head = Buffer.from(c.ztocBytes.subarray(a0, a1));
    head[head.length - 10]! ^= 1;
    expect(() => verifyTocPart(c.v, head, c.ztocBytes.subarray(b0, b1))).toThrow(/TOC part digest mismatch/);
    expect(sha(encodeLayerVerification(c.v))).toMatch(/^sha256:/);
  });
});
