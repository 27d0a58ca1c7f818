// The background fetcher (docs/snapshotter.md §4.5): one daemon-wide loop that, at low priority,
// fetches the spans of registered layers in order (compressed, into the span cache) until each
// layer is fully local. It keeps quiet for a silence period after a mount asks it to, waits while
// on-demand reads are waiting, spends one token per `fetchPeriodMs`, holds a bounded queue, and
// stops on its AbortSignal. A layer whose span fails stops being fetched (it stays lazy).
//
// Prefetch (§4.6) lives here too: resolving a layer's listed span ranges before its mount completes.
import { sleep } from "../registry/retry.js";
import type { PrefetchSpan } from "../formats/prefetch.js";
import type { ReadActivity, SpanManager } from "./span-manager.js";
import { raceSignal } from "./blob-fetcher.js";

export interface BackgroundFetcherOptions {
  /** `silence_period_msec` (30 000): the pause after `pause()`. */
  silencePeriodMs?: number;
  /** `fetch_period_msec` (500): one span fetch per period, daemon-wide. */
  fetchPeriodMs?: number;
  /** `max_queue_size` (300; negative ⇒ unbounded). */
  maxQueueSize?: number;
  /** `drop_policy` when the queue is full: drop the layer being added (default) or the oldest. */
  dropPolicy?: "newest" | "oldest";
  /** On-demand reads waiting (the loop waits while there are any). */
  activity?: ReadActivity;
  /** Stops the loop. */
  signal?: AbortSignal;
  /** Progress and failures, for the daemon's log. */
  onEvent?(e: BackgroundEvent): void;
}

export type BackgroundOutcome = "complete" | "failed" | "dropped" | "stopped";

export type BackgroundEvent =
  | { kind: "span"; layer: string; span: number }
  | { kind: "span-failed"; layer: string; span: number; error: Error }
  | { kind: "layer-done"; layer: string; outcome: BackgroundOutcome; ms: number };

export interface BackgroundMetrics {
  /** `background_span_fetch_count` */
  spanFetchCount: number;
  /** `background_span_fetch_failure_count` */
  spanFetchFailureCount: number;
  /** `background_fetch_work_queue_evicted` */
  workQueueEvicted: number;
  /** `background_fetch` of the last completed layer (ms). */
  lastLayerMs: number;
}

interface Work {
  spans: SpanManager;
  next: number;
  started: number;
  done: Promise<BackgroundOutcome>;
  finish(o: BackgroundOutcome): void;
  finished: boolean;
}

export class BackgroundFetcher {
  readonly metrics: BackgroundMetrics = {
    spanFetchCount: 0,
    spanFetchFailureCount: 0,
    workQueueEvicted: 0,
    lastLayerMs: 0,
  };
  private readonly queue: Work[] = [];
  /** Layers with a span fetch under way (re-queued when it ends). */
  private readonly busy = new Set<Work>();
  private readonly opts: Required<Omit<BackgroundFetcherOptions, "activity" | "signal" | "onEvent">>;
  private readonly abort = new AbortController();
  private pauseRequested = false;
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;

  constructor(private readonly options: BackgroundFetcherOptions = {}) {
    this.opts = {
      silencePeriodMs: options.silencePeriodMs ?? 30_000,
      fetchPeriodMs: options.fetchPeriodMs ?? 500,
      maxQueueSize: options.maxQueueSize ?? 300,
      dropPolicy: options.dropPolicy ?? "newest",
    };
    const outer = options.signal;
    if (outer) {
      if (outer.aborted) this.abort.abort(outer.reason);
      else outer.addEventListener("abort", () => this.stop(), { once: true });
    }
  }

  /** Layers waiting for their next span (the `background_fetch_work_queue_size` gauge). */
  get queueSize(): number {
    return this.queue.length + this.busy.size;
  }

  /**
   * Registers a layer; resolves with how its background fetch ended. A layer already local
   * completes at once; a full queue drops per the policy.
   */
  add(spans: SpanManager): Promise<BackgroundOutcome> {
    let finish!: (o: BackgroundOutcome) => void;
    const done = new Promise<BackgroundOutcome>((r) => (finish = r));
    const w: Work = { spans, next: 0, started: Date.now(), done, finished: false, finish: () => {} };
    w.finish = (o) => {
      if (w.finished) return;
      w.finished = true;
      if (o === "complete") this.metrics.lastLayerMs = Date.now() - w.started;
      this.options.onEvent?.({ kind: "layer-done", layer: spans.digest, outcome: o, ms: Date.now() - w.started });
      finish(o);
    };
    if (this.abort.signal.aborted) w.finish("stopped");
    else if (spans.fullyLocal) w.finish("complete");
    else {
      const max = this.opts.maxQueueSize;
      if (max >= 0 && this.queueSize >= max) {
        this.metrics.workQueueEvicted++;
        if (this.opts.dropPolicy === "newest" || this.queue.length === 0) {
          w.finish("dropped");
          return done;
        }
        this.queue.shift()!.finish("dropped");
      }
      this.enqueue(w);
    }
    return done;
  }

  /** Asks for a silence period before the next fetch (the first mount of an image). */
  pause(): void {
    this.pauseRequested = true;
  }

  /** Starts the loop (idempotent); resolves when it has stopped. */
  start(): Promise<void> {
    this.loop ??= this.run();
    return this.loop;
  }

  /** Stops the loop; layers not yet complete end as "stopped". */
  async stop(): Promise<void> {
    if (!this.abort.signal.aborted) this.abort.abort(new Error("background fetcher stopped"));
    this.wake?.();
    if (this.loop) await this.loop;
    else this.drain();
  }

  /** Ends every layer still waiting as "stopped". */
  private drain(): void {
    for (const w of [...this.queue, ...this.busy]) w.finish("stopped");
    this.queue.length = 0;
  }

  private enqueue(w: Work): void {
    this.queue.push(w);
    this.wake?.();
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    try {
      while (!signal.aborted) {
        if (this.pauseRequested) {
          this.pauseRequested = false;
          await sleep(this.opts.silencePeriodMs, signal);
          continue;
        }
        if (this.queue.length === 0) {
          await new Promise<void>((r) => (this.wake = r));
          this.wake = undefined;
          continue;
        }
        if (this.options.activity && this.options.activity.waiting > 0) {
          await raceSignal(this.options.activity.idle(), signal);
          continue; // a pause may have been asked meanwhile
        }
        const w = this.queue.shift()!;
        if (!this.step(w)) continue; // nothing fetched: no token spent
        await sleep(this.opts.fetchPeriodMs, signal);
      }
    } catch (e) {
      if (!signal.aborted) throw e;
    } finally {
      this.drain();
    }
  }

  /** Starts the fetch of w's next missing span; false when there was nothing to fetch. */
  private step(w: Work): boolean {
    if (w.finished) return false;
    if (w.spans.isClosed) {
      w.finish("stopped");
      return false;
    }
    let i = w.spans.nextMissing(w.next);
    if (i < 0) i = w.spans.nextMissing(0); // a span dropped from the cache behind us
    if (i < 0) {
      w.finish("complete");
      return false;
    }
    w.next = i + 1;
    this.busy.add(w);
    w.spans.fetchCompressed(i).then(
      () => {
        this.busy.delete(w);
        this.metrics.spanFetchCount++;
        this.options.onEvent?.({ kind: "span", layer: w.spans.digest, span: i });
        if (this.abort.signal.aborted) w.finish("stopped");
        else if (w.spans.fullyLocal) w.finish("complete");
        else this.enqueue(w);
      },
      (e: unknown) => {
        this.busy.delete(w);
        this.metrics.spanFetchFailureCount++;
        this.options.onEvent?.({
          kind: "span-failed",
          layer: w.spans.digest,
          span: i,
          error: e instanceof Error ? e : new Error(String(e)),
        });
        w.finish("failed");
      },
    );
    return true;
  }
}

export interface PrefetchResult {
  /** Spans now held uncompressed. */
  resolved: number;
  /** Failures (logged by the caller, never fatal). */
  errors: Error[];
}

/**
 * Prefetch (§4.6): resolves every span of the inclusive ranges into the cache (uncompressed, as
 * an on-demand read would), all queued at once at low priority: the layer's fetch queue merges
 * adjacent spans into requests and runs a few at a time. Ids beyond the layer are reported as errors.
 */
export async function prefetchSpans(
  spans: SpanManager,
  ranges: readonly Pick<PrefetchSpan, "startSpan" | "endSpan">[],
): Promise<PrefetchResult> {
  const ids = new Set<number>();
  const errors: Error[] = [];
  for (const r of ranges) {
    if (
      !Number.isSafeInteger(r.startSpan) ||
      !Number.isSafeInteger(r.endSpan) ||
      r.startSpan < 0 ||
      r.endSpan < r.startSpan ||
      r.endSpan >= spans.spanCount
    ) {
      errors.push(
        new RangeError(
          `prefetch span range ${r.startSpan}-${r.endSpan} is outside layer ${spans.digest} (${spans.spanCount} spans)`,
        ),
      );
      continue;
    }
    for (let i = r.startSpan; i <= r.endSpan; i++) ids.add(i);
  }
  const results = await Promise.allSettled(spans.prefetch([...ids].sort((a, b) => a - b)));
  let resolved = 0;
  for (const r of results) {
    if (r.status === "fulfilled") resolved++;
    else errors.push(r.reason instanceof Error ? r.reason : new Error(String(r.reason)));
  }
  return { resolved, errors };
}
