// A Docker-style token service on 127.0.0.1 for Distribution's `auth: token`: GET <realm>?service=
// &scope=…&account=… with Basic credentials answers a JWT (RS256, `x5c` = the signing certificate,
// which the registry trusts through `rootcertbundle`) granting every requested repository scope.
// Wrong credentials get a 401 with a Distribution error body; anonymous requests get a token with no
// access (the registry then refuses, as Docker Hub does for private repositories). OAuth2 POSTs
// (`grant_type=refresh_token`, docker's identity tokens) are granted for the known refresh tokens.
// Every request is logged (account, scopes, outcome) so tests can count token fetches and scopes.
import { createPrivateKey, randomBytes, sign, type KeyObject } from "node:crypto";
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface TokenRequest {
  method: string;
  service: string | undefined;
  /** Requested scopes (every `scope` parameter, space-separated lists split). */
  scopes: string[];
  /** Basic user (or the refresh token's user), if credentials were sent. */
  user: string | undefined;
  outcome: "granted" | "anonymous" | "rejected";
}

export interface TokenServerOptions {
  /** user → password */
  users: Record<string, string>;
  /** OAuth2 refresh token (docker `identitytoken`) → user */
  refreshTokens?: Record<string, string>;
  keyPem: string;
  certDerBase64: string;
  issuer: string;
  service: string;
  expiresInSec?: number;
}

export interface TokenServer {
  /** The realm URL for the registry config. */
  realm: string;
  requests: TokenRequest[];
  stop(): Promise<void>;
}

const b64url = (b: Buffer | string): string => Buffer.from(b).toString("base64url");

function jwt(key: KeyObject, certDerBase64: string, claims: Record<string, unknown>): string {
  const header = b64url(JSON.stringify({ typ: "JWT", alg: "RS256", x5c: [certDerBase64] }));
  const body = b64url(JSON.stringify(claims));
  const sig = sign("sha256", Buffer.from(`${header}.${body}`), key);
  return `${header}.${body}.${b64url(sig)}`;
}

/** `repository:<name>:<a,b>` → access entry; names never hold ":" but split from both ends anyway. */
function access(scope: string): { type: string; name: string; actions: string[] } | undefined {
  const first = scope.indexOf(":");
  const last = scope.lastIndexOf(":");
  if (first <= 0 || last <= first) return undefined;
  return {
    type: scope.slice(0, first),
    name: scope.slice(first + 1, last),
    actions: scope
      .slice(last + 1)
      .split(",")
      .filter(Boolean),
  };
}

export async function startTokenServer(opts: TokenServerOptions): Promise<TokenServer> {
  const key = createPrivateKey(opts.keyPem);
  const requests: TokenRequest[] = [];
  const server: Server = createServer((req, res) => {
    const body: Buffer[] = [];
    req.on("data", (c: Buffer) => body.push(c));
    req.on("end", () =>
      answer(req.method ?? "GET", req.url ?? "/", req.headers.authorization, Buffer.concat(body).toString("utf8"), res),
    );
  });
  const answer = (method: string, url: string, auth: string | undefined, form: string, res: ServerResponse): void => {
    const u = new URL(url, "http://x");
    // OAuth2 POST: the form carries service, scope (space-separated) and the grant
    const params = method === "POST" ? new URLSearchParams(form) : u.searchParams;
    const scopes = params
      .getAll("scope")
      .flatMap((s) => s.split(" "))
      .filter(Boolean);
    let user: string | undefined;
    let ok = false;
    if (method === "POST") {
      const rt = params.get("grant_type") === "refresh_token" ? (params.get("refresh_token") ?? "") : "";
      user = opts.refreshTokens && Object.hasOwn(opts.refreshTokens, rt) ? opts.refreshTokens[rt] : undefined;
      ok = user !== undefined;
      if (!ok) {
        requests.push({ method, service: params.get("service") ?? undefined, scopes, user, outcome: "rejected" });
        res.writeHead(401, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: "invalid_grant", details: "unknown refresh token" }));
        return;
      }
    } else if (auth?.startsWith("Basic ")) {
      const dec = Buffer.from(auth.slice(6), "base64").toString("utf8");
      const i = dec.indexOf(":");
      user = i < 0 ? dec : dec.slice(0, i);
      const pass = i < 0 ? "" : dec.slice(i + 1);
      ok = Object.hasOwn(opts.users, user) && opts.users[user] === pass;
      if (!ok) {
        requests.push({ method, service: params.get("service") ?? undefined, scopes, user, outcome: "rejected" });
        res.writeHead(401, { "content-type": "application/json", "www-authenticate": 'Basic realm="soci-test-token"' });
        res.end(JSON.stringify({ errors: [{ code: "UNAUTHORIZED", message: "invalid username or password" }] }));
        return;
      }
    }
    requests.push({
      method,
      service: params.get("service") ?? undefined,
      scopes,
      user,
      outcome: ok ? "granted" : "anonymous",
    });
    const now = Math.floor(Date.now() / 1000);
    const expires = opts.expiresInSec ?? 300;
    const token = jwt(key, opts.certDerBase64, {
      iss: opts.issuer,
      sub: user ?? "",
      aud: params.get("service") ?? "",
      exp: now + expires,
      nbf: now - 5,
      iat: now,
      jti: randomBytes(12).toString("hex"),
      access: ok ? scopes.map(access).filter((a) => a !== undefined) : [],
    });
    res.writeHead(200, { "content-type": "application/json" });
    res.end(
      JSON.stringify({
        token,
        access_token: token,
        expires_in: expires,
        issued_at: new Date(now * 1000).toISOString(),
      }),
    );
  };
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    realm: `http://127.0.0.1:${port}/token`,
    requests,
    stop: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
