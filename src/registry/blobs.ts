// Reading blobs (containerd's fetcher): existence checks, whole blobs verified before they are
// returned, streams that resume a dropped connection with a Range request and release their last
// chunk only once the digest matched, and byte ranges — several in one multipart/byteranges
// request where the registry supports it.
import type { Endpoints } from "./endpoints.js";
import { checkSize, digester, verifyDigest } from "./digest.js";
import {
  DigestMismatchError,
  InvalidArgumentError,
  isRetryableNetworkError,
  NotFoundError,
  networkError,
  redactUrl,
  UnavailableError,
  UnsupportedError,
} from "./errors.js";
import { discard, header, parseContentRange, parseMultipartByteranges, readAll, type Response } from "./http.js";
import { backoffDelay, RetryableError, sleep, withRetries } from "./retry.js";
import type { Target, Transport } from "./transport.js";
import type { ImageRef } from "./types.js";

export interface ByteRange {
  /** First byte (inclusive). */
  start: number;
  /** End (exclusive). */
  end: number;
}

/** A blob GET under way: its response, the first chunk already read, and its concurrency slot. */
interface OpenBlob {
  res: Response;
  it: AsyncIterator<Buffer>;
  first: IteratorResult<Buffer>;
  /** Bytes at the start of the body to drop (a resume answered with the whole blob). */
  skip: number;
  close(): void;
}

export class Blobs {
  /** Registry hosts that answered a multi-range request with one range: ranges go one by one there. */
  private readonly multiRangeUnsupported = new Set<string>();

  constructor(
    private readonly transport: Transport,
    private readonly endpoints: Endpoints,
    /** Most byte ranges asked in one multi-range request. */
    private readonly maxRangesPerRequest: number,
  ) {}

  /** Size of a blob if the repository has it, else undefined. */
  async exists(ref: ImageRef, digest: string): Promise<number | undefined> {
    return this.endpoints.withEndpoints(ref, "pull", ["pull"], (t) => this.existsAt(t, digest));
  }

  /** HEAD on one endpoint (a push asks the endpoint it pushes to). */
  async existsAt(t: Target, digest: string): Promise<number | undefined> {
    const url = this.endpoints.repoUrl(t, `/blobs/${digest}`);
    try {
      return await this.transport.call(
        t,
        "HEAD blob",
        { method: "HEAD", url, followRedirects: true },
        [200],
        async (res) => {
          await discard(res.body);
          const len = header(res.headers, "content-length");
          return len !== undefined && /^\d+$/.test(len) ? Number(len) : 0;
        },
      );
    } catch (e) {
      if (e instanceof NotFoundError) return undefined;
      throw e;
    }
  }

  /** A whole blob, digest (and size, if given) verified; a mismatch is never returned. */
  async get(ref: ImageRef, digest: string, opts: { size?: number; verify?: boolean } = {}): Promise<Uint8Array> {
    digester(digest);
    return this.endpoints.withEndpoints(ref, "pull", ["pull"], async (t) => {
      const url = this.endpoints.repoUrl(t, `/blobs/${digest}`);
      return this.transport.call(t, "GET blob", { method: "GET", url, followRedirects: true }, [200], async (res) => {
        const bytes = await readAll(res.body, { limit: opts.size, what: `blob ${digest}`, deadline: t.deadline });
        if (opts.verify !== false) verifyDigest(digest, bytes, res.url);
        checkSize(digest, bytes.length, opts.size, "blob size", res.url);
        return bytes;
      });
    });
  }

  /**
   * Streams a blob. Until the first byte arrives, a missing blob or a failing endpoint moves on to
   * the next endpoint (mirrors first); once bytes flow, a dropped connection resumes with a Range
   * request on the endpoint serving them. The digest is checked at the end and the last chunk is
   * only yielded once it matched (a corrupt blob never completes).
   */
  async *stream(
    ref: ImageRef,
    digest: string,
    opts: { size?: number } = {},
  ): AsyncGenerator<Uint8Array, void, undefined> {
    const { hash, algorithm } = digester(digest);
    // one deadline for the whole stream: it runs while the registry is awaited, restarts with
    // every chunk, and stops while the consumer holds a chunk
    const deadline = this.endpoints.deadline();
    let t: Target | undefined;
    let url = "";
    let s: OpenBlob | undefined;
    try {
      s = await this.endpoints.withEndpoints(
        ref,
        "pull",
        ["pull"],
        async (target) => {
          t = target;
          url = this.endpoints.repoUrl(target, `/blobs/${digest}`);
          return withRetries(() => this.open(target, url, 0), this.transport.retryOpts(target)).catch((e: unknown) => {
            throw networkError("GET blob", url, e);
          });
        },
        deadline,
      );
      const retry = this.transport.retryOpts(t);
      const waitingFor = `GET blob ${redactUrl(url)}`;
      let received = 0;
      let pending: Uint8Array | undefined;
      let failures = 0;
      for (;;) {
        try {
          s ??= await this.open(t!, url, received);
          for (let r = s.first; !r.done; r = await s.it.next()) {
            let c = new Uint8Array(r.value.buffer, r.value.byteOffset, r.value.length);
            deadline.progress(c.length);
            if (s.skip > 0) {
              const n = Math.min(s.skip, c.length);
              s.skip -= n;
              c = c.subarray(n);
              if (c.length === 0) continue;
            }
            hash.update(c);
            received += c.length;
            if (opts.size !== undefined && received > opts.size) {
              throw new DigestMismatchError(digest, `more than ${opts.size} bytes`, {
                what: "blob size",
                url: redactUrl(url),
              });
            }
            const prev = pending;
            pending = c;
            if (prev) {
              deadline.pause();
              yield prev;
              deadline.wait(waitingFor);
            }
          }
          break;
        } catch (e) {
          s?.close();
          s = undefined;
          deadline.throwIfExpired();
          const retryable = e instanceof RetryableError || isRetryableNetworkError(e);
          if (!retryable || failures >= retry.retries)
            throw networkError("GET blob", url, e instanceof RetryableError ? e.final : e);
          failures++;
          const retryAfter = e instanceof RetryableError ? e.retryAfterMs : undefined;
          await sleep(backoffDelay(failures, retry, retryAfter), deadline.signal);
        }
      }
      const actual = `${algorithm}:${hash.digest("hex")}`;
      if (actual !== digest) throw new DigestMismatchError(digest, actual, { what: "blob", url: redactUrl(url) });
      checkSize(digest, received, opts.size, "blob size", url);
      deadline.end();
      if (pending) yield pending;
    } finally {
      s?.close();
      deadline.end();
    }
  }

  /** One GET of a blob from byte `from` on, up to its first chunk (no retries). */
  private async open(t: Target, url: string, from: number): Promise<OpenBlob> {
    const release = await this.transport.acquire();
    let res: Response | undefined;
    try {
      const headers: Record<string, string> = from > 0 ? { range: `bytes=${from}-` } : {};
      res = await this.transport.checked(
        t,
        "GET blob",
        { method: "GET", url, headers, followRedirects: true },
        [200, 206],
      );
      let skip = 0;
      if (from > 0) {
        if (res.status === 200) skip = from;
        else if (parseContentRange(header(res.headers, "content-range"))?.start !== from) {
          throw new UnsupportedError(`GET blob: ${redactUrl(url)}: resumed range does not start at ${from}`);
        }
      }
      const body = res.body;
      const it = (body as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
      const first = await it.next();
      let closed = false;
      return {
        res,
        it,
        first,
        skip,
        close: () => {
          if (closed) return;
          closed = true;
          body.destroy();
          release();
        },
      };
    } catch (e) {
      res?.body.destroy();
      release();
      throw e;
    }
  }

  /** Bytes [start, end) of a blob by HTTP Range (206; a 200 full body is verified and sliced). */
  async fetchRange(ref: ImageRef, digest: string, start: number, end: number): Promise<Uint8Array> {
    checkRange({ start, end });
    if (end === start) return new Uint8Array(0);
    return this.endpoints.withEndpoints(ref, "pull", ["pull"], async (t) => {
      const url = this.endpoints.repoUrl(t, `/blobs/${digest}`);
      return this.transport.call(
        t,
        "GET blob range",
        { method: "GET", url, headers: { range: `bytes=${start}-${end - 1}` }, followRedirects: true },
        [200, 206],
        async (res) => {
          const bytes = await readAll(res.body, {
            expected: res.status === 206 ? end - start : undefined,
            deadline: t.deadline,
          });
          if (res.status === 200) {
            verifyDigest(digest, bytes, res.url);
            if (end > bytes.length)
              throw new InvalidArgumentError(`range ${start}-${end} beyond blob size ${bytes.length}`);
            return bytes.subarray(start, end);
          }
          const cr = parseContentRange(header(res.headers, "content-range"));
          if (!cr || cr.start !== start || cr.end !== end || bytes.length !== end - start) {
            throw new UnavailableError(
              `GET blob range: ${redactUrl(res.url)}: answered ${header(res.headers, "content-range") ?? "no Content-Range"} with ${bytes.length} bytes for ${start}-${end - 1}`,
            );
          }
          return bytes;
        },
      );
    });
  }

  /**
   * Several ranges of one blob: one multi-range request (multipart/byteranges) where the server
   * supports it, else one request per range. Results are in the order of `ranges`.
   */
  async fetchRanges(ref: ImageRef, digest: string, ranges: ByteRange[]): Promise<Uint8Array[]> {
    ranges.forEach(checkRange);
    const wanted = ranges.map((r, i) => ({ ...r, i })).filter((r) => r.end > r.start);
    const out: Uint8Array[] = ranges.map(() => new Uint8Array(0));
    const oneByOne = (rs: typeof wanted) =>
      Promise.all(
        rs.map(async (r) => {
          out[r.i] = await this.fetchRange(ref, digest, r.start, r.end);
        }),
      );
    if (wanted.length === 0) return out;
    if (wanted.length === 1 || this.multiRangeUnsupported.has(ref.host)) {
      await oneByOne(wanted);
      return out;
    }
    const per = this.maxRangesPerRequest;
    const batches: (typeof wanted)[] = [];
    for (let i = 0; i < wanted.length; i += per) batches.push(wanted.slice(i, i + per));
    const missing: typeof wanted = [];
    await Promise.all(
      batches.map(async (batch) => {
        const got = await this.endpoints.withEndpoints(ref, "pull", ["pull"], async (t) => {
          const url = this.endpoints.repoUrl(t, `/blobs/${digest}`);
          const range = "bytes=" + batch.map((r) => `${r.start}-${r.end - 1}`).join(",");
          return this.transport.call(
            t,
            "GET blob ranges",
            { method: "GET", url, headers: { range }, followRedirects: true },
            [200, 206],
            async (res) => {
              const bytes = await readAll(res.body, { deadline: t.deadline });
              if (res.status === 200) {
                verifyDigest(digest, bytes, res.url);
                return [{ start: 0, end: bytes.length, data: bytes }];
              }
              const ct = header(res.headers, "content-type") ?? "";
              const b = /multipart\/byteranges.*boundary="?([^";]+)"?/i.exec(ct);
              if (b) return parseMultipartByteranges(bytes, b[1]!);
              const cr = parseContentRange(header(res.headers, "content-range"));
              if (!cr || bytes.length !== cr.end - cr.start) return [];
              this.multiRangeUnsupported.add(ref.host);
              return [{ start: cr.start, end: cr.end, data: bytes }];
            },
          );
        });
        for (const r of batch) {
          const part = got.find((p) => p.start <= r.start && r.end <= p.end);
          if (part) out[r.i] = part.data.subarray(r.start - part.start, r.end - part.start);
          else missing.push(r);
        }
      }),
    );
    await oneByOne(missing);
    return out;
  }
}

function checkRange(r: ByteRange): void {
  if (!Number.isSafeInteger(r.start) || !Number.isSafeInteger(r.end) || r.start < 0 || r.end < r.start) {
    throw new InvalidArgumentError(`invalid byte range [${r.start}, ${r.end})`);
  }
}
