// The span budget: the bytes of spans being produced at once stay within a bound, however many
// spans readers and prefetch ask for, and waiting work is admitted most urgent first.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { setUpTestLayers, tearDownTestLayers, type TestLayers } from "./helpers/span-layers.js";
import { FileBlobFetcher } from "../src/fs/blob-fetcher.js";
import { SpanBudget } from "../src/fs/span-budget.js";
import { SpanCache } from "../src/fs/span-cache.js";
import { SpanManager } from "../src/fs/span-manager.js";
import { extract } from "../src/wasm/extract.js";

let dir = "";
let fx: TestLayers;
let tarBytes: Buffer;
const fetchers: FileBlobFetcher[] = [];

beforeAll(async () => {
  ({ dir, fx, tarBytes } = await setUpTestLayers("soci-span-budget-"));
}, 120_000);

afterAll(() => tearDownTestLayers(dir, fetchers));

/** An inflater that takes a few ms per span and records how many spans it holds at once. */
function slowInflater() {
  const seen = { now: 0, max: 0 };
  return {
    seen,
    async extract(b: Uint8Array, cp: Parameters<typeof extract>[1], o: number, n: number) {
      seen.max = Math.max(seen.max, ++seen.now);
      try {
        await new Promise((r) => setTimeout(r, 3));
        return extract(b, cp, o, n);
      } finally {
        seen.now--;
      }
    },
  };
}

let roots = 0;
async function prefetchAll(budget?: SpanBudget) {
  const l = fx.layers.find((x) => x.name === "gzip")!;
  const fetcher = new FileBlobFetcher(l.path, l.digest, l.size);
  fetchers.push(fetcher);
  const inflater = slowInflater();
  const m = await SpanManager.open({
    ztoc: l.ztoc,
    digest: l.digest,
    fetcher,
    cache: new SpanCache({ root: join(dir, `c${roots++}`), memoryBytes: 0 }).layer(l.digest),
    inflater,
    ...(budget ? { budget } : {}),
  });
  const all = Array.from({ length: m.spanCount }, (_, i) => i);
  await Promise.all(m.prefetch(all));
  const u = m.uncompressedRange(m.spanCount - 1);
  expect(Buffer.from(await m.read(0, u.end)).equals(tarBytes.subarray(0, u.end))).toBe(true);
  return { m, inflater };
}

describe("span budget", () => {
  it("bounds the spans being produced at once; without it prefetch holds many", async () => {
    const unbounded = await prefetchAll();
    expect(unbounded.m.spanCount).toBeGreaterThan(8);
    expect(unbounded.inflater.seen.max).toBeGreaterThan(2);

    // a span costs its compressed bytes twice and its inflated bytes once (64 KiB spans here)
    const budget = new SpanBudget(200 << 10);
    const bounded = await prefetchAll(budget);
    expect(bounded.inflater.seen.max).toBeLessThanOrEqual(2);
    // a span costing more than the whole bound is admitted alone
    const costs = Array.from({ length: bounded.m.spanCount }, (_, i) => {
      const c = bounded.m.compressedRange(i);
      const u = bounded.m.uncompressedRange(i);
      return 2 * (c.end - c.start) + (u.end - u.start);
    });
    expect(budget.peak).toBeLessThanOrEqual(Math.max(200 << 10, ...costs));
    expect(budget.peak).toBeGreaterThan(0);
    expect(budget.held).toBe(0);
  });

  it("admits a request larger than the bound alone, and waiters most urgent first", async () => {
    const b = new SpanBudget(100);
    const big = await b.acquire(500, { priority: 0 });
    expect(b.held).toBe(500);
    const order: string[] = [];
    const noted = (name: string) => (release: () => void) => {
      order.push(name);
      return release;
    };
    const background = b.acquire(60, { priority: 2 }).then(noted("background"));
    const ahead = { priority: 1 as 0 | 1 | 2 };
    const readahead = b.acquire(60, ahead).then(noted("readahead"));
    const read = b.acquire(60, { priority: 0 }).then(noted("read"));
    ahead.priority = 0; // a read joined the readahead: it now goes before the later read
    big();
    const first = await Promise.race([readahead, read, background]);
    expect(order).toEqual(["readahead"]);
    first();
    (await read)();
    (await background)();
    expect(order).toEqual(["readahead", "read", "background"]);
    expect(b.held).toBe(0);
  });
});
