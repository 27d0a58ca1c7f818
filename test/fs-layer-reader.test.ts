// The layer reader end to end: layers built by GNU tar (gzip -6, multi-member pigz, plain tar)
// pushed to a real docker-registry on loopback, read through the RegistryClient (behind a
// fault-injecting proxy or a proxy that can go down or stall), verified, inflated on the worker
// pool, cached; every byte compared with GNU tar's extraction.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, readFile, rm, writeFile, readdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startRegistry, type RegistryServer } from "./helpers/registry-server.js";
import { startFaultProxy, type FaultProxy, type LoggedRequest } from "./helpers/fault-proxy.js";
import { startSwitchProxy, type SwitchProxy } from "./helpers/switch-proxy.js";
import { buildTestLayers, entryOf, nameOf, prng, type TestLayer, type TestLayers } from "./helpers/span-layers.js";
import { RegistryClient, type RegistryClientOptions } from "../src/registry/client.js";
import { InflatePool } from "../src/wasm/pool.js";
import { RegistryBlobFetcher } from "../src/fs/blob-fetcher.js";
import { SpanCache } from "../src/fs/span-cache.js";
import { createLayerReader, type LayerReader, type LayerReaderOptions } from "../src/fs/layer-reader.js";
import { FileVerificationError } from "../src/fs/file-verifier.js";
import type { FileMetadata } from "../src/formats/toc.js";

const REPO = "lazy/layers";
let dir = "";
let fx: TestLayers;
let registry: RegistryServer;
let faults: FaultProxy;
let sw: SwitchProxy;
let pool: InflatePool;
const clients: RegistryClient[] = [];
const disk = new Map<string, Buffer>();

function client(_host: string, opts: RegistryClientOptions = {}): RegistryClient {
  const c = new RegistryClient({ plainHttp: true, retries: 2, baseDelayMs: 20, maxDelayMs: 100, ...opts });
  clients.push(c);
  return c;
}

let roots = 0;
const newRoot = () => join(dir, `cache-${roots++}`);

async function open(
  layer: TestLayer,
  opts: Partial<LayerReaderOptions> & { host?: string; root?: string; c?: RegistryClient } = {},
): Promise<LayerReader> {
  const host = opts.host ?? faults.host;
  const c = opts.c ?? client(host);
  return createLayerReader({
    ztoc: layer.ztoc,
    digest: layer.digest,
    fetcher: new RegistryBlobFetcher(c, `${host}/${REPO}:x`, layer.digest, layer.size),
    cache: opts.cache ?? new SpanCache({ root: opts.root ?? newRoot() }),
    inflater: pool,
    fetchTimeoutMs: 10_000,
    fileAheadBytes: 0, // counted fetches below are each read's own; the "file ahead" test turns it on
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

async function readWhole(r: LayerReader, e: FileMetadata, chunk = 128 << 10): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for (let off = 0; off < e.uncompressedSize; off += chunk) parts.push(await r.read(e, off, chunk));
  return Buffer.concat(parts);
}

/** Blob range requests logged since `from`, as [start, end) pairs. */
function rangesSince(from: number): { req: LoggedRequest; ranges: [number, number][] }[] {
  return faults.log
    .slice(from)
    .filter((l) => l.method === "GET" && l.path.includes("/blobs/"))
    .map((req) => ({
      req,
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

const layer = (name: TestLayer["name"]) => fx.layers.find((l) => l.name === name)!;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "soci-fs-reader-"));
  [fx, registry, pool] = await Promise.all([
    buildTestLayers(dir),
    startRegistry(),
    Promise.resolve(new InflatePool({ threads: 2 })),
  ]);
  const c = client(registry.host);
  for (const l of fx.layers) await c.pushBlob(`${registry.host}/${REPO}:x`, l.blob, { digest: l.digest, size: l.size });
  faults = await startFaultProxy(registry.host);
  sw = await startSwitchProxy(registry.host);
}, 120_000);

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await faults?.close();
  await sw?.close();
  await pool?.destroy();
  await registry?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("layer reader against GNU tar", () => {
  for (const name of ["gzip", "pigz", "tar"] as const) {
    it(`every file of the ${name} layer equals GNU tar's extraction`, async () => {
      const l = layer(name);
      const r = await open(l);
      const files = l.ztoc.toc.filter((e) => e.type === "reg");
      expect(files.length).toBeGreaterThan(150);
      // eight readers at a time, 128 KiB reads as FUSE sends them
      const queue = [...files];
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          for (let e = queue.shift(); e; e = queue.shift()) {
            const got = await readWhole(r, e);
            expect(got.equals(await want(e)), nameOf(e)).toBe(true);
          }
        }),
      );
      expect(r.counters.readErrors).toBe(0);
      // every file's bytes (header checks are not served bytes)
      expect(r.counters.bytesServed).toBe(files.reduce((n, e) => n + e.uncompressedSize, 0));
      const st = r.state();
      expect(st).toMatchObject({ digest: l.digest, size: l.size });
      expect(st.error).toBeUndefined();
      expect(st.fetchedSize).toBeGreaterThan(0);
      expect(st.fetchedSize).toBeLessThanOrEqual(l.size);
      if (name === "pigz") {
        // the layer really has two members, and spans on both sides of the boundary were read
        expect(l.blob.indexOf(Buffer.from([0x1f, 0x8b, 0x08]), 10)).toBeGreaterThan(0);
      }
    });
  }

  it("random offsets, many concurrent readers, span-crossing, 1-byte and past-EOF reads", async () => {
    for (const name of ["gzip", "pigz", "tar"] as const) {
      const l = layer(name);
      const r = await open(l);
      const spans = r.spans;
      const big = ["big/text.bin", "big/random.bin", "big/mixed.bin"].map((n) => entryOf(l.ztoc, n));
      const rnd = prng(name.length * 1000 + 1, 4096);
      let k = 0;
      const next = () => rnd.readUInt32LE((k++ * 4) % 4092) >>> 0;
      const reads: Promise<void>[] = [];
      for (const e of big) {
        const src = await want(e);
        const check = (off: number, len: number) =>
          reads.push(
            r.read(e, off, len).then((got) => {
              const exp = src.subarray(Math.min(off, src.length), Math.min(off + len, src.length));
              expect(Buffer.from(got).equals(exp), `${name} ${nameOf(e)} @${off}+${len}`).toBe(true);
            }),
          );
        for (let i = 0; i < 60; i++) check(next() % (e.uncompressedSize + 5000), 1 + (next() % 300_000));
        // around every span boundary inside the file: 1-byte reads either side and a crossing read
        for (
          let s = spans.spanOf(e.uncompressedOffset) + 1;
          s <= spans.spanOf(e.uncompressedOffset + e.uncompressedSize - 1);
          s++
        ) {
          const b = spans.uncompressedRange(s).start - e.uncompressedOffset;
          check(b - 1, 1);
          check(b, 1);
          check(b - 7, 14);
        }
        check(e.uncompressedSize - 1, 1);
        check(e.uncompressedSize - 10, 100); // clamped at EOF
        check(e.uncompressedSize, 10); // at EOF: empty
        check(e.uncompressedSize + 4096, 10); // past EOF: empty
        check(0, 0);
      }
      await Promise.all(reads);
      expect(reads.length).toBeGreaterThan(200);
    }
  });

  it("rejects invalid offsets and lengths clearly", async () => {
    const r = await open(layer("gzip"));
    const e = entryOf(layer("gzip").ztoc, "big/text.bin");
    await expect(r.read(e, -1, 10)).rejects.toThrow(/invalid read/);
    await expect(r.read(e, 0.5, 10)).rejects.toThrow(/invalid read/);
    expect(r.state().error).toMatch(/invalid read/);
  });
});

describe("what a read fetches", () => {
  it("a file read fetches only its spans (and the gzip header once)", async () => {
    const l = layer("gzip");
    const before = faults.log.length;
    const r = await open(l);
    const header = rangesSince(before);
    expect(header).toHaveLength(1);
    expect(header[0]!.ranges).toEqual([[0, r.spans.compressedRange(0).start]]);
    const e = entryOf(l.ztoc, "small/f100.txt");
    const mark = faults.log.length;
    expect(Buffer.from(await r.read(e, 0, e.uncompressedSize)).equals(await want(e))).toBe(true);
    const first = r.spans.spanOf(e.tarHeaderOffset);
    const last = r.spans.spanOf(e.uncompressedOffset + e.uncompressedSize - 1);
    const allowed = { start: r.spans.compressedRange(first).start, end: r.spans.compressedRange(last).end };
    const got = rangesSince(mark).flatMap((x) => x.ranges);
    expect(got.length).toBeGreaterThan(0);
    for (const [a, b] of got) {
      expect(a).toBeGreaterThanOrEqual(allowed.start);
      expect(b).toBeLessThanOrEqual(allowed.end);
    }
    const fetched = got.reduce((n, [a, b]) => n + b - a, 0);
    expect(fetched).toBe(allowed.end - allowed.start);
    expect(r.counters.bytesFetched).toBe(fetched + r.spans.compressedRange(0).start);
    expect(r.counters.spansFetched).toBe(last - first + 1);
    // a small file is a small fraction of the layer
    expect(fetched).toBeLessThan(l.size / 10);
  });

  it("concurrent reads of one span share one fetch", async () => {
    const l = layer("gzip");
    const r = await open(l, { disableVerification: true });
    const e = entryOf(l.ztoc, "big/text.bin");
    const s = r.spans.spanOf(e.uncompressedOffset + 100_000);
    const { start, end } = r.spans.uncompressedRange(s);
    const mark = faults.log.length;
    const reads = Array.from({ length: 20 }, (_, i) => {
      const off = start + ((i * 997) % (end - start - 10)) - e.uncompressedOffset;
      return r
        .read(e, off, 10)
        .then(async (got) => expect(Buffer.from(got).equals((await want(e)).subarray(off, off + 10))).toBe(true));
    });
    await Promise.all(reads);
    const reqs = rangesSince(mark);
    expect(reqs).toHaveLength(1);
    expect(reqs[0]!.ranges).toEqual([[r.spans.compressedRange(s).start, r.spans.compressedRange(s).end]]);
    expect(r.counters.spansFetched).toBe(1);
  });

  it("adjacent missing spans of one read come in one request", async () => {
    const l = layer("gzip");
    const r = await open(l, { disableVerification: true });
    const e = entryOf(l.ztoc, "big/text.bin");
    const first = r.spans.spanOf(e.uncompressedOffset + 10_000);
    const last = first + 4;
    const off = r.spans.uncompressedRange(first).start - e.uncompressedOffset + 5;
    const len = r.spans.uncompressedRange(last).start - r.spans.uncompressedRange(first).start + 10;
    const mark = faults.log.length;
    expect(Buffer.from(await r.read(e, off, len)).equals((await want(e)).subarray(off, off + len))).toBe(true);
    const reqs = rangesSince(mark);
    expect(reqs).toHaveLength(1);
    expect(reqs[0]!.ranges).toEqual([[r.spans.compressedRange(first).start, r.spans.compressedRange(last).end]]);
    expect(r.counters.spansFetched).toBe(5);
    // with the middle span already cached, the two runs on either side are fetched side by side
    // (two requests at once), the cached span not again
    const r2 = await open(l, { disableVerification: true });
    await r2.read(e, r.spans.uncompressedRange(first + 2).start - e.uncompressedOffset, 1);
    const mark2 = faults.log.length;
    expect(Buffer.from(await r2.read(e, off, len)).equals((await want(e)).subarray(off, off + len))).toBe(true);
    const reqs2 = rangesSince(mark2)
      .flatMap((x) => x.ranges)
      .sort((x, y) => x[0] - y[0]);
    expect(reqs2).toEqual([
      [r.spans.compressedRange(first).start, r.spans.compressedRange(first + 1).end],
      [r.spans.compressedRange(first + 3).start, r.spans.compressedRange(last).end],
    ]);
  });
});

describe("readahead", () => {
  it("a sequential reader gets the file's next spans fetched ahead; a random read does not", async () => {
    const l = layer("gzip");
    const r = await open(l, { disableVerification: true, readAheadSpans: 2 });
    const e = entryOf(l.ztoc, "big/text.bin");
    const first = r.spans.spanOf(e.uncompressedOffset);
    const fileLast = r.spans.spanOf(e.uncompressedOffset + e.uncompressedSize - 1);
    expect(fileLast - first).toBeGreaterThanOrEqual(4);
    // a random read: only its own span
    const mid = r.spans.uncompressedRange(first + 3).start - e.uncompressedOffset + 7;
    await r.read(e, mid, 100);
    expect(r.counters.spansFetched).toBe(1);
    // two sequential reads at the file's start: the second one fetches the next two spans ahead
    await r.read(e, 0, 4096);
    await r.read(e, 4096, 4096);
    for (let i = 0; i < 100 && r.counters.spansFetched < 4; i++) await new Promise((res) => setTimeout(res, 20));
    expect(r.counters.spansFetched).toBe(4); // span first+3 (random), first, first+1 and first+2 (ahead)
    expect(r.spans.state(first + 1)).not.toBe("unrequested");
    expect(r.spans.state(first + 2)).not.toBe("unrequested");
    // and the bytes are right when the reader gets there
    const off = r.spans.uncompressedRange(first + 2).start - e.uncompressedOffset;
    expect(Buffer.from(await r.read(e, off, 1000)).equals((await want(e)).subarray(off, off + 1000))).toBe(true);
    // off: no fetches beyond the read
    const r0 = await open(l, { disableVerification: true, readAheadSpans: 0 });
    await r0.read(e, 0, 4096);
    await r0.read(e, 4096, 4096);
    await new Promise((res) => setTimeout(res, 200));
    expect(r0.counters.spansFetched).toBe(1);
  });
});

describe("file ahead", () => {
  it("the first read of a file up to fileAheadBytes fetches all its spans (the read's own first); a bigger file gets none", async () => {
    const l = layer("gzip");
    const e = entryOf(l.ztoc, "big/text.bin");
    const r = await open(l, { disableVerification: true, readAheadSpans: 0, fileAheadBytes: e.uncompressedSize });
    const first = r.spans.spanOf(e.uncompressedOffset);
    const last = r.spans.spanOf(e.uncompressedOffset + e.uncompressedSize - 1);
    expect(last - first).toBeGreaterThanOrEqual(4);
    const mark = faults.log.length;
    // one small read in the middle of the file (as a page fault of an mmap would be)
    const mid = r.spans.uncompressedRange(first + 2).start - e.uncompressedOffset + 11;
    expect(Buffer.from(await r.read(e, mid, 100)).equals((await want(e)).subarray(mid, mid + 100))).toBe(true);
    const allLocal = () =>
      Array.from({ length: last - first + 1 }, (_, k) => r.spans.state(first + k)).every((st) => st === "uncompressed");
    for (let i = 0; i < 250 && !allLocal(); i++) await new Promise((res) => setTimeout(res, 20));
    expect(r.counters.spansFetched).toBe(last - first + 1);
    for (let i = first; i <= last; i++) expect(r.spans.state(i)).toBe("uncompressed");
    // the read's span in a request of its own, the rest merged into as few requests as the size
    // bound allows; every byte once (neighbouring spans share one)
    const reqs = rangesSince(mark);
    const own = r.spans.compressedRange(first + 2);
    expect(reqs[0]!.ranges).toEqual([[own.start, own.end]]);
    const got = reqs.flatMap((q) => q.ranges).sort((x, y) => x[0] - y[0]);
    const total = got.reduce((n, [a, b]) => n + b - a, 0);
    const span = r.spans.compressedRange(last).end - r.spans.compressedRange(first).start;
    expect(total - span).toBeLessThanOrEqual(got.length);
    expect(total).toBeGreaterThanOrEqual(span);
    expect(reqs.length).toBeLessThan(last - first + 1);
    // the whole file reads right with no further fetch
    expect((await readWhole(r, e)).equals(await want(e))).toBe(true);
    expect(rangesSince(mark)).toHaveLength(reqs.length);

    // a file one byte over the bound: only the read's own span
    const big = await open(l, { disableVerification: true, readAheadSpans: 0, fileAheadBytes: e.uncompressedSize - 1 });
    await big.read(e, mid, 100);
    await new Promise((res) => setTimeout(res, 200));
    expect(big.counters.spansFetched).toBe(1);
  });
});

describe("span cache", () => {
  it("a second reader of the same layer is served from the cache with zero network", async () => {
    const l = layer("pigz");
    const root = newRoot();
    const a = await open(l, { root });
    for (const e of fx.files.map((f) => entryOf(l.ztoc, nameOf(f)))) await readWhole(a, e, 1 << 20);
    const mark = faults.log.length;
    // a new cache object on the same root: nothing in memory, everything on disk
    const b = await open(l, { root });
    for (const e of fx.files.map((f) => entryOf(l.ztoc, nameOf(f)))) {
      expect((await readWhole(b, e)).equals(await want(e)), nameOf(e)).toBe(true);
    }
    expect(faults.log.length).toBe(mark);
    expect(b.counters.bytesFetched).toBe(0);
    expect(b.state().fetchedSize).toBe(a.state().fetchedSize);
  });

  it("a corrupt or truncated cache file is never served: the span is fetched again", async () => {
    const l = layer("gzip");
    const root = newRoot();
    const a = await open(l, { root, disableVerification: true });
    const e = entryOf(l.ztoc, "big/mixed.bin");
    await readWhole(a, e);
    const layerDir = join(root, l.digest.slice("sha256:".length));
    const s1 = a.spans.spanOf(e.uncompressedOffset + 50_000);
    const s2 = a.spans.spanOf(e.uncompressedOffset + 1_500_000);
    const f1 = await readFile(join(layerDir, String(s1)));
    f1[100] ^= 0x01; // one flipped bit inside the data
    await writeFile(join(layerDir, String(s1)), f1);
    const f2 = await readFile(join(layerDir, String(s2)));
    await writeFile(join(layerDir, String(s2)), f2.subarray(0, f2.length - 1000)); // torn write
    const mark = faults.log.length;
    const b = await open(l, { root, disableVerification: true });
    expect((await readWhole(b, e)).equals(await want(e))).toBe(true);
    const got = rangesSince(mark).flatMap((x) => x.ranges);
    expect(got.sort((x, y) => x[0] - y[0])).toEqual(
      [s1, s2].map((s) => [b.spans.compressedRange(s).start, b.spans.compressedRange(s).end]),
    );
    expect(b.counters.spansFetched).toBe(2);
    // the repaired files serve the next reader again without network
    const mark2 = faults.log.length;
    const c = await open(l, { root, disableVerification: true });
    expect((await readWhole(c, e)).equals(await want(e))).toBe(true);
    expect(faults.log.length).toBe(mark2);
    expect((await readdir(join(layerDir, "wip"))).length).toBe(0);
  });

  it("warm reads are memory lookups: sequential 128 KiB reads run far above 300 MB/s", async () => {
    const l = layer("gzip");
    const r = await open(l);
    const e = entryOf(l.ztoc, "big/text.bin");
    await readWhole(r, e);
    const t0 = process.hrtime.bigint();
    let n = 0;
    for (let rep = 0; rep < 20; rep++) {
      for (let off = 0; off < e.uncompressedSize; off += 128 << 10) {
        const b = await r.read(e, off, 128 << 10);
        const dst = Buffer.allocUnsafe(b.length);
        dst.set(b); // the copy FUSE makes into its buffer
        n += b.length;
      }
    }
    const mbps = n / 1e6 / (Number(process.hrtime.bigint() - t0) / 1e9);
    expect(mbps).toBeGreaterThan(300);
  });
});

describe("faults", () => {
  it("a span served corrupted is detected and refetched; without retries the read fails, and the next succeeds", async () => {
    const l = layer("gzip");
    const e = entryOf(l.ztoc, "big/random.bin");
    const src = await want(e);
    const r = await open(l, { maxSpanVerificationRetries: 1, disableVerification: true });
    faults.setRules([{ method: "GET", path: /\/blobs\//, times: 1, action: { kind: "corrupt", offset: 5000 } }]);
    expect(Buffer.from(await r.read(e, 0, 200_000)).equals(src.subarray(0, 200_000))).toBe(true);
    expect(r.counters.verificationFailures).toBe(1);

    const r0 = await open(l, { disableVerification: true }); // config default: 0 refetches
    faults.setRules([{ method: "GET", path: /\/blobs\//, times: 1, action: { kind: "corrupt", offset: 5000 } }]);
    await expect(r0.read(e, 0, 200_000)).rejects.toThrow(/digest mismatch/);
    expect(r0.counters.readErrors).toBe(1);
    expect(r0.state().error).toMatch(/digest mismatch/);
    faults.setRules([]);
    expect(Buffer.from(await r0.read(e, 0, 200_000)).equals(src.subarray(0, 200_000))).toBe(true);
  });

  it("transient HTTP faults (500, 429, a cut body, a server ignoring Range) are absorbed; bytes stay exact", async () => {
    const l = layer("pigz");
    const e = entryOf(l.ztoc, "big/mixed.bin");
    const src = await want(e);
    const r = await open(l, { disableVerification: true });
    const actions = [
      { kind: "status", status: 500 },
      { kind: "status", status: 429, retryAfter: "0" },
      { kind: "drop", afterBytes: 1000 },
      { kind: "ignoreRange" },
    ] as const;
    let off = 0;
    for (const action of actions) {
      faults.setRules([{ method: "GET", path: /\/blobs\//, times: 1, action }]);
      const mark = faults.log.length;
      expect(Buffer.from(await r.read(e, off, 300_000)).equals(src.subarray(off, off + 300_000)), action.kind).toBe(
        true,
      );
      expect(
        faults.log.slice(mark).some((x) => x.fault === action.kind),
        action.kind,
      ).toBe(true);
      off += 400_000;
    }
    faults.setRules([]);
    expect(r.counters.readErrors).toBe(0);
    expect(r.counters.verificationFailures).toBe(0);
  });

  it("a layer whose gzip header arrives corrupted does not open", async () => {
    const l = layer("gzip");
    faults.setRules([{ method: "GET", path: /\/blobs\//, times: 1, action: { kind: "corrupt", offset: 0 } }]);
    await expect(open(l)).rejects.toThrow(/invalid gzip header/);
    faults.setRules([]);
  });

  it("the registry stopping mid-read fails the read after retries within the timeout; it reads again once back", async () => {
    const l = layer("gzip");
    const c = client(sw.host, { timeoutMs: 2000 });
    const r = await open(l, { host: sw.host, c, fetchTimeoutMs: 6000 });
    const e = entryOf(l.ztoc, "big/mixed.bin");
    sw.stall(true);
    const t0 = Date.now();
    const pending = r.read(e, 0, 500_000);
    pending.catch(() => {});
    try {
      await new Promise((res) => setTimeout(res, 200));
      await sw.down(); // cuts the request in flight; retries find nothing listening
      // the HTTP retries give up (connection refused) well before the 6 s fetch timeout
      await expect(pending).rejects.toThrow(/^fetching span.* of layer sha256:\w+: (?!.*timed out)/);
      expect(Date.now() - t0).toBeLessThan(3000);
      expect(r.counters.readErrors).toBe(1);
      expect(r.state().error).toMatch(/^fetching span/);
      // the read failed on its first failing span; let the others' retries run out too, so the
      // next read starts fresh fetches instead of joining ones that began while the registry was down
      while (r.spans.pending > 0) await new Promise((res) => setTimeout(res, 20));
    } finally {
      sw.stall(false);
      await sw.up();
    }
    expect(Buffer.from(await r.read(e, 0, 500_000)).equals((await want(e)).subarray(0, 500_000))).toBe(true);
  });

  it("a stalled registry: reads time out instead of hanging, cached files stay readable, waiting reads finish when it recovers", async () => {
    const l = layer("tar");
    const c = client(sw.host, { timeoutMs: 30_000 });
    const root = newRoot();
    const r = await open(l, { host: sw.host, c, fetchTimeoutMs: 1500, root });
    const cached = entryOf(l.ztoc, "small/f010.txt");
    await r.read(cached, 0, 100_000);
    const e = entryOf(l.ztoc, "big/random.bin");
    sw.stall(true);
    try {
      const t0 = Date.now();
      await expect(r.read(e, 0, 10)).rejects.toThrow(/timed out after 1500 ms/);
      expect(Date.now() - t0).toBeLessThan(1500 + 700);
      const waiting = r.read(e, 700_000, 100);
      const t1 = Date.now();
      expect(Buffer.from(await r.read(cached, 0, 100_000)).equals(await want(cached))).toBe(true);
      expect(Date.now() - t1).toBeLessThan(200);
      // and from disk, for a reader with nothing in memory
      const fromDisk = await open(l, { host: sw.host, c, fetchTimeoutMs: 1500, root });
      expect(Buffer.from(await fromDisk.read(cached, 0, 100_000)).equals(await want(cached))).toBe(true);
      expect(Date.now() - t1).toBeLessThan(400);
      await new Promise((res) => setTimeout(res, 300));
      sw.stall(false);
      expect(Buffer.from(await waiting).equals((await want(e)).subarray(700_000, 700_100))).toBe(true);
    } finally {
      sw.stall(false);
    }
  });
});

describe("file verification", () => {
  it("a TOC entry that disagrees with its tar header fails the read; disableVerification skips the check", async () => {
    const l = layer("tar");
    const e = entryOf(l.ztoc, `${"long-name-".repeat(14)}end.txt`); // GNU long name header
    const r = await open(l);
    expect(Buffer.from(await r.read(e, 0, 100)).equals((await want(e)).subarray(0, 100))).toBe(true);
    for (const bad of [
      { ...e, mode: e.mode ^ 0o4000 },
      { ...e, uid: e.uid + 1 },
      { ...e, modTime: "2001-01-01T00:00:00Z" },
      { ...e, name: Buffer.from("other") },
    ]) {
      await expect(r.read(bad, 0, 100)).rejects.toBeInstanceOf(FileVerificationError);
    }
    const x = entryOf(layer("gzip").ztoc, "xattr.txt");
    const rg = await open(layer("gzip"));
    await rg.read(x, 0, 10);
    await expect(rg.read({ ...x, xattrs: [] }, 0, 10)).rejects.toThrow(/xattrs differ/);
    // an entry pointing at the wrong place does not parse as one header ending at its payload
    await expect(r.read({ ...e, tarHeaderOffset: e.tarHeaderOffset + 512 }, 0, 10)).rejects.toThrow(
      /tar header|headers/,
    );
    const off = await open(l, { disableVerification: true });
    expect((await off.read({ ...e, mode: e.mode ^ 0o4000 }, 0, 100)).length).toBe(100);
  });
});
