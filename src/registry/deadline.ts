// How long one registry operation may wait for the registry: every wait (for a response, for the
// next bytes of a body, for an upload to be taken) is bounded, across retries and endpoints, and
// the allowance starts again whenever bytes move. Time the caller spends with a chunk (a stream's
// consumer, the source of an upload) is not the registry's and does not count. When a wait runs
// out, `signal` aborts with a DeadlineExceededError naming what was awaited and for how long.
import { setMaxListeners } from "node:events";
import { DeadlineExceededError } from "../errors/errors.js";

export class Deadline {
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  /** When the current allowance started (the wait began, or bytes last moved). */
  private since = 0;
  private paused = true;
  private what = "";
  /** Bytes moved since the current wait began. */
  private bytes = 0;

  /** `ms` ≤ 0 or undefined: no deadline (`signal` never aborts). */
  constructor(readonly ms: number | undefined) {
    // every request of the operation (parallel blob uploads, range fetches, retries) listens on this
    // signal until it completes: more than Node's 10 at once is normal here, not a leak, and ends
    // with the operation
    setMaxListeners(0, this.controller.signal);
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Waiting on the registry for `what` (e.g. "HEAD manifest https://…"); keeps a running allowance. */
  wait(what: string): void {
    this.throwIfExpired();
    if (this.what !== what) {
      this.what = what;
      this.bytes = 0;
    }
    if (this.paused) {
      this.paused = false;
      this.since = Date.now();
    }
    if (this.timer === undefined && this.ms !== undefined && this.ms > 0) this.arm(this.ms);
  }

  /** `n` bytes moved: the allowance starts again. */
  progress(n: number): void {
    this.bytes += n;
    this.since = Date.now();
  }

  /** The caller holds control (a chunk handed out, an upload source read): the clock stops. */
  pause(): void {
    this.paused = true;
  }

  /** The operation is over. */
  end(): void {
    this.paused = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** `p`, or the deadline's error as soon as it expires (`p` itself is left to settle). */
  race<T>(p: Promise<T>): Promise<T> {
    const signal = this.signal;
    if (signal.aborted) return Promise.reject(signal.reason);
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => reject(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
      p.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
    });
  }

  /** Throws the deadline's error once it expired (an aborted request's own error is replaced by it). */
  throwIfExpired(): void {
    if (this.signal.aborted) throw this.signal.reason;
  }

  private arm(ms: number): void {
    this.timer = setTimeout(() => this.check(), ms);
    this.timer.unref();
  }

  private check(): void {
    this.timer = undefined;
    if (this.paused) return;
    const left = this.since + this.ms! - Date.now();
    if (left > 0) {
      this.arm(left);
      return;
    }
    const waited = formatDuration(this.ms!);
    const msg =
      this.bytes > 0
        ? `${this.what}: stalled for ${waited} after ${this.bytes} bytes (deadline)`
        : `${this.what}: no response within ${waited} (deadline)`;
    this.controller.abort(new DeadlineExceededError(msg));
  }
}

/** `2s`, `1.5s`, `2m`, `1m30s`, `250ms`: how long, as the `--timeout` flag takes it. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  const s = ms / 1000;
  if (s < 60) return `${Number.isInteger(s) ? s : s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  const rest = Math.round(s - m * 60);
  return rest ? `${m}m${rest}s` : `${m}m`;
}
