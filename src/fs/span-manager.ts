// Spans of one layer (docs/snapshotter.md §4.3, docs/formats.md §2): maps uncompressed ranges to spans,
// fetches missing spans' compressed bytes (adjacent ones in one request, one shared fetch per
// span), verifies each against the ztoc's sha256 span digest (refetching up to the configured
// retries), inflates from the span's checkpoint on the worker pool and keeps the result in the
// span cache. A read never waits past the fetch timeout, and never gets an unverified byte.
import { createHash } from "node:crypto";
import { crc32 } from "node:zlib";
import type { Ztoc } from "../formats/ztoc.js";
import type { Zinfo } from "../formats/zinfo.js";
import { GzipZinfo } from "../formats/gzip-zinfo.js";
import { zinfoOf } from "../formats/zinfo.js";
import type { CheckpointState } from "../wasm/extract.js";
import { noteDroppedBuffers } from "../wasm/garbage.js";
import { raceSignal, type BlobFetcher, type ByteRange } from "./blob-fetcher.js";
import type { LayerSpanCache } from "./span-cache.js";

/** §4.3: unrequested → requested → {fetched | uncompressed}; fetched → uncompressed; requested → unrequested on failure. */
export type SpanState = "unrequested" | "requested" | "fetched" | "uncompressed";

/**
 * The transitions a span may make (besides staying where it is). Found in the cache at open:
 * unrequested → fetched | uncompressed. A cache file found damaged or gone: back to unrequested.
 */
const NEXT_STATES: Record<SpanState, readonly SpanState[]> = {
  unrequested: ["requested", "fetched", "uncompressed"],
  requested: ["fetched", "uncompressed", "unrequested"],
  fetched: ["uncompressed", "unrequested"],
  uncompressed: ["unrequested"],
};

/** Inflates span bytes from a checkpoint (the InflatePool, or the in-thread `extract`). */
export interface SpanInflater {
  extract(spanBytes: Uint8Array, checkpoint: CheckpointState, offset: number, length: number): Promise<Uint8Array>;
}

export const DEFAULT_FETCH_TIMEOUT_MS = 60_000;
/** Spans fetchAhead keeps on the wire at once. */
const AHEAD_CONCURRENCY = 2;

export interface SpanManagerOptions {
  ztoc: Ztoc;
  /** Parsed zinfo of the ztoc (parsed here when absent). */
  zinfo?: Zinfo;
  /** Layer digest, for messages and the cache. */
  digest: string;
  fetcher: BlobFetcher;
  cache: LayerSpanCache;
  inflater: SpanInflater;
  /** `blob.max_span_verification_retries`: refetches after a digest mismatch (default 0; negative ⇒ 3). */
  maxSpanVerificationRetries?: number;
  /** Longest a fetch, and a read waiting for spans, may take (default 60 s). */
  fetchTimeoutMs?: number;
  /** Daemon-wide count of on-demand reads waiting (the background fetcher pauses on it). */
  activity?: ReadActivity;
}

export interface SpanCounters {
  /** Spans fetched from the network and verified. */
  spansFetched: number;
  /** Compressed bytes received from the network (refetches included). */
  bytesFetched: number;
  /** Uncompressed bytes handed to readers. */
  bytesServed: number;
  /** Reads that failed. */
  readErrors: number;
  /** Spans whose digest did not match (each attempt). */
  verificationFailures: number;
}

export class SpanError extends Error {
  override name = "SpanError";
}

/** Counts on-demand reads that wait for spans, and lets low-priority work wait until none do. */
export class ReadActivity {
  private n = 0;
  private waiters: (() => void)[] = [];

  begin(): void {
    this.n++;
  }

  end(): void {
    if (--this.n > 0) return;
    this.n = 0;
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  get waiting(): number {
    return this.n;
  }

  /** Resolves once no on-demand read is waiting. */
  idle(): Promise<void> {
    return this.n === 0 ? Promise.resolve() : new Promise((r) => this.waiters.push(r));
  }
}

const noop = () => {};
/** One array of consecutive parts (the part itself when there is one: no copy). */
const joinParts = (parts: Uint8Array[], total: number): Uint8Array =>
  parts.length === 1 ? parts[0]! : Buffer.concat(parts, total);
const sha256Digest = (b: Uint8Array) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

/** The retries the reference's config value means: 0 by default, negative ⇒ 3. */
export function verificationRetries(configured: number | undefined): number {
  if (configured === undefined) return 0;
  return configured < 0 ? 3 : Math.floor(configured);
}

/** Go `gzip.NewReader`'s header check of bytes [0, start of span 0) (RFC 1952 member header). */
export function checkGzipHeader(b: Uint8Array): void {
  const fail = (why: string): never => {
    throw new SpanError(`invalid gzip header: ${why}`);
  };
  if (b.length < 10) fail(`${b.length} bytes before the first span`);
  if (b[0] !== 0x1f || b[1] !== 0x8b || b[2] !== 8) fail("bad magic or compression method");
  const flags = b[3]!;
  if (flags & 0xe0) fail("reserved flag bits set");
  let p = 10;
  const need = (n: number) => {
    if (p + n > b.length) fail("truncated");
  };
  if (flags & 0x04) {
    need(2);
    const xlen = b[p]! | (b[p + 1]! << 8);
    p += 2;
    need(xlen);
    p += xlen;
  }
  for (const bit of [0x08, 0x10]) {
    if (!(flags & bit)) continue;
    const z = b.indexOf(0, p);
    if (z < 0) fail("truncated");
    p = z + 1;
  }
  if (flags & 0x02) {
    need(2);
    const want = b[p]! | (b[p + 1]! << 8);
    if ((crc32(b.subarray(0, p)) & 0xffff) !== want) fail("header checksum mismatch");
  }
}

export class SpanManager {
  readonly ztoc: Ztoc;
  readonly zinfo: Zinfo;
  readonly digest: string;
  readonly counters: SpanCounters = {
    spansFetched: 0,
    bytesFetched: 0,
    bytesServed: 0,
    readErrors: 0,
    verificationFailures: 0,
  };
  /** The last error a read or fetch met. */
  lastError: Error | undefined;

  private readonly fetcher: BlobFetcher;
  private readonly cache: LayerSpanCache;
  private readonly inflater: SpanInflater;
  private readonly retries: number;
  private readonly timeoutMs: number;
  private readonly activity: ReadActivity | undefined;
  private readonly cStart: number[] = [];
  private readonly cEnd: number[] = [];
  private readonly uStart: number[] = [];
  private readonly uEnd: number[] = [];
  private readonly states: SpanState[];
  /** Spans whose compressed bytes were verified at least once (for fetchedSize). */
  private readonly seen: Uint8Array;
  private headerBytes = 0;
  /** Verified compressed bytes being fetched, per span (shared by every waiter). */
  private readonly fetching = new Map<number, Promise<Uint8Array>>();
  /** Uncompressed spans being produced, per span. */
  private readonly loading = new Map<number, Promise<Uint8Array>>();
  /** Spans queued by fetchAhead, fetched a few at a time in order. */
  private readonly aheadQueue: number[] = [];
  private aheadRunning = 0;
  private closed = false;

  private constructor(opts: SpanManagerOptions) {
    this.ztoc = opts.ztoc;
    this.zinfo = opts.zinfo ?? zinfoOf(opts.ztoc);
    this.digest = opts.digest;
    this.fetcher = opts.fetcher;
    this.cache = opts.cache;
    this.inflater = opts.inflater;
    this.retries = verificationRetries(opts.maxSpanVerificationRetries);
    this.timeoutMs = opts.fetchTimeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS;
    this.activity = opts.activity;
    const z = this.zinfo;
    const n = z.maxSpanId + 1;
    // span_manager.go: the ztoc and its zinfo must agree on the span count
    if (opts.ztoc.maxSpanId !== z.maxSpanId || opts.ztoc.spanDigests.length !== n) {
      throw new SpanError(
        `invalid ztoc for layer ${this.digest}: max span id ${opts.ztoc.maxSpanId}, zinfo max span id ${z.maxSpanId}, ${opts.ztoc.spanDigests.length} span digests`,
      );
    }
    if (opts.fetcher.size !== opts.ztoc.compressedArchiveSize) {
      throw new SpanError(
        `layer ${this.digest} is ${opts.fetcher.size} bytes but its ztoc describes ${opts.ztoc.compressedArchiveSize}`,
      );
    }
    for (let i = 0; i < n; i++) {
      this.cStart.push(z.startCompressedOffset(i));
      this.cEnd.push(z.endCompressedOffset(i, opts.ztoc.compressedArchiveSize));
      this.uStart.push(z.startUncompressedOffset(i));
      this.uEnd.push(z.endUncompressedOffset(i, opts.ztoc.uncompressedArchiveSize));
      const last = i === n - 1;
      if (
        this.cStart[i]! < 0 ||
        this.cEnd[i]! > opts.ztoc.compressedArchiveSize ||
        (last
          ? this.cStart[i]! > this.cEnd[i]! || this.uStart[i]! > this.uEnd[i]!
          : this.cStart[i]! >= this.cEnd[i]! || this.uStart[i]! >= this.uEnd[i]!) ||
        (i > 0 && this.uStart[i]! !== this.uEnd[i - 1]!)
      ) {
        throw new SpanError(`invalid ztoc for layer ${this.digest}: span ${i} offsets are not increasing`);
      }
    }
    this.states = new Array<SpanState>(n).fill("unrequested");
    this.seen = new Uint8Array(n);
  }

  /**
   * Opens a layer's spans: finds what the cache already holds and checks the gzip header (from
   * the cache, else fetched once and cached).
   */
  static async open(opts: SpanManagerOptions): Promise<SpanManager> {
    const m = new SpanManager(opts);
    const found = await m.cache.list();
    for (const i of found.compressed) if (i < m.states.length) m.moveSpan(i, "fetched");
    for (const i of found.uncompressed) if (i < m.states.length) m.moveSpan(i, "uncompressed");
    await m.checkHeader(found.header);
    return m;
  }

  private async checkHeader(cached: boolean): Promise<void> {
    if (this.zinfo.algorithm !== "gzip" || this.states.length === 0) return;
    const end = this.cStart[0]!;
    let bytes = cached ? await this.cache.loadHeader() : undefined;
    if (bytes === undefined || bytes.length !== end) {
      [bytes] = await this.fetchNetwork([{ start: 0, end }], "the gzip header");
      checkGzipHeader(bytes!);
      await this.cache.storeHeader(bytes!).catch(noop);
    } else {
      checkGzipHeader(bytes);
    }
    this.headerBytes = end;
  }

  /** Spans being fetched or produced right now. */
  get pending(): number {
    return new Set([...this.fetching.keys(), ...this.loading.keys()]).size;
  }

  get spanCount(): number {
    return this.states.length;
  }

  state(span: number): SpanState {
    return this.states[span]!;
  }

  /**
   * The one place a span's state changes. With `onlyFrom`, nothing happens unless the span is in
   * that state (a failed fetch must not undo a concurrent read that completed the span).
   */
  private moveSpan(i: number, to: SpanState, onlyFrom?: SpanState): void {
    const from = this.states[i]!;
    if (from === to || (onlyFrom !== undefined && from !== onlyFrom)) return;
    if (!NEXT_STATES[from].includes(to))
      throw new Error(`span ${i} of layer ${this.digest}: no transition ${from} → ${to}`);
    this.states[i] = to;
  }

  /** True once every span is in the local cache (compressed or uncompressed). */
  get fullyLocal(): boolean {
    return this.states.every((s) => s === "fetched" || s === "uncompressed");
  }

  /** The first span at or after `from` that is not local, or -1. */
  nextMissing(from = 0): number {
    for (let i = from; i < this.states.length; i++) {
      const s = this.states[i];
      if (s !== "fetched" && s !== "uncompressed") return i;
    }
    return -1;
  }

  /** Distinct compressed bytes known locally: the gzip header and every verified or cached span. */
  get fetchedSize(): number {
    let total = this.headerBytes;
    let covered = this.headerBytes; // end of the union so far (spans are in offset order)
    for (let i = 0; i < this.states.length; i++) {
      const s = this.states[i];
      if (!this.seen[i] && s !== "fetched" && s !== "uncompressed") continue;
      const a = Math.max(this.cStart[i]!, covered);
      if (this.cEnd[i]! > a) total += this.cEnd[i]! - a;
      covered = Math.max(covered, this.cEnd[i]!);
    }
    return total;
  }

  /** Span holding uncompressed layer offset `off`. */
  spanOf(off: number): number {
    return this.zinfo.spanForOffset(off);
  }

  /** Uncompressed range [start, end) of span i. */
  uncompressedRange(span: number): ByteRange {
    return { start: this.uStart[span]!, end: this.uEnd[span]! };
  }

  /** Compressed range [start, end) of span i. */
  compressedRange(span: number): ByteRange {
    return { start: this.cStart[span]!, end: this.cEnd[span]! };
  }

  /**
   * Uncompressed layer bytes [start, end) if every span holding them is hot in memory, else
   * undefined. Synchronous: the warm read path is a lookup and (at most) a copy.
   */
  readHot(start: number, end: number, served = true): Uint8Array | undefined {
    if (end <= start) return new Uint8Array(0);
    const first = this.zinfo.spanForOffset(start);
    const last = this.zinfo.spanForOffset(end - 1);
    const parts: Uint8Array[] = [];
    for (let i = first; i <= last; i++) {
      const h = this.cache.hot(i);
      if (!h) return undefined;
      parts.push(h.subarray(...this.spanPart(i, start, end)));
    }
    if (served) this.counters.bytesServed += end - start;
    return joinParts(parts, end - start);
  }

  /**
   * Uncompressed layer bytes [start, end): hot spans straight from memory, others from the disk
   * cache or the registry. The returned array may be a view of a cached span: do not modify it.
   * `served` = false keeps internal reads (tar header checks) out of `bytesServed` and `readErrors`.
   */
  read(start: number, end: number, served = true): Promise<Uint8Array> {
    if (
      !Number.isSafeInteger(start) ||
      !Number.isSafeInteger(end) ||
      start < 0 ||
      end < start ||
      end > this.ztoc.uncompressedArchiveSize
    ) {
      return Promise.reject(
        new SpanError(
          `invalid read [${start}, ${end}) of layer ${this.digest} (${this.ztoc.uncompressedArchiveSize} bytes uncompressed)`,
        ),
      );
    }
    const hot = this.readHot(start, end, served);
    return hot ? Promise.resolve(hot) : this.readSlow(start, end, served);
  }

  private async readSlow(start: number, end: number, served: boolean): Promise<Uint8Array> {
    const first = this.zinfo.spanForOffset(start);
    const last = this.zinfo.spanForOffset(end - 1);
    this.activity?.begin();
    try {
      this.planFetches(first, last);
      const pieces: Promise<Uint8Array>[] = [];
      for (let i = first; i <= last; i++) pieces.push(this.piece(i, ...this.spanPart(i, start, end)));
      const parts = await this.withDeadline(Promise.all(pieces), `reading spans ${first}-${last}`);
      const out = joinParts(parts, end - start);
      if (served) this.counters.bytesServed += end - start;
      return out;
    } catch (e) {
      if (served) this.counters.readErrors++;
      throw this.noteError(e);
    } finally {
      this.activity?.end();
    }
  }

  /** Bytes [a, b) of span i (span-relative): only those bytes when the span is on disk already. */
  private async piece(i: number, a: number, b: number): Promise<Uint8Array> {
    if (this.states[i] === "uncompressed" && !this.loading.has(i)) {
      const got = await this.cache.readUncompressed(i, this.uEnd[i]! - this.uStart[i]!, a, b);
      if (got) return got;
      // absent or damaged (and discarded): produced again below, from the network if need be
    }
    return (await this.uncompressed(i)).subarray(a, b);
  }

  /**
   * Readahead: starts fetching spans first..last that are not local yet, without waiting and
   * without counting as an on-demand read (failures are left to the read that needs the span).
   */
  readAhead(first: number, last: number): void {
    if (this.closed) return;
    last = Math.min(last, this.states.length - 1);
    if (first > last) return;
    this.planFetches(first, last);
    for (let i = first; i <= last; i++) if (this.fetching.has(i)) this.uncompressed(i).catch(noop);
  }

  /**
   * Fetches the spans of first..last that nobody has and nobody is fetching, in one request:
   * each run of adjacent spans is one range (several runs make a multi-range request).
   */
  private planFetches(first: number, last: number): void {
    const runs: [number, number][] = [];
    let runStart = -1;
    for (let i = first; i <= last + 1; i++) {
      const need = i <= last && this.needsFetch(i);
      if (need && runStart < 0) runStart = i;
      if (!need && runStart >= 0) {
        runs.push([runStart, i - 1]);
        runStart = -1;
      }
    }
    if (runs.length) this.startFetch(runs);
  }

  /** Span i is not local, not hot, and nobody is fetching or producing it. */
  private needsFetch(i: number): boolean {
    return this.states[i] === "unrequested" && !this.fetching.has(i) && !this.loading.has(i) && !this.cache.hot(i);
  }

  /**
   * Queues spans first..last to be fetched (and inflated) in order, at most AHEAD_CONCURRENCY at
   * a time, each in its own request so each is ready as soon as it arrives: the link stays busy
   * between a reader's requests without starving them. Spans already local or under way are
   * skipped; failures are left to the read that needs the span.
   */
  fetchAhead(first: number, last: number): void {
    if (this.closed) return;
    last = Math.min(last, this.states.length - 1);
    for (let i = Math.max(0, first); i <= last; i++) if (this.states[i] === "unrequested") this.aheadQueue.push(i);
    this.pumpAhead();
  }

  private pumpAhead(): void {
    while (this.aheadRunning < AHEAD_CONCURRENCY && this.aheadQueue.length > 0 && !this.closed) {
      const i = this.aheadQueue.shift()!;
      if (!this.needsFetch(i)) continue;
      this.aheadRunning++;
      this.planFetches(i, i);
      this.uncompressed(i)
        .catch(noop)
        .finally(() => {
          this.aheadRunning--;
          this.pumpAhead();
        });
    }
  }

  /** Resolves span i into the cache as uncompressed bytes (prefetch; on-demand reads). */
  uncompressed(i: number): Promise<Uint8Array> {
    const hot = this.cache.hot(i);
    if (hot) return Promise.resolve(hot);
    let p = this.loading.get(i);
    if (p) return p;
    p = this.produce(i).finally(() => this.loading.delete(i));
    p.catch(noop);
    this.loading.set(i, p);
    return p;
  }

  private async produce(i: number): Promise<Uint8Array> {
    const len = this.uEnd[i]! - this.uStart[i]!;
    if (this.states[i] === "uncompressed") {
      const data = await this.cache.loadUncompressed(i, len);
      if (data) return data;
      this.moveSpan(i, "unrequested"); // damaged or removed: fetch again
    }
    let comp: Uint8Array | undefined;
    if (this.states[i] === "fetched") {
      comp = await this.cache.loadCompressed(i, this.ztoc.spanDigests[i]!);
      if (!comp) this.moveSpan(i, "unrequested");
    }
    let data: Uint8Array;
    try {
      comp ??= await this.compressed(i);
      data = await this.inflate(i, comp);
    } catch (e) {
      this.moveSpan(i, "unrequested", "requested");
      throw e;
    }
    try {
      await this.cache.storeUncompressed(i, data);
      this.moveSpan(i, "uncompressed");
    } catch (e) {
      // still served from memory; the span stays fetchable
      this.cache.remember(i, data);
      this.noteError(e);
      this.moveSpan(i, "unrequested", "requested");
    }
    return data;
  }

  /**
   * Background mode: fetches span i and keeps its verified compressed bytes in the cache (state
   * fetched). A span already local is left alone.
   */
  async fetchCompressed(i: number): Promise<void> {
    if (i < 0 || i >= this.states.length) throw new RangeError(`span ${i} out of range (${this.states.length} spans)`);
    const s = this.states[i];
    if (s === "fetched" || s === "uncompressed") return;
    const loading = this.loading.get(i);
    if (loading) {
      await loading;
      return;
    }
    try {
      const comp = await this.withDeadline(this.compressed(i), `fetching span ${i}`);
      // an on-demand read may have finished the span meanwhile
      if (this.state(i) === "uncompressed" || this.state(i) === "fetched") return;
      await this.cache.storeCompressed(i, comp);
      if (this.state(i) !== "uncompressed") this.moveSpan(i, "fetched");
    } catch (e) {
      throw this.noteError(e);
    }
  }

  /** Verified compressed bytes of span i: a fetch already under way, or a new one. */
  private compressed(i: number): Promise<Uint8Array> {
    const p = this.fetching.get(i);
    if (p) return p;
    this.startFetch([[i, i]]);
    return this.fetching.get(i)!;
  }

  /** One request for runs of adjacent spans; each span gets its own verified promise. */
  private startFetch(runs: [number, number][]): void {
    const ranges = runs.map(([a, b]) => ({ start: this.cStart[a]!, end: this.cEnd[b]! }));
    const what = runs.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(",");
    const batch = this.fetchNetwork(ranges, `span${what.includes(",") || what.includes("-") ? "s" : ""} ${what}`);
    batch.catch(noop);
    runs.forEach(([a, b], k) => {
      const base = ranges[k]!.start;
      for (let i = a; i <= b; i++) {
        this.moveSpan(i, "requested", "unrequested");
        const p = batch
          .then((got) => this.verified(i, got[k]!.subarray(this.cStart[i]! - base, this.cEnd[i]! - base)))
          .then(
            (bytes) => {
              this.fetching.delete(i);
              return bytes;
            },
            (e: unknown) => {
              this.fetching.delete(i);
              this.moveSpan(i, "unrequested", "requested");
              throw e;
            },
          );
        p.catch(noop);
        this.fetching.set(i, p);
      }
    });
  }

  /** Checks span i's digest, refetching it up to `retries` times on a mismatch. */
  private async verified(i: number, bytes: Uint8Array): Promise<Uint8Array> {
    const want = this.ztoc.spanDigests[i]!;
    for (let attempt = 0; ; attempt++) {
      const got = sha256Digest(bytes);
      if (got === want) {
        this.counters.spansFetched++;
        this.seen[i] = 1;
        return bytes;
      }
      this.counters.verificationFailures++;
      if (attempt >= this.retries) {
        throw new SpanError(
          `span ${i} of layer ${this.digest}: digest mismatch: got ${got}, want ${want} (after ${attempt} refetches)`,
        );
      }
      [bytes] = (await this.fetchNetwork([{ start: this.cStart[i]!, end: this.cEnd[i]! }], `span ${i}`)) as [
        Uint8Array,
      ];
    }
  }

  /** A network fetch bounded by the fetch timeout; counts the bytes received. */
  private async fetchNetwork(ranges: ByteRange[], what: string): Promise<Uint8Array[]> {
    if (this.closed) throw new SpanError(`layer ${this.digest} is closed`);
    const signal = AbortSignal.timeout(this.timeoutMs);
    try {
      const got = await this.fetcher.fetch(ranges, signal);
      got.forEach((b, k) => {
        this.counters.bytesFetched += b.length;
        if (b.length !== ranges[k]!.end - ranges[k]!.start) {
          throw new SpanError(`short read of ${what}: ${b.length} of ${ranges[k]!.end - ranges[k]!.start} bytes`);
        }
      });
      return got;
    } catch (e) {
      if (signal.aborted)
        throw new SpanError(`fetching ${what} of layer ${this.digest}: timed out after ${this.timeoutMs} ms`, {
          cause: e,
        });
      if (e instanceof SpanError) throw e;
      throw new SpanError(`fetching ${what} of layer ${this.digest}: ${(e as Error)?.message ?? String(e)}`, {
        cause: e,
      });
    }
  }

  private async inflate(i: number, comp: Uint8Array): Promise<Uint8Array> {
    const len = this.uEnd[i]! - this.uStart[i]!;
    let data: Uint8Array;
    if (this.zinfo instanceof GzipZinfo) {
      try {
        data = await this.inflater.extract(comp, this.zinfo.checkpoint(i), this.uStart[i]!, len);
        // the compressed bytes (and their copy sent to the worker) are garbage now; the span
        // soon will be too, once out of the hot LRU
        noteDroppedBuffers(comp.length * 2 + len);
      } catch (e) {
        throw new SpanError(`inflating span ${i} of layer ${this.digest}: ${(e as Error)?.message ?? String(e)}`, {
          cause: e,
        });
      }
    } else {
      // uncompressed layer: the span is its own data (copied off the response); the last span's
      // compressed range runs to the end of the file, past the end-of-archive the TOC counts
      if (comp.length < len)
        throw new SpanError(`span ${i} of layer ${this.digest}: ${comp.length} bytes, want ${len}`);
      data = comp.slice(0, len);
    }
    if (data.length !== len)
      throw new SpanError(`span ${i} of layer ${this.digest}: ${data.length} bytes inflated, want ${len}`);
    return data;
  }

  /** Rejects with a timeout error when `p` takes longer than the fetch timeout. */
  private withDeadline<T>(p: Promise<T>, what: string): Promise<T> {
    const signal = AbortSignal.timeout(this.timeoutMs);
    return raceSignal(p, signal).catch((e: unknown) => {
      if (signal.aborted && e === signal.reason) {
        throw new SpanError(`${what} of layer ${this.digest}: timed out after ${this.timeoutMs} ms`);
      }
      throw e;
    });
  }

  /** The part of span i inside layer range [start, end), relative to the span. */
  private spanPart(i: number, start: number, end: number): [number, number] {
    const u = this.uStart[i]!;
    return [Math.max(start, u) - u, Math.min(end, this.uEnd[i]!) - u];
  }

  /** Records `e` as the last error and returns it (as an Error). */
  noteError(e: unknown): Error {
    const err = e instanceof Error ? e : new Error(String(e));
    this.lastError = err;
    return err;
  }

  /** Stops new network fetches (reads of local spans keep working). */
  close(): void {
    this.closed = true;
  }

  get isClosed(): boolean {
    return this.closed;
  }
}
