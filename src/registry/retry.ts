// Retry policy: exponential backoff with full jitter on transient failures (5xx, 429, connection
// resets, timeouts), honouring `Retry-After` (delta-seconds or HTTP date), with bounded attempts.
import { isRetryableNetworkError } from "./errors.js";

export interface RetryOptions {
  /** Retries after the first attempt (default 4). */
  retries?: number;
  /** First backoff in ms (default 200); doubles per attempt. */
  baseDelayMs?: number;
  /** Cap of one backoff in ms (default 10 s); also caps Retry-After. */
  maxDelayMs?: number;
}

/** HTTP statuses worth retrying. */
export function isRetryableStatus(status: number): boolean {
  return status === 429 || status === 408 || (status >= 500 && status !== 501 && status !== 505);
}

/** Parses `Retry-After` into ms: delta-seconds or an HTTP date; undefined if absent/invalid. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined) return undefined;
  const s = v.trim();
  if (/^\d+$/.test(s)) return Number(s) * 1000;
  const t = Date.parse(s);
  if (Number.isNaN(t)) return undefined;
  return Math.max(0, t - now);
}

/** Backoff before retry `attempt` (1-based): full jitter over base·2^(attempt-1), capped. */
export function backoffDelay(attempt: number, opts: RetryOptions = {}, retryAfterMs?: number): number {
  const base = opts.baseDelayMs ?? 200;
  const max = opts.maxDelayMs ?? 10_000;
  if (retryAfterMs !== undefined) return Math.min(retryAfterMs, max);
  const ceiling = Math.min(max, base * 2 ** (attempt - 1));
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Thrown inside a retried operation to ask for another attempt (with an optional server delay).
 * An internal signal between an attempt and its retry loop: the loop always throws `final` (a
 * SociError) instead, so it never reaches a caller of the client.
 */
export class RetryableError extends Error {
  override name = "RetryableError";
  constructor(
    readonly final: Error,
    readonly retryAfterMs?: number,
  ) {
    super(final.message, { cause: final });
  }
}

/**
 * Runs `fn` until it succeeds, throws a non-retryable error, or attempts run out. Retryable:
 * `RetryableError` (its `final` error is thrown when attempts run out) and network errors. Once
 * `signal` aborted, its reason is thrown (a backoff sleep ends at once).
 */
export async function withRetries<T>(
  fn: (attempt: number) => Promise<T>,
  opts: RetryOptions & {
    signal?: AbortSignal;
    onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
    /** Failures not worth retrying here after all (e.g. an unreachable mirror with a fallback). */
    giveUp?: (err: unknown) => boolean;
  } = {},
): Promise<T> {
  const retries = opts.retries ?? 4;
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (opts.signal?.aborted) throw opts.signal.reason;
      const retryable = (err instanceof RetryableError || isRetryableNetworkError(err)) && !opts.giveUp?.(err);
      if (!retryable || attempt >= retries) {
        throw err instanceof RetryableError ? err.final : err;
      }
      const delay = backoffDelay(attempt + 1, opts, err instanceof RetryableError ? err.retryAfterMs : undefined);
      opts.onRetry?.(err, attempt + 1, delay);
      await sleep(delay, opts.signal);
    }
  }
}
