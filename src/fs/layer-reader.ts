// File contents of one lazily loaded layer: the LayerFileReader the FUSE layer calls. A read is
// clamped to the file, checked once per file against its tar header (§4.4), and served from the
// span manager — straight from memory when its spans are hot.
import type { Ztoc } from "../formats/ztoc.js";
import type { FileMetadata } from "../formats/toc.js";
import type { Zinfo } from "../formats/zinfo.js";
import type { BlobFetcher } from "./blob-fetcher.js";
import { FileVerifier } from "./file-verifier.js";
import type { SpanCache } from "./span-cache.js";
import { SpanManager, type ReadActivity, type SpanCounters, type SpanInflater } from "./span-manager.js";
import type { LayerFileReader, LayerState } from "./types.js";

export interface LayerReaderOptions {
  ztoc: Ztoc;
  /** Parsed zinfo of the ztoc (parsed here when absent). */
  zinfo?: Zinfo;
  /** Digest of the (compressed) layer blob. */
  digest: string;
  fetcher: BlobFetcher;
  /** The daemon's span cache (this layer uses its `<digest>` directory). */
  cache: SpanCache;
  /** Inflates spans: the InflatePool. */
  inflater: SpanInflater;
  /** `blob.max_span_verification_retries` (default 0; negative ⇒ 3). */
  maxSpanVerificationRetries?: number;
  /** Longest a read may wait for the network (default 60 s); keep it below the FUSE timeout. */
  fetchTimeoutMs?: number;
  /** `fuse.disable_verification`: skip the per-file tar header check. */
  disableVerification?: boolean;
  /** Daemon-wide count of waiting on-demand reads (the background fetcher pauses on it). */
  activity?: ReadActivity;
  /**
   * Spans of a file fetched ahead of a sequential reader (default 2; 0 = off): the next span is on
   * the wire while the reader consumes this one, instead of one round trip per span.
   */
  readAheadSpans?: number;
  /**
   * Files up to this size get all their spans queued for fetching on their first read (default
   * 64 MiB; 0 = off): a program that opens a shared library or a module reads most of it, in an
   * order (page faults of an mmap) the sequential readahead does not see.
   */
  fileAheadBytes?: number;
}

export const DEFAULT_FILE_AHEAD_BYTES = 64 << 20;

export class LayerReader implements LayerFileReader {
  private readonly verifier: FileVerifier;
  private lastError: string | undefined;
  /** Where each file's last read ended: a read starting there is sequential. */
  private readonly lastEnd = new WeakMap<FileMetadata, number>();
  /** Files read at least once. */
  private readonly touched = new WeakSet<FileMetadata>();

  constructor(
    readonly spans: SpanManager,
    disableVerification = false,
    private readonly readAheadSpans = 2,
    private readonly fileAheadBytes = DEFAULT_FILE_AHEAD_BYTES,
  ) {
    this.verifier = new FileVerifier((a, b) => spans.read(a, b, false), disableVerification);
  }

  read(entry: FileMetadata, offset: number, length: number): Promise<Uint8Array> {
    const size = entry.uncompressedSize;
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
      return Promise.reject(this.fail(new RangeError(`invalid read of ${length} bytes at offset ${offset}`)));
    }
    if (offset >= size || length === 0) return Promise.resolve(new Uint8Array(0));
    const start = entry.uncompressedOffset + offset;
    const end = entry.uncompressedOffset + Math.min(size, offset + length);
    const firstRead = !this.touched.has(entry);
    this.touched.add(entry);
    if (this.readAheadSpans > 0) this.readAhead(entry, start, end);
    const bytes = this.readRange(entry, start, end);
    // after this read's own spans are on their way
    if (firstRead && size <= this.fileAheadBytes)
      this.spans.fetchAhead(
        this.spans.spanOf(entry.uncompressedOffset),
        this.spans.spanOf(entry.uncompressedOffset + size - 1),
      );
    return bytes;
  }

  private readRange(entry: FileMetadata, start: number, end: number): Promise<Uint8Array> {
    if (this.verifier.isVerified(entry)) {
      const hot = this.spans.readHot(start, end);
      if (hot) return Promise.resolve(hot);
      return this.spans.read(start, end).catch((e: unknown) => Promise.reject(this.fail(e)));
    }
    // First read of the file: its header and the wanted bytes are fetched together (often the
    // same span), so the read still ends within one fetch timeout; the bytes are handed out
    // only once the header has matched.
    return Promise.all([this.verifier.verify(entry), this.spans.read(start, end, false)]).then(
      ([, bytes]) => {
        this.spans.counters.bytesServed += bytes.length;
        return bytes;
      },
      (e: unknown) => {
        this.spans.counters.readErrors++;
        return Promise.reject(this.fail(e));
      },
    );
  }

  /** A sequential reader of a file gets the file's next spans fetched ahead of it. */
  private readAhead(entry: FileMetadata, start: number, end: number): void {
    const sequential = this.lastEnd.get(entry) === start;
    this.lastEnd.set(entry, end);
    if (!sequential) return;
    const fileEnd = entry.uncompressedOffset + entry.uncompressedSize;
    const last = this.spans.spanOf(end - 1);
    const fileLast = this.spans.spanOf(fileEnd - 1);
    if (fileLast > last) this.spans.readAhead(last + 1, Math.min(fileLast, last + this.readAheadSpans));
  }

  state(): LayerState {
    const s: LayerState = {
      digest: this.spans.digest,
      size: this.spans.ztoc.compressedArchiveSize,
      fetchedSize: this.spans.fetchedSize,
    };
    const err = this.lastError ?? this.spans.lastError?.message;
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
    const err = e instanceof Error ? e : new Error(String(e));
    this.lastError = err.message;
    return err;
  }
}

/** Opens a layer's span machinery (cache scan, gzip header check) and its file reader. */
export async function createLayerReader(opts: LayerReaderOptions): Promise<LayerReader> {
  const spans = await SpanManager.open({
    ztoc: opts.ztoc,
    zinfo: opts.zinfo,
    digest: opts.digest,
    fetcher: opts.fetcher,
    cache: opts.cache.layer(opts.digest),
    inflater: opts.inflater,
    maxSpanVerificationRetries: opts.maxSpanVerificationRetries,
    fetchTimeoutMs: opts.fetchTimeoutMs,
    activity: opts.activity,
  });
  return new LayerReader(
    spans,
    opts.disableVerification,
    opts.readAheadSpans ?? 2,
    opts.fileAheadBytes ?? DEFAULT_FILE_AHEAD_BYTES,
  );
}
