// File contents of one lazily loaded layer: the LayerFileReader the FUSE layer calls. A read is
// checked and clamped to the file here and handed whole to the span manager, which owns every
// decision after that (hot or cold, what to fetch and how far ahead, verification).
import type { Ztoc } from "../formats/ztoc.js";
import type { FileMetadata } from "../formats/toc.js";
import type { Zinfo } from "../formats/zinfo.js";
import type { LayerVerification } from "../formats/layer-verification.js";
import type { SpanBudget } from "./span-budget.js";
import type { Semaphore } from "../registry/semaphore.js";
import type { BlobFetcher } from "./blob-fetcher.js";
import type { SpanCache } from "./span-cache.js";
import { SpanManager, type ReadActivity, type SpanCounters, type SpanInflater } from "./span-manager.js";
import type { LayerFileReader, LayerState } from "./types.js";

export { DEFAULT_FILE_AHEAD_BYTES } from "./span-manager.js";

export interface LayerReaderOptions {
  ztoc: Ztoc;
  /** Parsed zinfo of the ztoc (parsed here when absent). */
  zinfo?: Zinfo;
  /** Digest of the (compressed) layer blob. */
  digest: string;
  /** Digest of the ztoc: spans of different ztocs of one layer are cached apart. */
  ztocDigest?: string;
  fetcher: BlobFetcher;
  /** The daemon's span cache (this layer uses its `<digest>` directory). */
  cache: SpanCache;
  /** Inflates spans: the InflatePool. */
  inflater: SpanInflater;
  /** Chunk verification (docs/formats.md §9): the verified artifact, and the ztoc blob for windows. */
  verification?: { artifact: LayerVerification; ztocFetcher?: BlobFetcher };
  /** `blob.max_span_verification_retries` (default 0; negative ⇒ 3). */
  maxSpanVerificationRetries?: number;
  /** Longest a read may wait for the network (default 60 s); keep it below the FUSE timeout. */
  fetchTimeoutMs?: number;
  /** `fuse.disable_verification`: skip the per-file tar header check. */
  disableVerification?: boolean;
  /** Daemon-wide count of waiting on-demand reads (the background fetcher pauses on it). */
  activity?: ReadActivity;
  /** Daemon-wide bound on requests in flight. */
  limiter?: Semaphore;
  /** Process-wide bound on the bytes of spans being produced (span-budget.ts). */
  budget?: SpanBudget;
  /** Spans of a file fetched ahead of a sequential reader (default 2; 0 = off). */
  readAheadSpans?: number;
  /** Files up to this size are fetched whole on their first read (default 64 MiB; 0 = off). */
  fileAheadBytes?: number;
}

export class LayerReader implements LayerFileReader {
  constructor(readonly spans: SpanManager) {}

  read(entry: FileMetadata, offset: number, length: number): Promise<Uint8Array> {
    const size = entry.uncompressedSize;
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
      return Promise.reject(this.fail(new RangeError(`invalid read of ${length} bytes at offset ${offset}`)));
    }
    if (offset >= size || length === 0) return Promise.resolve(new Uint8Array(0));
    const start = entry.uncompressedOffset + offset;
    const end = entry.uncompressedOffset + Math.min(size, offset + length);
    // errors are recorded by the span manager (the layer's last error); no extra promise on the warm path
    return this.spans.readFile(entry, start, end);
  }

  state(): LayerState {
    const s: LayerState = {
      digest: this.spans.digest,
      size: this.spans.ztoc.compressedArchiveSize,
      fetchedSize: this.spans.fetchedSize,
    };
    const err = this.spans.lastError?.message;
    if (err !== undefined) s.error = err;
    return s;
  }

  noteError(err: unknown): void {
    this.fail(err);
  }

  get counters(): Readonly<SpanCounters> {
    return this.spans.counters;
  }

  /** True once every span of the layer is in the local cache. */
  get fullyLocal(): boolean {
    return this.spans.fullyLocal;
  }

  /** Stops network fetches for this layer; its cache stays for the next mount. */
  close(): void {
    this.spans.close();
  }

  private fail(e: unknown): Error {
    return this.spans.noteError(e);
  }
}

/** Opens a layer's span machinery (cache scan, gzip header check) and its file reader. */
export async function createLayerReader(opts: LayerReaderOptions): Promise<LayerReader> {
  const spans = await SpanManager.open({
    ztoc: opts.ztoc,
    zinfo: opts.zinfo,
    digest: opts.digest,
    fetcher: opts.fetcher,
    cache: opts.cache.layer(opts.digest, opts.ztocDigest),
    inflater: opts.inflater,
    verification: opts.verification,
    maxSpanVerificationRetries: opts.maxSpanVerificationRetries,
    fetchTimeoutMs: opts.fetchTimeoutMs,
    activity: opts.activity,
    limiter: opts.limiter,
    budget: opts.budget,
    disableVerification: opts.disableVerification,
    readAheadSpans: opts.readAheadSpans,
    fileAheadBytes: opts.fileAheadBytes,
  });
  return new LayerReader(spans);
}
