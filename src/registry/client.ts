// OCI distribution API client on undici: resolve, manifests, blobs (whole, streamed, ranges),
// uploads (monolithic, chunked, cross-repository mount), tags, referrers (API + fallback tag).
//
// Every request asks the Authorizer first and answers a 401 challenge once; transient failures
// (5xx, 429, resets, timeouts) are retried with backoff honouring Retry-After; blob GETs follow
// redirects manually and never forward Authorization to another origin; whole blobs are verified
// against their digest before they are returned, streams before their last chunk is released.

import { createHash, type Hash } from "node:crypto";
import { readFileSync } from "node:fs";
import type { IncomingHttpHeaders } from "node:http";
import { rootCertificates } from "node:tls";
import type { Dispatcher } from "undici";
import { Agent } from "./undici-agent.js";
import {
  MediaTypeDockerSchema2Manifest,
  MediaTypeDockerSchema2ManifestList,
  MediaTypeImageIndex,
  MediaTypeImageManifest,
  marshalIndex,
  parseIndex,
  parseManifest,
  type Descriptor,
} from "../formats/oci.js";
import {
  DigestMismatchError,
  InvalidArgumentError,
  NotFoundError,
  UnauthorizedError,
  UnavailableError,
  UnsupportedError,
  errorFromResponse,
  redactUrl,
} from "./errors.js";
import { SociError } from "../errors/errors.js";
import { formatReference, manifestReference, parseReference, referrersTag, withReference } from "./reference.js";
import {
  RetryableError,
  backoffDelay,
  isRetryableNetworkError,
  isRetryableStatus,
  parseRetryAfter,
  sleep,
  withRetries,
} from "./retry.js";
import { Semaphore } from "./semaphore.js";
import type { AuthScope, Authorizer, HostResolver, ImageRef, RegistryEndpoint } from "./types.js";

export type RefLike = string | ImageRef;

export interface RegistryClientOptions {
  authorizer?: Authorizer;
  /** Endpoints per host (hosts.toml); default: the host itself over HTTPS (docker.io → registry-1.docker.io). */
  hosts?: HostResolver;
  /** Use http:// for the default endpoint (all hosts, or those the predicate accepts). */
  plainHttp?: boolean | ((host: string) => boolean);
  /** Headers and body inactivity timeout per request (default 60 s). */
  timeoutMs?: number;
  /** TCP/TLS connect timeout (default 10 s). */
  connectTimeoutMs?: number;
  /** Retries after the first attempt (default 4). */
  retries?: number;
  /** First backoff (default 200 ms) and cap of one backoff / Retry-After (default 10 s). */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Concurrent requests in flight (default 16); also the keep-alive connections per origin. */
  concurrency?: number;
  userAgent?: string;
  /** Chunk size of chunked uploads, and the largest blob pushed with one PUT (default 8 MiB). */
  chunkSize?: number;
  /** Largest manifest/index accepted (default 4 MiB, as containerd). */
  maxManifestBytes?: number;
  /** Most byte ranges asked in one multi-range request (default 32). */
  maxRangesPerRequest?: number;
}

/** Manifest media types asked for (OCI and Docker schema 2). */
export const MANIFEST_ACCEPT = [
  MediaTypeImageManifest,
  MediaTypeImageIndex,
  MediaTypeDockerSchema2Manifest,
  MediaTypeDockerSchema2ManifestList,
];

export interface ManifestResult {
  bytes: Uint8Array;
  descriptor: Descriptor;
}

export interface PushedManifest {
  descriptor: Descriptor;
  /** `OCI-Subject` response header: set when the registry indexed the manifest's subject itself. */
  ociSubject?: string;
}

export interface ByteRange {
  /** First byte (inclusive). */
  start: number;
  /** End (exclusive). */
  end: number;
}

type Action = "pull" | "push";
type Capability = "pull" | "resolve" | "push";

interface Target {
  ref: ImageRef;
  ep: RegistryEndpoint;
  actions: Action[];
  /** Other repositories the request needs access to (a mount's source repository). */
  also?: AuthScope["also"];
  /** More endpoints follow: an unreachable one is given up at once instead of retried. */
  failFast?: boolean;
}

interface RequestSpec {
  method: string;
  url: string;
  headers?: Record<string, string>;
  body?: Uint8Array;
  /** Follow 3xx (blob GET/HEAD); Authorization and endpoint headers stay with the registry origin. */
  followRedirects?: boolean;
}

interface Response {
  status: number;
  headers: IncomingHttpHeaders;
  body: Dispatcher.ResponseData["body"];
  /** Final URL (after redirects). */
  url: string;
}

const ERROR_BODY_LIMIT = 64 * 1024;

function header(h: IncomingHttpHeaders, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

function mediaTypeOf(contentType: string | undefined): string | undefined {
  if (!contentType) return undefined;
  const mt = contentType.split(";")[0]!.trim();
  return mt.length ? mt : undefined;
}

function concat(chunks: Uint8Array[], total: number): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(total);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

async function readAll(
  body: Response["body"],
  limit?: number,
  what = "response",
  expected?: number,
): Promise<Uint8Array> {
  // with the length known, chunks go straight into one buffer (each is garbage at once) instead of
  // all of them living until a final copy: half the peak memory of a span fetch
  let out =
    expected !== undefined && expected > 0 && (limit === undefined || expected <= limit)
      ? new Uint8Array(expected)
      : undefined;
  const chunks: Uint8Array[] = [];
  let n = 0;
  for await (const c of body as AsyncIterable<Buffer>) {
    if (limit !== undefined && n + c.length > limit) {
      body.destroy();
      throw new InvalidArgumentError(`${what} larger than ${limit} bytes`);
    }
    if (out && n + c.length <= out.length) out.set(c, n);
    else {
      if (out) chunks.push(out.subarray(0, n)); // longer than announced: collect the rest
      out = undefined;
      chunks.push(new Uint8Array(c.buffer, c.byteOffset, c.length));
    }
    n += c.length;
  }
  if (out) return n === out.length ? out : out.subarray(0, n);
  return concat(chunks, n);
}

async function readErrorBody(body: Response["body"]): Promise<Uint8Array> {
  try {
    const chunks: Uint8Array[] = [];
    let n = 0;
    for await (const c of body as AsyncIterable<Buffer>) {
      chunks.push(c);
      n += c.length;
      if (n >= ERROR_BODY_LIMIT) {
        body.destroy();
        break;
      }
    }
    return concat(chunks, n);
  } catch {
    return new Uint8Array(0);
  }
}

async function discard(body: Response["body"]): Promise<void> {
  try {
    await body.dump({ limit: 256 * 1024 });
  } catch {
    /* the connection is dropped instead of reused */
  }
}

/** A hasher for a digest's algorithm (sha256/sha384/sha512). */
export function digester(digest: string): { hash: Hash; algorithm: string } {
  const i = digest.indexOf(":");
  const algorithm = i > 0 ? digest.slice(0, i) : "";
  if (algorithm !== "sha256" && algorithm !== "sha384" && algorithm !== "sha512") {
    throw new UnsupportedError(`unsupported digest algorithm in ${JSON.stringify(digest)}`);
  }
  if (!/^[0-9a-f]+$/.test(digest.slice(i + 1)))
    throw new InvalidArgumentError(`invalid digest ${JSON.stringify(digest)}`);
  return { hash: createHash(algorithm), algorithm };
}

function computeDigest(algorithm: string, bytes: Uint8Array): string {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest("hex")}`;
}

function verifyDigest(expected: string, bytes: Uint8Array, url?: string, what = "blob"): void {
  const { algorithm } = digester(expected);
  const actual = computeDigest(algorithm, bytes);
  if (actual !== expected)
    throw new DigestMismatchError(expected, actual, { what, ...(url ? { url: redactUrl(url) } : {}) });
}

/** Parses `Content-Range: bytes a-b/total`. */
function parseContentRange(v: string | undefined): { start: number; end: number; total?: number } | undefined {
  const m = v ? /^bytes\s+(\d+)-(\d+)\/(\d+|\*)$/i.exec(v.trim()) : null;
  if (!m) return undefined;
  return { start: Number(m[1]), end: Number(m[2]) + 1, ...(m[3] !== "*" ? { total: Number(m[3]) } : {}) };
}

/** Splits a multipart/byteranges body into its parts. */
export function parseMultipartByteranges(
  body: Uint8Array,
  boundary: string,
): { start: number; end: number; data: Uint8Array }[] {
  const buf = Buffer.from(body.buffer, body.byteOffset, body.length);
  const delim = Buffer.from(`--${boundary}`);
  const parts: { start: number; end: number; data: Uint8Array }[] = [];
  let pos = buf.indexOf(delim);
  while (pos >= 0) {
    pos += delim.length;
    if (buf[pos] === 0x2d && buf[pos + 1] === 0x2d) break; // closing delimiter
    const hdrEnd = buf.indexOf("\r\n\r\n", pos);
    if (hdrEnd < 0) break;
    const headers = buf.subarray(pos, hdrEnd).toString("latin1");
    const m = /^content-range:\s*(.+)$/im.exec(headers);
    const cr = parseContentRange(m?.[1]);
    if (!cr) throw new InvalidArgumentError("multipart/byteranges part without a valid Content-Range");
    const dataStart = hdrEnd + 4;
    const dataEnd = dataStart + (cr.end - cr.start);
    if (dataEnd > buf.length) throw new InvalidArgumentError("truncated multipart/byteranges body");
    parts.push({ start: cr.start, end: cr.end, data: body.subarray(dataStart, dataEnd) });
    pos = buf.indexOf(delim, dataEnd);
  }
  return parts;
}

function parseLinkNext(link: string | undefined): string | undefined {
  if (!link) return undefined;
  for (const part of link.split(",")) {
    const m = /<([^>]*)>\s*;\s*rel="?next"?/i.exec(part);
    if (m) return m[1];
  }
  return undefined;
}

/** The descriptor a referrers list holds for a manifest (oras: artifactType, else config.mediaType). */
export function referrerDescriptor(manifestBytes: Uint8Array, mediaType: string): Descriptor {
  const m = parseManifest(manifestBytes);
  const d: Descriptor = { mediaType, digest: computeDigest("sha256", manifestBytes), size: manifestBytes.length };
  const artifactType = m.artifactType || m.config?.mediaType;
  if (m.annotations && Object.keys(m.annotations).length) d.annotations = { ...m.annotations };
  if (artifactType) d.artifactType = artifactType;
  return d;
}

export class RegistryClient {
  private readonly opts: RegistryClientOptions;
  private readonly sem: Semaphore;
  private readonly agents = new Map<string, Agent>();
  private readonly timeoutMs: number;
  private readonly chunkSize: number;
  private readonly multiRangeUnsupported = new Set<string>();
  /** Mirror URLs found unreachable → until when they are skipped. */
  private readonly downUntil = new Map<string, number>();
  private closed = false;

  constructor(opts: RegistryClientOptions = {}) {
    this.opts = opts;
    this.sem = new Semaphore(opts.concurrency ?? 16);
    this.timeoutMs = opts.timeoutMs ?? 60_000;
    this.chunkSize = opts.chunkSize ?? 8 << 20;
  }

  /** Closes pooled connections. */
  async close(): Promise<void> {
    this.closed = true;
    const agents = [...this.agents.values()];
    this.agents.clear();
    await Promise.all(agents.map((a) => a.close().catch(() => undefined)));
  }

  // ----------------------------------------------------------------------------------------------
  // Manifests

  /** Resolves a tag (or digest) to the manifest's descriptor: HEAD first, GET when HEAD is not enough. */
  async resolve(refLike: RefLike): Promise<Descriptor> {
    const ref = toRef(refLike);
    return this.withEndpoints(ref, "resolve", ["pull"], async (t) => {
      const url = this.repoUrl(t, `/manifests/${manifestReference(ref)}`);
      const head = await this.call(
        t,
        "HEAD manifest",
        { method: "HEAD", url, headers: { accept: MANIFEST_ACCEPT.join(", ") } },
        [200],
        async (res) => {
          await discard(res.body);
          return res;
        },
      );
      const digest = header(head.headers, "docker-content-digest") ?? ref.digest;
      const mediaType = mediaTypeOf(header(head.headers, "content-type"));
      const len = header(head.headers, "content-length");
      if (digest && mediaType && MANIFEST_ACCEPT.includes(mediaType) && len !== undefined && /^\d+$/.test(len)) {
        if (ref.digest && digest !== ref.digest) {
          throw new DigestMismatchError(ref.digest, digest, { what: "manifest", url: redactUrl(url) });
        }
        return { mediaType, digest, size: Number(len) };
      }
      return (await this.getManifestAt(t, ref)).descriptor;
    });
  }

  /** Fetches a manifest or index by reference, or by descriptor (digest and size verified). */
  async getManifest(refLike: RefLike, desc?: Descriptor): Promise<ManifestResult> {
    const ref = toRef(refLike);
    return this.withEndpoints(ref, "pull", ["pull"], (t) => this.getManifestAt(t, ref, desc));
  }

  private async getManifestAt(t: Target, ref: ImageRef, desc?: Descriptor): Promise<ManifestResult> {
    const expected = desc?.digest ?? ref.digest;
    const reference = expected ?? manifestReference(ref);
    const url = this.repoUrl(t, `/manifests/${reference}`);
    const accept =
      desc?.mediaType && !MANIFEST_ACCEPT.includes(desc.mediaType)
        ? [desc.mediaType, ...MANIFEST_ACCEPT]
        : MANIFEST_ACCEPT;
    const limit = this.opts.maxManifestBytes ?? 4 << 20;
    return this.call(
      t,
      "GET manifest",
      { method: "GET", url, headers: { accept: accept.join(", ") } },
      [200],
      async (res) => {
        const bytes = await readAll(res.body, limit, "manifest");
        const headerDigest = header(res.headers, "docker-content-digest");
        let digest: string;
        if (expected) {
          verifyDigest(expected, bytes, url, "manifest");
          digest = expected;
        } else {
          const alg = headerDigest?.startsWith("sha512:")
            ? "sha512"
            : headerDigest?.startsWith("sha384:")
              ? "sha384"
              : "sha256";
          digest = computeDigest(alg, bytes);
          if (headerDigest && headerDigest !== digest) {
            throw new DigestMismatchError(headerDigest, digest, { what: "manifest", url: redactUrl(url) });
          }
        }
        if (desc && desc.size > 0 && desc.size !== bytes.length) {
          throw new DigestMismatchError(expected!, `${bytes.length} bytes instead of ${desc.size}`, {
            what: "manifest size",
            url: redactUrl(url),
          });
        }
        const mediaType =
          mediaTypeOf(header(res.headers, "content-type")) ?? sniffMediaType(bytes) ?? desc?.mediaType ?? "";
        return { bytes, descriptor: { mediaType, digest, size: bytes.length } };
      },
    );
  }

  /** Pushes a manifest/index under a tag or its digest (default: `ref.tag`, else the digest). */
  async pushManifest(
    refLike: RefLike,
    bytes: Uint8Array,
    mediaType: string,
    reference?: string,
  ): Promise<PushedManifest> {
    const ref = toRef(refLike);
    const digest = computeDigest("sha256", bytes);
    const where = reference ?? ref.tag ?? digest;
    return this.withEndpoints(ref, "push", ["pull", "push"], async (t) => {
      const url = this.repoUrl(t, `/manifests/${where}`);
      return this.call(
        t,
        "PUT manifest",
        { method: "PUT", url, headers: { "content-type": mediaType }, body: bytes },
        [200, 201],
        async (res) => {
          await discard(res.body);
          const got = header(res.headers, "docker-content-digest");
          if (got?.startsWith("sha256:") && got !== digest) {
            throw new DigestMismatchError(digest, got, { what: "pushed manifest", url: redactUrl(url) });
          }
          const ociSubject = header(res.headers, "oci-subject");
          return { descriptor: { mediaType, digest, size: bytes.length }, ...(ociSubject ? { ociSubject } : {}) };
        },
      );
    });
  }

  /** Deletes a manifest by digest (registries without delete answer Unsupported). */
  async deleteManifest(refLike: RefLike, digest: string): Promise<void> {
    const ref = toRef(refLike);
    await this.withEndpoints(ref, "push", ["pull", "push"], async (t) => {
      const url = this.repoUrl(t, `/manifests/${digest}`);
      await this.call(t, "DELETE manifest", { method: "DELETE", url }, [200, 202, 204], (res) => discard(res.body));
    });
  }

  // ----------------------------------------------------------------------------------------------
  // Blobs

  /** Size of a blob if the repository has it, else undefined. */
  async blobExists(refLike: RefLike, digest: string): Promise<number | undefined> {
    const ref = toRef(refLike);
    return this.withEndpoints(ref, "pull", ["pull"], (t) => this.blobExistsAt(t, digest));
  }

  private async blobExistsAt(t: Target, digest: string): Promise<number | undefined> {
    const url = this.repoUrl(t, `/blobs/${digest}`);
    try {
      return await this.call(t, "HEAD blob", { method: "HEAD", url, followRedirects: true }, [200], async (res) => {
        await discard(res.body);
        const len = header(res.headers, "content-length");
        return len !== undefined && /^\d+$/.test(len) ? Number(len) : 0;
      });
    } catch (e) {
      if (e instanceof NotFoundError) return undefined;
      throw e;
    }
  }

  /** A whole blob, digest (and size, if given) verified; a mismatch is never returned. */
  async getBlob(refLike: RefLike, digest: string, opts: { size?: number; verify?: boolean } = {}): Promise<Uint8Array> {
    const ref = toRef(refLike);
    digester(digest);
    return this.withEndpoints(ref, "pull", ["pull"], async (t) => {
      const url = this.repoUrl(t, `/blobs/${digest}`);
      return this.call(t, "GET blob", { method: "GET", url, followRedirects: true }, [200], async (res) => {
        const bytes = await readAll(res.body, opts.size !== undefined ? opts.size : undefined, `blob ${digest}`);
        if (opts.verify !== false) verifyDigest(digest, bytes, res.url);
        if (opts.size !== undefined && bytes.length !== opts.size) {
          throw new DigestMismatchError(digest, `${bytes.length} bytes instead of ${opts.size}`, {
            what: "blob size",
            url: redactUrl(res.url),
          });
        }
        return bytes;
      });
    });
  }

  /**
   * Streams a blob. A dropped connection resumes with a Range request; the digest is checked at the
   * end and the last chunk is only yielded once it matched (a corrupt blob never completes).
   */
  async *blobStream(
    refLike: RefLike,
    digest: string,
    opts: { size?: number } = {},
  ): AsyncGenerator<Uint8Array, void, undefined> {
    const ref = toRef(refLike);
    const { hash, algorithm } = digester(digest);
    const eps = this.liveEndpoints(await this.endpointsFor(ref.host, "pull"));
    // mirrors first: until the first byte arrives, a missing blob or an unreachable/failing mirror
    // moves on to the next endpoint; once bytes flow, resumes stay with the endpoint serving them
    let epIndex = 0;
    let t: Target = { ref, ep: eps[0]!, actions: ["pull"] };
    let url = this.repoUrl(t, `/blobs/${digest}`);
    const retries = this.opts.retries ?? 4;
    let received = 0;
    let pending: Uint8Array | undefined;
    let failures = 0;
    for (;;) {
      const release = await this.sem.acquire();
      let res: Response | undefined;
      try {
        const headers: Record<string, string> = received > 0 ? { range: `bytes=${received}-` } : {};
        res = await this.sendChecked(t, "GET blob", { method: "GET", url, headers, followRedirects: true }, [200, 206]);
        let skip = 0;
        if (received > 0) {
          if (res.status === 200) skip = received;
          else if (parseContentRange(header(res.headers, "content-range"))?.start !== received) {
            throw new UnsupportedError(`GET blob: ${redactUrl(url)}: resumed range does not start at ${received}`);
          }
        }
        for await (const raw of res.body as AsyncIterable<Buffer>) {
          let c = new Uint8Array(raw.buffer, raw.byteOffset, raw.length);
          if (skip > 0) {
            const n = Math.min(skip, c.length);
            skip -= n;
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
          if (prev) yield prev;
        }
        break;
      } catch (e) {
        if (res) res.body.destroy();
        const err = e instanceof RetryableError ? e.final : e;
        const plainTwin = eps[epIndex]!.plainFallback === true;
        // an https-first attempt that failed for another reason than plain HTTP skips its twin
        const skip = plainTwin && !speaksPlainHttp(err) ? 2 : 1;
        if (plainTwin && skip === 1) this.markDown(eps[epIndex]!);
        if (received === 0 && epIndex + skip < eps.length) {
          if (fallsThrough(err) || tlsProblem(err) !== undefined) {
            if (isUnreachable(err)) this.markDown(eps[epIndex]!);
            epIndex += skip;
            t = { ref, ep: eps[epIndex]!, actions: ["pull"] };
            url = this.repoUrl(t, `/blobs/${digest}`);
            failures = 0;
            continue;
          }
        }
        const retryAfter = e instanceof RetryableError ? e.retryAfterMs : undefined;
        const retryable = e instanceof RetryableError || isRetryableNetworkError(e);
        if (!retryable || failures >= retries)
          throw this.networkError("GET blob", url, e instanceof RetryableError ? e.final : e);
        failures++;
        await sleep(backoffDelay(failures, this.opts, retryAfter));
      } finally {
        release();
      }
    }
    const actual = `${algorithm}:${hash.digest("hex")}`;
    if (actual !== digest) throw new DigestMismatchError(digest, actual, { what: "blob", url: redactUrl(url) });
    if (opts.size !== undefined && received !== opts.size) {
      throw new DigestMismatchError(digest, `${received} bytes instead of ${opts.size}`, {
        what: "blob size",
        url: redactUrl(url),
      });
    }
    if (pending) yield pending;
  }

  /** Bytes [start, end) of a blob by HTTP Range (206; a 200 full body is verified and sliced). */
  async fetchRange(refLike: RefLike, digest: string, start: number, end: number): Promise<Uint8Array> {
    checkRange({ start, end });
    if (end === start) return new Uint8Array(0);
    const ref = toRef(refLike);
    return this.withEndpoints(ref, "pull", ["pull"], async (t) => {
      const url = this.repoUrl(t, `/blobs/${digest}`);
      return this.call(
        t,
        "GET blob range",
        { method: "GET", url, headers: { range: `bytes=${start}-${end - 1}` }, followRedirects: true },
        [200, 206],
        async (res) => {
          const bytes = await readAll(res.body, undefined, "response", res.status === 206 ? end - start : undefined);
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
  async fetchRanges(refLike: RefLike, digest: string, ranges: ByteRange[]): Promise<Uint8Array[]> {
    ranges.forEach(checkRange);
    const ref = toRef(refLike);
    const wanted = ranges.map((r, i) => ({ ...r, i })).filter((r) => r.end > r.start);
    const out: Uint8Array[] = ranges.map(() => new Uint8Array(0));
    if (wanted.length === 0) return out;
    const single = () =>
      Promise.all(
        wanted.map(async (r) => {
          out[r.i] = await this.fetchRange(ref, digest, r.start, r.end);
        }),
      );
    if (wanted.length === 1 || this.multiRangeUnsupported.has(ref.host)) {
      await single();
      return out;
    }
    const per = this.opts.maxRangesPerRequest ?? 32;
    const batches: (typeof wanted)[] = [];
    for (let i = 0; i < wanted.length; i += per) batches.push(wanted.slice(i, i + per));
    const missing: typeof wanted = [];
    await Promise.all(
      batches.map(async (batch) => {
        const got = await this.withEndpoints(ref, "pull", ["pull"], async (t) => {
          const url = this.repoUrl(t, `/blobs/${digest}`);
          const range = "bytes=" + batch.map((r) => `${r.start}-${r.end - 1}`).join(",");
          return this.call(
            t,
            "GET blob ranges",
            { method: "GET", url, headers: { range }, followRedirects: true },
            [200, 206],
            async (res) => {
              const bytes = await readAll(res.body);
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
    await Promise.all(
      missing.map(async (r) => {
        out[r.i] = await this.fetchRange(ref, digest, r.start, r.end);
      }),
    );
    return out;
  }

  /**
   * Pushes a blob unless the repository has it: cross-repository mount when `mountFrom` is given,
   * else one PUT (bytes up to `chunkSize`) or chunked PATCHes (larger bytes, streams).
   */
  async pushBlob(
    refLike: RefLike,
    data: Uint8Array | AsyncIterable<Uint8Array>,
    desc: { digest: string; size: number; mediaType?: string },
    opts: { mountFrom?: string } = {},
  ): Promise<Descriptor & { mounted?: boolean; existed?: boolean }> {
    const ref = toRef(refLike);
    digester(desc.digest);
    const result: Descriptor = {
      mediaType: desc.mediaType ?? "application/octet-stream",
      digest: desc.digest,
      size: desc.size,
    };
    if (data instanceof Uint8Array) {
      if (data.length !== desc.size)
        throw new InvalidArgumentError(`blob ${desc.digest}: ${data.length} bytes, descriptor says ${desc.size}`);
      verifyDigest(desc.digest, data, undefined, "blob to push");
    }
    return this.withEndpoints(ref, "push", ["pull", "push"], async (t) => {
      if ((await this.blobExistsAt(t, desc.digest)) !== undefined) return { ...result, existed: true };
      const uploads = this.repoUrl(t, "/blobs/uploads/");
      let location: string;
      if (opts.mountFrom !== undefined) {
        const mountUrl = withQuery(uploads, { mount: desc.digest, from: opts.mountFrom });
        // Bearer tokens are per repository: the mount also needs pull on the source repository
        const mt: Target = { ...t, also: [{ repository: opts.mountFrom, actions: ["pull"] }] };
        const r = await this.call(mt, "POST blob mount", { method: "POST", url: mountUrl }, [201, 202], async (res) => {
          await discard(res.body);
          return { status: res.status, location: locationOf(res) };
        });
        if (r.status === 201) return { ...result, mounted: true };
        location = r.location;
      } else {
        location = await this.startUpload(t, uploads);
      }
      if (data instanceof Uint8Array && data.length <= this.chunkSize) {
        // Monolithic; a failed attempt restarts with a fresh session.
        await withRetries(async (attempt) => {
          const loc = attempt === 0 ? location : await this.startUpload(t, uploads);
          const url = withQuery(loc, { digest: desc.digest });
          await this.send1(
            t,
            "PUT blob",
            { method: "PUT", url, headers: { "content-type": "application/octet-stream" }, body: data },
            [201, 204],
          );
        }, this.retryOpts());
        return result;
      }
      await this.chunkedUpload(t, location, data, desc);
      return result;
    });
  }

  private async startUpload(t: Target, uploads: string): Promise<string> {
    return this.call(t, "POST blob upload", { method: "POST", url: uploads }, [202], async (res) => {
      await discard(res.body);
      return locationOf(res);
    });
  }

  private async chunkedUpload(
    t: Target,
    location: string,
    data: Uint8Array | AsyncIterable<Uint8Array>,
    desc: { digest: string; size: number },
  ): Promise<void> {
    const { hash, algorithm } = digester(desc.digest);
    let offset = 0;
    let loc = location;
    for await (const chunk of rechunk(data, this.chunkSize)) {
      hash.update(chunk);
      loc = await this.patchChunk(t, loc, chunk, offset);
      offset += chunk.length;
    }
    const actual = `${algorithm}:${hash.digest("hex")}`;
    if (actual !== desc.digest || offset !== desc.size) {
      await this.send1(t, "DELETE blob upload", { method: "DELETE", url: loc }, [204, 200, 404]).catch(() => undefined);
      throw new DigestMismatchError(
        desc.digest,
        offset !== desc.size ? `${offset} bytes instead of ${desc.size}` : actual,
        { what: "blob to push" },
      );
    }
    await this.call(
      t,
      "PUT blob",
      { method: "PUT", url: withQuery(loc, { digest: desc.digest }), headers: { "content-length": "0" } },
      [201, 204],
      (res) => discard(res.body),
    );
  }

  /** One PATCH; on a transient failure asks the session's progress and resends or moves on. */
  private async patchChunk(t: Target, loc: string, chunk: Uint8Array, offset: number): Promise<string> {
    const end = offset + chunk.length;
    let current = loc;
    return withRetries(async () => {
      try {
        const res = await this.send1(
          t,
          "PATCH blob",
          {
            method: "PATCH",
            url: current,
            body: chunk,
            headers: { "content-type": "application/octet-stream", "content-range": `${offset}-${end - 1}` },
          },
          [202],
        );
        return locationOf(res);
      } catch (e) {
        if (!(e instanceof RetryableError) && !isRetryableNetworkError(e)) throw e;
        // Where is the session? (GET upload URL → 204 with Range: 0-<last>)
        const st = await this.send1(t, "GET blob upload", { method: "GET", url: current }, [204]).catch(
          () => undefined,
        );
        if (st) {
          const r = /^(?:bytes=)?0-(\d+)$/.exec(header(st.headers, "range") ?? "");
          // distribution answers "0-0" for an empty session as well as for one byte.
          let have = r ? Number(r[1]) + 1 : 0;
          if (have === 1 && offset === 0 && end !== 1) have = 0;
          const next = locationOf(st, current);
          if (have === end) return next;
          if (have !== offset) {
            throw new UnavailableError(`PATCH blob: upload session at ${have} bytes, expected ${offset} or ${end}`, {
              cause: e,
            });
          }
          current = next;
        }
        throw e;
      }
    }, this.retryOpts());
  }

  // ----------------------------------------------------------------------------------------------
  // Tags and referrers

  /** All tags of the repository (follows `Link` pagination). */
  async listTags(refLike: RefLike, opts: { pageSize?: number } = {}): Promise<string[]> {
    const ref = toRef(refLike);
    return this.withEndpoints(ref, "pull", ["pull"], async (t) => {
      const tags: string[] = [];
      let url: string | undefined = opts.pageSize
        ? withQuery(this.repoUrl(t, "/tags/list"), { n: String(opts.pageSize) })
        : this.repoUrl(t, "/tags/list");
      for (let pages = 0; url && pages < 10_000; pages++) {
        const page: { tags: string[]; next: string | undefined } = await this.call(
          t,
          "GET tags",
          { method: "GET", url },
          [200],
          async (res) => {
            const body = JSON.parse(new TextDecoder().decode(await readAll(res.body, 64 << 20))) as { tags?: unknown };
            const list = Array.isArray(body.tags) ? body.tags.filter((x): x is string => typeof x === "string") : [];
            const next = parseLinkNext(header(res.headers, "link"));
            return { tags: list, next: next ? new URL(next, res.url).toString() : undefined };
          },
        );
        tags.push(...page.tags);
        url = page.next;
      }
      return tags;
    });
  }

  /**
   * Manifests that refer to `subject`: the referrers API, or (404) the fallback tag `sha256-<hex>`;
   * filtered by artifactType client-side when the server did not apply the filter.
   */
  async referrers(refLike: RefLike, subject: string, artifactType?: string): Promise<Descriptor[]> {
    const ref = toRef(refLike);
    digester(subject);
    const filter = (ds: Descriptor[]) =>
      artifactType === undefined ? ds : ds.filter((d) => d.artifactType === artifactType);
    const api = await this.withEndpoints(ref, "pull", ["pull"], async (t) => {
      const out: Descriptor[] = [];
      let url: string | undefined =
        artifactType !== undefined
          ? withQuery(this.repoUrl(t, `/referrers/${subject}`), { artifactType })
          : this.repoUrl(t, `/referrers/${subject}`);
      for (let pages = 0; url && pages < 10_000; pages++) {
        let page: { ds: Descriptor[]; next: string | undefined } | undefined;
        try {
          page = await this.call(
            t,
            "GET referrers",
            { method: "GET", url, headers: { accept: MediaTypeImageIndex } },
            [200],
            async (res) => {
              const mt = mediaTypeOf(header(res.headers, "content-type"));
              const bytes = await readAll(res.body, this.opts.maxManifestBytes ?? 4 << 20, "referrers index");
              if (mt !== MediaTypeImageIndex) return undefined;
              const idx = parseIndex(bytes);
              const applied = (
                header(res.headers, "oci-filters-applied") ??
                idx.annotations?.["org.opencontainers.image.referrers.filtersApplied"] ??
                ""
              )
                .split(",")
                .map((s) => s.trim());
              const ds = idx.manifests ?? [];
              const next = parseLinkNext(header(res.headers, "link"));
              return {
                ds: applied.includes("artifactType") ? ds : filter(ds),
                next: next ? new URL(next, res.url).toString() : undefined,
              };
            },
          );
        } catch (e) {
          if (pages === 0 && (e instanceof NotFoundError || e instanceof UnsupportedError)) return undefined;
          throw e;
        }
        if (!page) return undefined;
        out.push(...page.ds);
        url = page.next;
      }
      return out;
    });
    if (api) return api;
    try {
      const { bytes, descriptor } = await this.getManifest(withReference(ref, { tag: referrersTag(subject) }));
      if (descriptor.mediaType !== MediaTypeImageIndex) {
        throw new UnsupportedError(
          `referrers tag ${referrersTag(subject)} is ${descriptor.mediaType}, not an OCI image index`,
        );
      }
      return filter(parseIndex(bytes).manifests ?? []);
    } catch (e) {
      if (e instanceof NotFoundError) return [];
      throw e;
    }
  }

  /**
   * Adds `descriptor` to the referrers fallback index of `subject` (tag `sha256-<hex>`): reads or
   * creates it, writes Go-JSON under the tag, and deletes the superseded index (best effort).
   */
  async addToReferrersFallback(refLike: RefLike, subject: string, descriptor: Descriptor): Promise<Descriptor> {
    const ref = withReference(toRef(refLike), { tag: referrersTag(subject) });
    let old: ManifestResult | undefined;
    try {
      old = await this.getManifest(ref);
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e;
    }
    const manifests = old ? (parseIndex(old.bytes).manifests ?? []) : [];
    if (old && manifests.some((d) => d.digest === descriptor.digest)) return old.descriptor;
    const bytes = marshalIndex({
      schemaVersion: 2,
      mediaType: MediaTypeImageIndex,
      manifests: [...manifests, descriptor],
    });
    const { descriptor: pushed } = await this.pushManifest(ref, bytes, MediaTypeImageIndex, ref.tag);
    if (old && old.descriptor.digest !== pushed.digest) {
      await this.deleteManifest(ref, old.descriptor.digest).catch((e: unknown) => {
        if (!(e instanceof SociError)) throw e;
      });
    }
    return pushed;
  }

  // ----------------------------------------------------------------------------------------------
  // Plumbing

  private retryOpts(t?: Target) {
    const o = {
      retries: this.opts.retries ?? 4,
      baseDelayMs: this.opts.baseDelayMs ?? 200,
      maxDelayMs: this.opts.maxDelayMs ?? 10_000,
    };
    // a mirror that cannot be reached is left for the next endpoint, not waited for
    return t?.failFast ? { ...o, giveUp: isUnreachable } : o;
  }

  private async endpointsFor(host: string, cap: Capability): Promise<RegistryEndpoint[]> {
    if (this.opts.hosts) {
      const eps = (await this.opts.hosts.endpoints(host)).filter((e) => e.capabilities.includes(cap));
      if (eps.length === 0) throw new UnsupportedError(`no endpoint of ${host} has the ${cap} capability`);
      // https-first endpoints become an HTTPS attempt followed by their plain-HTTP twin
      return eps.flatMap((e) =>
        e.httpsFirst && e.url.startsWith("http://")
          ? [
              { ...e, url: `https://${e.url.slice(7)}`, httpsFirst: false, plainFallback: true },
              { ...e, httpsFirst: false },
            ]
          : [e],
      );
    }
    const p = this.opts.plainHttp;
    const plain = typeof p === "function" ? p(host) : p === true;
    const h = host === "docker.io" ? "registry-1.docker.io" : host;
    return [{ url: `${plain ? "http" : "https"}://${h}`, capabilities: ["pull", "resolve", "push"] }];
  }

  /**
   * Tries endpoints in order (mirrors first); NotFound/Unavailable/network/TLS errors move on. An
   * endpoint that is not the last is not retried when unreachable, and is skipped for a while after.
   */
  private async withEndpoints<T>(
    ref: ImageRef,
    cap: Capability,
    actions: Action[],
    fn: (t: Target) => Promise<T>,
  ): Promise<T> {
    if (this.closed) throw new UnavailableError("registry client is closed");
    const eps = this.liveEndpoints(await this.endpointsFor(ref.host, cap));
    let last: unknown;
    for (let i = 0; i < eps.length; i++) {
      const ep = eps[i]!;
      if (ep.plainFallback) {
        // HTTPS attempt of an https-first host: only "this server speaks plain HTTP" goes on to the
        // plain twin (remembered); any other failure skips the twin, so a TLS problem stays visible
        try {
          return await fn({ ref, ep, actions, failFast: true });
        } catch (e) {
          last = e;
          if (speaksPlainHttp(e)) {
            this.markDown(ep);
            continue;
          }
          i++;
          if (!(i + 1 < eps.length && fallsThrough(e))) throw e;
          continue;
        }
      }
      const hasNext = i + 1 < eps.length;
      try {
        return await fn({ ref, ep, actions, ...(hasNext ? { failFast: true } : {}) });
      } catch (e) {
        last = e;
        if (hasNext && isUnreachable(e)) this.markDown(ep);
        if (!(hasNext && fallsThrough(e))) throw e;
      }
    }
    throw last;
  }

  /** Endpoints not recently found unreachable (all of them if that would leave none). */
  private liveEndpoints(eps: RegistryEndpoint[]): RegistryEndpoint[] {
    const now = Date.now();
    const live = eps.filter((e) => (this.downUntil.get(e.url) ?? 0) <= now);
    return live.length ? live : eps;
  }

  private markDown(ep: RegistryEndpoint): void {
    this.downUntil.set(ep.url, Date.now() + DOWN_FOR_MS);
  }

  /**
   * `<endpoint>/v2/<repository><suffix>`; a mirror (an endpoint on another host than the image's
   * registry) also gets containerd's `?ns=<registry host>` so it knows which upstream is meant.
   */
  private repoUrl(t: Target, suffix: string): string {
    const base = t.ep.overridePath ? t.ep.url.replace(/\/+$/, "") : `${t.ep.url.replace(/\/+$/, "")}/v2`;
    const url = `${base}/${t.ref.repository}${suffix}`;
    return new URL(t.ep.url).host === t.ref.host ? url : withQuery(url, { ns: t.ref.host });
  }

  private agentFor(ep: RegistryEndpoint | undefined): Agent {
    const caFiles = ep?.caFiles ?? (ep?.caFile ? [ep.caFile] : undefined);
    const tls =
      ep && (ep.skipVerify || caFiles || ep.clientCert)
        ? { skipVerify: !!ep.skipVerify, caFiles, cert: ep.clientCert?.cert, key: ep.clientCert?.key }
        : undefined;
    const key = tls ? JSON.stringify(tls) : "";
    let a = this.agents.get(key);
    if (!a) {
      const connect: Record<string, unknown> = { timeout: this.opts.connectTimeoutMs ?? 10_000 };
      if (tls) {
        if (tls.skipVerify) connect.rejectUnauthorized = false;
        // the system roots stay trusted too (containerd appends `ca` files to the system pool)
        if (tls.caFiles) connect.ca = [...rootCertificates, ...tls.caFiles.map((f) => readFileSync(f, "utf8"))];
        if (tls.cert) connect.cert = readFileSync(tls.cert);
        if (tls.key) connect.key = readFileSync(tls.key);
      }
      a = new Agent({ keepAliveTimeout: 30_000, connections: this.opts.concurrency ?? 16, connect });
      this.agents.set(key, a);
    }
    return a;
  }

  /** One HTTP exchange with auth (one retry after a 401 challenge) and manual redirects. */
  private async send(t: Target, spec: RequestSpec): Promise<Response> {
    const origin = new URL(t.ep.url).origin;
    // credentials and tokens belong to the host answering (a mirror is not the upstream registry)
    const scope: AuthScope = {
      host: new URL(t.ep.url).host,
      repository: t.ref.repository,
      actions: t.actions,
      ...(t.also ? { also: t.also } : {}),
    };
    const az = this.opts.authorizer;
    let method = spec.method;
    let url = spec.url;
    let body = spec.body;
    let challenged = false;
    for (let hops = 0; ; ) {
      const u = new URL(url);
      const sameOrigin = u.origin === origin;
      const headers: Record<string, string> = { "user-agent": this.opts.userAgent ?? "soci-snapshotter-ts" };
      if (sameOrigin) Object.assign(headers, t.ep.headers ?? {});
      if (hops === 0 || method === spec.method) Object.assign(headers, spec.headers ?? {});
      if (sameOrigin && az) {
        const a = await az.authorization(scope);
        if (a) headers.authorization = a;
      }
      const r = await this.agentFor(sameOrigin ? t.ep : undefined).request({
        origin: u.origin,
        path: u.pathname + u.search,
        method: method as Dispatcher.HttpMethod,
        headers,
        body: body ?? null,
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
      });
      const res: Response = { status: r.statusCode, headers: r.headers, body: r.body, url };
      if (res.status === 401 && sameOrigin && az && !challenged) {
        const www = header(res.headers, "www-authenticate");
        await discard(res.body);
        challenged = true;
        if (www && (await this.answerChallenge(az, scope, www, spec.method, url))) continue;
        // No retry worth it: report the 401 as it came.
        return res;
      }
      const loc = header(res.headers, "location");
      if (spec.followRedirects && [301, 302, 303, 307, 308].includes(res.status) && loc) {
        await discard(res.body);
        if (++hops > 10) throw new UnavailableError(`${spec.method} ${redactUrl(spec.url)}: too many redirects`);
        url = new URL(loc, url).toString();
        if (res.status === 303) {
          method = method === "HEAD" ? "HEAD" : "GET";
          body = undefined;
        }
        continue;
      }
      return res;
    }
  }

  /** Lets the authorizer answer a 401; its failures (token service refused) name the registry too. */
  private async answerChallenge(
    az: Authorizer,
    scope: AuthScope,
    www: string,
    method: string,
    url: string,
  ): Promise<boolean> {
    try {
      return await az.challenged(scope, www);
    } catch (e) {
      if (e instanceof SociError || !(e instanceof Error)) throw e;
      // AuthError / CredentialsError: their messages are already free of secrets
      const status = (e as { status?: unknown }).status;
      throw new UnauthorizedError(`${method} ${redactUrl(url)}: unauthorized: ${e.message}`, {
        url: redactUrl(url),
        cause: e,
        ...(typeof status === "number" ? { httpStatus: status } : {}),
      });
    }
  }

  /** send + status check: unexpected statuses become typed errors (RetryableError when transient). */
  private async sendChecked(t: Target, what: string, spec: RequestSpec, ok: number[]): Promise<Response> {
    const res = await this.send(t, spec);
    if (ok.includes(res.status)) return res;
    const body = spec.method === "HEAD" ? new Uint8Array(0) : await readErrorBody(res.body);
    if (spec.method === "HEAD") await discard(res.body);
    const err = errorFromResponse(what, res.status, res.url, body);
    if (err instanceof UnauthorizedError && !this.opts.authorizer) {
      throw new UnauthorizedError(err.message + " (no credentials configured)", {
        httpStatus: err.httpStatus,
        registryErrors: err.registryErrors,
        url: err.url,
      });
    }
    if (isRetryableStatus(res.status)) throw new RetryableError(err, parseRetryAfter(res.headers["retry-after"]));
    throw err;
  }

  /** One attempt under the concurrency limit (no retries). */
  private async send1(t: Target, what: string, spec: RequestSpec, ok: number[]): Promise<Response> {
    return this.sem.run(async () => {
      const res = await this.sendChecked(t, what, spec, ok);
      return res;
    });
  }

  /** A request with retries; `consume` runs inside the attempt, so a body cut short is retried too. */
  private async call<T>(
    t: Target,
    what: string,
    spec: RequestSpec,
    ok: number[],
    consume: (res: Response) => Promise<T>,
  ): Promise<T> {
    return withRetries(
      () =>
        this.sem.run(async () => {
          const res = await this.sendChecked(t, what, spec, ok);
          try {
            return await consume(res);
          } catch (e) {
            res.body.destroy();
            throw e;
          }
        }),
      this.retryOpts(t),
    ).catch((e: unknown) => {
      throw this.networkError(what, spec.url, e);
    });
  }

  /** Network and TLS failures as typed errors naming the request (others pass through). */
  private networkError(what: string, url: string, e: unknown): unknown {
    if (e instanceof SociError) return e;
    const tls = tlsProblem(e);
    if (tls) {
      return new UnavailableError(
        `${what}: ${redactUrl(url)}: TLS: ${tls} (trust the registry's CA with \`ca\` in hosts.toml, or set skip_verify = true)`,
        {
          cause: e,
          url: redactUrl(url),
        },
      );
    }
    if (isRetryableNetworkError(e)) {
      const code = networkCode(e);
      return new UnavailableError(`${what}: ${redactUrl(url)}: ${code ? `${code}: ` : ""}${(e as Error).message}`, {
        cause: e,
        url: redactUrl(url),
      });
    }
    return e;
  }
}

/** How long an unreachable mirror is skipped. */
const DOWN_FOR_MS = 30_000;

const UNREACHABLE_CODES = new Set([
  "ECONNREFUSED",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "UND_ERR_CONNECT_TIMEOUT",
  "ENOTFOUND",
  "EAI_AGAIN",
]);

function networkCode(e: unknown): string | undefined {
  for (let x: unknown = e, depth = 0; x && typeof x === "object" && depth < 5; depth++) {
    const code = (x as { code?: unknown }).code;
    if (typeof code === "string") return code;
    x = (x as { cause?: unknown }).cause;
  }
  return undefined;
}

/** Errors after which the next endpoint (mirror → upstream) is tried. */
function fallsThrough(e: unknown): boolean {
  return e instanceof NotFoundError || e instanceof UnavailableError || isRetryableNetworkError(e);
}

/** A TLS client hello answered with plain HTTP: the endpoint is an http:// one. */
function speaksPlainHttp(e: unknown): boolean {
  return networkCodes(e).includes("ERR_SSL_WRONG_VERSION_NUMBER");
}

function networkCodes(e: unknown): string[] {
  const out: string[] = [];
  for (let x: unknown = e, depth = 0; x && typeof x === "object" && depth < 5; depth++) {
    const code = (x as { code?: unknown }).code;
    if (typeof code === "string") out.push(code);
    x = (x as { cause?: unknown }).cause;
  }
  return out;
}

/** Nothing answered at all (refused, unroutable, connect timeout, no such host). */
function isUnreachable(e: unknown): boolean {
  for (let x: unknown = e, depth = 0; x && typeof x === "object" && depth < 5; depth++) {
    const code = (x as { code?: unknown }).code;
    if (typeof code === "string" && UNREACHABLE_CODES.has(code)) return true;
    x = (x as { cause?: unknown }).cause;
  }
  return false;
}

/** A certificate/handshake failure, described; undefined for anything else. */
function tlsProblem(e: unknown): string | undefined {
  for (let x: unknown = e, depth = 0; x && typeof x === "object" && depth < 5; depth++) {
    const code = (x as { code?: unknown }).code;
    if (
      typeof code === "string" &&
      /^(CERT_|UNABLE_TO_|SELF_SIGNED_|DEPTH_ZERO_|ERR_TLS_|ERR_SSL_|HOSTNAME_MISMATCH|ERR_TLS_CERT_ALTNAME)/.test(code)
    ) {
      const why =
        code === "SELF_SIGNED_CERT_IN_CHAIN" || code === "DEPTH_ZERO_SELF_SIGNED_CERT" || code.startsWith("UNABLE_TO_")
          ? "certificate signed by an unknown authority"
          : "handshake failed";
      return `${why} (${code}: ${(x as Error).message})`;
    }
    x = (x as { cause?: unknown }).cause;
  }
  return undefined;
}

function toRef(r: RefLike): ImageRef {
  return typeof r === "string" ? parseReference(r) : r;
}

function checkRange(r: ByteRange): void {
  if (!Number.isSafeInteger(r.start) || !Number.isSafeInteger(r.end) || r.start < 0 || r.end < r.start) {
    throw new InvalidArgumentError(`invalid byte range [${r.start}, ${r.end})`);
  }
}

function locationOf(res: Response, fallback?: string): string {
  const loc = header(res.headers, "location");
  if (!loc) {
    if (fallback) return fallback;
    throw new UnsupportedError(`${redactUrl(res.url)}: upload response without Location`);
  }
  return new URL(loc, res.url).toString();
}

function withQuery(url: string, q: Record<string, string>): string {
  const u = new URL(url);
  for (const [k, v] of Object.entries(q)) u.searchParams.set(k, v);
  return u.toString();
}

function sniffMediaType(bytes: Uint8Array): string | undefined {
  try {
    const v = JSON.parse(new TextDecoder().decode(bytes)) as { mediaType?: unknown; manifests?: unknown };
    if (typeof v.mediaType === "string" && v.mediaType) return v.mediaType;
    return Array.isArray(v.manifests) ? MediaTypeImageIndex : MediaTypeImageManifest;
  } catch {
    return undefined;
  }
}

async function* rechunk(data: Uint8Array | AsyncIterable<Uint8Array>, size: number): AsyncGenerator<Uint8Array> {
  if (data instanceof Uint8Array) {
    for (let o = 0; o < data.length; o += size) yield data.subarray(o, Math.min(data.length, o + size));
    return;
  }
  let buf = new Uint8Array(size);
  let n = 0;
  for await (const c of data) {
    let o = 0;
    while (o < c.length) {
      const k = Math.min(size - n, c.length - o);
      buf.set(c.subarray(o, o + k), n);
      n += k;
      o += k;
      if (n === size) {
        yield buf;
        buf = new Uint8Array(size);
        n = 0;
      }
    }
  }
  if (n > 0) yield buf.subarray(0, n);
}

export { formatReference, parseReference };
