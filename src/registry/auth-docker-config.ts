// Registry credentials from Docker's client config (`$DOCKER_CONFIG/config.json`, default
// `~/.docker/config.json`): `credHelpers[<host>]` (else `credsStore`), then `auths[<host>]` when the
// helper has nothing for the host
// (`auth` = base64 "user:pass", or `username`/`password`, or `identitytoken`). Credential helpers
// are the `docker-credential-<name>` executables on PATH: `get` with the server URL on stdin prints
// `{"ServerURL","Username","Secret"}`; Username `<token>` means Secret is an identity (refresh) token.
// The file is re-read on every lookup (as soci's keychain does), so edits apply without a restart.
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { FailedPreconditionError } from "../errors/errors.js";

/** Credentials for one registry host. Secrets must never be logged or put in error messages. */
export interface Credentials {
  username: string;
  password: string;
  /** OAuth2 refresh token (docker's `identitytoken`); used instead of username/password for Bearer. */
  identityToken?: string;
}

/**
 * Looks up credentials for a registry host ("docker.io", "localhost:5000"). undefined = none.
 * `scope.repository` names the repository the request is for, for sources that hold credentials
 * per image (the CRI keychain); host-wide sources ignore it.
 */
export type CredentialsProvider = (host: string, scope?: { repository?: string }) => Promise<Credentials | undefined>;

/**
 * This machine's credential sources are unusable (an unreadable or invalid docker config, a failing
 * or hanging credential helper): a precondition of authenticating is not met. Messages hold no
 * secrets.
 */
export class CredentialsError extends FailedPreconditionError {
  override name = "CredentialsError";
}

/** Docker Hub's key in config.json. */
export const DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/";
const DOCKER_HUB_HOSTS = new Set(["docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"]);

export function isDockerHub(host: string): boolean {
  return DOCKER_HUB_HOSTS.has(host.toLowerCase());
}

/** docker's ConvertToHostname: drop scheme and path ("https://x.io/v1/" → "x.io"). */
export function configKeyToHostname(key: string): string {
  let h = key;
  if (h.startsWith("http://")) h = h.slice(7);
  else if (h.startsWith("https://")) h = h.slice(8);
  const slash = h.indexOf("/");
  if (slash >= 0) h = h.slice(0, slash);
  return h.toLowerCase();
}

/** The keys config.json may use for a host, most specific first. */
function candidateKeys(host: string): string[] {
  if (isDockerHub(host)) return [DOCKER_HUB_CONFIG_KEY, "index.docker.io", "docker.io", "registry-1.docker.io", host];
  return [host, `https://${host}`, `http://${host}`];
}

/** The server URL handed to a credential helper (docker passes the hub's v1 URL for Docker Hub). */
export function helperServerUrl(host: string): string {
  return isDockerHub(host) ? DOCKER_HUB_CONFIG_KEY : host;
}

interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
}

interface DockerConfigFile {
  auths?: Record<string, AuthEntry>;
  credHelpers?: Record<string, string>;
  credsStore?: string;
}

export interface DockerConfigOptions {
  /** Directory holding config.json; default `$DOCKER_CONFIG`, else `~/.docker`. */
  configDir?: string;
  /** Full path of the config file (overrides configDir). */
  configFile?: string;
  /** Environment used for DOCKER_CONFIG/HOME/PATH (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Credential helper timeout in ms (default 30000). */
  helperTimeoutMs?: number;
}

export function dockerConfigPath(opts: DockerConfigOptions = {}): string {
  if (opts.configFile) return opts.configFile;
  const env = opts.env ?? process.env;
  const dir = opts.configDir ?? (env.DOCKER_CONFIG || join(env.HOME || homedir(), ".docker"));
  return join(dir, "config.json");
}

/** Credentials from Docker's config.json and credential helpers. */
export class DockerConfigCredentials {
  private readonly opts: DockerConfigOptions;

  constructor(opts: DockerConfigOptions = {}) {
    this.opts = opts;
  }

  get path(): string {
    return dockerConfigPath(this.opts);
  }

  /** A CredentialsProvider bound to this instance. */
  readonly provider: CredentialsProvider = (host) => this.get(host);

  async get(host: string): Promise<Credentials | undefined> {
    const cfg = await this.load();
    if (!cfg) return undefined;
    const keys = candidateKeys(host);
    const helpers = cfg.credHelpers ?? {};
    let helperUsed = false;
    for (const k of keys) {
      const helper = helpers[k];
      if (typeof helper === "string" && helper) {
        const c = await this.fromHelper(helper, host);
        if (c) return c;
        helperUsed = true; // "not found": no credsStore for this host, auths may still hold some
        break;
      }
    }
    if (!helperUsed && typeof cfg.credsStore === "string" && cfg.credsStore) {
      const c = await this.fromHelper(cfg.credsStore, host);
      if (c) return c;
    }
    return fromAuths(cfg.auths ?? {}, host, keys);
  }

  private async load(): Promise<DockerConfigFile | undefined> {
    const p = this.path;
    let text: string;
    try {
      text = await readFile(p, "utf8");
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "ENOTDIR") return undefined;
      throw new CredentialsError(`reading docker config ${p}: ${code ?? "error"}`);
    }
    if (!text.trim()) return undefined;
    // never echo the parser's message: it may quote file contents (secrets)
    const parsed = parseJsonObject(text);
    if (!parsed || Array.isArray(parsed)) throw new CredentialsError(`docker config ${p} is not valid JSON`);
    return parsed as DockerConfigFile;
  }

  private async fromHelper(helper: string, host: string): Promise<Credentials | undefined> {
    const out = await runCredentialHelper(helper, helperServerUrl(host), {
      env: this.opts.env ?? process.env,
      timeoutMs: this.opts.helperTimeoutMs ?? 30_000,
    });
    if (!out) return undefined;
    if (out.Username === "<token>") return { username: "", password: "", identityToken: out.Secret ?? "" };
    if (!out.Username && !out.Secret) return undefined;
    return { username: out.Username ?? "", password: out.Secret ?? "" };
  }
}

function fromAuths(auths: Record<string, AuthEntry>, host: string, keys: string[]): Credentials | undefined {
  let entry: AuthEntry | undefined;
  for (const k of keys) {
    if (Object.hasOwn(auths, k)) {
      entry = auths[k];
      break;
    }
  }
  if (!entry) {
    // docker matches keys by hostname: "https://host/v2/" etc.
    const want = isDockerHub(host) ? "index.docker.io" : host.toLowerCase();
    for (const [k, v] of Object.entries(auths)) {
      if (configKeyToHostname(k) === want) {
        entry = v;
        break;
      }
    }
  }
  if (!entry || typeof entry !== "object") return undefined;
  let username = typeof entry.username === "string" ? entry.username : "";
  let password = typeof entry.password === "string" ? entry.password : "";
  if (typeof entry.auth === "string" && entry.auth) {
    const decoded = Buffer.from(entry.auth, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon < 0) throw new CredentialsError(`docker config: invalid "auth" entry for ${host}`);
    username = decoded.slice(0, colon);
    password = decoded.slice(colon + 1);
  }
  if (typeof entry.identitytoken === "string" && entry.identitytoken) {
    return { username, password, identityToken: entry.identitytoken };
  }
  if (!username && !password) return undefined;
  return { username, password };
}

interface HelperOutput {
  ServerURL?: string;
  Username?: string;
  Secret?: string;
}

/**
 * Runs `docker-credential-<name> get` with `serverUrl` on stdin. Returns undefined when the helper
 * reports "credentials not found". Errors name the helper and its exit status, never its output.
 */
export async function runCredentialHelper(
  name: string,
  serverUrl: string,
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<HelperOutput | undefined> {
  if (!/^[A-Za-z0-9._-]+$/.test(name))
    throw new CredentialsError(`invalid credential helper name ${JSON.stringify(name)}`);
  const exe = `docker-credential-${name}`;
  const timeoutMs = opts.timeoutMs ?? 30_000;
  return new Promise<HelperOutput | undefined>((resolve, reject) => {
    let settled = false;
    const child = spawn(exe, ["get"], { env: opts.env ?? process.env, stdio: ["pipe", "pipe", "pipe"] });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      child.kill("SIGKILL");
      reject(new CredentialsError(`credential helper ${exe} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    timer.unref?.();
    const fail = (e: CredentialsError): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(e);
    };
    child.on("error", (err: NodeJS.ErrnoException) => {
      fail(
        new CredentialsError(
          `credential helper ${exe}: ${err.code === "ENOENT" ? "not found on PATH" : (err.code ?? "spawn failed")}`,
        ),
      );
    });
    child.stdout.on("data", (b: Buffer) => stdout.push(b));
    child.stderr.on("data", (b: Buffer) => stderr.push(b));
    child.stdin.on("error", () => {
      /* helper exited before reading stdin: reported by "close" */
    });
    child.on("close", (code, signal) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const out = Buffer.concat(stdout).toString("utf8").trim();
      if (code !== 0) {
        const msg = (out + "\n" + Buffer.concat(stderr).toString("utf8")).toLowerCase();
        // docker-credential-helpers' ErrCredentialsNotFound text
        if (msg.includes("credentials not found")) return resolve(undefined);
        return reject(new CredentialsError(`credential helper ${exe} failed (${signal ?? `exit status ${code}`})`));
      }
      const parsed = parseJsonObject(out);
      if (parsed) resolve(parsed as HelperOutput);
      else reject(new CredentialsError(`credential helper ${exe} printed invalid JSON`));
    });
    child.stdin.end(serverUrl);
  });
}

/** A JSON object, or undefined for anything else (the parser's message could quote a secret). */
export function parseJsonObject(text: string): object | undefined {
  try {
    const j = JSON.parse(text) as unknown;
    return j && typeof j === "object" ? j : undefined;
  } catch {
    return undefined;
  }
}
