// Registry auth end to end against the real docker-registry (Distribution 2.8): `auth: token` with a
// loopback token service whose certificate the registry trusts, and `auth: htpasswd` (Basic, bcrypt).
// Wrong passwords, --user, docker config.json (auths, credHelpers, credsStore), token caching, the
// mount scope, and the real CLI (convert registry→registry, create + push) through token auth.
// No secret may ever show up in any output.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { startRegistry, type RegistryServer } from "./helpers/registry-server.js";
import { startTokenServer, type TokenServer } from "./helpers/token-server.js";
import { htpasswdLine, makeSigningCert } from "./helpers/tls-certs.js";
import { RegistryClient } from "../src/registry/client.js";
import { RegistryAuthorizer } from "../src/registry/auth.js";
import { UnauthorizedError } from "../src/registry/errors.js";
import { parseManifest, type Descriptor } from "../src/formats/oci.js";
import { SociIndexArtifactTypeV1, SociIndexArtifactTypeV2 } from "../src/formats/soci-index.js";

const run = promisify(execFile);
const soci = new URL("../bin/soci.js", import.meta.url).pathname;
const USER = "alice";
const PASS = `pw-${randomBytes(8).toString("hex")}`;
const WRONG = `wrong-${randomBytes(8).toString("hex")}`;
const HELPER_SECRET = `helper-${randomBytes(8).toString("hex")}`;
const IDENTITY_TOKEN = `rt-${randomBytes(12).toString("hex")}`;
const SERVICE = "soci-test-registry";
const ISSUER = "soci-test-issuer";

let dir = "";
let tokens: TokenServer;
let registry: RegistryServer;
let basicRegistry: RegistryServer;
let emptyDockerConfig = "";
/** Every output the CLI printed, checked for secrets at the end. */
const outputs: string[] = [];

type RunResult = { stdout: string; stderr: string; code: number };

async function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<RunResult> {
  const r = await run("node", [soci, ...args], { env: { ...process.env, DOCKER_CONFIG: emptyDockerConfig, ...env } })
    .then((x) => ({ stdout: x.stdout, stderr: x.stderr, code: 0 }))
    .catch((e: { stdout: string; stderr: string; code: number }) => ({
      stdout: e.stdout,
      stderr: e.stderr,
      code: e.code,
    }));
  outputs.push(r.stdout, r.stderr);
  return r;
}

const creds = `${USER}:${PASS}`;
const skopeoRaw = async (ref: string): Promise<{ manifests?: Descriptor[]; mediaType?: string }> =>
  JSON.parse(
    (await run("skopeo", ["inspect", "--raw", "--tls-verify=false", "--creds", creds, `docker://${ref}`])).stdout,
  ) as { manifests?: Descriptor[] };

function tokenClient(user?: string): RegistryClient {
  return new RegistryClient({
    plainHttp: true,
    authorizer: new RegistryAuthorizer({ ...(user ? { user } : {}), dockerConfig: false }),
    retries: 1,
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "soci-auth-e2e-"));
  emptyDockerConfig = join(dir, "docker-empty");
  await mkdir(emptyDockerConfig);
  const cert = await makeSigningCert(dir);
  tokens = await startTokenServer({
    users: { [USER]: PASS },
    refreshTokens: { [IDENTITY_TOKEN]: USER },
    keyPem: cert.keyPem,
    certDerBase64: cert.certDerBase64,
    issuer: ISSUER,
    service: SERVICE,
  });
  registry = await startRegistry({
    token: { realm: tokens.realm, service: SERVICE, issuer: ISSUER, rootCertBundle: cert.certFile },
  });
  const htpasswd = join(dir, "htpasswd");
  await writeFile(htpasswd, `${await htpasswdLine(USER, PASS)}\n`);
  basicRegistry = await startRegistry({ htpasswd: { path: htpasswd } });

  // a one-layer image pushed by skopeo (the ground truth client) through the token flow
  const layout = join(dir, "image");
  await run("umoci", ["init", "--layout", layout]);
  await run("umoci", ["new", "--image", `${layout}:latest`]);
  await run("umoci", ["unpack", "--rootless", "--image", `${layout}:latest`, join(dir, "bundle")]);
  await writeFile(join(dir, "bundle/rootfs/data.bin"), randomBytes(256 << 10));
  await writeFile(join(dir, "bundle/rootfs/hello.txt"), "hello\n");
  await run("umoci", ["repack", "--image", `${layout}:latest`, join(dir, "bundle")]);
  for (const [reg, repo] of [
    [registry, "src/app"],
    [registry, "v1/app"],
    [basicRegistry, "src/app"],
  ] as const) {
    await run("skopeo", [
      "copy",
      "--dest-tls-verify=false",
      "--dest-creds",
      creds,
      `oci:${layout}:latest`,
      `docker://${reg.host}/${repo}:latest`,
    ]);
  }
}, 120_000);

afterAll(async () => {
  await registry?.stop();
  await basicRegistry?.stop();
  await tokens?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("token auth (Distribution auth: token) through the client", () => {
  it("wrong password: an unauthorized error naming the registry, without the secret", async () => {
    const client = tokenClient(`${USER}:${WRONG}`);
    try {
      const err = await client.resolve(`${registry.host}/src/app:latest`).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UnauthorizedError);
      const msg = (err as Error).message;
      expect(msg).toContain(registry.host);
      expect(msg).toMatch(/unauthorized/);
      expect(msg).toMatch(/authentication failed/);
      expect(msg).not.toContain(WRONG);
      expect(msg).not.toContain(Buffer.from(`${USER}:${WRONG}`).toString("base64"));
      expect(tokens.requests.at(-1)!.outcome).toBe("rejected");
    } finally {
      await client.close();
    }
  });

  it("no credentials: the anonymous token grants nothing and the registry says unauthorized", async () => {
    const client = tokenClient();
    try {
      const err = await client.resolve(`${registry.host}/src/app:latest`).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UnauthorizedError);
      expect((err as Error).message).toContain(`${registry.host}/v2/src/app/manifests/latest`);
      expect(tokens.requests.at(-1)!.outcome).toBe("anonymous");
    } finally {
      await client.close();
    }
  });

  it("caches one token per scope across many requests", async () => {
    const client = tokenClient(creds);
    const before = tokens.requests.length;
    try {
      const ref = `${registry.host}/src/app:latest`;
      const desc = await client.resolve(ref);
      const m = parseManifest((await client.getManifest(ref, desc)).bytes);
      for (let i = 0; i < 3; i++) {
        await client.getBlob(ref, m.config.digest);
        await client.blobExists(ref, m.layers![0]!.digest);
        await client.fetchRange(ref, m.layers![0]!.digest, 0, 10);
      }
      const mine = tokens.requests.slice(before);
      expect(mine).toHaveLength(1);
      expect(mine[0]).toMatchObject({
        user: USER,
        outcome: "granted",
        service: SERVICE,
        scopes: ["repository:src/app:pull"],
      });
    } finally {
      await client.close();
    }
  });

  it("cross-repository mount asks pull on the source repository and really mounts", async () => {
    const client = tokenClient(creds);
    const before = tokens.requests.length;
    try {
      const src = `${registry.host}/src/app:latest`;
      const m = parseManifest((await client.getManifest(src)).bytes);
      const layer = m.layers![0]!;
      const r = await client.pushBlob(`${registry.host}/mounted/app:x`, client.blobStream(src, layer.digest), layer, {
        mountFrom: "src/app",
      });
      expect(r.mounted).toBe(true);
      const scopes = tokens.requests.slice(before).map((t) => t.scopes);
      expect(scopes).toContainEqual(["repository:mounted/app:pull,push", "repository:src/app:pull"]);
      expect(await client.blobExists(`${registry.host}/mounted/app:x`, layer.digest)).toBe(layer.size);
    } finally {
      await client.close();
    }
  });
});

describe("token auth through the CLI", () => {
  it("wrong --user password: exit 1, unauthorized, registry named, no secret printed", async () => {
    const r = await cli([
      "convert",
      "--plain-http",
      "--user",
      `${USER}:${WRONG}`,
      `${registry.host}/src/app:latest`,
      `${registry.host}/dst/app:soci`,
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^soci: .*unauthorized/m);
    expect(r.stderr).toContain(registry.host);
    expect(r.stderr + r.stdout).not.toContain(WRONG);
  });

  it("soci convert registry→registry with --user, each token scope fetched once", async () => {
    const before = tokens.requests.length;
    const r = await cli([
      "convert",
      "--plain-http",
      "--min-layer-size",
      "0",
      "--user",
      creds,
      `${registry.host}/src/app:latest`,
      `${registry.host}/dst/app:soci`,
    ]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const mine = tokens.requests.slice(before);
    const index = await skopeoRaw(`${registry.host}/dst/app:soci`);
    expect(index.manifests!.map((m) => m.artifactType ?? m.mediaType)).toContain(SociIndexArtifactTypeV2);
    expect(mine.every((t) => t.outcome === "granted")).toBe(true);
    const keys = mine.map((t) => t.scopes.join(" "));
    expect(keys, JSON.stringify(keys)).toHaveLength(new Set(keys).size); // cached: no scope set asked twice
    expect(keys).toContain("repository:dst/app:pull,push repository:src/app:pull"); // layers mounted
  });

  it("soci create + soci push with docker config.json auths (base64 auth)", async () => {
    const cfg = join(dir, "docker-auths");
    await mkdir(cfg);
    await writeFile(
      join(cfg, "config.json"),
      JSON.stringify({ auths: { [registry.host]: { auth: Buffer.from(creds).toString("base64") } } }),
    );
    const root = join(dir, "root-auths");
    const ref = `${registry.host}/v1/app:latest`;
    const created = await cli(["--root", root, "create", "--plain-http", "--min-layer-size", "0", ref], {
      DOCKER_CONFIG: cfg,
    });
    expect(created.stderr).toBe("");
    const pushed = await cli(["--root", root, "push", "--plain-http", ref], { DOCKER_CONFIG: cfg });
    expect(pushed.stderr).toBe("");
    const indexDigest = /pushing soci index with digest: (sha256:\w+)/.exec(pushed.stdout)?.[1];
    expect(indexDigest).toBeDefined();
    // found again through the referrers fallback tag (Distribution 2.8 has no referrers API)
    const client = tokenClient(creds);
    try {
      const manifest = await client.resolve(ref);
      const referrers = await client.referrers(ref, manifest.digest, SociIndexArtifactTypeV1);
      expect(referrers.map((d) => d.digest)).toEqual([indexDigest]);
    } finally {
      await client.close();
    }
  });

  it("docker config.json identitytoken: OAuth2 refresh-token grant (POST); an unknown one is refused", async () => {
    const write = async (name: string, token: string) => {
      const cfg = join(dir, `docker-${name}`);
      await mkdir(cfg, { recursive: true });
      await writeFile(
        join(cfg, "config.json"),
        JSON.stringify({ auths: { [registry.host]: { identitytoken: token } } }),
      );
      return cfg;
    };
    const before = tokens.requests.length;
    const r = await cli(
      [
        "convert",
        "--plain-http",
        "--min-layer-size",
        "0",
        `${registry.host}/src/app:latest`,
        `${registry.host}/oauth/app:soci`,
      ],
      { DOCKER_CONFIG: await write("identity", IDENTITY_TOKEN) },
    );
    expect(r.stderr).toBe("");
    const mine = tokens.requests.slice(before);
    expect(mine.length).toBeGreaterThan(0);
    expect(mine.every((t) => t.method === "POST" && t.outcome === "granted" && t.user === USER)).toBe(true);
    const bad = await cli(
      ["convert", "--plain-http", `${registry.host}/src/app:latest`, `${registry.host}/oauth/app:x`],
      { DOCKER_CONFIG: await write("identity-bad", `${IDENTITY_TOKEN}-revoked`) },
    );
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^soci: .*unauthorized: authentication failed: POST .*\/token: 401/m);
  });

  it("credHelpers and credsStore: docker-credential-<name> executables on PATH", async () => {
    const bin = join(dir, "bin");
    await mkdir(bin, { recursive: true });
    const calls = join(dir, "helper-calls");
    // answers `get` for the registry with the real password; anything else: not found
    await writeFile(
      join(bin, "docker-credential-soci-test"),
      [
        "#!/bin/sh",
        `[ "$1" = get ] || exit 1`,
        "read -r server",
        `echo "$server" >> ${calls}`,
        `if [ "$server" = "${registry.host}" ]; then printf '{"ServerURL":"%s","Username":"${USER}","Secret":"${PASS}"}' "$server"; exit 0; fi`,
        "echo 'credentials not found in native keychain'; exit 1",
        "",
      ].join("\n"),
    );
    await chmod(join(bin, "docker-credential-soci-test"), 0o755);
    const env = (config: object, name: string) => {
      const cfg = join(dir, `docker-${name}`);
      return mkdir(cfg, { recursive: true })
        .then(() => writeFile(join(cfg, "config.json"), JSON.stringify(config)))
        .then(() => ({ DOCKER_CONFIG: cfg, PATH: `${bin}:${process.env.PATH}` }));
    };
    for (const [name, config] of [
      [
        "helpers",
        {
          credHelpers: { [registry.host]: "soci-test" },
          auths: { [registry.host]: { auth: Buffer.from(`${USER}:${HELPER_SECRET}`).toString("base64") } },
        },
      ],
      ["store", { credsStore: "soci-test" }],
    ] as const) {
      await rm(calls, { force: true });
      const r = await cli(
        [
          "convert",
          "--plain-http",
          "--min-layer-size",
          "0",
          `${registry.host}/src/app:latest`,
          `${registry.host}/${name}/app:soci`,
        ],
        await env(config, name),
      );
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      const { readFile } = await import("node:fs/promises");
      expect((await readFile(calls, "utf8")).split("\n")).toContain(registry.host);
      expect((await skopeoRaw(`${registry.host}/${name}/app:soci`)).manifests).toHaveLength(2);
    }
  });
});

describe("Basic auth (Distribution auth: htpasswd, bcrypt)", () => {
  it("right credentials read the image; a wrong password is a clear unauthorized error", async () => {
    const good = new RegistryClient({
      plainHttp: true,
      authorizer: new RegistryAuthorizer({ user: creds, dockerConfig: false }),
    });
    const bad = new RegistryClient({
      plainHttp: true,
      authorizer: new RegistryAuthorizer({ user: `${USER}:${WRONG}`, dockerConfig: false }),
    });
    try {
      const ref = `${basicRegistry.host}/src/app:latest`;
      const m = parseManifest((await good.getManifest(ref)).bytes);
      expect((await good.getBlob(ref, m.config.digest)).length).toBe(m.config.size);
      const err = await bad.resolve(ref).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UnauthorizedError);
      expect((err as Error).message).toContain(basicRegistry.host);
      expect((err as Error).message).toMatch(/unauthorized \(401\)/);
      expect((err as Error).message).not.toContain(WRONG);
    } finally {
      await good.close();
      await bad.close();
    }
  });

  it("soci convert through Basic auth with --user", async () => {
    const r = await cli([
      "convert",
      "--plain-http",
      "--min-layer-size",
      "0",
      "--user",
      creds,
      `${basicRegistry.host}/src/app:latest`,
      `${basicRegistry.host}/dst/app:soci`,
    ]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect((await skopeoRaw(`${basicRegistry.host}/dst/app:soci`)).manifests).toHaveLength(2);
    const wrong = await cli([
      "convert",
      "--plain-http",
      "--user",
      `${USER}:${WRONG}`,
      `${basicRegistry.host}/src/app:latest`,
      `${basicRegistry.host}/x/app:soci`,
    ]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/^soci: .*unauthorized/m);
    expect(wrong.stderr).not.toContain(WRONG);
  });
});

describe("secrets", () => {
  it("no secret appeared in any CLI output", () => {
    expect(outputs.length).toBeGreaterThan(0);
    const all = outputs.join("\n");
    for (const secret of [
      PASS,
      WRONG,
      HELPER_SECRET,
      IDENTITY_TOKEN,
      Buffer.from(creds).toString("base64"),
      Buffer.from(`${USER}:${WRONG}`).toString("base64"),
    ]) {
      expect(all).not.toContain(secret);
    }
    expect(all).not.toMatch(/Bearer \S{20,}/);
  });
});
