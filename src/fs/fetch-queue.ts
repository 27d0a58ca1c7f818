// Range fetches of one blob, scheduled to fill the link without starving on-demand reads
// (docs/snapshotter.md §4.3): callers ask for byte ranges with a priority; ranges asked for while
// the request slots are busy (or in the same tick) that touch or nearly touch are merged into one
// request, up to a size bound; at most `concurrency` requests run at once per blob (and, with a
// shared limiter, daemon-wide), and work ahead of need never takes the last slot.
import { DeadlineExceededError, UnavailableError } from "../errors/errors.js";
import type { Semaphore } from "../registry/semaphore.js";
import type { BlobFetcher } from "./blob-fetcher.js";

/** Who waits for a range: a read (0), work ahead of reads (1: readahead, prefetch), the background fetcher (2). */
export type FetchPriority = 0 | 1 | 2;

export interface FetchQueueOptions {
  /** Requests in flight at once for this blob (default 4). */
  concurrency?: number;
  /** Shared bound on requests across blobs (the daemon's). */
  limiter?: Semaphore;
  /** Largest merged request (default 1 MiB); a single larger range is still one request. */
  maxRequestBytes?: number;
  /** Ranges this close (bytes) are merged, the gap fetched too (default 16 KiB). */
  mergeGap?: number;
  /** Longest one request may take (default 60 s). */
  timeoutMs?: number;
  /** Bytes received (for counters). */
  onBytes?(n: number): void;
}

/** A request's priority, which its owner may raise while it waits (a read joining work ahead). */
export interface FetchTicket {
  priority: FetchPriority;
}

interface Waiter {
  start: number;
  end: number;
  ticket: FetchTicket;
  resolve(b: Uint8Array): void;
  reject(e: unknown): void;
}

export class FetchQueue {
  private readonly waiting: Waiter[] = [];
  private running = 0;
  private scheduled = false;
  private readonly concurrency: number;
  private readonly maxBytes: number;
  private readonly gap: number;
  private readonly timeoutMs: number;
  /** Requests started (for tests and traces). */
  requests = 0;

  constructor(
    readonly fetcher: BlobFetcher,
    private readonly opts: FetchQueueOptions = {},
  ) {
    this.concurrency = Math.max(1, opts.concurrency ?? 4);
    this.maxBytes = opts.maxRequestBytes ?? 1 << 20;
    this.gap = opts.mergeGap ?? 16 << 10;
    this.timeoutMs = opts.timeoutMs ?? 60_000;
  }

  /** Bytes [start, end) of the blob, fetched at the ticket's priority (read when a slot frees). */
  fetch(start: number, end: number, ticket: FetchTicket): Promise<Uint8Array> {
    if (end <= start) return Promise.resolve(new Uint8Array(0));
    return new Promise((resolve, reject) => {
      this.waiting.push({ start, end, ticket, resolve, reject });
      this.schedule();
    });
  }

  /** A waiting request's ticket was raised: it may take a slot kept for reads. */
  raised(): void {
    this.schedule();
  }

  /** Ranges waiting for a request slot. */
  get queued(): number {
    return this.waiting.length;
  }

  /** Fails everything waiting (the layer is closing). */
  abort(err: Error): void {
    for (const w of this.waiting.splice(0)) w.reject(err);
  }

  // Starting requests waits for the current tick to end, so the ranges of one read (or one
  // prefetch list) planned together meet in the queue and merge.
  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    while (this.waiting.length > 0 && this.running < this.concurrency) {
      const urgent = this.waiting.some((w) => w.ticket.priority === 0);
      // work ahead of reads keeps one slot free for them
      if (!urgent && this.running >= this.concurrency - 1 && this.concurrency > 1) return;
      const batch = this.takeBatch();
      this.running++;
      void this.run(batch).finally(() => {
        this.running--;
        this.schedule();
      });
    }
  }

  /**
   * The most urgent waiter (oldest first) and every waiter of the same priority whose range merges
   * with it (a read never waits for bytes fetched ahead of need).
   */
  private takeBatch(): Waiter[] {
    let best = 0;
    for (let k = 1; k < this.waiting.length; k++)
      if (this.waiting[k]!.ticket.priority < this.waiting[best]!.ticket.priority) best = k;
    const first = this.waiting.splice(best, 1)[0]!;
    const batch = [first];
    let lo = first.start;
    let hi = first.end;
    for (let grew = true; grew; ) {
      grew = false;
      for (let k = 0; k < this.waiting.length; k++) {
        const w = this.waiting[k]!;
        if (w.ticket.priority !== first.ticket.priority) continue;
        if (w.start > hi + this.gap || w.end < lo - this.gap) continue;
        const nlo = Math.min(lo, w.start);
        const nhi = Math.max(hi, w.end);
        if (nhi - nlo > this.maxBytes && nhi - nlo > hi - lo) continue;
        batch.push(w);
        this.waiting.splice(k--, 1);
        lo = nlo;
        hi = nhi;
        grew = true;
      }
    }
    return batch;
  }

  private async run(batch: Waiter[]): Promise<void> {
    const lo = Math.min(...batch.map((w) => w.start));
    const hi = Math.max(...batch.map((w) => w.end));
    let release: (() => void) | undefined;
    try {
      release = await this.opts.limiter?.acquire();
      this.requests++;
      const signal = AbortSignal.timeout(this.timeoutMs);
      let bytes: Uint8Array;
      try {
        [bytes] = (await this.fetcher.fetch([{ start: lo, end: hi }], signal)) as [Uint8Array];
      } catch (e) {
        if (signal.aborted)
          throw new DeadlineExceededError(
            `fetching bytes ${lo}-${hi} of ${this.fetcher.digest}: timed out after ${this.timeoutMs} ms`,
            {
              cause: e,
            },
          );
        throw e;
      }
      this.opts.onBytes?.(bytes.length);
      for (const w of batch) {
        if (bytes.length < w.end - lo)
          w.reject(new UnavailableError(`short read: ${bytes.length} of ${hi - lo} bytes at ${lo}`));
        else w.resolve(bytes.subarray(w.start - lo, w.end - lo));
      }
    } catch (e) {
      for (const w of batch) w.reject(e);
    } finally {
      release?.();
    }
  }
}
