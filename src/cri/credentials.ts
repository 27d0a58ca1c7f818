// The CRI keychain (docs/snapshotter.md §5.4, reference service/keychain/cri and
// service/resolver/cri.go ParseAuth): the registry credentials the kubelet sends with each
// PullImage, remembered per normalized image reference (`docker.io/library/busybox:latest`) until
// RemoveImage, in memory only. The daemon's registry client asks for a host and the repository it
// is fetching from; the newest remembered pull of that repository answers. An AuthConfig whose
// `server_address` names another host is not used for this one.
//
// Secrets (passwords, `auth`, identity tokens) are never logged and never put in errors.
import { isDockerHub, type Credentials, type CredentialsProvider } from "../registry/auth-docker-config.js";
import { formatReference, parseReference } from "../registry/reference.js";

/** runtime.v1.AuthConfig as decoded (snake_case; absent fields are ""). */
export interface CriAuthConfig {
  username?: string;
  password?: string;
  /** base64 of "username:password" */
  auth?: string;
  server_address?: string;
  identity_token?: string;
  registry_token?: string;
}

/**
 * The key of an image reference (distribution's ParseDockerRef, then containerd's Spec.String()):
 * Docker Hub defaults applied (`busybox` → `docker.io/library/busybox:latest`), `:latest` when
 * neither tag nor digest is given, and the tag dropped when a digest is given. Throws on an
 * invalid reference.
 */
export function normalizeImageRef(image: string): string {
  const ref = parseReference(image);
  return formatReference(
    ref.digest !== undefined ? { host: ref.host, repository: ref.repository, digest: ref.digest } : ref,
  );
}

/** Docker Hub's aliases are one registry; other hosts compare case-insensitively. */
function hostKey(host: string): string {
  const h = host.toLowerCase();
  return isDockerHub(h) ? "docker.io" : h;
}

/**
 * The host of an AuthConfig's `server_address`: `https://index.docker.io/v1/` → `index.docker.io`.
 * A bare `host[:port][/path]` is taken as a host too (containerd would not match it at all).
 */
function serverAddressHost(address: string): string {
  let s = address.trim();
  const scheme = s.indexOf("://");
  if (scheme >= 0) s = s.slice(scheme + 3);
  const end = s.search(/[/?#]/);
  if (end >= 0) s = s.slice(0, end);
  const at = s.lastIndexOf("@");
  if (at >= 0) s = s.slice(at + 1);
  return s;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * containerd's CRI ParseAuth for one registry host: nothing when `auth` is absent or names another
 * server; else `username`/`password`, or the identity token (an OAuth2 refresh token), or the
 * base64 `auth` ("user:pass"). `registry_token` (a bearer token to send as is) is not supported,
 * as in containerd 1.6 and the reference. An `auth` that is not base64 of "user:pass" gives nothing.
 */
export function credentialsFromAuthConfig(
  auth: CriAuthConfig | null | undefined,
  host: string,
): Credentials | undefined {
  if (!auth) return undefined;
  if (auth.server_address && hostKey(serverAddressHost(auth.server_address)) !== hostKey(host)) return undefined;
  if (auth.username) return { username: auth.username, password: auth.password ?? "" };
  if (auth.identity_token) return { username: "", password: "", identityToken: auth.identity_token };
  if (auth.auth) {
    if (!BASE64.test(auth.auth)) return undefined;
    const decoded = Buffer.from(auth.auth, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon < 0) return undefined;
    // Go decodes into a buffer of DecodedLen bytes and trims the NULs that leaves
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1).replace(/^\0+|\0+$/g, "") };
  }
  return undefined;
}

/** Whether an AuthConfig carries any credential at all (an empty one is the same as none). */
export function hasCredentials(auth: CriAuthConfig | null | undefined): auth is CriAuthConfig {
  return !!auth && !!(auth.username || auth.password || auth.auth || auth.identity_token || auth.registry_token);
}

interface Entry {
  host: string;
  repository: string;
  auth: CriAuthConfig;
}

export interface CriCredentialsOptions {
  /** Most image references remembered; the oldest is dropped beyond (default 1024). */
  maxEntries?: number;
}

/** The PullImage credentials of the CRI keychain. */
export class CriCredentials {
  /** normalized reference → its last PullImage's auth; Map order = oldest remembered first */
  private readonly entries = new Map<string, Entry>();
  private readonly maxEntries: number;

  constructor(opts: CriCredentialsOptions = {}) {
    this.maxEntries = Math.max(1, opts.maxEntries ?? 1024);
  }

  /** How many image references have credentials. */
  get size(): number {
    return this.entries.size;
  }

  /**
   * A PullImage of `image` with `auth`: remembers it (replacing what an earlier pull of the same
   * reference sent; a pull without credentials forgets them). Returns the normalized reference;
   * throws on an invalid reference (nothing is remembered then).
   */
  remember(image: string, auth: CriAuthConfig | null | undefined): string {
    return this.rememberPull(image, auth).key;
  }

  /**
   * remember() for a pull that may still fail: `rollback()` puts back what the reference had
   * before (a failed pull leaves no image for a RemoveImage to clean up after), unless another
   * pull of it has replaced the credentials meanwhile.
   */
  rememberPull(image: string, auth: CriAuthConfig | null | undefined): { key: string; rollback(): void } {
    const key = normalizeImageRef(image);
    const previous = this.entries.get(key);
    this.entries.delete(key);
    let entry: Entry | undefined;
    if (hasCredentials(auth)) {
      const ref = parseReference(key);
      entry = { host: hostKey(ref.host), repository: ref.repository, auth: { ...auth } };
      this.entries.set(key, entry);
      while (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    }
    return {
      key,
      rollback: () => {
        if (this.entries.get(key) !== entry) return; // a later pull of the reference owns it now
        this.entries.delete(key);
        if (previous) this.entries.set(key, previous);
      },
    };
  }

  /** A RemoveImage of `image`: forgets its credentials. False when there were none (or the reference is invalid). */
  forget(image: string): boolean {
    let key: string;
    try {
      key = normalizeImageRef(image);
    } catch {
      return false;
    }
    return this.entries.delete(key);
  }

  /** Forgets everything. */
  clear(): void {
    this.entries.clear();
  }

  /**
   * Credentials for a registry host: from the newest remembered pull of `repository` on that host.
   * As in the reference, which keys them by image, a pull's credentials serve only its own
   * repository: one pod's pull secret never fetches another image. Without a repository (a
   * host-wide question), the newest pull from the host answers.
   */
  lookup(host: string, scope?: { repository?: string }): Credentials | undefined {
    const h = hostKey(host);
    const repo = scope?.repository;
    const candidates = [...this.entries.values()]
      .filter((e) => e.host === h && (repo === undefined || e.repository === repo))
      .reverse();
    for (const e of candidates) {
      const c = credentialsFromAuthConfig(e.auth, host);
      if (c && (c.username || c.password || c.identityToken)) return c;
    }
    return undefined;
  }

  /** For RegistryAuthorizer's `credentials` list. */
  readonly provider: CredentialsProvider = async (host, scope) => this.lookup(host, scope);
}
