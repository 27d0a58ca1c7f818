// Random access to the compressed bytes of one layer blob: a registry implementation over the
// RegistryClient (ranged GETs with its retries, auth and mirrors) and a local-file one (tests,
// benchmarks, content already on disk).
import { open, type FileHandle } from "node:fs/promises";
import type { ByteRange, RefLike, RegistryClient } from "../registry/client.js";
import { readAt } from "./positioned-io.js";

export type { ByteRange };

export interface BlobFetcher {
  /** Digest of the blob ("sha256:…"). */
  readonly digest: string;
  /** Size of the blob in bytes. */
  readonly size: number;
  /**
   * The bytes of every range, in order. Ranges that touch or overlap are asked as one range;
   * disjoint groups go in one multi-range request where the server supports it. Rejects with the
   * signal's reason when `signal` aborts first.
   */
  fetch(ranges: ByteRange[], signal?: AbortSignal): Promise<Uint8Array[]>;
}

export class BlobRangeError extends Error {
  override name = "BlobRangeError";
}

/** Ranges sorted and merged where they touch or overlap (consecutive gzip spans share a byte). */
export function coalesce(ranges: readonly ByteRange[]): ByteRange[] {
  const sorted = ranges
    .filter((r) => r.end > r.start)
    .map((r) => ({ start: r.start, end: r.end }))
    .sort((a, b) => a.start - b.start);
  const out: ByteRange[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.start <= last.end) last.end = Math.max(last.end, r.end);
    else out.push(r);
  }
  return out;
}

function checkRanges(ranges: readonly ByteRange[], size: number): void {
  for (const r of ranges) {
    if (
      !Number.isSafeInteger(r.start) ||
      !Number.isSafeInteger(r.end) ||
      r.start < 0 ||
      r.end < r.start ||
      r.end > size
    ) {
      throw new BlobRangeError(`invalid byte range [${r.start}, ${r.end}) of a blob of ${size} bytes`);
    }
  }
}

/** Slices each wanted range out of the merged pieces that were fetched. */
function sliceOut(
  ranges: readonly ByteRange[],
  merged: readonly ByteRange[],
  data: readonly Uint8Array[],
): Uint8Array[] {
  return ranges.map((r) => {
    if (r.end === r.start) return new Uint8Array(0);
    const i = merged.findIndex((m) => m.start <= r.start && r.end <= m.end);
    const m = merged[i]!;
    const bytes = data[i]!;
    if (bytes.length !== m.end - m.start) {
      throw new BlobRangeError(`short read: ${bytes.length} of ${m.end - m.start} bytes at ${m.start}`);
    }
    return bytes.subarray(r.start - m.start, r.end - m.start);
  });
}

/** Rejects with the signal's reason as soon as it aborts; the work itself is left to finish. */
export function raceSignal<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}

/** A blob in a registry repository. */
export class RegistryBlobFetcher implements BlobFetcher {
  /** When a request for this blob last succeeded (ms since the epoch; 0: never). */
  lastSuccess = 0;

  constructor(
    private readonly client: RegistryClient,
    /** Any reference of the repository holding the blob (tag or digest). */
    private readonly ref: RefLike,
    readonly digest: string,
    readonly size: number,
  ) {}

  async fetch(ranges: ByteRange[], signal?: AbortSignal): Promise<Uint8Array[]> {
    checkRanges(ranges, this.size);
    const merged = coalesce(ranges);
    if (merged.length === 0) return ranges.map(() => new Uint8Array(0));
    // The client has no cancellation: an abandoned request runs to its own timeout, unused.
    const data =
      merged.length === 1
        ? [await raceSignal(this.client.fetchRange(this.ref, this.digest, merged[0]!.start, merged[0]!.end), signal)]
        : await raceSignal(this.client.fetchRanges(this.ref, this.digest, merged), signal);
    this.lastSuccess = Date.now();
    return sliceOut(ranges, merged, data);
  }

  /**
   * The reference's blob check: unless a request succeeded within `validMs`, GET the blob's first
   * byte (through the client's hosts: mirrors first, then the registry). Rejects when no host
   * serves it.
   */
  async check(validMs: number, signal?: AbortSignal): Promise<void> {
    if (this.lastSuccess > 0 && Date.now() - this.lastSuccess < validMs) return;
    await this.fetch([{ start: 0, end: Math.min(1, this.size) }], signal);
  }
}

/** A blob in a local file (reads are positioned, never the whole file). */
export class FileBlobFetcher implements BlobFetcher {
  private handle: Promise<FileHandle> | undefined;

  constructor(
    private readonly path: string,
    readonly digest: string,
    readonly size: number,
  ) {}

  async fetch(ranges: ByteRange[], signal?: AbortSignal): Promise<Uint8Array[]> {
    checkRanges(ranges, this.size);
    signal?.throwIfAborted();
    const merged = coalesce(ranges);
    this.handle ??= open(this.path, "r").catch((e: unknown) => {
      this.handle = undefined;
      throw e;
    });
    const fh = await this.handle;
    const data = await Promise.all(
      merged.map(async (m) => {
        const buf = new Uint8Array(m.end - m.start);
        return buf.subarray(0, await readAt(fh, buf, m.start));
      }),
    );
    return sliceOut(ranges, merged, data);
  }

  async close(): Promise<void> {
    const h = this.handle;
    this.handle = undefined;
    if (h) await (await h).close();
  }
}
