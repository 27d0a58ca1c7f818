// Endpoint failover: the endpoints of a registry host (hosts.toml / resolver mirrors first, then
// the host itself, or just the host), tried in order by one loop. A missing image or an endpoint
// that fails moves on to the next; an endpoint that does not answer is skipped for a while; the
// HTTPS attempt of an https-first endpoint falls back to plain HTTP only when the server speaks it.
import { fallsThrough, isUnresponsive, speaksPlainHttp, UnavailableError, UnsupportedError } from "./errors.js";
import { Deadline } from "./deadline.js";
import { withQuery } from "./http.js";
import type { Action, Target } from "./transport.js";
import type { HostResolver, ImageRef, RegistryEndpoint } from "./types.js";

export type Capability = "pull" | "resolve" | "push";

/** How long an unresponsive endpoint is skipped. */
const DOWN_FOR_MS = 30_000;

export interface EndpointOptions {
  /** Endpoints per host (hosts.toml); default: the host itself over HTTPS (docker.io → registry-1.docker.io). */
  hosts?: HostResolver;
  /** Use http:// for the default endpoint (all hosts, or those the predicate accepts). */
  plainHttp?: boolean | ((host: string) => boolean);
  /** How long an operation may wait on the registry with nothing arriving (deadline.ts); 0 = no limit. */
  deadlineMs?: number;
}

export class Endpoints {
  /** Endpoint URLs found unresponsive → until when they are skipped. */
  private readonly downUntil = new Map<string, number>();
  private closed = false;

  constructor(private readonly opts: EndpointOptions) {}

  close(): void {
    this.closed = true;
  }

  /** A deadline for one operation (its caller ends it). */
  deadline(): Deadline {
    return new Deadline(this.opts.deadlineMs);
  }

  /**
   * Runs `fn` against each endpoint in order (mirrors first) until one succeeds; NotFound,
   * Unavailable, network and TLS errors move on. An endpoint that is not the last is not retried
   * when unresponsive (`failFast`), and is skipped for a while after. The whole is one operation
   * under one deadline (`deadline`, else a new one).
   */
  async withEndpoints<T>(
    ref: ImageRef,
    cap: Capability,
    actions: Action[],
    fn: (t: Target) => Promise<T>,
    deadline?: Deadline,
  ): Promise<T> {
    if (deadline) return this.tryEndpoints(ref, cap, actions, fn, deadline);
    const own = this.deadline();
    try {
      return await this.tryEndpoints(ref, cap, actions, fn, own);
    } finally {
      own.end();
    }
  }

  private async tryEndpoints<T>(
    ref: ImageRef,
    cap: Capability,
    actions: Action[],
    run: (t: Target) => Promise<T>,
    deadline: Deadline,
  ): Promise<T> {
    if (this.closed) throw new UnavailableError("registry client is closed");
    const fn = (t: Target) =>
      run({ ...t, deadline }).catch((e: unknown) => {
        deadline.throwIfExpired(); // a deadline ends the operation: no next endpoint
        throw e;
      });
    const eps = this.live(await this.endpointsFor(ref.host, cap));
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
        if (hasNext && isUnresponsive(e)) this.markDown(ep);
        if (!(hasNext && fallsThrough(e))) throw e;
      }
    }
    throw last;
  }

  /**
   * `<endpoint>/v2/<repository><suffix>`; a mirror (an endpoint on another host than the image's
   * registry) also gets containerd's `?ns=<registry host>` so it knows which upstream is meant.
   */
  repoUrl(t: Target, suffix: string): string {
    const base = t.ep.overridePath ? t.ep.url.replace(/\/+$/, "") : `${t.ep.url.replace(/\/+$/, "")}/v2`;
    const url = `${base}/${t.ref.repository}${suffix}`;
    return new URL(t.ep.url).host === t.ref.host ? url : withQuery(url, { ns: t.ref.host });
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

  /** Endpoints not recently found unresponsive (all of them if that would leave none). */
  private live(eps: RegistryEndpoint[]): RegistryEndpoint[] {
    const now = Date.now();
    const live = eps.filter((e) => (this.downUntil.get(e.url) ?? 0) <= now);
    return live.length ? live : eps;
  }

  private markDown(ep: RegistryEndpoint): void {
    this.downUntil.set(ep.url, Date.now() + DOWN_FOR_MS);
  }
}
