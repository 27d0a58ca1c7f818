// Shared shapes of the registry client (OCI distribution API), its auth and its host config.

/** A parsed image reference: registry host, repository, and tag and/or digest. */
export interface ImageRef {
  /** e.g. "docker.io", "127.0.0.1:5000" */
  host: string;
  /** e.g. "library/busybox" */
  repository: string;
  tag?: string;
  digest?: string;
}

/** What a request needs permission for (Bearer scopes: `repository:<repo>:<actions>`). */
export interface AuthScope {
  host: string;
  repository: string;
  actions: ("pull" | "push")[];
  /**
   * More repositories the same request needs (Bearer scopes are per repository): a cross-repository
   * mount also needs `pull` on the repository it mounts from.
   */
  also?: { repository: string; actions: ("pull" | "push")[] }[];
}

/**
 * Supplies Authorization headers. The client asks before each request, and on a 401 passes the
 * `WWW-Authenticate` challenge so the authorizer can fetch/refresh a token, then retries once.
 */
export interface Authorizer {
  /** Header value for this scope if credentials/tokens are known (undefined = anonymous). */
  authorization(scope: AuthScope): Promise<string | undefined>;
  /** A 401 arrived with this challenge: returns true if a retry with new credentials is worth it. */
  challenged(scope: AuthScope, wwwAuthenticate: string): Promise<boolean>;
}

/** One endpoint to try for a host, in order (mirrors first, then the host itself). */
export interface RegistryEndpoint {
  /** scheme://host[:port], no trailing slash */
  url: string;
  /** Capabilities from hosts.toml: "pull", "resolve", "push". */
  capabilities: ("pull" | "resolve" | "push")[];
  /** Path prefix used instead of "/v2" (hosts.toml `override_path`). */
  overridePath?: boolean;
  /** TLS: skip verification / CA bundle / client cert. */
  skipVerify?: boolean;
  caFile?: string;
  /** Every CA file (hosts.toml `ca` may list several); `caFile` is the first. */
  caFiles?: string[];
  clientCert?: { cert: string; key: string };
  /**
   * An http:// endpoint to try over HTTPS first, falling back to plain HTTP only when the server
   * answers TLS with plain HTTP (containerd's rule for localhost and http hosts with TLS settings).
   */
  httpsFirst?: boolean;
  /** Set by the client on the HTTPS attempt of an `httpsFirst` endpoint (its plain twin follows). */
  plainFallback?: boolean;
  /** Extra headers (hosts.toml `[header]`). */
  headers?: Record<string, string>;
  /** TCP (and TLS) connect timeout for this endpoint, ms (hosts.toml `dial_timeout`). */
  dialTimeoutMs?: number;
  /** HTTP proxy requests to this endpoint go through (hosts.toml `proxy`), e.g. `http://proxy:3128`. */
  proxy?: string;
  /**
   * How long a request to this endpoint waits for its response headers, and between body chunks
   * (snapshotter config `request_timeout_sec`): 0/undefined = the client's default, < 0 = no limit.
   */
  requestTimeoutSec?: number;
}

/** Resolves a registry host to the endpoints to use for it. */
export interface HostResolver {
  endpoints(host: string): Promise<RegistryEndpoint[]>;
}
