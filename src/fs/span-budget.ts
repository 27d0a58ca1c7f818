// A process-wide bound on the bytes of spans being produced at once (fetched, sent to the inflate
// worker, inflated, written to the cache): what a layer server holds in memory while it serves
// grows with this bound, not with the image or with how many spans readers, readahead and the
// background fetcher want at once. Waiting work is admitted most urgent first (reads before
// readahead before background fetches), in arrival order within a priority; a priority raised
// while waiting (a read joining readahead) counts when the next waiter is chosen.
import type { FetchTicket } from "./fetch-queue.js";

/** Default bound: a few 4 MiB spans with their compressed bytes and the worker's copy of them. */
export const DEFAULT_SPAN_BUDGET_BYTES = 32 << 20;

interface Waiter {
  bytes: number;
  ticket: FetchTicket;
  seq: number;
  admit(): void;
}

export class SpanBudget {
  private used = 0;
  private seq = 0;
  private readonly waiting: Waiter[] = [];
  /** Largest number of bytes held at once (for tests and traces). */
  peak = 0;

  constructor(readonly limit: number = DEFAULT_SPAN_BUDGET_BYTES) {
    if (!(limit > 0)) throw new RangeError(`span budget must be > 0 bytes, got ${limit}`);
  }

  /** Bytes held now. */
  get held(): number {
    return this.used;
  }

  /**
   * Waits until `bytes` fit (a request larger than the whole bound is admitted alone) and returns
   * the release. Nothing that holds bytes may wait for more, so the budget cannot deadlock.
   */
  async acquire(bytes: number, ticket: FetchTicket): Promise<() => void> {
    if (this.waiting.length === 0 && this.fits(bytes)) this.take(bytes);
    else await new Promise<void>((admit) => this.waiting.push({ bytes, ticket, seq: this.seq++, admit }));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.used -= bytes;
      this.admitWaiting();
    };
  }

  private fits(bytes: number): boolean {
    return this.used === 0 || this.used + bytes <= this.limit;
  }

  private take(bytes: number): void {
    this.used += bytes;
    this.peak = Math.max(this.peak, this.used);
  }

  private admitWaiting(): void {
    while (this.waiting.length > 0) {
      let best = 0;
      for (let k = 1; k < this.waiting.length; k++) {
        const w = this.waiting[k]!;
        const b = this.waiting[best]!;
        if (w.ticket.priority < b.ticket.priority || (w.ticket.priority === b.ticket.priority && w.seq < b.seq))
          best = k;
      }
      const next = this.waiting[best]!;
      if (!this.fits(next.bytes)) return;
      this.waiting.splice(best, 1);
      this.take(next.bytes);
      next.admit();
    }
  }
}
