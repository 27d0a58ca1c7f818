// The HTTP exchange with a registry endpoint: pooled undici agents per TLS setting, the
// Authorizer asked before each request and a 401 challenge answered once, redirects followed by
// hand (Authorization and endpoint headers never leave the registry's origin), unexpected statuses
// turned into typed errors, and retries with backoff on what is transient — all under one
// concurrency limit.
import { readFileSync } from "node:fs";
import { Readable } from "node:stream";
import { rootCertificates } from "node:tls";
import type { Dispatcher } from "undici";
import { AuthError, CredentialsError } from "./auth.js";
import { Agent, proxyAgent } from "./undici-agent.js";
import {
  errorFromResponse,
  InvalidArgumentError,
  isUnresponsive,
  networkError,
  redactUrl,
  UnauthorizedError,
  UnavailableError,
} from "./errors.js";
import { discard, header, readErrorBody, type Response } from "./http.js";
import { isRetryableStatus, parseRetryAfter, RetryableError, withRetries } from "./retry.js";
import { Semaphore } from "./semaphore.js";
import type { Deadline } from "./deadline.js";
import type { AuthScope, Authorizer, ImageRef, RegistryEndpoint } from "./types.js";

export type Action = "pull" | "push";

/** Where a request goes: an image's repository on one endpoint, with the access it needs. */
export interface Target {
  ref: ImageRef;
  ep: RegistryEndpoint;
  actions: Action[];
  /** Other repositories the request needs access to (a mount's source repository). */
  also?: AuthScope["also"];
  /** More endpoints follow: an unresponsive one is given up at once instead of retried. */
  failFast?: boolean;
  /** The operation's allowance for waiting on the registry (deadline.ts). */
  deadline?: Deadline;
}

export interface RequestSpec {
  method: string;
  url: string;
  headers?: Record<string, string>;
  body?: Uint8Array;
  /** Follow 3xx (blob GET/HEAD); Authorization and endpoint headers stay with the registry origin. */
  followRedirects?: boolean;
}

export interface TransportOptions {
  authorizer?: Authorizer;
  userAgent?: string;
  /** Headers and body inactivity timeout per request (default 60 s). */
  timeoutMs?: number;
  /** TCP/TLS connect timeout (default 10 s). */
  connectTimeoutMs?: number;
  /** Concurrent requests in flight (default 16); also the keep-alive connections per origin. */
  concurrency?: number;
  /** Retries after the first attempt (default 4). */
  retries?: number;
  /** First backoff (default 200 ms) and cap of one backoff / Retry-After (default 10 s). */
  baseDelayMs?: number;
  maxDelayMs?: number;
}

export class Transport {
  private readonly sem: Semaphore;
  private readonly agents = new Map<string, Dispatcher>();
  private readonly timeoutMs: number;

  constructor(private readonly opts: TransportOptions) {
    this.sem = new Semaphore(opts.concurrency ?? 16);
    this.timeoutMs = opts.timeoutMs ?? 60_000;
  }

  /** Closes pooled connections. */
  async close(): Promise<void> {
    const agents = [...this.agents.values()];
    this.agents.clear();
    await Promise.all(agents.map((a) => a.close().catch(() => undefined)));
  }

  /** A slot among the concurrent requests (the caller releases it). */
  acquire(): Promise<() => void> {
    return this.sem.acquire();
  }

  /** Retry policy of requests to `t`: the client's, cut short by the operation's deadline. */
  retryOpts(t?: Target) {
    return {
      retries: this.opts.retries ?? 4,
      baseDelayMs: this.opts.baseDelayMs ?? 200,
      maxDelayMs: this.opts.maxDelayMs ?? 10_000,
      ...(t?.deadline ? { signal: t.deadline.signal } : {}),
      // an endpoint that does not answer is left for the next one, not waited for
      ...(t?.failFast ? { giveUp: isUnresponsive } : {}),
    };
  }

  /**
   * A request with retries; `consume` runs inside the attempt, so a body cut short is retried too.
   * Failures come out as SociErrors naming `what` and the URL.
   */
  async call<T>(
    t: Target,
    what: string,
    spec: RequestSpec,
    ok: number[],
    consume: (res: Response) => Promise<T>,
  ): Promise<T> {
    return withRetries(
      () =>
        this.sem.run(async () => {
          const res = await this.checked(t, what, spec, ok);
          try {
            return await consume(res);
          } catch (e) {
            res.body.destroy();
            throw e;
          }
        }),
      this.retryOpts(t),
    ).catch((e: unknown) => {
      throw networkError(what, spec.url, e);
    });
  }

  /** One attempt under the concurrency limit (no retries; transient failures are RetryableErrors). */
  async attempt(t: Target, what: string, spec: RequestSpec, ok: number[]): Promise<Response> {
    return this.sem.run(() => this.checked(t, what, spec, ok));
  }

  /** send + status check: unexpected statuses become typed errors (RetryableError when transient). */
  async checked(t: Target, what: string, spec: RequestSpec, ok: number[]): Promise<Response> {
    const res = await this.send(t, what, spec).catch((e: unknown) => {
      t.deadline?.throwIfExpired(); // an abort by the deadline: its error, not undici's
      throw e;
    });
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

  /**
   * One HTTP exchange with auth (one retry after a 401 challenge) and manual redirects, each
   * request a wait on the operation's deadline (which aborts it).
   */
  private async send(t: Target, what: string, spec: RequestSpec): Promise<Response> {
    const deadline = t.deadline;
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
      deadline?.wait(`${what} ${redactUrl(url)}`);
      if (sameOrigin && az) {
        const a = await this.authorize(() => az.authorization(scope), spec.method, url, deadline);
        if (a) headers.authorization = a;
      }
      // a large upload reports its progress to the deadline as undici takes it
      const watched = body && deadline && body.length > WATCHED_UPLOAD ? { body, deadline } : undefined;
      if (watched) headers["content-length"] = `${watched.body.length}`;
      const timeout = requestTimeout(t.ep, this.timeoutMs);
      const r = await this.agentFor(t.ep, sameOrigin).request({
        origin: u.origin,
        path: u.pathname + u.search,
        method: method as Dispatcher.HttpMethod,
        headers,
        body: watched
          ? Readable.from(watchedUpload(watched.body, watched.deadline), { objectMode: false })
          : (body ?? null),
        headersTimeout: timeout,
        bodyTimeout: timeout,
        ...(deadline ? { signal: deadline.signal } : {}),
      });
      const res: Response = { status: r.statusCode, headers: r.headers, body: r.body, url };
      if (res.status === 401 && sameOrigin && az && !challenged) {
        const www = header(res.headers, "www-authenticate");
        await discard(res.body);
        challenged = true;
        if (www && (await this.authorize(() => az.challenged(scope, www), spec.method, url, deadline))) continue;
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

  /**
   * Asks the authorizer; its failures (token service refused, credential helper broken) become an
   * Unauthorized error naming the request too. Their messages are already free of secrets.
   */
  private async authorize<T>(ask: () => Promise<T>, method: string, url: string, deadline?: Deadline): Promise<T> {
    try {
      return await (deadline ? deadline.race(ask()) : ask());
    } catch (e) {
      if (!(e instanceof AuthError || e instanceof CredentialsError)) throw e;
      throw new UnauthorizedError(`${method} ${redactUrl(url)}: unauthorized: ${e.message}`, {
        url: redactUrl(url),
        cause: e,
        ...(e.httpStatus !== undefined ? { httpStatus: e.httpStatus } : {}),
        registryErrors: e.registryErrors,
      });
    }
  }

  /**
   * The pooled agent for requests to `ep` (`sameOrigin`) or to an origin it redirected to (blob
   * storage): the endpoint's TLS settings apply to its own origin only; its dial timeout and proxy
   * to both.
   */
  private agentFor(ep: RegistryEndpoint, sameOrigin: boolean): Dispatcher {
    const caFiles = ep.caFiles ?? (ep.caFile ? [ep.caFile] : undefined);
    const tls =
      sameOrigin && (ep.skipVerify || caFiles || ep.clientCert)
        ? { skipVerify: !!ep.skipVerify, caFiles, cert: ep.clientCert?.cert, key: ep.clientCert?.key }
        : undefined;
    const dialMs = ep.dialTimeoutMs ?? this.opts.connectTimeoutMs ?? 10_000;
    const key = JSON.stringify([tls ?? null, dialMs, ep.proxy ?? null]);
    let a = this.agents.get(key);
    if (!a) {
      const connect: Record<string, unknown> = { timeout: dialMs };
      if (tls) {
        if (tls.skipVerify) connect.rejectUnauthorized = false;
        // the system roots stay trusted too (containerd appends `ca` files to the system pool)
        if (tls.caFiles) connect.ca = [...rootCertificates, ...tls.caFiles.map((f) => readTlsFile(f, "ca"))];
        if (tls.cert) connect.cert = readTlsFile(tls.cert, "client certificate");
        if (tls.key) connect.key = readTlsFile(tls.key, "client key");
      }
      const pool = { keepAliveTimeout: 30_000, connections: this.opts.concurrency ?? 16 };
      a = ep.proxy
        ? // plain-HTTP registries are asked through the proxy with absolute URLs (proxies often allow
          // CONNECT to port 443 only); HTTPS ones through a CONNECT tunnel, TLS end to end
          proxyAgent({
            ...pool,
            uri: ep.proxy,
            proxyTunnel: false,
            proxyTls: { timeout: dialMs },
            requestTls: connect,
          })
        : new Agent({ ...pool, connect });
      this.agents.set(key, a);
    }
    return a;
  }
}

/** A CA, certificate or key file named by hosts.toml; a missing one is a configuration error. */
function readTlsFile(path: string, what: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    throw new InvalidArgumentError(`reading ${what} file ${path}: ${(e as NodeJS.ErrnoException).code ?? e}`, {
      cause: e,
    });
  }
}

/** The endpoint's `request_timeout_sec` in ms (undici's 0 = no limit), else the client's timeout. */
function requestTimeout(ep: RegistryEndpoint, fallbackMs: number): number {
  const sec = ep.requestTimeoutSec;
  if (sec === undefined || sec === 0) return fallbackMs;
  return sec < 0 ? 0 : sec * 1000;
}

/** Request bodies larger than this are handed to undici in pieces that count as progress. */
const WATCHED_UPLOAD = 1 << 20;

async function* watchedUpload(body: Uint8Array, deadline: Deadline): AsyncGenerator<Uint8Array> {
  const piece = 64 << 10;
  for (let o = 0; o < body.length; o += piece) {
    const c = body.subarray(o, Math.min(body.length, o + piece));
    yield c;
    deadline.progress(c.length);
  }
}
