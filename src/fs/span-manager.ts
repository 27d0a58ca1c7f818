// The contents of one lazily loaded layer (docs/snapshotter.md §4.3–4.4, docs/formats.md §2, §9):
// the one component a read asks for a byte range. It decides what is hot, what is on disk, what to
// fetch (and how far ahead), verifies everything fetched, inflates from checkpoints on the worker
// pool, keeps the results in the span cache, and checks each file's tar header on its first read.
//
// Two ways to verify what is fetched:
// - whole spans (the ztoc alone): a span is fetched whole and checked against the ztoc's sha256;
// - chunks (the layer verification artifact, §9): a span is fetched from its start to the chunk
//   holding the last byte a read needs, every chunk checked against its own digest, the span's
//   checkpoint window fetched on the span's first read and checked against its digest; a later read
//   further into the span fetches the next chunks and inflates again from the checkpoint.
// Either way no byte is handed out that was not inflated from verified bytes, and a read never
// waits past the fetch timeout.
import { createHash } from "node:crypto";
import { crc32 } from "node:zlib";
import { DigestMismatchError, findCause, hasCode, UnavailableError } from "../errors/errors.js";
import type { Ztoc } from "../formats/ztoc.js";
import type { Zinfo } from "../formats/zinfo.js";
import type { FileMetadata } from "../formats/toc.js";
import { GzipZinfo } from "../formats/gzip-zinfo.js";
import { TarZinfo } from "../formats/tar-zinfo.js";
import { zinfoOf } from "../formats/zinfo.js";
import {
  chunkRange,
  skeletonCheckpoints,
  verifyChunk,
  verifyWindow,
  windowRange,
  type LayerVerification,
} from "../formats/layer-verification.js";
import type { CheckpointState } from "../wasm/extract.js";
import { E_TRUNCATED, InflateError } from "../wasm/codes.js";
import { noteDroppedBuffers } from "../wasm/garbage.js";
import type { Semaphore } from "../registry/semaphore.js";
import { raceSignal, type BlobFetcher, type ByteRange } from "./blob-fetcher.js";
import { FetchQueue, type FetchPriority, type FetchTicket } from "./fetch-queue.js";
import { FileVerifier } from "./file-verifier.js";
import type { SpanBudget } from "./span-budget.js";
import type { LayerSpanCache } from "./span-cache.js";

/**
 * §4.3: unrequested → requested → {fetched | uncompressed}; fetched → uncompressed; requested →
 * unrequested on failure. With chunk verification a span can also be partial (a prefix local):
 * requested → partial → requested → … → uncompressed.
 */
export type SpanState = "unrequested" | "requested" | "partial" | "fetched" | "uncompressed";

/**
 * The transitions a span may make (besides staying where it is). Found in the cache at open:
 * unrequested → partial | fetched | uncompressed. A cache file found damaged or gone: back to unrequested.
 */
const NEXT_STATES: Record<SpanState, readonly SpanState[]> = {
  unrequested: ["requested", "partial", "fetched", "uncompressed"],
  requested: ["partial", "fetched", "uncompressed", "unrequested"],
  partial: ["requested", "fetched", "uncompressed", "unrequested"],
  fetched: ["uncompressed", "unrequested"],
  uncompressed: ["unrequested"],
};

/** Inflates span bytes from a checkpoint (the InflatePool, or the in-thread `extract`). */
export interface SpanInflater {
  extract(spanBytes: Uint8Array, checkpoint: CheckpointState, offset: number, length: number): Promise<Uint8Array>;
}

export const DEFAULT_FETCH_TIMEOUT_MS = 60_000;
export const DEFAULT_FILE_AHEAD_BYTES = 64 << 20;
const WINDOW_SIZE = 32768;
/** Windows kept in memory for partial spans being read (their resume files hold them too). */
const WINDOW_CACHE = 64;

export interface SpanManagerOptions {
  ztoc: Ztoc;
  /** Parsed zinfo of the ztoc (parsed here when absent; from the artifact's skeleton with chunk verification). */
  zinfo?: Zinfo;
  /** Layer digest, for messages and the cache. */
  digest: string;
  fetcher: BlobFetcher;
  cache: LayerSpanCache;
  inflater: SpanInflater;
  /**
   * Chunk verification (docs/formats.md §9): the layer's verified artifact, and where its checkpoint
   * windows come from when the zinfo holds none (the ztoc blob, fetched by range).
   */
  verification?: { artifact: LayerVerification; ztocFetcher?: BlobFetcher };
  /** `blob.max_span_verification_retries`: refetches after a digest mismatch (default 0; negative ⇒ 3). */
  maxSpanVerificationRetries?: number;
  /** Longest a fetch, and a read waiting for spans, may take (default 60 s). */
  fetchTimeoutMs?: number;
  /** Daemon-wide count of on-demand reads waiting (the background fetcher pauses on it). */
  activity?: ReadActivity;
  /** Requests in flight at once for this layer (default 4). */
  fetchConcurrency?: number;
  /** Daemon-wide bound on requests in flight. */
  limiter?: Semaphore;
  /** Process-wide bound on the bytes of spans being produced at once (see span-budget.ts). */
  budget?: SpanBudget;
  /** `fuse.disable_verification`: skip the per-file tar header check (§4.4). */
  disableVerification?: boolean;
  /**
   * Spans of a file fetched ahead of a sequential reader (default 2; 0 = off): the next bytes are on
   * the wire while the reader consumes these.
   */
  readAheadSpans?: number;
  /**
   * Files up to this size are fetched whole on their first read (default 64 MiB; 0 = off): a
   * program that opens a shared library or a module reads most of it, in an order (page faults of
   * an mmap) the sequential readahead does not see.
   */
  fileAheadBytes?: number;
}

export interface SpanCounters {
  /** Span fetches from the network that completed verified (a partial span counts each time it grows). */
  spansFetched: number;
  /** Compressed bytes received from the network (refetches, windows and chunk padding included). */
  bytesFetched: number;
  /** Uncompressed bytes handed to readers. */
  bytesServed: number;
  /** Reads that failed. */
  readErrors: number;
  /** Spans, chunks or windows whose digest did not match (each attempt). */
  verificationFailures: number;
  /** Checkpoint windows fetched (chunk verification). */
  windowsFetched: number;
}

export class SpanError extends UnavailableError {
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

/**
 * The zinfo of a layer known from its verification artifact alone: the skeleton's checkpoints
 * (their windows are fetched per span) or the tar zinfo.
 */
export function zinfoFromArtifact(v: LayerVerification): Zinfo {
  if (v.zinfoKind === "tar") return TarZinfo.fromBlob(v.skeleton);
  const { spanSize, version, checkpoints } = skeletonCheckpoints(v.skeleton);
  const none = new Uint8Array(0);
  return new GzipZinfo(
    checkpoints.map((c) => ({ in: c.in, out: c.out, bits: c.bits, window: none })),
    spanSize,
    version,
  );
}

/** A span's data being produced: everything up to `target` bytes of it, shared by whoever needs no more. */
interface SpanOp {
  target: number;
  ticket: FetchTicket;
  promise: Promise<Uint8Array | undefined>;
}

/** Chunk verification state of a layer. */
interface Chunked {
  v: LayerVerification;
  /** Per span: index of its stored window in the ztoc (-1: the implied zero window of a v1 zinfo). */
  windowIndex: Int32Array;
  /** Where windows come from when the zinfo holds none. */
  windowQueue: FetchQueue | undefined;
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
    windowsFetched: 0,
  };
  /** The last error a read or fetch met. */
  lastError: Error | undefined;

  private readonly fetcher: BlobFetcher;
  private readonly cache: LayerSpanCache;
  private readonly inflater: SpanInflater;
  private readonly retries: number;
  private readonly timeoutMs: number;
  private readonly activity: ReadActivity | undefined;
  private readonly budget: SpanBudget | undefined;
  private readonly queue: FetchQueue;
  private readonly chunked: Chunked | undefined;
  private readonly verifier: FileVerifier;
  private readonly readAheadSpans: number;
  private readonly fileAheadBytes: number;
  private readonly cStart: number[] = [];
  private readonly cEnd: number[] = [];
  private readonly uStart: number[] = [];
  private readonly uEnd: number[] = [];
  private readonly states: SpanState[];
  /** Uncompressed bytes of each span local from its start (the whole span once uncompressed). */
  private readonly avail: Float64Array;
  /** Partial spans: end (layer offset) of the verified chunks their resume file holds. */
  private readonly compTo: Float64Array;
  /** Spans whose compressed bytes were verified whole at least once (for fetchedSize). */
  private readonly seen: Uint8Array;
  private headerBytes = 0;
  private headerChecked = false;
  /** The work producing each span's data (shared by every reader that needs no more of it). */
  private readonly ops = new Map<number, SpanOp>();
  /** Verified compressed bytes being fetched whole, per span (background fetches). */
  private readonly fetching = new Map<number, Promise<Uint8Array>>();
  /** Windows of recently read spans. */
  private readonly windows = new Map<number, Uint8Array>();
  /** Where each file's last read ended: a read starting there is sequential. */
  private readonly lastEnd = new WeakMap<FileMetadata, number>();
  /** Files read at least once. */
  private readonly touched = new WeakSet<FileMetadata>();
  private closed = false;

  private constructor(opts: SpanManagerOptions) {
    this.ztoc = opts.ztoc;
    const artifact = opts.verification?.artifact;
    // a ztoc read as its TOC part alone has no checkpoints: they come from the artifact then
    this.zinfo =
      opts.zinfo ?? (artifact && opts.ztoc.checkpoints.length === 0 ? zinfoFromArtifact(artifact) : zinfoOf(opts.ztoc));
    this.digest = opts.digest;
    this.fetcher = opts.fetcher;
    this.cache = opts.cache;
    this.inflater = opts.inflater;
    this.retries = verificationRetries(opts.maxSpanVerificationRetries);
    this.timeoutMs = opts.fetchTimeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS;
    this.activity = opts.activity;
    this.budget = opts.budget;
    this.readAheadSpans = opts.readAheadSpans ?? 2;
    this.fileAheadBytes = opts.fileAheadBytes ?? DEFAULT_FILE_AHEAD_BYTES;
    const queueOpts = {
      concurrency: opts.fetchConcurrency ?? 4,
      limiter: opts.limiter,
      timeoutMs: this.timeoutMs,
      onBytes: (n: number) => {
        this.counters.bytesFetched += n;
      },
    };
    this.queue = new FetchQueue(opts.fetcher, queueOpts);
    this.verifier = new FileVerifier((a, b) => this.readRange(a, b), opts.disableVerification ?? false);
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
    this.avail = new Float64Array(n);
    this.compTo = new Float64Array(n);
    this.seen = new Uint8Array(n);
    if (artifact) this.chunked = this.chunkedState(artifact, opts.verification?.ztocFetcher, queueOpts);
  }

  private chunkedState(
    v: LayerVerification,
    ztocFetcher: BlobFetcher | undefined,
    queueOpts: ConstructorParameters<typeof FetchQueue>[1],
  ): Chunked {
    if (v.layerSize !== this.ztoc.compressedArchiveSize || v.layerDigest !== this.digest)
      throw new SpanError(
        `layer verification artifact of ${v.layerDigest} (${v.layerSize} bytes) does not describe layer ${this.digest}`,
      );
    const n = this.states.length;
    const windowIndex = new Int32Array(n);
    if (v.zinfoKind === "gzip") {
      const cps = skeletonCheckpoints(v.skeleton).checkpoints;
      if (cps.length !== n)
        throw new SpanError(`layer verification artifact of ${this.digest}: ${cps.length} checkpoints for ${n} spans`);
      cps.forEach((c, i) => {
        windowIndex[i] = c.window;
        if (c.in !== (this.zinfo as GzipZinfo).checkpoint(i).in)
          throw new SpanError(`layer verification artifact of ${this.digest}: checkpoint ${i} differs from the ztoc's`);
      });
    }
    const haveWindows =
      this.zinfo instanceof GzipZinfo && this.zinfo.checkpoints.every((c) => c.window.length === WINDOW_SIZE);
    if (v.zinfoKind === "gzip" && !haveWindows && !ztocFetcher)
      throw new SpanError(`layer ${this.digest}: no checkpoint windows and nowhere to fetch them from`);
    return {
      v,
      windowIndex,
      windowQueue:
        v.zinfoKind === "gzip" && !haveWindows
          ? new FetchQueue(ztocFetcher!, { ...queueOpts, mergeGap: 64 })
          : undefined,
    };
  }

  /**
   * Opens a layer's spans: finds what the cache already holds and checks the gzip header (from
   * the cache, else fetched once and cached; with chunk verification, when its chunk first arrives).
   */
  static async open(opts: SpanManagerOptions): Promise<SpanManager> {
    const m = new SpanManager(opts);
    const found = await m.cache.list();
    for (const i of found.compressed) if (i < m.states.length) m.moveSpan(i, "fetched");
    for (const i of found.uncompressed) {
      if (i >= m.states.length) continue;
      m.moveSpan(i, "uncompressed");
      m.avail[i] = m.spanLength(i);
    }
    if (m.chunked) {
      for (const [i, { prefix, resume }] of found.partial) {
        if (i >= m.states.length || m.states[i] !== "unrequested") continue;
        const base = m.chunkBase(i);
        const chunks = resume - (m.chunked.v.zinfoKind === "gzip" ? WINDOW_SIZE : 0);
        if (prefix <= 0 || prefix >= m.spanLength(i) || chunks <= 0) continue;
        m.moveSpan(i, "partial");
        m.avail[i] = prefix;
        m.compTo[i] = base + chunks;
      }
    }
    await m.checkHeader(found.header);
    return m;
  }

  private async checkHeader(cached: boolean): Promise<void> {
    if (this.zinfo.algorithm !== "gzip" || this.states.length === 0) return;
    const end = this.cStart[0]!;
    let bytes = cached ? await this.cache.loadHeader() : undefined;
    if (bytes !== undefined && bytes.length === end) {
      checkGzipHeader(bytes);
    } else if (this.chunked) {
      return; // checked when the first chunk arrives
    } else {
      bytes = await this.net(this.queue, 0, end, { priority: 0 }, "the gzip header");
      checkGzipHeader(bytes);
      await this.cache.storeHeader(bytes).catch(noop);
    }
    this.headerBytes = end;
    this.headerChecked = true;
  }

  /** Spans being fetched or produced right now. */
  get pending(): number {
    return new Set([...this.fetching.keys(), ...this.ops.keys()]).size;
  }

  get spanCount(): number {
    return this.states.length;
  }

  state(span: number): SpanState {
    return this.states[span]!;
  }

  /** Whether reads are verified by chunks (the layer verification artifact). */
  get chunkVerified(): boolean {
    return this.chunked !== undefined;
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

  /** A span that lost its cached data starts over. */
  private forget(i: number): void {
    this.avail[i] = 0;
    this.compTo[i] = 0;
    this.moveSpan(i, "unrequested");
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

  /** Distinct compressed bytes known locally: the gzip header and every verified or cached span (or prefix). */
  get fetchedSize(): number {
    let total = this.headerBytes;
    let covered = this.headerBytes; // end of the union so far (spans are in offset order)
    for (let i = 0; i < this.states.length; i++) {
      const s = this.states[i];
      const whole = this.seen[i] || s === "fetched" || s === "uncompressed";
      const end = whole ? this.cEnd[i]! : Math.min(this.cEnd[i]!, this.compTo[i]!);
      const a = Math.max(this.cStart[i]!, covered);
      if (end > a) total += end - a;
      covered = Math.max(covered, end);
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

  private spanLength(i: number): number {
    return this.uEnd[i]! - this.uStart[i]!;
  }

  // ---------------------------------------------------------------------------------------------
  // Reads

  /**
   * Bytes [start, end) of the layer for a read of regular file `entry` (a range inside its
   * payload): the file's tar header is checked on its first read, what the read pattern says will
   * be needed next is fetched with it or after it, and the bytes are served once verified.
   */
  readFile(entry: FileMetadata, start: number, end: number): Promise<Uint8Array> {
    const verified = this.verifier.isVerified(entry);
    const ahead = this.aheadOf(entry, start, end);
    if (verified) {
      const hot = this.readHot(start, end);
      if (hot) {
        if (ahead) this.fetchAhead(ahead, this.spanOf(start), this.spanOf(end - 1));
        return Promise.resolve(hot);
      }
    }
    // the data first: the header check's read (usually the same span) then joins its fetch
    const bytes = this.readRange(start, end, ahead);
    const checked = verified ? bytes : Promise.all([this.verifier.verify(entry), bytes]).then(([, b]) => b);
    return checked.then(
      (b) => {
        this.counters.bytesServed += b.length;
        return b;
      },
      (e: unknown) => {
        this.counters.readErrors++;
        throw this.noteError(e);
      },
    );
  }

  /**
   * What a read of `entry` should fetch besides its own bytes: the whole file on the first read of
   * a file up to `fileAheadBytes`; `readAheadSpans` spans more for a sequential reader; else nothing.
   */
  private aheadOf(entry: FileMetadata, start: number, end: number): ByteRange | undefined {
    const fileEnd = entry.uncompressedOffset + entry.uncompressedSize;
    const first = !this.touched.has(entry);
    this.touched.add(entry);
    const sequential = this.lastEnd.get(entry) === start;
    this.lastEnd.set(entry, end);
    if (first && entry.uncompressedSize <= this.fileAheadBytes && entry.uncompressedSize > 0)
      return { start: entry.uncompressedOffset, end: fileEnd };
    if (sequential && this.readAheadSpans > 0) {
      const s = Math.min(this.states.length - 1, this.spanOf(end - 1) + this.readAheadSpans);
      const to = Math.min(fileEnd, this.uEnd[s]!);
      if (to > end) return { start: end, end: to };
    }
    return undefined;
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
   * Uncompressed layer bytes [start, end) with no file context (tests, tools): hot spans from
   * memory, others from the disk cache or the registry. The returned array may be a view of a
   * cached span: do not modify it. `served` = false keeps internal reads out of the counters.
   */
  read(start: number, end: number, served = true): Promise<Uint8Array> {
    const bad = this.invalidRange(start, end);
    if (bad) return Promise.reject(bad);
    const hot = this.readHot(start, end, served);
    if (hot) return Promise.resolve(hot);
    return this.readRange(start, end).then(
      (b) => {
        if (served) this.counters.bytesServed += b.length;
        return b;
      },
      (e: unknown) => {
        if (served) this.counters.readErrors++;
        throw this.noteError(e);
      },
    );
  }

  private invalidRange(start: number, end: number): SpanError | undefined {
    if (
      Number.isSafeInteger(start) &&
      Number.isSafeInteger(end) &&
      start >= 0 &&
      end >= start &&
      end <= this.ztoc.uncompressedArchiveSize
    )
      return undefined;
    return new SpanError(
      `invalid read [${start}, ${end}) of layer ${this.digest} (${this.ztoc.uncompressedArchiveSize} bytes uncompressed)`,
    );
  }

  /**
   * Bytes [start, end). The read's own spans are made local as far as `ahead` reaches into them
   * (one fetch instead of two); the other spans of `ahead` are fetched too, not waited for.
   */
  private async readRange(start: number, end: number, ahead?: ByteRange): Promise<Uint8Array> {
    const bad = this.invalidRange(start, end);
    if (bad) throw bad;
    if (end === start) return new Uint8Array(0);
    const first = this.spanOf(start);
    const last = this.spanOf(end - 1);
    this.activity?.begin();
    try {
      const pieces: Promise<Uint8Array>[] = [];
      for (let i = first; i <= last; i++) {
        const [a, b] = this.spanPart(i, start, end);
        const reach = ahead && ahead.start < this.uEnd[i]! ? ahead.end - this.uStart[i]! : 0;
        pieces.push(this.piece(i, a, b, Math.min(this.spanLength(i), Math.max(b, reach))));
      }
      if (ahead) this.fetchAhead(ahead, first, last);
      const parts = await this.withDeadline(Promise.all(pieces), `reading spans ${first}-${last}`);
      return joinParts(parts, end - start);
    } finally {
      this.activity?.end();
    }
  }

  /** Starts producing the spans of layer range `ahead` (but first..last) at low priority, not waiting. */
  private fetchAhead(ahead: ByteRange, first: number, last: number): void {
    if (this.closed || ahead.end <= ahead.start) return;
    const to = Math.min(ahead.end, this.ztoc.uncompressedArchiveSize);
    for (let i = this.spanOf(ahead.start); i <= this.spanOf(to - 1); i++) {
      if (i >= first && i <= last) continue;
      const target = to - this.uStart[i]!;
      // the warm path of a sequential reader: nothing to start, no promise to make
      if (!this.ops.has(i) && this.avail[i]! >= Math.min(target, this.spanLength(i))) continue;
      this.ensure(i, target, 1).catch(noop);
    }
  }

  /** Bytes [a, b) of span i (span-relative), making at least `target` bytes of it local. */
  private async piece(i: number, a: number, b: number, target: number): Promise<Uint8Array> {
    if (this.avail[i]! >= b && !this.ops.has(i)) {
      const got = await this.fromCache(i, a, b);
      if (got) return got;
      // absent or damaged (and discarded): produced again below, from the network if need be
      this.forget(i);
    }
    const joined = this.ops.has(i);
    let data: Uint8Array | undefined;
    try {
      data = await this.ensure(i, target, 0);
    } catch (e) {
      // joined a fetch an earlier read started, which ran out of time (a stalled registry) just
      // after: this read fetches once more, on its own deadline
      if (!joined || !findCause(e, (c) => hasCode(c, "DeadlineExceeded"))) throw e;
      data = await this.ensure(i, target, 0);
    }
    if (data && data.length >= b) return data.subarray(a, b);
    const got = await this.fromCache(i, a, b);
    if (got) return got;
    throw new SpanError(`span ${i} of layer ${this.digest}: bytes ${a}-${b} not in the cache after fetching`);
  }

  /** Bytes [a, b) of span i from the disk cache (its whole file or its prefix file). */
  private fromCache(i: number, a: number, b: number): Promise<Uint8Array | undefined> {
    if (this.states[i] === "uncompressed") return this.cache.readUncompressed(i, this.spanLength(i), a, b);
    if (this.avail[i]! >= b) return this.cache.readPartial(i, this.avail[i]!, a, b);
    return Promise.resolve(undefined);
  }

  /**
   * Makes at least `target` bytes of span i local (all of it unless verified by chunks). Resolves
   * with the span's data from its start when this call produced it, else undefined (read the cache).
   */
  private ensure(i: number, target: number, priority: FetchPriority): Promise<Uint8Array | undefined> {
    const len = this.spanLength(i);
    target = this.chunked ? Math.min(len, Math.max(1, target)) : len;
    if (this.avail[i]! >= target && !this.ops.has(i)) return Promise.resolve(undefined);
    const op = this.ops.get(i);
    if (op && op.target >= target) {
      if (priority < op.ticket.priority) {
        op.ticket.priority = priority;
        this.queue.raised();
        this.chunked?.windowQueue?.raised();
      }
      return op.promise;
    }
    const next: SpanOp = { target, ticket: { priority }, promise: Promise.resolve(undefined) };
    const run = () => this.produce(i, target, next.ticket);
    next.promise = (op ? op.promise.then(run, run) : run()).finally(() => {
      if (this.ops.get(i) === next) this.ops.delete(i);
    });
    next.promise.catch(noop);
    this.ops.set(i, next);
    return next.promise;
  }

  /** Resolves span i into the cache whole (prefetch): its data. */
  async uncompressed(i: number): Promise<Uint8Array> {
    const len = this.spanLength(i);
    const data = await this.ensure(i, len, 1);
    if (data && data.length === len) return data;
    const got = await this.fromCache(i, 0, len);
    if (!got) throw new SpanError(`span ${i} of layer ${this.digest}: not in the cache after fetching`);
    return got;
  }

  /** Starts producing the given spans whole at low priority (the prefetch artifact's list). */
  prefetch(spans: Iterable<number>): Promise<void>[] {
    const out: Promise<void>[] = [];
    for (const i of spans) out.push(this.ensure(i, this.spanLength(i), 1).then(noop));
    return out;
  }

  private async produce(i: number, target: number, ticket: FetchTicket): Promise<Uint8Array | undefined> {
    if (this.avail[i]! >= target) return undefined;
    // the span's compressed bytes, their copy on the way to the worker and the inflated span
    const cost = 2 * (this.cEnd[i]! - this.cStart[i]!) + this.spanLength(i);
    const release = await this.budget?.acquire(cost, ticket);
    try {
      return await this.produceHeld(i, target, ticket);
    } finally {
      release?.();
      // the inflated span is dropped once the reads waiting for it have taken their bytes (their
      // continuations run before the next turn of the event loop): counted then, not while in use
      setImmediate(noteDroppedBuffers, this.spanLength(i));
    }
  }

  private async produceHeld(i: number, target: number, ticket: FetchTicket): Promise<Uint8Array | undefined> {
    if (this.avail[i]! >= target) return undefined;
    if (this.states[i] === "fetched") {
      const comp = await this.cache.loadCompressed(i, this.ztoc.spanDigests[i]!);
      if (comp)
        return this.finish(i, await this.inflate(i, comp, await this.checkpoint(i, ticket), this.spanLength(i)));
      this.forget(i);
    }
    return this.chunked ? this.produceChunks(i, target, ticket) : this.produceWhole(i, ticket);
  }

  /** Whole-span verification: the span fetched, checked against the ztoc, inflated. */
  private async produceWhole(i: number, ticket: FetchTicket): Promise<Uint8Array> {
    this.moveSpan(i, "requested");
    let data: Uint8Array;
    try {
      const comp = await this.compressed(i, ticket);
      data = await this.inflate(i, comp, await this.checkpoint(i, ticket), this.spanLength(i));
    } catch (e) {
      this.moveSpan(i, "unrequested", "requested");
      throw e;
    }
    return this.finish(i, data);
  }

  /** The span is whole: stored uncompressed (or kept in memory when the disk refuses). */
  private async finish(i: number, data: Uint8Array): Promise<Uint8Array> {
    try {
      await this.cache.storeUncompressed(i, data);
      if (this.chunked) await this.cache.removePartial(i);
      this.moveSpan(i, "uncompressed");
      this.avail[i] = data.length;
      this.compTo[i] = 0;
    } catch (e) {
      // still served from memory; the span stays fetchable
      this.cache.remember(i, data);
      this.noteError(e);
      this.forget(i);
    }
    return data;
  }

  /**
   * Chunk verification: the span's verified chunks up to the one holding the last byte needed (a
   * resumed prefix plus what is fetched now), inflated from the span's verified checkpoint.
   */
  private async produceChunks(i: number, target: number, ticket: FetchTicket): Promise<Uint8Array> {
    const { v } = this.chunked!;
    const cs = this.cStart[i]!;
    const ce = this.cEnd[i]!;
    const us = this.uStart[i]!;
    const base = this.chunkBase(i);
    const gzip = v.zinfoKind === "gzip";
    let have: Uint8Array = new Uint8Array(0);
    let window: Uint8Array | undefined;
    if (this.states[i] === "partial") {
      const resumed = await this.resume(i);
      if (resumed) ({ have, window } = resumed);
      else this.forget(i);
    }
    const was = this.states[i] === "partial" ? "partial" : "unrequested";
    let j = this.chunkFor(i, us + target);
    const last = Math.floor((Math.max(ce, cs + 1) - 1) / v.chunkSize);
    this.moveSpan(i, "requested");
    try {
      for (;;) {
        const end = chunkRange(v, j)[1];
        const missing = end > base + have.length;
        const windowP = gzip && !window ? this.window(i, ticket) : undefined;
        windowP?.catch(noop); // awaited below unless the chunks fail first
        if (missing) have = concat(have, await this.fetchChunks(i, base + have.length, end, ticket));
        if (windowP) window = await windowP;
        const whole = end >= ce;
        const produceEnd = whole ? this.uEnd[i]! : Math.min(this.uEnd[i]!, v.chunkOutEnds[j]!);
        const comp = have.subarray(cs - base, Math.min(ce, end) - base);
        try {
          const cp = gzip
            ? { out: us, bits: this.checkpointBits(i), window: window! }
            : { out: us, bits: 0, window: new Uint8Array(0) };
          const data = await this.inflate(i, comp, cp, produceEnd - us);
          if (missing) this.counters.spansFetched++;
          if (whole) {
            this.seen[i] = 1;
            return await this.finish(i, data);
          }
          return await this.keepPartial(i, data, have, window, base);
        } catch (e) {
          // the recorded output end was more than these bytes give: one more chunk
          if (whole || j >= last || !(e instanceof InflateShortError)) throw e;
          j++;
        }
      }
    } catch (e) {
      this.moveSpan(i, was, "requested");
      throw e;
    }
  }

  /** Keeps a span's prefix: its data and what resuming it needs (window and verified chunks). */
  private async keepPartial(
    i: number,
    data: Uint8Array,
    chunks: Uint8Array,
    window: Uint8Array | undefined,
    base: number,
  ): Promise<Uint8Array> {
    try {
      await this.cache.storePartial(i, data, window ? concat(window, chunks) : chunks);
      this.avail[i] = data.length;
      this.compTo[i] = base + chunks.length;
      this.moveSpan(i, "partial");
    } catch (e) {
      this.noteError(e); // served from memory this once; fetched again next time
      this.moveSpan(i, "unrequested");
      this.avail[i] = 0;
      this.compTo[i] = 0;
    }
    return data;
  }

  /** A partial span's resume file, every part checked against the artifact again. */
  private async resume(i: number): Promise<{ have: Uint8Array; window?: Uint8Array } | undefined> {
    const { v, windowIndex } = this.chunked!;
    const bytes = await this.cache.loadResume(i);
    if (!bytes) return undefined;
    const gzip = v.zinfoKind === "gzip";
    const window = gzip ? bytes.subarray(0, WINDOW_SIZE) : undefined;
    const have = gzip ? bytes.subarray(WINDOW_SIZE) : bytes;
    try {
      if (window && windowIndex[i]! >= 0) verifyWindow(v, windowIndex[i]!, window);
      const base = this.chunkBase(i);
      for (let p = 0; p < have.length; p += v.chunkSize) {
        const j = (base + p) / v.chunkSize;
        verifyChunk(v, j, have.subarray(p, p + v.chunkSize));
      }
    } catch {
      await this.cache.removePartial(i);
      return undefined;
    }
    return { have, ...(window ? { window } : {}) };
  }

  /** Layer bytes [from, to) (whole chunks), each chunk checked and refetched up to `retries` times. */
  private async fetchChunks(i: number, from: number, to: number, ticket: FetchTicket): Promise<Uint8Array> {
    const { v } = this.chunked!;
    let bytes = await this.net(this.queue, from, to, ticket, `span ${i}`);
    for (let p = from; p < to; p += v.chunkSize) {
      const j = p / v.chunkSize;
      for (let attempt = 0; ; attempt++) {
        const [a, b] = chunkRange(v, j);
        try {
          verifyChunk(v, j, bytes.subarray(a - from, b - from));
          break;
        } catch (e) {
          this.counters.verificationFailures++;
          if (attempt >= this.retries)
            throw new SpanError(
              `span ${i} of layer ${this.digest}: ${(e as Error).message} (after ${attempt} refetches)`,
              {
                cause: e,
              },
            );
          const again = await this.net(this.queue, a, b, ticket, `span ${i}`);
          const copy = Buffer.from(bytes);
          copy.set(again, a - from);
          bytes = copy;
        }
      }
    }
    if (from === 0 && !this.headerChecked && this.zinfo.algorithm === "gzip") {
      checkGzipHeader(bytes.subarray(0, this.cStart[0]));
      this.headerBytes = this.cStart[0]!;
      this.headerChecked = true;
    }
    return bytes;
  }

  /** The verified checkpoint window of span i. */
  private async window(i: number, ticket: FetchTicket): Promise<Uint8Array> {
    const { v, windowIndex, windowQueue } = this.chunked!;
    const k = windowIndex[i]!;
    if (k < 0) return new Uint8Array(WINDOW_SIZE);
    const held = this.windows.get(i);
    if (held) return held;
    if (!windowQueue) return (this.zinfo as GzipZinfo).checkpoint(i).window;
    const [a, b] = windowRange(v, k);
    for (let attempt = 0; ; attempt++) {
      const w = await this.net(windowQueue, a, b, ticket, `the checkpoint window of span ${i}`);
      try {
        verifyWindow(v, k, w);
      } catch (e) {
        this.counters.verificationFailures++;
        if (attempt >= this.retries)
          throw new SpanError(
            `span ${i} of layer ${this.digest}: ${(e as Error).message} (after ${attempt} refetches)`,
            {
              cause: e,
            },
          );
        continue;
      }
      this.counters.windowsFetched++;
      const copy = w.slice();
      this.windows.set(i, copy);
      if (this.windows.size > WINDOW_CACHE) this.windows.delete(this.windows.keys().next().value!);
      return copy;
    }
  }

  /** The state inflation of span i resumes from. */
  private async checkpoint(i: number, ticket: FetchTicket): Promise<CheckpointState> {
    if (!(this.zinfo instanceof GzipZinfo)) return { out: this.uStart[i]!, bits: 0, window: new Uint8Array(0) };
    const cp = this.zinfo.checkpoint(i);
    if (cp.window.length === WINDOW_SIZE) return cp;
    return { out: cp.out, bits: cp.bits, window: await this.window(i, ticket) };
  }

  private checkpointBits(i: number): number {
    return this.zinfo instanceof GzipZinfo ? this.zinfo.checkpoint(i).bits : 0;
  }

  /** Layer offset of the chunk holding span i's first byte. */
  private chunkBase(i: number): number {
    const C = this.chunked!.v.chunkSize;
    return Math.floor(this.cStart[i]! / C) * C;
  }

  /** The first chunk (from span i's) after which the layer decompresses to `uncompressedEnd`. */
  private chunkFor(i: number, uncompressedEnd: number): number {
    const { v } = this.chunked!;
    const first = Math.floor(this.cStart[i]! / v.chunkSize);
    const last = Math.floor((Math.max(this.cEnd[i]!, this.cStart[i]! + 1) - 1) / v.chunkSize);
    let lo = first;
    let hi = last;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (v.chunkOutEnds[mid]! >= uncompressedEnd) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  // ---------------------------------------------------------------------------------------------
  // Whole compressed spans (background fetch, whole-span verification)

  /**
   * Background mode: fetches span i and keeps its verified compressed bytes in the cache (state
   * fetched). A span already local is left alone.
   */
  async fetchCompressed(i: number): Promise<void> {
    if (i < 0 || i >= this.states.length) throw new RangeError(`span ${i} out of range (${this.states.length} spans)`);
    const s = this.states[i];
    if (s === "fetched" || s === "uncompressed") return;
    const op = this.ops.get(i);
    if (op) {
      await op.promise;
      if (this.states[i] === "uncompressed") return;
    }
    const ticket: FetchTicket = { priority: 2 };
    const release = await this.budget?.acquire(this.cEnd[i]! - this.cStart[i]!, ticket);
    try {
      if (this.state(i) === "uncompressed" || this.state(i) === "fetched") return;
      const comp = await this.withDeadline(this.compressed(i, ticket), `fetching span ${i}`);
      // an on-demand read may have finished the span meanwhile
      if (this.state(i) === "uncompressed" || this.state(i) === "fetched") return;
      await this.cache.storeCompressed(i, comp);
      const now = this.state(i);
      if (now !== "uncompressed" && now !== "requested") this.moveSpan(i, "fetched");
    } catch (e) {
      throw this.noteError(e);
    } finally {
      release?.();
    }
  }

  /** Verified compressed bytes of span i: a fetch already under way, or a new one. */
  private compressed(i: number, ticket: FetchTicket): Promise<Uint8Array> {
    let p = this.fetching.get(i);
    if (p) return p;
    p = (this.chunked ? this.compressedByChunks(i, ticket) : this.compressedWhole(i, ticket)).finally(() =>
      this.fetching.delete(i),
    );
    p.catch(noop);
    this.fetching.set(i, p);
    return p;
  }

  /** Span i fetched whole and checked against the ztoc's span digest, refetched up to `retries` times. */
  private async compressedWhole(i: number, ticket: FetchTicket): Promise<Uint8Array> {
    const want = this.ztoc.spanDigests[i]!;
    for (let attempt = 0; ; attempt++) {
      const bytes = await this.net(this.queue, this.cStart[i]!, this.cEnd[i]!, ticket, `span ${i}`);
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
          { cause: new DigestMismatchError(want, got, { what: `span ${i}` }) },
        );
      }
    }
  }

  /** Span i fetched whole by chunks (each checked), and checked against the ztoc's span digest. */
  private async compressedByChunks(i: number, ticket: FetchTicket): Promise<Uint8Array> {
    const { v } = this.chunked!;
    const base = this.chunkBase(i);
    const end = chunkRange(v, Math.floor((Math.max(this.cEnd[i]!, this.cStart[i]! + 1) - 1) / v.chunkSize))[1];
    const bytes = await this.fetchChunks(i, base, end, ticket);
    const comp = bytes.subarray(this.cStart[i]! - base, this.cEnd[i]! - base);
    const got = sha256Digest(comp);
    if (got !== this.ztoc.spanDigests[i])
      throw new SpanError(
        `span ${i} of layer ${this.digest}: digest mismatch: got ${got}, want ${this.ztoc.spanDigests[i]}`,
      );
    this.counters.spansFetched++;
    this.seen[i] = 1;
    return comp;
  }

  private async inflate(i: number, comp: Uint8Array, cp: CheckpointState, len: number): Promise<Uint8Array> {
    let data: Uint8Array;
    if (this.zinfo instanceof GzipZinfo) {
      try {
        data = await this.inflater.extract(comp, cp, this.uStart[i]!, len);
        // the compressed bytes (and their copy sent to the worker) are garbage now
        noteDroppedBuffers(comp.length * 2);
      } catch (e) {
        const msg = (e as Error)?.message ?? String(e);
        const Short = e instanceof InflateError && e.code === E_TRUNCATED ? InflateShortError : SpanError;
        throw new Short(`inflating span ${i} of layer ${this.digest}: ${msg}`, { cause: e });
      }
    } else {
      // uncompressed layer: the span is its own data (copied off the response); the last span's
      // compressed range runs to the end of the file, past the end-of-archive the TOC counts
      if (comp.length < len)
        throw new InflateShortError(`span ${i} of layer ${this.digest}: ${comp.length} bytes, want ${len}`);
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

  /** Bytes [a, b) of `queue`'s blob, failures reported as the span error a read reports. */
  private net(queue: FetchQueue, a: number, b: number, ticket: FetchTicket, what: string): Promise<Uint8Array> {
    if (this.closed) return Promise.reject(new SpanError(`layer ${this.digest} is closed`));
    return queue.fetch(a, b, ticket).catch((e: unknown) => {
      throw this.fetchError(e, what);
    });
  }

  /** A network failure as the span error a read reports. */
  private fetchError(e: unknown, what: string): Error {
    if (this.closed) return new SpanError(`layer ${this.digest} is closed`, { cause: e });
    if (e instanceof SpanError) return e;
    const msg = (e as Error)?.message ?? String(e);
    return new SpanError(`fetching ${what} of layer ${this.digest}: ${msg}`, { cause: e });
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
    const err = new SpanError(`layer ${this.digest} is closed`);
    this.queue.abort(err);
    this.chunked?.windowQueue?.abort(err);
  }

  get isClosed(): boolean {
    return this.closed;
  }
}

/** Inflation ran out of compressed bytes before the wanted end (more chunks will do). */
class InflateShortError extends SpanError {
  override name = "InflateShortError";
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  if (b.length === 0) return a;
  return Buffer.concat([a, b]);
}
