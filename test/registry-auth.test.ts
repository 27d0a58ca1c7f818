import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  AuthError,
  CredentialsError,
  DockerConfigCredentials,
  mergeScopes,
  parseUserFlag,
  parseWwwAuthenticate,
  RegistryAuthorizer,
  scopeString,
} from "../src/registry/auth.js";
import type { AuthScope, Authorizer } from "../src/registry/types.js";
import { errorCodeOf } from "../src/errors/errors.js";

const USER = "alice";
const PASS = "s3cret-Pa55word";
const REPO = "library/app";

// ---------------------------------------------------------------------------------------------
// loopback token service + registry

interface TokenReq {
  method: string;
  query: URLSearchParams;
  authorization: string | undefined;
  form?: URLSearchParams;
}

interface Fixture {
  server: Server;
  base: string;
  tokenReqs: TokenReq[];
  registryReqs: { path: string; authorization: string | undefined }[];
  valid: Set<string>;
  expiresIn: number | undefined;
  tokenField: "token" | "access_token";
  mode: "bearer" | "basic";
  refreshTokens: Set<string>;
  challengeScope: boolean;
}

function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<Server> {
  const server = createServer(handler);
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

function body(req: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
  });
}

async function startFixture(): Promise<Fixture> {
  let n = 0;
  const fx = {
    tokenReqs: [],
    registryReqs: [],
    valid: new Set<string>(),
    expiresIn: 300,
    tokenField: "token",
    mode: "bearer",
    refreshTokens: new Set<string>(["refresh-0"]),
    challengeScope: true,
  } as unknown as Fixture;
  const basicOk = `Basic ${Buffer.from(`${USER}:${PASS}`).toString("base64")}`;
  fx.server = await listen(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    if (url.pathname === "/token") {
      const tr: TokenReq = {
        method: req.method ?? "",
        query: url.searchParams,
        authorization: req.headers.authorization,
      };
      if (req.method === "POST") tr.form = new URLSearchParams(await body(req));
      fx.tokenReqs.push(tr);
      const json = (status: number, obj: unknown): void => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(obj));
      };
      if (req.method === "POST") {
        const rt = tr.form!.get("refresh_token") ?? "";
        if (tr.form!.get("grant_type") !== "refresh_token" || !fx.refreshTokens.has(rt)) {
          return json(401, { errors: [{ code: "UNAUTHORIZED", message: `bad refresh token ${rt}` }] });
        }
        const tok = `oauth-${++n}`;
        fx.valid.add(tok);
        const next = `refresh-${n}`;
        fx.refreshTokens.add(next);
        return json(200, { access_token: tok, refresh_token: next, expires_in: fx.expiresIn });
      }
      if (tr.authorization !== undefined && tr.authorization !== basicOk) {
        const given = Buffer.from(tr.authorization.replace(/^Basic /, ""), "base64").toString();
        // a badly behaved service echoing what it received: must be scrubbed by the client
        return json(401, { errors: [{ code: "UNAUTHORIZED", message: `bad credentials ${given}` }] });
      }
      const tok = `tok-${++n}-${tr.authorization ? "user" : "anon"}`;
      fx.valid.add(tok);
      const out: Record<string, unknown> = { [fx.tokenField]: tok };
      if (fx.expiresIn !== undefined) out.expires_in = fx.expiresIn;
      return json(200, out);
    }
    if (url.pathname.startsWith("/v2/")) {
      const a = req.headers.authorization;
      fx.registryReqs.push({ path: url.pathname, authorization: a });
      const ok = fx.mode === "basic" ? a === basicOk : a?.startsWith("Bearer ") && fx.valid.has(a.slice(7));
      if (ok) {
        res.writeHead(200, { "content-type": "text/plain" });
        return res.end("ok");
      }
      const chal =
        fx.mode === "basic"
          ? `Basic realm="registry"`
          : `Bearer realm="${fx.base}/token",service="test-registry"${fx.challengeScope ? `,scope="repository:${REPO}:pull"` : ""}`;
      res.writeHead(401, { "www-authenticate": chal, "content-type": "application/json" });
      return res.end(JSON.stringify({ errors: [{ code: "UNAUTHORIZED" }] }));
    }
    res.writeHead(404);
    res.end();
  });
  fx.base = `http://127.0.0.1:${(fx.server.address() as AddressInfo).port}`;
  return fx;
}

/** What the registry client does: ask, send, on 401 hand over the challenge, retry once. */
async function get(
  auth: Authorizer,
  fx: Fixture,
  scope: AuthScope,
  path = `/v2/${REPO}/manifests/latest`,
): Promise<number> {
  const send = async (): Promise<Response> => {
    const a = await auth.authorization(scope);
    return fetch(`${fx.base}${path}`, { headers: a ? { authorization: a } : {} });
  };
  let res = await send();
  await res.arrayBuffer();
  if (res.status === 401 && (await auth.challenged(scope, res.headers.get("www-authenticate") ?? ""))) {
    res = await send();
    await res.arrayBuffer();
  }
  return res.status;
}

let fx: Fixture;
let host: string;
const scope = (actions: AuthScope["actions"] = ["pull"], repository = REPO): AuthScope => ({
  host,
  repository,
  actions,
});

beforeAll(async () => {
  fx = await startFixture();
  host = new URL(fx.base).host;
});
afterAll(async () => {
  await new Promise((r) => fx.server.close(r));
});
beforeEach(() => {
  fx.tokenReqs.length = 0;
  fx.registryReqs.length = 0;
  fx.valid.clear();
  fx.expiresIn = 300;
  fx.tokenField = "token";
  fx.mode = "bearer";
  fx.challengeScope = true;
});

// ---------------------------------------------------------------------------------------------

describe("WWW-Authenticate parsing", () => {
  it("parses Bearer params, quoted strings with escapes, and multiple challenges", () => {
    const c = parseWwwAuthenticate(
      `Bearer realm="https://auth.example.com/token",service="reg \\"x\\"",scope="repository:a/b:pull,push", Basic realm=simple, Negotiate abc==`,
    );
    expect(c).toEqual([
      {
        scheme: "bearer",
        params: { realm: "https://auth.example.com/token", service: 'reg "x"', scope: "repository:a/b:pull,push" },
      },
      { scheme: "basic", params: { realm: "simple" } },
      { scheme: "negotiate", params: {}, token68: "abc==" },
    ]);
  });
  it("is case-insensitive for scheme and names, tolerates spaces and empty elements", () => {
    const c = parseWwwAuthenticate(`  ,BEARER  Realm = "r" ,  Service=s,,  error="insufficient_scope"`);
    expect(c).toEqual([{ scheme: "bearer", params: { realm: "r", service: "s", error: "insufficient_scope" } }]);
    expect(parseWwwAuthenticate(`Basic`)).toEqual([{ scheme: "basic", params: {} }]);
    expect(parseWwwAuthenticate(``)).toEqual([]);
  });
  it("scope helpers", () => {
    expect(scopeString({ repository: "a/b", actions: ["push", "pull", "push"] })).toBe("repository:a/b:pull,push");
    expect(mergeScopes(["repository:a/b:pull", "repository:a/b:push repository:localhost:5000/c:pull"])).toEqual([
      "repository:a/b:pull,push",
      "repository:localhost:5000/c:pull",
    ]);
    expect(parseUserFlag("u:p:q")).toEqual({ username: "u", password: "p:q" });
    expect(parseUserFlag("u")).toEqual({ username: "u", password: "" });
  });
});

describe("Bearer token flow against a loopback registry", () => {
  it("fetches a token with the right query and Basic credentials, then caches it", async () => {
    const auth = new RegistryAuthorizer({ user: `${USER}:${PASS}`, credentials: [] });
    expect(await auth.authorization(scope())).toBeUndefined();
    expect(await get(auth, fx, scope())).toBe(200);
    expect(fx.tokenReqs).toHaveLength(1);
    const t = fx.tokenReqs[0]!;
    expect(t.method).toBe("GET");
    expect(t.query.get("service")).toBe("test-registry");
    expect(t.query.getAll("scope")).toEqual([`repository:${REPO}:pull`]);
    expect(t.query.get("account")).toBe(USER);
    expect(t.authorization).toBe(`Basic ${Buffer.from(`${USER}:${PASS}`).toString("base64")}`);
    // cached: more requests, no more token requests, no more 401s
    for (let i = 0; i < 3; i++) expect(await get(auth, fx, scope())).toBe(200);
    expect(fx.tokenReqs).toHaveLength(1);
    expect(fx.registryReqs.filter((r) => r.authorization === undefined)).toHaveLength(1);
    expect(await auth.authorization(scope())).toMatch(/^Bearer tok-\d+-user$/);
  });

  it("fetches tokens for new scopes up front once the host is known, merging the challenge's scope", async () => {
    const auth = new RegistryAuthorizer({ user: `${USER}:${PASS}`, credentials: [] });
    expect(await get(auth, fx, scope())).toBe(200);
    const push = await auth.authorization(scope(["pull", "push"]));
    expect(push).toMatch(/^Bearer /);
    expect(fx.tokenReqs).toHaveLength(2);
    expect(fx.tokenReqs[1]!.query.getAll("scope")).toEqual([`repository:${REPO}:pull,push`]);
    // a different repository: its own scope plus the remembered challenge scope
    await auth.authorization(scope(["pull"], "other/repo"));
    expect(fx.tokenReqs[2]!.query.getAll("scope")).toEqual(["repository:other/repo:pull", `repository:${REPO}:pull`]);
  });

  it("refreshes after expires_in and honours the default of 60 s", async () => {
    let now = 1_000_000;
    const auth = new RegistryAuthorizer({ user: `${USER}:${PASS}`, credentials: [], now: () => now });
    fx.expiresIn = 120;
    expect(await get(auth, fx, scope())).toBe(200);
    expect(fx.tokenReqs).toHaveLength(1);
    now += 100_000;
    expect(await get(auth, fx, scope())).toBe(200);
    expect(fx.tokenReqs).toHaveLength(1);
    now += 20_000; // 120 s: expired
    const before = await auth.authorization(scope());
    expect(fx.tokenReqs).toHaveLength(2);
    expect(before).toMatch(/^Bearer /);

    fx.expiresIn = undefined; // default 60 s
    const auth2 = new RegistryAuthorizer({ user: `${USER}:${PASS}`, credentials: [], now: () => now });
    expect(await get(auth2, fx, scope())).toBe(200);
    const n = fx.tokenReqs.length;
    now += 50_000;
    await auth2.authorization(scope());
    expect(fx.tokenReqs).toHaveLength(n);
    now += 10_000;
    await auth2.authorization(scope());
    expect(fx.tokenReqs).toHaveLength(n + 1);
  });

  it("fetches a new token when a cached one is rejected (401 again)", async () => {
    const auth = new RegistryAuthorizer({ user: `${USER}:${PASS}`, credentials: [] });
    expect(await get(auth, fx, scope())).toBe(200);
    const old = await auth.authorization(scope());
    fx.valid.clear(); // server revokes every token
    expect(await get(auth, fx, scope())).toBe(200);
    expect(fx.tokenReqs).toHaveLength(2);
    expect(await auth.authorization(scope())).not.toBe(old);
  });

  it("anonymous token flow (no credentials anywhere), access_token field", async () => {
    fx.tokenField = "access_token";
    fx.challengeScope = false;
    const auth = new RegistryAuthorizer({ credentials: [] });
    expect(await get(auth, fx, scope())).toBe(200);
    expect(fx.tokenReqs).toHaveLength(1);
    expect(fx.tokenReqs[0]!.authorization).toBeUndefined();
    expect(fx.tokenReqs[0]!.query.get("account")).toBeNull();
    expect(fx.tokenReqs[0]!.query.getAll("scope")).toEqual([`repository:${REPO}:pull`]);
    expect(await auth.authorization(scope())).toMatch(/^Bearer tok-\d+-anon$/);
  });

  it("coalesces concurrent challenges into one token request", async () => {
    const auth = new RegistryAuthorizer({ user: `${USER}:${PASS}`, credentials: [] });
    const chal = `Bearer realm="${fx.base}/token",service="test-registry"`;
    const r = await Promise.all(Array.from({ length: 5 }, () => auth.challenged(scope(), chal)));
    expect(r).toEqual([true, true, true, true, true]);
    expect(fx.tokenReqs).toHaveLength(1);
  });

  it("wrong password: clear AuthError without any secret", async () => {
    const wrong = "Wr0ng-Secret-Value";
    const auth = new RegistryAuthorizer({ user: `${USER}:${wrong}`, credentials: [] });
    const res = await fetch(`${fx.base}/v2/${REPO}/manifests/latest`);
    await res.arrayBuffer();
    const err = await auth.challenged(scope(), res.headers.get("www-authenticate")!).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(AuthError);
    const e = err as AuthError;
    // an Unauthenticated error of the project's vocabulary; the token server's own code is kept
    expect(e.code).toBe("Unauthenticated");
    expect(e.httpStatus).toBe(401);
    expect(e.registryErrors[0]?.code).toBe("UNAUTHORIZED");
    expect(e.message).toContain("authentication failed");
    expect(e.message).toContain(`${fx.base}/token`);
    const b64 = Buffer.from(`${USER}:${wrong}`).toString("base64");
    const all = `${e.message} ${e.stack ?? ""} ${JSON.stringify(e)}`;
    expect(all).not.toContain(wrong);
    expect(all).not.toContain(b64);
    // the host is known to want Bearer: the next request fails fast with the same clear error
    const again = (await auth.authorization(scope()).catch((x: unknown) => x)) as AuthError;
    expect(again).toBeInstanceOf(AuthError);
    expect(errorCodeOf(again)).toBe("Unauthenticated");
    expect(again.message).not.toContain(wrong);
  });

  it("very short secrets: the server's text is left out instead of scrubbed", async () => {
    const auth = new RegistryAuthorizer({ user: `${USER}:ab`, credentials: [] });
    const e = (await auth
      .challenged(scope(), `Bearer realm="${fx.base}/token",service="test-registry"`)
      .catch((x: unknown) => x)) as AuthError;
    expect(e).toBeInstanceOf(AuthError);
    expect(e.message).toBe(`authentication failed: GET ${fx.base}/token: 401 Unauthorized (UNAUTHORIZED)`);
  });

  it("unreachable token service: AuthError naming the realm only", async () => {
    const dead = await listen(() => {});
    const port = (dead.address() as AddressInfo).port;
    await new Promise((r) => dead.close(r));
    const auth = new RegistryAuthorizer({ user: `${USER}:${PASS}`, credentials: [], tokenTimeoutMs: 2000 });
    const e = (await auth
      .challenged(scope(), `Bearer realm="http://127.0.0.1:${port}/token?x=1",service=s`)
      .catch((x: unknown) => x)) as Error;
    expect(e).toBeInstanceOf(AuthError);
    expect(e.message).toContain(`http://127.0.0.1:${port}/token`);
    expect(e.message).not.toContain(PASS);
  });

  it("unknown or unusable challenges return false", async () => {
    const auth = new RegistryAuthorizer({ credentials: [] });
    expect(await auth.challenged(scope(), `Negotiate abc`)).toBe(false);
    expect(await auth.challenged(scope(), `Bearer service="x"`)).toBe(false);
    expect(await auth.challenged(scope(), `Bearer realm="ftp://x/token"`)).toBe(false);
    expect(await auth.challenged(scope(), ``)).toBe(false);
  });
});

describe("Basic auth", () => {
  it("sends Basic credentials after a Basic challenge and keeps them", async () => {
    fx.mode = "basic";
    const auth = new RegistryAuthorizer({ user: `${USER}:${PASS}`, credentials: [] });
    expect(await get(auth, fx, scope())).toBe(200);
    expect(await get(auth, fx, scope(["pull", "push"]))).toBe(200);
    expect(fx.registryReqs.filter((r) => r.authorization === undefined)).toHaveLength(1);
    expect(await auth.authorization(scope())).toBe(`Basic ${Buffer.from(`${USER}:${PASS}`).toString("base64")}`);
    expect(fx.tokenReqs).toHaveLength(0);
  });
  it("no credentials ⇒ false; rejected credentials ⇒ no second retry", async () => {
    fx.mode = "basic";
    const anon = new RegistryAuthorizer({ credentials: [] });
    expect(await get(anon, fx, scope())).toBe(401);
    expect(await anon.challenged(scope(), `Basic realm="registry"`)).toBe(false);
    const bad = new RegistryAuthorizer({ user: `${USER}:nope`, credentials: [] });
    expect(await get(bad, fx, scope())).toBe(401); // one retry with the credentials
    expect(await bad.challenged(scope(), `Basic realm="registry"`)).toBe(false); // same creds again: pointless
  });
  it("user restricted to another host is not used", async () => {
    fx.mode = "basic";
    const auth = new RegistryAuthorizer({ user: `${USER}:${PASS}`, userHost: "elsewhere.io", credentials: [] });
    expect(await auth.challenged(scope(), `Basic realm="registry"`)).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------
// docker config.json + credential helpers

describe("Docker config credentials", () => {
  let dir: string;
  let bin: string;
  let cfgDir: string;
  let env: NodeJS.ProcessEnv;

  const writeConfig = (obj: unknown): Promise<void> => writeFile(join(cfgDir, "config.json"), JSON.stringify(obj));

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "soci-auth-"));
    bin = join(dir, "bin");
    cfgDir = join(dir, "docker");
    await mkdir(bin);
    await mkdir(cfgDir);
    // fake helper: logs its arguments and stdin, answers for known servers
    await writeFile(
      join(bin, "docker-credential-test"),
      `#!/bin/sh
read -r server
echo "$1 $server" >> "${join(dir, "helper.log")}"
case "$server" in
  reg.helper.io) echo '{"ServerURL":"reg.helper.io","Username":"helperuser","Secret":"helper-secret"}' ;;
  https://index.docker.io/v1/) echo '{"ServerURL":"https://index.docker.io/v1/","Username":"hubuser","Secret":"hub-secret"}' ;;
  token.io) echo '{"ServerURL":"token.io","Username":"<token>","Secret":"refresh-0"}' ;;
  127.0.0.1:*) echo '{"Username":"${USER}","Secret":"${PASS}"}' ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
`,
    );
    await writeFile(
      join(bin, "docker-credential-store"),
      `#!/bin/sh
read -r server
echo "store $server" >> "${join(dir, "helper.log")}"
if [ "$server" = "stored.io" ]; then echo '{"Username":"storeuser","Secret":"store-secret"}'; exit 0; fi
echo "credentials not found in native keychain"; exit 1
`,
    );
    await writeFile(join(bin, "docker-credential-broken"), `#!/bin/sh\necho 'leaky-secret-output'; exit 3\n`);
    await writeFile(join(bin, "docker-credential-slow"), `#!/bin/sh\nsleep 5\n`);
    for (const n of ["test", "store", "broken", "slow"]) await chmod(join(bin, `docker-credential-${n}`), 0o755);
    env = { ...process.env, PATH: `${bin}:${process.env.PATH ?? ""}`, DOCKER_CONFIG: cfgDir };
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("reads auths: base64 auth, username/password, identitytoken, Docker Hub key, hostname match", async () => {
    await writeConfig({
      auths: {
        "reg.example.com": { auth: Buffer.from("bob:pa:ss").toString("base64") },
        "https://index.docker.io/v1/": { auth: Buffer.from("hub:hubpass").toString("base64") },
        "plain.io": { username: "carol", password: "cpass" },
        "https://legacy.io/v1/": { auth: Buffer.from("dave:dpass").toString("base64") },
        "idt.io": { identitytoken: "id-token-1" },
        "empty.io": {},
      },
    });
    const dc = new DockerConfigCredentials({ env }); // DOCKER_CONFIG from env
    expect(dc.path).toBe(join(cfgDir, "config.json"));
    expect(await dc.get("reg.example.com")).toEqual({ username: "bob", password: "pa:ss" });
    expect(await dc.get("docker.io")).toEqual({ username: "hub", password: "hubpass" });
    expect(await dc.get("registry-1.docker.io")).toEqual({ username: "hub", password: "hubpass" });
    expect(await dc.get("plain.io")).toEqual({ username: "carol", password: "cpass" });
    expect(await dc.get("legacy.io")).toEqual({ username: "dave", password: "dpass" });
    expect(await dc.get("idt.io")).toEqual({ username: "", password: "", identityToken: "id-token-1" });
    expect(await dc.get("empty.io")).toBeUndefined();
    expect(await dc.get("unknown.io")).toBeUndefined();
    // explicit directory option, and a missing file = no credentials
    expect(
      await new DockerConfigCredentials({ configDir: join(dir, "nope"), env }).get("reg.example.com"),
    ).toBeUndefined();
  });

  it("credHelpers per host, credsStore for the rest, auths as the last resort", async () => {
    await writeConfig({
      credHelpers: { "reg.helper.io": "test", "https://index.docker.io/v1/": "test", "missing.io": "test" },
      credsStore: "store",
      auths: {
        "missing.io": { auth: Buffer.from("file:fpass").toString("base64") },
        "other.io": { username: "o", password: "op" },
      },
    });
    await rm(join(dir, "helper.log"), { force: true });
    const dc = new DockerConfigCredentials({ env });
    expect(await dc.get("reg.helper.io")).toEqual({ username: "helperuser", password: "helper-secret" });
    expect(await dc.get("docker.io")).toEqual({ username: "hubuser", password: "hub-secret" });
    expect(await dc.get("stored.io")).toEqual({ username: "storeuser", password: "store-secret" });
    expect(await dc.get("missing.io")).toEqual({ username: "file", password: "fpass" }); // helper: not found
    expect(await dc.get("other.io")).toEqual({ username: "o", password: "op" }); // store: not found
    const log = await readFile(join(dir, "helper.log"), "utf8");
    expect(log.split("\n").filter(Boolean)).toEqual([
      "get reg.helper.io",
      "get https://index.docker.io/v1/",
      "store stored.io",
      "get missing.io",
      "store other.io",
    ]);
  });

  it("helper identity tokens, failures and timeouts (no secrets in errors)", async () => {
    await writeConfig({
      credHelpers: { "token.io": "test", "broken.io": "broken", "slow.io": "slow", "gone.io": "absent" },
    });
    const dc = new DockerConfigCredentials({ env, helperTimeoutMs: 300 });
    expect(await dc.get("token.io")).toEqual({ username: "", password: "", identityToken: "refresh-0" });
    const broken = (await dc.get("broken.io").catch((e: unknown) => e)) as Error;
    expect(broken).toBeInstanceOf(CredentialsError);
    // a broken credential source on this machine: a precondition of authenticating is not met
    expect(errorCodeOf(broken)).toBe("FailedPrecondition");
    expect(broken.message).toContain("docker-credential-broken");
    expect(broken.message).toContain("exit status 3");
    expect(broken.message).not.toContain("leaky-secret-output");
    const t0 = Date.now();
    const slow = (await dc.get("slow.io").catch((e: unknown) => e)) as Error;
    expect(slow.message).toMatch(/timed out after 300 ms/);
    expect(Date.now() - t0).toBeLessThan(3000);
    const gone = (await dc.get("gone.io").catch((e: unknown) => e)) as Error;
    expect(gone.message).toContain("not found on PATH");
  });

  it("invalid config.json: error without its contents", async () => {
    await writeFile(join(cfgDir, "config.json"), `{"auths": {"x": {"auth": "c2VjcmV0"}} oops`);
    const e = (await new DockerConfigCredentials({ env }).get("x").catch((x: unknown) => x)) as Error;
    expect(e).toBeInstanceOf(CredentialsError);
    expect(e.message).toMatch(/not valid JSON/);
    expect(e.message).not.toContain("c2VjcmV0");
  });

  it("authorizer uses helper credentials for the token request; --user wins over config", async () => {
    await writeConfig({ credsStore: "test" });
    const auth = new RegistryAuthorizer({ dockerConfig: { env } });
    expect(await get(auth, fx, scope())).toBe(200);
    expect(fx.tokenReqs[0]!.authorization).toBe(`Basic ${Buffer.from(`${USER}:${PASS}`).toString("base64")}`);

    fx.tokenReqs.length = 0;
    const withUser = new RegistryAuthorizer({ user: `${USER}:bad`, dockerConfig: { env } });
    await expect(get(withUser, fx, scope())).rejects.toBeInstanceOf(AuthError);
    expect(fx.tokenReqs[0]!.authorization).toBe(`Basic ${Buffer.from(`${USER}:bad`).toString("base64")}`);
  });

  it("identity token ⇒ OAuth2 POST refresh_token grant, rotating refresh tokens", async () => {
    await writeConfig({ auths: { [host]: { identitytoken: "refresh-0" } } });
    let now = 5_000_000;
    const auth = new RegistryAuthorizer({ dockerConfig: { env }, now: () => now, clientId: "test-client" });
    expect(await get(auth, fx, scope())).toBe(200);
    expect(fx.tokenReqs).toHaveLength(1);
    const f = fx.tokenReqs[0]!;
    expect(f.method).toBe("POST");
    expect(f.form!.get("grant_type")).toBe("refresh_token");
    expect(f.form!.get("refresh_token")).toBe("refresh-0");
    expect(f.form!.get("service")).toBe("test-registry");
    expect(f.form!.get("scope")).toBe(`repository:${REPO}:pull`);
    expect(f.form!.get("client_id")).toBe("test-client");
    now += 400_000;
    expect(await get(auth, fx, scope())).toBe(200);
    expect(fx.tokenReqs).toHaveLength(2);
    expect(fx.tokenReqs[1]!.form!.get("refresh_token")).toMatch(/^refresh-\d+$/);
    expect(fx.tokenReqs[1]!.form!.get("refresh_token")).not.toBe("refresh-0");

    // a rejected refresh token: error names neither token
    await writeConfig({ auths: { [host]: { identitytoken: "refresh-bogus" } } });
    const bad = new RegistryAuthorizer({ dockerConfig: { env } });
    const e = (await get(bad, fx, scope()).catch((x: unknown) => x)) as AuthError;
    expect(e).toBeInstanceOf(AuthError);
    expect(e.message).not.toContain("refresh-bogus");
  });
});
