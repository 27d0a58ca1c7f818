// How to reach registries, as plain data: the daemon config's `[resolver]` mirrors, `[http]`/`[blob]`
// timeouts and retries, and the credentials one image's repository needs. The daemon builds its
// own client from it, and hands the same data to the FUSE host with every layer it asks it to
// mount (docs/snapshotter.md §5.8), so a daemon restart with a new config reaches the host.
import { DockerConfigCredentials, RegistryAuthorizer, type Credentials, type CredentialsProvider } from "./auth.js";
import { RegistryClient } from "./client.js";
import { resolverFromConfig } from "./hosts.js";
import type { ImageRef } from "./types.js";

/** One `[[resolver.host."<host>".mirrors]]` entry, keys as in the TOML. */
export interface MirrorSettings {
  host: string;
  insecure?: boolean;
  request_timeout_sec?: number;
}

export interface RegistrySettings {
  /** Mirrors per registry host (the `[resolver.host]` table). */
  mirrors: Record<string, MirrorSettings[]>;
  /** Headers and body inactivity timeout per request. */
  timeoutMs?: number;
  connectTimeoutMs?: number;
  /** Every operation gives up after this long with nothing arriving (`fetching_timeout_sec`). */
  deadlineMs?: number;
  /** Retries after the first attempt. */
  retries?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
}

/** Credentials for one registry host, optionally for one repository only (the CRI keychain's). */
export interface HostCredentials extends Credentials {
  host: string;
  repository?: string;
}

function resolverOf(settings: RegistrySettings) {
  const host: Record<string, unknown> = {};
  for (const [name, mirrors] of Object.entries(settings.mirrors)) host[name] = { mirrors };
  return resolverFromConfig({ host });
}

/** A registry client with these settings and this authorizer. */
export function registryClientWith(settings: RegistrySettings, authorizer: RegistryAuthorizer): RegistryClient {
  return new RegistryClient({
    authorizer,
    hosts: resolverOf(settings),
    timeoutMs: settings.timeoutMs,
    connectTimeoutMs: settings.connectTimeoutMs,
    deadlineMs: settings.deadlineMs,
    retries: settings.retries,
    baseDelayMs: settings.baseDelayMs,
    maxDelayMs: settings.maxDelayMs,
  });
}

/**
 * The credentials `authorizer` has for the repository of `ref`, for every host a blob request may
 * go to (its mirrors, then the registry: credentials belong to the host answering). Only ever
 * sent over the FUSE host's root-only socket.
 */
export async function credentialsFor(
  settings: RegistrySettings,
  authorizer: RegistryAuthorizer,
  ref: ImageRef,
): Promise<HostCredentials[]> {
  const hosts = new Set([
    ref.host,
    ...(await resolverOf(settings).endpoints(ref.host)).map((e) => new URL(e.url).host),
  ]);
  const out: HostCredentials[] = [];
  for (const host of hosts) {
    const c = await authorizer.credentials(host, { repository: ref.repository });
    if (c) out.push({ host, repository: ref.repository, ...c });
  }
  return out;
}

/** Settings as a stable string: equal settings share one client. */
export function settingsKey(settings: RegistrySettings): string {
  const mirrors = Object.keys(settings.mirrors)
    .sort()
    .map((h) => [h, settings.mirrors[h]!.map((m) => [m.host, m.insecure ?? null, m.request_timeout_sec ?? null])]);
  return JSON.stringify([
    mirrors,
    settings.timeoutMs ?? null,
    settings.connectTimeoutMs ?? null,
    settings.deadlineMs ?? null,
    settings.retries ?? null,
    settings.baseDelayMs ?? null,
    settings.maxDelayMs ?? null,
  ]);
}

/**
 * Credentials handed over by someone else (the daemon, to the FUSE host), newest first per
 * (host, repository); a repository without its own entry uses the host-wide one.
 */
export class HandedCredentials {
  private readonly entries = new Map<string, Credentials>();

  remember(c: HostCredentials): void {
    this.entries.set(key(c.host, c.repository), {
      username: c.username,
      password: c.password,
      ...(c.identityToken ? { identityToken: c.identityToken } : {}),
    });
  }

  readonly provider: CredentialsProvider = async (host, scope) =>
    (scope?.repository !== undefined ? this.entries.get(key(host, scope.repository)) : undefined) ??
    this.entries.get(key(host, undefined));
}

function key(host: string, repository: string | undefined): string {
  return `${host.toLowerCase()}/${repository ?? ""}`;
}

/**
 * The FUSE host's authorizer: its own docker config first (fresh credential-helper answers, the
 * same source the daemon reads), then what the daemon handed over (the CRI keychain's).
 */
export function handedAuthorizer(handed: HandedCredentials): RegistryAuthorizer {
  return new RegistryAuthorizer({ credentials: [new DockerConfigCredentials().provider, handed.provider] });
}
