// Registry host resolution (the `HostResolver` of ./types.ts):
//
// * `HostsDirResolver`: containerd's hosts directory (`/etc/containerd/certs.d`, `--hosts-dir`):
//   `<dir>/<host>/hosts.toml`, with `host:port` also looked up as `host_port_`, falling back to
//   `<dir>/_default`; without hosts.toml, Docker's certificate layout (*.crt CA, *.cert/*.key pairs).
//   The `[host."…"]` entries come first in file order, then `server` (or the upstream default).
// * `resolverFromConfig`: the snapshotter config's `[resolver.host."<host>"]` mirrors, then the host.
// * `DefaultResolver`: only the upstream (`docker.io` ⇒ `https://registry-1.docker.io`).
//
// Endpoint URLs: `url` is `scheme://host[:port][/path]` without a trailing slash and without the
// API root: clients request `${url}/v2/<name>/…`, or `${url}/<name>/…` when `overridePath` is set.
// When an endpoint's host differs from the image's registry host, containerd adds `?ns=<host>`.
import { readdir, readFile, stat } from "node:fs/promises";
import { isIP } from "node:net";
import { isAbsolute, join, posix } from "node:path";
import { parse as parseToml } from "smol-toml";
import { InvalidArgumentError } from "../errors/errors.js";
import type { HostResolver, RegistryEndpoint } from "./types.js";

export type Capability = "pull" | "resolve" | "push";
const ALL_CAPABILITIES: Capability[] = ["pull", "resolve", "push"];

/** A RegistryEndpoint with the extra settings hosts.toml / the snapshotter config can carry. */
export interface HostEndpoint extends RegistryEndpoint {
  /** The registry host namespace this endpoint serves (e.g. "docker.io"). */
  namespace: string;
  /** Every CA file (`caFile` is the first). */
  caFiles?: string[];
  /** Every client key pair (`clientCert` is the first); `key` = `cert` when one PEM holds both. */
  clientCerts?: { cert: string; key: string }[];
  /** Header values as configured (arrays kept); `headers` joins them with ", ". */
  headerValues?: Record<string, string[]>;
  /**
   * containerd tries `https://` on this (http) host first and falls back to plain HTTP on a TLS
   * handshake failure (localhost defaults, http hosts that also have TLS settings). Clients that do
   * not implement the fallback just use `url`.
   */
  httpsFirst?: boolean;
}

/** An unusable hosts directory or resolver configuration (bad TOML, bad values, unreadable files). */
export class HostsConfigError extends InvalidArgumentError {
  override name = "HostsConfigError";
}

function unreadable(path: string, err: unknown): HostsConfigError {
  return new HostsConfigError(`reading ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, {
    cause: err,
  });
}

/** containerd's IsLocalhost: "localhost" or a loopback IP, with or without a port. */
export function isLocalhost(host: string): boolean {
  const h = splitHostPort(host).hostname.toLowerCase();
  if (h === "localhost") return true;
  const v = isIP(h);
  if (v === 4) return h.startsWith("127.");
  if (v === 6) return h === "::1" || h === "0:0:0:0:0:0:0:1";
  return false;
}

/** Splits "host:port", "[v6]:port", "[v6]", "v6"; port "" when absent. */
export function splitHostPort(host: string): { hostname: string; port: string } {
  if (host.startsWith("[")) {
    const end = host.indexOf("]");
    if (end > 0) {
      const rest = host.slice(end + 1);
      return { hostname: host.slice(1, end), port: rest.startsWith(":") ? rest.slice(1) : "" };
    }
  }
  const first = host.indexOf(":");
  if (first >= 0 && first === host.lastIndexOf(":"))
    return { hostname: host.slice(0, first), port: host.slice(first + 1) };
  return { hostname: host, port: "" };
}

/** The upstream endpoint for a registry host when nothing is configured (containerd's defaults). */
export function defaultEndpoint(host: string, opts: { plainHttp?: boolean } = {}): HostEndpoint {
  const h: ParsedHost = { scheme: "", host: "", path: "", overridePath: false, capabilities: [...ALL_CAPABILITIES] };
  fillDefault(h, host, opts.plainHttp ? "http" : "");
  return toEndpoint(h, host);
}

// ---------------------------------------------------------------------------------------------
// hosts.toml

export interface ParsedHost {
  scheme: string;
  host: string; // "" = the upstream default (filled later)
  path: string; // without the API root handling applied; see toEndpoint
  overridePath: boolean;
  capabilities: Capability[];
  caFiles?: string[];
  clientPairs?: [string, string][];
  skipVerify?: boolean;
  header?: Record<string, string[]>;
  dialTimeoutMs?: number;
  proxy?: string;
}

type TomlTable = Record<string, unknown>;

function isTable(v: unknown): v is TomlTable {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

function absPath(p: string, base: string): string {
  return isAbsolute(p) ? p : join(base, p);
}

function stringList(v: unknown[], what: string): string[] {
  return v.map((x) => {
    if (typeof x !== "string") throw new HostsConfigError(`unable to cast ${String(x)} to string in "${what}"`);
    return x;
  });
}

/** Go time.ParseDuration subset: "1.5s", "300ms", "1m30s", "2h". */
export function parseGoDuration(s: string): number {
  const units: Record<string, number> = {
    ns: 1e-6,
    us: 1e-3,
    µs: 1e-3,
    μs: 1e-3,
    ms: 1,
    s: 1000,
    m: 60_000,
    h: 3_600_000,
  };
  let rest = s.trim();
  let sign = 1;
  if (rest.startsWith("-") || rest.startsWith("+")) {
    if (rest[0] === "-") sign = -1;
    rest = rest.slice(1);
  }
  if (rest === "0") return 0;
  if (!rest) throw new HostsConfigError(`invalid duration ${JSON.stringify(s)}`);
  let total = 0;
  const re = /^(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/;
  while (rest) {
    const m = re.exec(rest);
    if (!m) throw new HostsConfigError(`invalid duration ${JSON.stringify(s)}`);
    total += Number(m[1]) * units[m[2]!]!;
    rest = rest.slice(m[0].length);
  }
  return sign * total;
}

function parseHostSection(server: string, baseDir: string, cfg: TomlTable): ParsedHost {
  const overridePath = cfg.override_path === true;
  const result: ParsedHost = { scheme: "", host: "", path: "", overridePath, capabilities: [...ALL_CAPABILITIES] };
  if (server) {
    const withScheme = server.startsWith("http") ? server : `https://${server}`;
    let u: URL;
    try {
      u = new URL(withScheme);
    } catch {
      throw new HostsConfigError(`unable to parse server ${server}`);
    }
    result.scheme = u.protocol.replace(/:$/, "");
    result.host = u.host;
    let p = decodeURIComponent(u.pathname);
    if (p === "/") p = ""; // WHATWG URL always has a path; a bare "/" is no path prefix
    if (p.length > 0) {
      p = posix.normalize(p);
      if (p.length > 1 && p.endsWith("/")) p = p.slice(0, -1);
      if (!p.endsWith("/v2") && !overridePath) p += "/v2";
    } else if (!overridePath) {
      p = "/v2";
    }
    result.path = p;
  }
  if (cfg.skip_verify !== undefined) {
    if (typeof cfg.skip_verify !== "boolean") throw new HostsConfigError(`invalid type for "skip_verify"`);
    result.skipVerify = cfg.skip_verify;
  }
  if (Array.isArray(cfg.capabilities) && cfg.capabilities.length > 0) {
    const caps = new Set<Capability>();
    for (const c of stringList(cfg.capabilities, "capabilities")) {
      const lc = c.toLowerCase();
      if (lc !== "pull" && lc !== "resolve" && lc !== "push") throw new HostsConfigError(`unknown capability ${c}`);
      caps.add(lc);
    }
    result.capabilities = ALL_CAPABILITIES.filter((c) => caps.has(c));
  }
  if (cfg.ca !== undefined) {
    if (typeof cfg.ca === "string") result.caFiles = [absPath(cfg.ca, baseDir)];
    else if (Array.isArray(cfg.ca)) result.caFiles = stringList(cfg.ca, "ca").map((p) => absPath(p, baseDir));
    else throw new HostsConfigError(`invalid type for "ca"`);
  }
  if (cfg.client !== undefined) {
    const pairs: [string, string][] = [];
    if (typeof cfg.client === "string") pairs.push([absPath(cfg.client, baseDir), ""]);
    else if (Array.isArray(cfg.client)) {
      for (const p of cfg.client) {
        if (typeof p === "string") pairs.push([absPath(p, baseDir), ""]);
        else if (Array.isArray(p)) {
          const s = stringList(p, "client");
          if (s.length !== 2) throw new HostsConfigError(`invalid pair for "client"`);
          pairs.push([absPath(s[0]!, baseDir), s[1] ? absPath(s[1], baseDir) : ""]);
        } else throw new HostsConfigError(`invalid type for "client"`);
      }
    } else throw new HostsConfigError(`invalid type for "client"`);
    result.clientPairs = pairs;
  }
  if (cfg.header !== undefined) {
    if (!isTable(cfg.header)) throw new HostsConfigError(`invalid type for "header"`);
    const h: Record<string, string[]> = {};
    for (const [k, v] of Object.entries(cfg.header)) {
      if (typeof v === "string") h[k] = [v];
      else if (Array.isArray(v)) h[k] = stringList(v, `header ${k}`);
      else throw new HostsConfigError(`invalid type for header "${k}"`);
    }
    result.header = h;
  }
  if (typeof cfg.dial_timeout === "string" && cfg.dial_timeout)
    result.dialTimeoutMs = parseGoDuration(cfg.dial_timeout);
  if (typeof cfg.proxy === "string" && cfg.proxy) result.proxy = parseProxy(cfg.proxy);
  return result;
}

/** An HTTP(S) proxy URL (`http://[user:pass@]host:port`); anything else is refused, not ignored. */
function parseProxy(proxy: string): string {
  let u: URL;
  try {
    u = new URL(proxy);
  } catch {
    throw new HostsConfigError(`invalid proxy ${JSON.stringify(proxy)}: not a URL`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:")
    throw new HostsConfigError(
      `invalid proxy ${JSON.stringify(proxy)}: only http:// and https:// proxies are supported`,
    );
  return proxy;
}

/** Parses a hosts.toml text: `[host."…"]` entries in file order, then the root (`server`). */
export function parseHostsToml(text: string, baseDir: string): ParsedHost[] {
  let doc: TomlTable;
  try {
    doc = parseToml(text) as TomlTable;
  } catch (err) {
    throw new HostsConfigError(`invalid TOML: ${(err as Error).message.split("\n")[0]}`, { cause: err });
  }
  const hosts: ParsedHost[] = [];
  const table = doc.host;
  if (table !== undefined) {
    if (!isTable(table)) throw new HostsConfigError(`invalid type for "host"`);
    // smol-toml keeps insertion (= file) order for string keys; a URL key is never an array index
    for (const [name, cfg] of Object.entries(table)) {
      if (!isTable(cfg)) throw new HostsConfigError(`invalid type for host "${name}"`);
      hosts.push(parseHostSection(name, baseDir, cfg));
    }
  }
  const server = doc.server;
  if (server !== undefined && typeof server !== "string") throw new HostsConfigError(`invalid type for "server"`);
  hosts.push(parseHostSection(server ?? "", baseDir, doc));
  return hosts;
}

/** Docker's certs.d layout: `*.crt` CA files, `*.cert` client certs with a matching `*.key`. */
async function loadCertFiles(dir: string): Promise<ParsedHost[]> {
  const h: ParsedHost = { scheme: "", host: "", path: "", overridePath: false, capabilities: [...ALL_CAPABILITIES] };
  let names: string[] = [];
  try {
    const ents = await readdir(dir, { withFileTypes: true });
    names = ents
      .filter((e) => !e.isDirectory())
      .map((e) => e.name)
      .sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw unreadable(dir, err);
  }
  for (const n of names) {
    if (n.endsWith(".crt")) {
      h.caFiles ??= [];
      h.caFiles.push(join(dir, n));
    }
    if (n.endsWith(".cert")) {
      const key = join(dir, `${n.slice(0, -5)}.key`);
      const hasKey = await stat(key).then(
        () => true,
        (e: NodeJS.ErrnoException) => {
          if (e.code === "ENOENT") return false;
          throw unreadable(key, e);
        },
      );
      h.clientPairs ??= [];
      h.clientPairs.push([join(dir, n), hasKey ? key : ""]);
    }
  }
  return [h];
}

/** containerd's "host:port" → "host_port_" directory name. */
export function hostDirectoryName(host: string): string {
  const idx = host.lastIndexOf(":");
  return idx > 0 ? `${host.slice(0, idx)}_${host.slice(idx + 1)}_` : host;
}

/** The candidate directories for a host, in lookup order. */
export function hostPaths(root: string, host: string): string[] {
  const out = [join(root, hostDirectoryName(host))];
  if (hostDirectoryName(host) !== host) out.push(join(root, host));
  out.push(join(root, "_default"));
  return out;
}

function fillDefault(h: ParsedHost, host: string, defaultScheme: string): void {
  if (host === "docker.io") {
    h.scheme = "https";
    h.host = "registry-1.docker.io";
  } else if (isLocalhost(host)) {
    h.host = host;
    if (defaultScheme === "") {
      const { port } = splitHostPort(host);
      // port default or 443: https only; otherwise http (containerd then tries https first)
      h.scheme = port === "" || port === "443" ? "https" : "http";
      if (port !== "80") h.skipVerify = true;
    } else {
      h.scheme = defaultScheme;
    }
  } else {
    h.host = host;
    h.scheme = defaultScheme || "https";
  }
  h.path = "/v2";
  h.overridePath = false;
  h.capabilities = [...ALL_CAPABILITIES];
}

function toEndpoint(h: ParsedHost, namespace: string): HostEndpoint {
  let path = h.path;
  if (!h.overridePath && path.endsWith("/v2")) path = path.slice(0, -3);
  if (path.endsWith("/")) path = path.slice(0, -1);
  const ep: HostEndpoint = { url: `${h.scheme}://${h.host}${path}`, capabilities: [...h.capabilities], namespace };
  if (h.overridePath) ep.overridePath = true;
  if (h.skipVerify !== undefined) ep.skipVerify = h.skipVerify;
  if (h.caFiles?.length) {
    ep.caFile = h.caFiles[0];
    ep.caFiles = [...h.caFiles];
  }
  if (h.clientPairs?.length) {
    ep.clientCerts = h.clientPairs.map(([cert, key]) => ({ cert, key: key || cert }));
    ep.clientCert = ep.clientCerts[0];
  }
  if (h.header && Object.keys(h.header).length) {
    ep.headerValues = h.header;
    ep.headers = Object.fromEntries(Object.entries(h.header).map(([k, v]) => [k, v.join(", ")]));
  }
  if (h.dialTimeoutMs !== undefined) ep.dialTimeoutMs = h.dialTimeoutMs;
  if (h.proxy) ep.proxy = h.proxy;
  const explicitTls = h.caFiles !== undefined || h.clientPairs !== undefined || h.skipVerify !== undefined;
  if (h.scheme === "http" && explicitTls && splitHostPort(h.host).port !== "80") ep.httpsFirst = true;
  return ep;
}

export interface HostsDirResolverOptions {
  /** Hosts directory (e.g. /etc/containerd/certs.d); several = first directory that has the host wins. */
  hostsDir?: string | string[];
  /** `--plain-http`: default scheme http for hosts without configuration (not docker.io). */
  plainHttp?: boolean;
  /** Called when a hosts.toml is unusable (containerd logs and falls back to certificate files). */
  onWarning?: (message: string) => void;
}

/** containerd-compatible resolution from a hosts directory (re-read on every call). */
export class HostsDirResolver implements HostResolver {
  private readonly dirs: string[];
  private readonly defaultScheme: string;
  private readonly onWarning: (message: string) => void;

  constructor(opts: HostsDirResolverOptions = {}) {
    const d = opts.hostsDir ?? [];
    this.dirs = Array.isArray(d) ? d : [d];
    this.defaultScheme = opts.plainHttp ? "http" : "";
    this.onWarning = opts.onWarning ?? (() => {});
  }

  /** The directory used for a host, if any. */
  async hostDir(host: string): Promise<string | undefined> {
    for (const root of this.dirs) {
      for (const p of hostPaths(root, host)) {
        try {
          await stat(p);
          return p;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw unreadable(p, err);
        }
      }
    }
    return undefined;
  }

  async endpoints(host: string): Promise<HostEndpoint[]> {
    let hosts: ParsedHost[] | undefined;
    const dir = await this.hostDir(host);
    if (dir !== undefined) hosts = await this.loadHostDir(dir);
    if (!hosts) hosts = [{ scheme: "", host: "", path: "", overridePath: false, capabilities: [...ALL_CAPABILITIES] }];
    const last = hosts[hosts.length - 1];
    if (last && last.host === "") fillDefault(last, host, this.defaultScheme);
    return hosts.map((h) => toEndpoint(h, host));
  }

  private async loadHostDir(dir: string): Promise<ParsedHost[]> {
    const file = join(dir, "hosts.toml");
    let text = "";
    try {
      text = await readFile(file, "utf8");
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "ENOENT" && code !== "ENOTDIR") throw unreadable(file, err);
    }
    if (text.length === 0) return loadCertFiles(dir);
    try {
      return parseHostsToml(text, dir);
    } catch (err) {
      this.onWarning(`failed to decode ${file}: ${(err as Error).message}`);
      return loadCertFiles(dir);
    }
  }
}

/** Upstream only (no configuration). */
export class DefaultResolver implements HostResolver {
  constructor(private readonly opts: { plainHttp?: boolean } = {}) {}
  async endpoints(host: string): Promise<HostEndpoint[]> {
    return [defaultEndpoint(host, this.opts)];
  }
}

// ---------------------------------------------------------------------------------------------
// snapshotter config: [resolver.host."<host>"] / [[resolver.host."<host>".mirrors]]

export interface MirrorConfig {
  host: string;
  insecure?: boolean;
  request_timeout_sec?: number;
  header?: Record<string, string | string[]>;
}

function mirrorEndpoint(m: MirrorConfig, namespace: string): HostEndpoint {
  let scheme = "https";
  let rest = m.host;
  const sm = /^(https?):\/\//i.exec(rest);
  if (sm) {
    scheme = sm[1]!.toLowerCase();
    rest = rest.slice(sm[0].length);
  }
  while (rest.endsWith("/")) rest = rest.slice(0, -1);
  const slash = rest.indexOf("/");
  let hostPart = slash >= 0 ? rest.slice(0, slash) : rest;
  let path = slash >= 0 ? rest.slice(slash) : "";
  if (path.endsWith("/v2")) path = path.slice(0, -3);
  if (isLocalhost(hostPart) || m.insecure === true) scheme = "http";
  if (hostPart === "docker.io") hostPart = "registry-1.docker.io";
  const ep: HostEndpoint = { url: `${scheme}://${hostPart}${path}`, capabilities: ["pull", "resolve"], namespace };
  if (typeof m.request_timeout_sec === "number" && m.request_timeout_sec !== 0)
    ep.requestTimeoutSec = m.request_timeout_sec;
  if (m.header && isTable(m.header)) {
    const hv: Record<string, string[]> = {};
    for (const [k, v] of Object.entries(m.header)) {
      if (typeof v === "string") hv[k] = [v];
      else if (Array.isArray(v)) hv[k] = v.filter((x): x is string => typeof x === "string");
    }
    if (Object.keys(hv).length) {
      ep.headerValues = hv;
      ep.headers = Object.fromEntries(Object.entries(hv).map(([k, v]) => [k, v.join(", ")]));
    }
  }
  return ep;
}

/** The `[resolver]` settings other than hosts. */
export interface ResolverSettings {
  /** 0 ⇒ 3600; negative = never expire. */
  authClientTtlSec: number;
  enableAuthClientSharing: boolean;
}

export function resolverSettings(table: unknown): ResolverSettings {
  const t = resolverTable(table);
  const ttl = typeof t.auth_client_ttl_sec === "number" ? t.auth_client_ttl_sec : 0;
  return { authClientTtlSec: ttl === 0 ? 3600 : ttl, enableAuthClientSharing: t.enable_auth_client_sharing === true };
}

function resolverTable(table: unknown): TomlTable {
  if (!isTable(table)) return {};
  // accept the whole config document as well as its [resolver] table
  if (isTable(table.resolver)) return table.resolver;
  return table;
}

/**
 * The snapshotter's resolver (service/resolver/registry.go): for image host H, each
 * `[[resolver.host."H".mirrors]]` in order, then H itself; http for localhost or `insecure = true`,
 * else https; `docker.io` ⇒ `registry-1.docker.io`; capabilities pull+resolve.
 * `table` is the parsed config document or its `[resolver]` table. A HostResolver, typed so that
 * the endpoints' HostEndpoint settings stay visible.
 */
export function resolverFromConfig(table: unknown): { endpoints(host: string): Promise<HostEndpoint[]> } {
  const t = resolverTable(table);
  const hostsTable = isTable(t.host) ? t.host : {};
  const mirrorsFor = (host: string): MirrorConfig[] => {
    const h = hostsTable[host];
    if (!isTable(h) || !Array.isArray(h.mirrors)) return [];
    const out: MirrorConfig[] = [];
    for (const m of h.mirrors) {
      if (!isTable(m) || typeof m.host !== "string" || !m.host) continue;
      out.push({
        host: m.host,
        ...(typeof m.insecure === "boolean" ? { insecure: m.insecure } : {}),
        ...(typeof m.request_timeout_sec === "number" ? { request_timeout_sec: m.request_timeout_sec } : {}),
        ...(isTable(m.header) ? { header: m.header as Record<string, string | string[]> } : {}),
      });
    }
    return out;
  };
  return {
    async endpoints(host: string): Promise<HostEndpoint[]> {
      return [...mirrorsFor(host), { host }].map((m) => mirrorEndpoint(m, host));
    },
  };
}

/** Reads a TOML file and returns the parsed document (for resolverFromConfig). */
export async function readTomlFile(path: string): Promise<Record<string, unknown>> {
  const text = await readFile(path, "utf8");
  try {
    return parseToml(text) as Record<string, unknown>;
  } catch (err) {
    throw new HostsConfigError(`${path}: invalid TOML: ${(err as Error).message.split("\n")[0]}`, { cause: err });
  }
}
