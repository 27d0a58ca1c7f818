// The background fetcher and prefetch against a real registry on loopback: a layer ends fully
// local (then reads need no network), the loop keeps quiet while on-demand reads wait and during
// a silence period, stops on abort, bounds its queue, and gives up on a layer whose span fails.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startRegistry, type RegistryServer } from "./helpers/registry-server.js";
import { startFaultProxy, type FaultProxy } from "./helpers/fault-proxy.js";
import { startSwitchProxy, type SwitchProxy } from "./helpers/switch-proxy.js";
import { buildTestLayers, nameOf, type TestLayer, type TestLayers } from "./helpers/span-layers.js";
import { RegistryClient } from "../src/registry/client.js";
import { InflatePool } from "../src/wasm/pool.js";
import { RegistryBlobFetcher } from "../src/fs/blob-fetcher.js";
import { SpanCache } from "../src/fs/span-cache.js";
import { ReadActivity } from "../src/fs/span-manager.js";
import { createLayerReader, type LayerReader } from "../src/fs/layer-reader.js";
import { BackgroundFetcher, prefetchSpans, type BackgroundEvent } from "../src/fs/background-fetcher.js";

const REPO = "lazy/bg";
let dir = "";
let fx: TestLayers;
let registry: RegistryServer;
let faults: FaultProxy;
let sw: SwitchProxy;
let pool: InflatePool;
let c: RegistryClient;
let roots = 0;

const layer = (n: TestLayer["name"]) => fx.layers.find((l) => l.name === n)!;
const blobGets = (from = 0) =>
  faults.log.slice(from).filter((l) => l.method === "GET" && l.path.includes("/blobs/")).length;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function open(
  l: TestLayer,
  opts: { host?: string; activity?: ReadActivity; root?: string; retries?: number } = {},
): Promise<LayerReader> {
  const host = opts.host ?? faults.host;
  return createLayerReader({
    ztoc: l.ztoc,
    digest: l.digest,
    fetcher: new RegistryBlobFetcher(c, `${host}/${REPO}:x`, l.digest, l.size),
    cache: new SpanCache({ root: opts.root ?? join(dir, `cache-${roots++}`) }),
    inflater: pool,
    activity: opts.activity,
    maxSpanVerificationRetries: opts.retries,
    fetchTimeoutMs: 10_000,
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "soci-fs-bg-"));
  [fx, registry] = await Promise.all([buildTestLayers(dir, 256 << 10), startRegistry()]);
  pool = new InflatePool({ threads: 2 });
  c = new RegistryClient({ plainHttp: true, retries: 1, baseDelayMs: 20, maxDelayMs: 50, timeoutMs: 5000 });
  for (const l of fx.layers) await c.pushBlob(`${registry.host}/${REPO}:x`, l.blob, { digest: l.digest, size: l.size });
  faults = await startFaultProxy(registry.host);
  sw = await startSwitchProxy(registry.host);
}, 120_000);

afterAll(async () => {
  await c?.close();
  await faults?.close();
  await sw?.close();
  await pool?.destroy();
  await registry?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("background fetcher", () => {
  it("fetches a layer span by span until it is fully local; reads then need no network", async () => {
    const l = layer("gzip");
    const r = await open(l);
    const events: BackgroundEvent[] = [];
    const bg = new BackgroundFetcher({ silencePeriodMs: 0, fetchPeriodMs: 1, onEvent: (e) => events.push(e) });
    const loop = bg.start();
    const mark = faults.log.length;
    expect(await bg.add(r.spans)).toBe("complete");
    expect(r.fullyLocal).toBe(true);
    expect(r.state().fetchedSize).toBe(l.size);
    expect(bg.metrics.spanFetchCount).toBe(r.spans.spanCount);
    expect(blobGets(mark)).toBe(r.spans.spanCount); // one request per span, in order
    expect(events.filter((e) => e.kind === "span").map((e) => (e as { span: number }).span)).toEqual([
      ...Array(r.spans.spanCount).keys(),
    ]);
    expect(events.at(-1)).toMatchObject({ kind: "layer-done", outcome: "complete", layer: l.digest });
    expect(bg.queueSize).toBe(0);
    const after = faults.log.length;
    for (const e of l.ztoc.toc.filter((x) => x.type === "reg" && x.uncompressedSize > 0)) {
      const got = await r.read(e, 0, e.uncompressedSize);
      expect(Buffer.from(got).equals(await readFile(join(fx.extracted, nameOf(e)))), nameOf(e)).toBe(true);
    }
    expect(faults.log.length).toBe(after);
    // a layer already local completes at once
    expect(await bg.add(r.spans)).toBe("complete");
    await bg.stop();
    await loop;
  });

  it("waits while on-demand reads wait, then carries on", async () => {
    const activity = new ReadActivity();
    const bgLayer = await open(layer("tar"), { activity });
    const fg = await open(layer("gzip"), { activity, host: sw.host });
    const bg = new BackgroundFetcher({ silencePeriodMs: 0, fetchPeriodMs: 1, activity });
    void bg.start();
    const e = layer("gzip").ztoc.toc.find((x) => nameOf(x) === "big/random.bin")!;
    sw.stall(true);
    const reading = fg.read(e, 0, 1000); // waits on the stalled registry (header check and data)
    reading.catch(() => {});
    const mark = faults.log.length;
    const done = bg.add(bgLayer.spans);
    try {
      await sleep(50);
      expect(activity.waiting).toBeGreaterThan(0);
      await sleep(400);
      expect(blobGets(mark)).toBe(0); // nothing fetched in the background meanwhile
      expect(bgLayer.spans.nextMissing(0)).toBe(0);
    } finally {
      sw.stall(false);
    }
    expect((await reading).length).toBe(1000);
    expect(activity.waiting).toBe(0);
    expect(await done).toBe("complete");
    expect(bgLayer.fullyLocal).toBe(true);
    await bg.stop();
  });

  it("keeps quiet for the silence period after pause(), and stops on abort", async () => {
    const r = await open(layer("pigz"));
    const ac = new AbortController();
    const bg = new BackgroundFetcher({ silencePeriodMs: 500, fetchPeriodMs: 100, signal: ac.signal });
    bg.pause();
    const loop = bg.start();
    const mark = faults.log.length;
    const t0 = Date.now();
    const done = bg.add(r.spans);
    await sleep(400);
    expect(blobGets(mark)).toBe(0);
    while (bg.metrics.spanFetchCount < 2) await sleep(20);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(500);
    ac.abort();
    expect(await done).toBe("stopped");
    await loop;
    await sleep(50);
    const n = blobGets(mark);
    await sleep(300);
    expect(blobGets(mark)).toBe(n); // nothing after the stop
    expect(r.fullyLocal).toBe(false);
    expect(await bg.add(r.spans)).toBe("stopped");
  });

  it("a failing span ends that layer's background fetch (the layer stays lazy)", async () => {
    const r = await open(layer("gzip"));
    const bg = new BackgroundFetcher({ silencePeriodMs: 0, fetchPeriodMs: 1 });
    void bg.start();
    const mark = faults.log.length;
    faults.setRules([{ method: "GET", path: /\/blobs\//, times: 1, action: { kind: "corrupt", offset: 3 } }]);
    try {
      expect(await bg.add(r.spans)).toBe("failed");
    } finally {
      faults.setRules([]);
    }
    expect(bg.metrics.spanFetchFailureCount).toBe(1);
    expect(blobGets(mark)).toBe(1);
    expect(r.spans.state(0)).toBe("unrequested");
    expect(r.fullyLocal).toBe(false);
    expect(r.state().error).toMatch(/digest mismatch/);
    await bg.stop();
  });

  it("bounds its queue: drop the newest (default) or the oldest", async () => {
    const a = await open(layer("gzip"));
    const b = await open(layer("tar"));
    const newest = new BackgroundFetcher({ maxQueueSize: 1 });
    const pa = newest.add(a.spans);
    expect(await newest.add(b.spans)).toBe("dropped");
    expect(newest.metrics.workQueueEvicted).toBe(1);
    await newest.stop();
    expect(await pa).toBe("stopped");
    const oldest = new BackgroundFetcher({ maxQueueSize: 1, dropPolicy: "oldest" });
    const qa = oldest.add(a.spans);
    const qb = oldest.add(b.spans);
    expect(await qa).toBe("dropped");
    expect(oldest.queueSize).toBe(1);
    await oldest.stop();
    expect(await qb).toBe("stopped");
  });
});

describe("prefetch", () => {
  it("resolves the listed span ranges into the cache before any read; bad ranges are reported", async () => {
    const r = await open(layer("pigz"));
    const mark = faults.log.length;
    const res = await prefetchSpans(r.spans, [
      { startSpan: 0, endSpan: 2 },
      { startSpan: 5, endSpan: 5 },
      { startSpan: 4, endSpan: 999 },
    ]);
    expect(res.resolved).toBe(4);
    expect(res.errors.map((e) => e.message)).toEqual([
      expect.stringMatching(/prefetch span range 4-999 is outside layer/),
    ]);
    for (const i of [0, 1, 2, 5]) expect(r.spans.state(i)).toBe("uncompressed");
    expect(r.spans.state(3)).toBe("unrequested");
    expect(blobGets(mark)).toBe(2); // spans 0-2 (adjacent: one request) and span 5
    // reads inside prefetched spans are memory lookups
    const u = r.spans.uncompressedRange(1);
    expect(r.spans.readHot(u.start, u.end)).toBeDefined();
  });
});
