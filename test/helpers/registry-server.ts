// Starts Debian's `docker-registry` (distribution 2.8) on 127.0.0.1:<free port> with filesystem
// storage in a temp dir and deletes enabled. Needs the apt package `docker-registry`.
// Options: `auth: token` (a token service's realm and signing certificate) or htpasswd (bcrypt
// file), TLS (`http.tls`), and an access log of the requests it served (to prove who served what).

import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent, fetch as undiciFetch } from "undici";

export const REGISTRY_BIN = process.env.DOCKER_REGISTRY_BIN ?? "/usr/bin/docker-registry";

export interface RegistryServer {
  /** host:port, e.g. 127.0.0.1:41234 */
  host: string;
  url: string;
  dir: string;
  /** "METHOD /path?query STATUS" of every request served, in order (only with `accessLog: true`). */
  requests: string[];
  stop(): Promise<void>;
}

export interface RegistryOptions {
  /** Distribution `auth.token`: the token service realm, service, issuer and trusted certificate. */
  token?: { realm: string; service: string; issuer: string; rootCertBundle: string };
  /** Distribution `auth.htpasswd`: a file of bcrypt `user:hash` lines. */
  htpasswd?: { path: string; realm?: string };
  /** Serve HTTPS with this certificate and key. */
  tls?: { certFile: string; keyFile: string };
  /** Record the requests served (Distribution's access log on stdout). */
  accessLog?: boolean;
}

function authConfig(opts: RegistryOptions): string[] {
  if (opts.token) {
    return [
      "auth:",
      "  token:",
      `    realm: ${opts.token.realm}`,
      `    service: ${opts.token.service}`,
      `    issuer: ${opts.token.issuer}`,
      `    rootcertbundle: ${opts.token.rootCertBundle}`,
    ];
  }
  if (opts.htpasswd)
    return [
      "auth:",
      "  htpasswd:",
      `    realm: ${opts.htpasswd.realm ?? "soci-test"}`,
      `    path: ${opts.htpasswd.path}`,
    ];
  return [];
}

const ACCESS_LINE = /"([A-Z]+) (\S+) HTTP\/[\d.]+" (\d{3})/;

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      const port = typeof a === "object" && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export async function startRegistry(opts: RegistryOptions = {}): Promise<RegistryServer> {
  if (!existsSync(REGISTRY_BIN)) {
    throw new Error(
      `${REGISTRY_BIN} not found: install the Debian package docker-registry (apt-get install -y docker-registry)`,
    );
  }
  const dir = mkdtempSync(join(tmpdir(), "soci-registry-"));
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const host = `127.0.0.1:${port}`;
    const config = join(dir, "config.yml");
    writeFileSync(
      config,
      [
        "version: 0.1",
        "log:",
        "  level: error",
        "  accesslog:",
        `    disabled: ${opts.accessLog ? "false" : "true"}`,
        "storage:",
        "  filesystem:",
        `    rootdirectory: ${join(dir, "data")}`,
        "  delete:",
        "    enabled: true",
        "http:",
        `  addr: ${host}`,
        ...(opts.tls ? ["  tls:", `    certificate: ${opts.tls.certFile}`, `    key: ${opts.tls.keyFile}`] : []),
        ...authConfig(opts),
        "",
      ].join("\n"),
    );
    const child = spawn(REGISTRY_BIN, ["serve", config], { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    const requests: string[] = [];
    let partial = "";
    child.stdout!.on("data", (d: Buffer) => {
      const lines = (partial + d.toString()).split("\n");
      partial = lines.pop()!;
      for (const l of lines) {
        const m = ACCESS_LINE.exec(l);
        if (m) requests.push(`${m[1]} ${m[2]} ${m[3]}`);
      }
    });
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    const url = `${opts.tls ? "https" : "http"}://${host}`;
    const ok = await waitReady(url, exited);
    if (ok) {
      requests.length = 0; // readiness probes are not the test's traffic
      return {
        host,
        url,
        dir,
        requests,
        stop: async () => {
          await stopChild(child, exited);
          rmSync(dir, { recursive: true, force: true });
        },
      };
    }
    await stopChild(child, exited);
    if (attempt >= 2) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`docker-registry did not start: ${stderr}`);
    }
  }
}

async function waitReady(url: string, exited: Promise<number | null>): Promise<boolean> {
  let dead = false;
  void exited.then(() => {
    dead = true;
  });
  const deadline = Date.now() + 15_000;
  // the probe only asks "is it serving": TLS unverified, 401 (auth configured) counts as up
  const dispatcher = new Agent({ connect: { rejectUnauthorized: false } });
  try {
    while (Date.now() < deadline && !dead) {
      try {
        const r = await undiciFetch(`${url}/v2/`, { dispatcher });
        await r.arrayBuffer();
        if (r.status === 200 || r.status === 401) return true;
      } catch {
        /* not yet */
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    return false;
  } finally {
    await dispatcher.close();
  }
}

async function stopChild(child: ChildProcess, exited: Promise<number | null>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const t = setTimeout(() => child.kill("SIGKILL"), 3000);
  await exited;
  clearTimeout(t);
}
