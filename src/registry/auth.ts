// Registry authorization (the `Authorizer` of ./types.ts), following Docker/containerd/oras:
//
// * Credentials: the explicit `--user user[:password]`, then the providers given (default: Docker's
//   config.json with credHelpers/credsStore/auths, see ./auth-docker-config.ts).
// * `challenged(scope, wwwAuthenticate)` handles a 401: `Bearer realm,service,scope` ⇒ fetch a token
//   from the realm (GET with Basic credentials or anonymous; OAuth2 POST `grant_type=refresh_token`
//   when the credentials are an identity token), `Basic` ⇒ send credentials. Tokens are cached per
//   (host, `repository:<repo>:<actions>`) until `expires_in` (default 60 s) and fetched again when
//   expired or when a request is challenged again.
// * `authorization(scope)` returns the header value for a request. Once a host has issued a Bearer
//   challenge, tokens for new scopes are fetched up front (no extra 401 round trip).
//
// Secrets (passwords, identity tokens, bearer tokens) never appear in errors: messages are built from
// the realm URL, status codes and registry error codes, then scrubbed of every known secret.
import { UnauthenticatedError } from "../errors/errors.js";
import type { AuthScope, Authorizer } from "./types.js";
import { parseWwwAuthenticate, type Challenge } from "./auth-challenge.js";
import {
  DockerConfigCredentials,
  parseJsonObject,
  type Credentials,
  type CredentialsProvider,
  type DockerConfigOptions,
} from "./auth-docker-config.js";

export { parseWwwAuthenticate, type Challenge } from "./auth-challenge.js";
export {
  DockerConfigCredentials,
  CredentialsError,
  runCredentialHelper,
  dockerConfigPath,
  type Credentials,
  type CredentialsProvider,
  type DockerConfigOptions,
} from "./auth-docker-config.js";

/**
 * Authorization failures (token service refused, unreachable, bad answer). No secrets inside. The
 * token service's HTTP status is `httpStatus`, the error code of its JSON body (e.g.
 * "UNAUTHORIZED") the first of `registryErrors`.
 */
export class AuthError extends UnauthenticatedError {
  override name = "AuthError";
  constructor(message: string, opts: { status?: number; code?: string; cause?: unknown } = {}) {
    super(message, {
      ...(opts.cause !== undefined ? { cause: opts.cause } : {}),
      ...(opts.status !== undefined ? { httpStatus: opts.status } : {}),
      ...(opts.code !== undefined ? { registryErrors: [{ code: opts.code }] } : {}),
    });
  }
}

/** Parses `--user user[:password]` (split at the first colon; no colon ⇒ empty password). */
export function parseUserFlag(user: string): Credentials {
  const i = user.indexOf(":");
  return i < 0 ? { username: user, password: "" } : { username: user.slice(0, i), password: user.slice(i + 1) };
}

/** `repository:<repo>:<actions>` with actions deduplicated and sorted ("pull,push"). */
export function scopeString(scope: Pick<AuthScope, "repository" | "actions">): string {
  const actions = [...new Set(scope.actions)].sort();
  return `repository:${scope.repository}:${actions.join(",")}`;
}

/**
 * Merges scope strings (`type:name:actions`, space-separated lists allowed): same resource ⇒ actions
 * united. Order: first appearance. Resource names may contain ":" (ports), so split from the right.
 */
export function mergeScopes(scopes: string[]): string[] {
  const byResource = new Map<string, Set<string>>();
  for (const list of scopes) {
    for (const s of list.split(/\s+/)) {
      if (!s) continue;
      const last = s.lastIndexOf(":");
      if (last <= 0) {
        if (!byResource.has(s)) byResource.set(s, new Set());
        continue;
      }
      const resource = s.slice(0, last);
      const set = byResource.get(resource) ?? new Set<string>();
      for (const a of s.slice(last + 1).split(",")) if (a) set.add(a);
      byResource.set(resource, set);
    }
  }
  const out: string[] = [];
  for (const [resource, actions] of byResource) {
    out.push(actions.size ? `${resource}:${[...actions].sort().join(",")}` : resource);
  }
  return out;
}

export interface RegistryAuthorizerOptions {
  /** `--user user[:password]`: used before any other source (for `userHost` only, if given). */
  user?: string | Credentials;
  /** Restricts `user` to this registry host. Default: every host. */
  userHost?: string;
  /**
   * Credential sources after `user`, first non-empty answer wins. Default: Docker's config.json
   * (`dockerConfig` options). Pass [] for anonymous-only (plus `user`).
   */
  credentials?: CredentialsProvider[];
  /** Options for the default Docker config source; `false` disables it. Ignored with `credentials`. */
  dockerConfig?: DockerConfigOptions | false;
  /** fetch used for token requests (default: Node's global fetch). Pass undici's for custom TLS. */
  fetch?: typeof fetch;
  /** User-Agent for token requests (default "soci-snapshotter/<version>"-like, see below). */
  userAgent?: string;
  /** Extra headers sent to token services (hosts.toml `[header]`). */
  headers?: Record<string, string>;
  /** Timeout for one token request, ms (default 30000). */
  tokenTimeoutMs?: number;
  /** OAuth2 client_id for POST token requests (default "soci-snapshotter"). */
  clientId?: string;
  /** Clock in ms (tests). Default Date.now. */
  now?: () => number;
}

const DEFAULT_EXPIRES_SEC = 60;

interface BearerChallenge {
  kind: "bearer";
  realm: string;
  service: string | undefined;
  /** the challenge's own `scope` parameter (space-separated), merged into token requests */
  scope: string | undefined;
}

interface BasicState {
  kind: "basic";
  header: string;
}

type HostState = BearerChallenge | BasicState;

interface CachedToken {
  header: string;
  expiresAt: number;
  fetchedAt: number;
}

interface TokenResponse {
  token?: unknown;
  access_token?: unknown;
  expires_in?: unknown;
  refresh_token?: unknown;
}

/** Replaces every occurrence of the given secrets (4+ characters) in `msg`. */
export function redactSecrets(msg: string, secrets: Iterable<string | undefined>): string {
  let out = msg;
  for (const s of secrets) {
    if (s && s.length >= MIN_REDACT) out = out.split(s).join("<redacted>");
  }
  return out;
}

/** Shorter secrets are not substituted (that would mangle every message); see requestToken. */
const MIN_REDACT = 4;

export class RegistryAuthorizer implements Authorizer {
  private readonly user: Credentials | undefined;
  private readonly userHost: string | undefined;
  private readonly providers: CredentialsProvider[];
  private readonly fetchFn: typeof fetch;
  private readonly userAgent: string;
  private readonly headers: Record<string, string>;
  private readonly tokenTimeoutMs: number;
  private readonly clientId: string;
  private readonly now: () => number;

  private readonly hosts = new Map<string, HostState>();
  private readonly tokens = new Map<string, CachedToken>();
  /**
   * The same tokens by the scope set actually requested (request scopes merged with the challenge's):
   * two request scopes that end up asking the same set share one token.
   */
  private readonly byScopes = new Map<string, CachedToken>();
  private readonly inflight = new Map<string, Promise<CachedToken>>();
  /** Every secret seen, to scrub from error messages. */
  private readonly secrets = new Set<string>();
  /** Refresh tokens returned by OAuth2 token services, per host (replace the identity token). */
  private readonly refreshTokens = new Map<string, string>();

  constructor(opts: RegistryAuthorizerOptions = {}) {
    this.user = typeof opts.user === "string" ? parseUserFlag(opts.user) : opts.user;
    this.userHost = opts.userHost;
    if (opts.credentials) this.providers = [...opts.credentials];
    else if (opts.dockerConfig === false) this.providers = [];
    else this.providers = [new DockerConfigCredentials(opts.dockerConfig || {}).provider];
    // looked up when a token is first needed: reading globalThis.fetch loads Node's bundled undici
    this.fetchFn = opts.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.userAgent = opts.userAgent ?? "soci-snapshotter-ts";
    this.headers = { ...(opts.headers ?? {}) };
    this.tokenTimeoutMs = opts.tokenTimeoutMs ?? 30_000;
    this.clientId = opts.clientId ?? "soci-snapshotter";
    this.now = opts.now ?? Date.now;
    if (this.user) this.remember(this.user);
  }

  /** Credentials for a host (and the repository a request is for): `user` first, then each provider. */
  async credentials(host: string, scope?: { repository?: string }): Promise<Credentials | undefined> {
    if (this.user && (this.userHost === undefined || sameHost(this.userHost, host))) return this.user;
    for (const p of this.providers) {
      const c = await p(host, scope);
      if (c && (c.username || c.password || c.identityToken)) {
        this.remember(c);
        return c;
      }
    }
    return undefined;
  }

  async authorization(scope: AuthScope): Promise<string | undefined> {
    const st = this.hosts.get(hostKey(scope.host));
    if (!st) return undefined;
    if (st.kind === "basic") return st.header;
    const key = tokenKey(scope);
    const cached = this.tokens.get(key);
    if (cached && this.valid(cached)) return cached.header;
    return (await this.fetchTokenCoalesced(key, scope, st)).header;
  }

  async challenged(scope: AuthScope, wwwAuthenticate: string): Promise<boolean> {
    const challenges = parseWwwAuthenticate(wwwAuthenticate);
    const host = hostKey(scope.host);
    const bearer = challenges.find((c) => c.scheme === "bearer" && c.params.realm);
    if (bearer) {
      const st = bearerState(bearer);
      if (!st) return false;
      this.hosts.set(host, st);
      const key = tokenKey(scope);
      const pending = this.inflight.get(key);
      if (pending) {
        await pending; // a concurrent challenge is already fetching: share its token
        return true;
      }
      const rejected = this.tokens.get(key);
      this.tokens.delete(key);
      if (rejected) for (const [k, t] of this.byScopes) if (t.header === rejected.header) this.byScopes.delete(k);
      await this.fetchTokenCoalesced(key, scope, st);
      return true;
    }
    if (challenges.some((c) => c.scheme === "basic")) {
      const creds = await this.credentials(scope.host, { repository: scope.repository });
      if (!creds || (!creds.username && !creds.password)) return false;
      const header = `Basic ${Buffer.from(`${creds.username}:${creds.password}`, "utf8").toString("base64")}`;
      this.secrets.add(header.slice(6));
      const prev = this.hosts.get(host);
      // these exact credentials were already being sent and got a 401: retrying cannot help
      if (prev?.kind === "basic" && prev.header === header) return false;
      this.hosts.set(host, { kind: "basic", header });
      return true;
    }
    return false;
  }

  /** Forgets tokens and challenge state (one host, or all). */
  invalidate(host?: string): void {
    if (host === undefined) {
      this.hosts.clear();
      this.tokens.clear();
      this.byScopes.clear();
      return;
    }
    const h = hostKey(host);
    this.hosts.delete(h);
    for (const k of [...this.tokens.keys()]) if (k.startsWith(`${h} `)) this.tokens.delete(k);
    for (const k of [...this.byScopes.keys()]) if (k.startsWith(`${h} `)) this.byScopes.delete(k);
  }

  private valid(t: CachedToken): boolean {
    return this.now() < t.expiresAt;
  }

  private remember(c: Credentials): void {
    if (c.password) this.secrets.add(c.password);
    if (c.identityToken) this.secrets.add(c.identityToken);
    if (c.username || c.password)
      this.secrets.add(Buffer.from(`${c.username}:${c.password}`, "utf8").toString("base64"));
  }

  private fetchTokenCoalesced(key: string, scope: AuthScope, st: BearerChallenge): Promise<CachedToken> {
    const pending = this.inflight.get(key);
    if (pending) return pending;
    const p = this.fetchToken(scope, st)
      .then((t) => {
        this.tokens.set(key, t);
        return t;
      })
      .finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }

  private async fetchToken(scope: AuthScope, st: BearerChallenge): Promise<CachedToken> {
    const scopes = mergeScopes([...scopeStrings(scope), ...(st.scope ? [st.scope] : [])]);
    const setKey = `${hostKey(scope.host)} ${st.realm} ${[...scopes].sort().join(" ")}`;
    const shared = this.byScopes.get(setKey);
    if (shared && this.valid(shared)) return shared;
    const token = await this.requestScopes(scope, st, scopes);
    this.byScopes.set(setKey, token);
    return token;
  }

  private async requestScopes(scope: AuthScope, st: BearerChallenge, scopes: string[]): Promise<CachedToken> {
    const creds = await this.credentials(scope.host, { repository: scope.repository });
    const refresh = this.refreshTokens.get(hostKey(scope.host)) ?? creds?.identityToken;
    const started = this.now();
    let body: TokenResponse;
    if (refresh) {
      try {
        body = await this.postOAuth(st, scopes, refresh);
      } catch (err) {
        // registries without the OAuth2 POST endpoint (404/405): fall back to GET
        if (!(err instanceof AuthError) || (err.httpStatus !== 404 && err.httpStatus !== 405)) throw err;
        body = await this.getToken(st, scopes, creds?.username || creds?.password ? creds : undefined);
      }
    } else {
      body = await this.getToken(st, scopes, creds);
    }
    const tok = typeof body.token === "string" && body.token ? body.token : body.access_token;
    if (typeof tok !== "string" || !tok) {
      throw new AuthError(`token service ${realmForMessage(st.realm)} returned no token`);
    }
    this.secrets.add(tok);
    if (typeof body.refresh_token === "string" && body.refresh_token) {
      this.secrets.add(body.refresh_token);
      if (refresh) this.refreshTokens.set(hostKey(scope.host), body.refresh_token);
    }
    let expiresSec = typeof body.expires_in === "number" && body.expires_in > 0 ? body.expires_in : DEFAULT_EXPIRES_SEC;
    if (!Number.isFinite(expiresSec)) expiresSec = DEFAULT_EXPIRES_SEC;
    const lifetime = expiresSec * 1000;
    // refresh a little early: 10% of the lifetime, at most 5 s
    const margin = Math.min(5000, lifetime / 10);
    return { header: `Bearer ${tok}`, fetchedAt: started, expiresAt: started + lifetime - margin };
  }

  private baseHeaders(): Record<string, string> {
    return { ...this.headers, "User-Agent": this.userAgent, Accept: "application/json" };
  }

  private async getToken(
    st: BearerChallenge,
    scopes: string[],
    creds: Credentials | undefined,
  ): Promise<TokenResponse> {
    const u = parseRealm(st.realm);
    if (st.service) u.searchParams.set("service", st.service);
    for (const s of scopes) u.searchParams.append("scope", s);
    const headers = this.baseHeaders();
    if (creds && (creds.username || creds.password)) {
      if (creds.username) u.searchParams.set("account", creds.username);
      headers.Authorization = `Basic ${Buffer.from(`${creds.username}:${creds.password}`, "utf8").toString("base64")}`;
    }
    return this.requestToken(st.realm, u, { method: "GET", headers });
  }

  private async postOAuth(st: BearerChallenge, scopes: string[], refreshToken: string): Promise<TokenResponse> {
    const u = parseRealm(st.realm);
    const form = new URLSearchParams();
    form.set("grant_type", "refresh_token");
    form.set("refresh_token", refreshToken);
    if (st.service) form.set("service", st.service);
    if (scopes.length) form.set("scope", scopes.join(" "));
    form.set("client_id", this.clientId);
    form.set("access_type", "offline");
    const headers = { ...this.baseHeaders(), "Content-Type": "application/x-www-form-urlencoded; charset=utf-8" };
    return this.requestToken(st.realm, u, { method: "POST", headers, body: form.toString() });
  }

  private async requestToken(realm: string, u: URL, init: RequestInit): Promise<TokenResponse> {
    const where = realmForMessage(realm);
    let res: Response;
    try {
      res = await this.fetchFn(u, { ...init, redirect: "follow", signal: AbortSignal.timeout(this.tokenTimeoutMs) });
    } catch (err) {
      const e = err as Error & { cause?: { code?: string; message?: string } };
      const detail =
        e.name === "TimeoutError"
          ? `timed out after ${this.tokenTimeoutMs} ms`
          : (e.cause?.code ?? e.cause?.message ?? e.message);
      throw new AuthError(this.scrub(`fetching token from ${where}: ${detail}`));
    }
    const text = await res.text().catch(() => "");
    if (!res.ok) {
      let code: string | undefined;
      let detail = "";
      try {
        const j = JSON.parse(text) as {
          errors?: { code?: unknown; message?: unknown }[];
          error?: unknown;
          details?: unknown;
        };
        const e0 = j.errors?.[0];
        if (e0 && typeof e0.code === "string") code = e0.code;
        const m = e0?.message ?? j.details ?? j.error;
        // server text is only reported when every known secret is long enough to be scrubbed
        const shortSecret = [...this.secrets].some((x) => x.length < MIN_REDACT);
        if (typeof m === "string" && !shortSecret) detail = m.slice(0, 200);
      } catch {
        /* not JSON: body not reported (could echo anything) */
      }
      const what = res.status === 401 || res.status === 403 ? "authentication failed" : "token request failed";
      const msg = `${what}: ${init.method} ${where}: ${res.status} ${res.statusText}${code ? ` (${code}${detail ? `: ${detail}` : ""})` : detail ? ` (${detail})` : ""}`;
      throw new AuthError(this.scrub(msg), { status: res.status, ...(code ? { code } : {}) });
    }
    const j = parseJsonObject(text);
    if (!j) throw new AuthError(`token service ${where} returned invalid JSON`, { status: res.status });
    return j as TokenResponse;
  }

  private scrub(msg: string): string {
    return redactSecrets(msg, this.secrets);
  }
}

function bearerState(c: Challenge): BearerChallenge | undefined {
  const realm = c.params.realm;
  if (!realm) return undefined;
  try {
    const u = new URL(realm);
    if (u.protocol !== "https:" && u.protocol !== "http:") return undefined;
  } catch {
    return undefined;
  }
  return { kind: "bearer", realm, service: c.params.service, scope: c.params.scope };
}

function parseRealm(realm: string): URL {
  return new URL(realm);
}

/** The realm without query/credentials, for messages. */
function realmForMessage(realm: string): string {
  try {
    const u = new URL(realm);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return "<invalid realm>";
  }
}

function hostKey(host: string): string {
  const h = host.toLowerCase();
  return h === "registry-1.docker.io" || h === "index.docker.io" ? "docker.io" : h;
}

function sameHost(a: string, b: string): boolean {
  return hostKey(a) === hostKey(b);
}

/** The scope strings one request needs: its repository, then any others (`also`), merged. */
export function scopeStrings(scope: AuthScope): string[] {
  return mergeScopes([scopeString(scope), ...(scope.also ?? []).map(scopeString)]);
}

function tokenKey(scope: AuthScope): string {
  return `${hostKey(scope.host)} ${scopeStrings(scope).join(" ")}`;
}
