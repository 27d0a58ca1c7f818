import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse as parseToml } from "smol-toml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  defaultEndpoint,
  DefaultResolver,
  hostPaths,
  HostsConfigError,
  HostsDirResolver,
  isLocalhost,
  parseGoDuration,
  readTomlFile,
  resolverFromConfig,
  resolverSettings,
} from "../src/registry/hosts.js";
import { errorCodeOf } from "../src/errors/errors.js";

let root: string;

async function put(rel: string, text: string): Promise<void> {
  const p = join(root, rel);
  await mkdir(join(p, ".."), { recursive: true });
  await writeFile(p, text);
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "soci-hosts-"));
  // mirrors deliberately not in alphabetical order: file order must be kept
  await put(
    "docker.io/hosts.toml",
    `server = "https://registry-1.docker.io"

[host."https://z-mirror.internal"]
  capabilities = ["pull", "resolve"]
  ca = "z-mirror.crt"
  client = [["/etc/certs/client.cert", "/etc/certs/client.key"], ["client.pem", ""]]
  skip_verify = false
  dial_timeout = "1.5s"
  [host."https://z-mirror.internal".header]
    x-custom-1 = "one"
    x-custom-2 = ["a", "b"]

[host."a-mirror.example.com:5000"]
  capabilities = ["pull"]
  skip_verify = true

[host."https://non-compliant.example.com/v2/upstream"]
  capabilities = ["pull"]
  override_path = true

[host."https://pathed.example.com/sub/"]
  capabilities = ["PULL"]

[host."http://plain-mirror:5000"]
  ca = ["/abs/ca1.pem", "rel/ca2.pem"]
`,
  );
  await put(
    "_default/hosts.toml",
    `[host."https://registry.example.com"]
  capabilities = ["pull", "resolve"]
  client = "/etc/certs/both.pem"
`,
  );
  await put(
    "localhost_5000_/hosts.toml",
    `server = "http://localhost:5000"
[header]
  authorization-extra = "x"
`,
  );
  await put(
    "only-server.io/hosts.toml",
    `server = "https://proxy.example.com/prefix"\nca = "ca.pem"\nproxy = "http://p:8080"\n`,
  );
  await put("no-server.io/hosts.toml", `skip_verify = true\n[host."https://m.example.com"]\n`);
  await put("broken.io/hosts.toml", `server = "https://x`);
  await put("broken.io/ca.crt", "x");
  await put("badcap.io/hosts.toml", `[host."https://m"]\ncapabilities = ["fly"]\n`);
  // Docker certs.d layout, no hosts.toml
  await put("certs.example.com:8443/ca.crt", "x");
  await put("certs.example.com:8443/client.cert", "x");
  await put("certs.example.com:8443/client.key", "x");
  await put("certs.example.com:8443/other.cert", "x");
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("hosts directory (containerd hosts.toml)", () => {
  it("mirrors in file order, then server, with TLS, headers, override_path", async () => {
    const r = new HostsDirResolver({ hostsDir: root });
    const eps = await r.endpoints("docker.io");
    expect(eps.map((e) => e.url)).toEqual([
      "https://z-mirror.internal",
      "https://a-mirror.example.com:5000",
      "https://non-compliant.example.com/v2/upstream",
      "https://pathed.example.com/sub",
      "http://plain-mirror:5000",
      "https://registry-1.docker.io",
    ]);
    const [z, a, nc, pathed, plain, server] = eps;
    expect(z).toMatchObject({
      capabilities: ["pull", "resolve"],
      caFile: join(root, "docker.io", "z-mirror.crt"),
      clientCert: { cert: "/etc/certs/client.cert", key: "/etc/certs/client.key" },
      clientCerts: [
        { cert: "/etc/certs/client.cert", key: "/etc/certs/client.key" },
        { cert: join(root, "docker.io", "client.pem"), key: join(root, "docker.io", "client.pem") },
      ],
      skipVerify: false,
      dialTimeoutMs: 1500,
      headers: { "x-custom-1": "one", "x-custom-2": "a, b" },
      headerValues: { "x-custom-1": ["one"], "x-custom-2": ["a", "b"] },
      namespace: "docker.io",
    });
    expect(z!.overridePath).toBeUndefined();
    expect(a).toMatchObject({ capabilities: ["pull"], skipVerify: true });
    expect(nc).toMatchObject({ capabilities: ["pull"], overridePath: true });
    expect(pathed!.capabilities).toEqual(["pull"]);
    expect(plain).toMatchObject({
      caFiles: ["/abs/ca1.pem", join(root, "docker.io", "rel/ca2.pem")],
      httpsFirst: true,
    });
    expect(server).toEqual({
      url: "https://registry-1.docker.io",
      capabilities: ["pull", "resolve", "push"],
      namespace: "docker.io",
    });
  });

  it("host:port looks in host_port_ first; root-level settings apply to server", async () => {
    const r = new HostsDirResolver({ hostsDir: root });
    const eps = await r.endpoints("localhost:5000");
    expect(eps).toEqual([
      {
        url: "http://localhost:5000",
        capabilities: ["pull", "resolve", "push"],
        namespace: "localhost:5000",
        headers: { "authorization-extra": "x" },
        headerValues: { "authorization-extra": ["x"] },
      },
    ]);
    expect(hostPaths("/d", "localhost:5000")).toEqual(["/d/localhost_5000_", "/d/localhost:5000", "/d/_default"]);
    expect(hostPaths("/d", "quay.io")).toEqual(["/d/quay.io", "/d/_default"]);
  });

  it("server with a path prefix; server omitted ⇒ the upstream default after the mirrors", async () => {
    const r = new HostsDirResolver({ hostsDir: root });
    expect(await r.endpoints("only-server.io")).toEqual([
      {
        url: "https://proxy.example.com/prefix",
        capabilities: ["pull", "resolve", "push"],
        namespace: "only-server.io",
        caFile: join(root, "only-server.io", "ca.pem"),
        caFiles: [join(root, "only-server.io", "ca.pem")],
        proxy: "http://p:8080",
      },
    ]);
    const ns = await r.endpoints("no-server.io");
    expect(ns.map((e) => e.url)).toEqual(["https://m.example.com", "https://no-server.io"]);
    expect(ns[1]).toMatchObject({ skipVerify: true, capabilities: ["pull", "resolve", "push"] });
  });

  it("_default applies to hosts without their own directory, upstream appended", async () => {
    const r = new HostsDirResolver({ hostsDir: root });
    const eps = await r.endpoints("ghcr.io");
    expect(eps.map((e) => e.url)).toEqual(["https://registry.example.com", "https://ghcr.io"]);
    expect(eps[0]!.clientCert).toEqual({ cert: "/etc/certs/both.pem", key: "/etc/certs/both.pem" });
    expect(eps[0]!.namespace).toBe("ghcr.io");
  });

  it("Docker certificate layout when there is no hosts.toml; broken hosts.toml falls back with a warning", async () => {
    const warnings: string[] = [];
    const r = new HostsDirResolver({ hostsDir: root, onWarning: (m) => warnings.push(m) });
    const eps = await r.endpoints("certs.example.com:8443");
    expect(eps).toHaveLength(1);
    const d = join(root, "certs.example.com:8443");
    expect(eps[0]).toMatchObject({
      url: "https://certs.example.com:8443",
      caFiles: [join(d, "ca.crt")],
      clientCerts: [
        { cert: join(d, "client.cert"), key: join(d, "client.key") },
        { cert: join(d, "other.cert"), key: join(d, "other.cert") },
      ],
    });
    const b = await r.endpoints("broken.io");
    expect(b).toMatchObject([{ url: "https://broken.io", caFiles: [join(root, "broken.io", "ca.crt")] }]);
    expect(await r.endpoints("badcap.io")).toMatchObject([{ url: "https://badcap.io" }]);
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toContain(join(root, "broken.io", "hosts.toml"));
    expect(warnings[1]).toContain("unknown capability fly");
  });

  it("re-reads files on every call", async () => {
    const r = new HostsDirResolver({ hostsDir: root });
    expect((await r.endpoints("fresh.io")).map((e) => e.url)).toEqual([
      "https://registry.example.com",
      "https://fresh.io",
    ]);
    await put("fresh.io/hosts.toml", `server = "https://fresh-upstream.io"\n`);
    expect((await r.endpoints("fresh.io")).map((e) => e.url)).toEqual(["https://fresh-upstream.io"]);
  });
});

describe("defaults (no configuration)", () => {
  it("docker.io ⇒ registry-1.docker.io; https elsewhere; --plain-http", async () => {
    const r = new HostsDirResolver({ hostsDir: join(root, "does-not-exist") });
    expect(await r.endpoints("docker.io")).toEqual([
      { url: "https://registry-1.docker.io", capabilities: ["pull", "resolve", "push"], namespace: "docker.io" },
    ]);
    expect((await r.endpoints("quay.io"))[0]!.url).toBe("https://quay.io");
    const plain = new HostsDirResolver({ plainHttp: true });
    expect((await plain.endpoints("quay.io"))[0]!.url).toBe("http://quay.io");
    expect((await plain.endpoints("docker.io"))[0]!.url).toBe("https://registry-1.docker.io");
    expect((await new DefaultResolver().endpoints("docker.io"))[0]!.url).toBe("https://registry-1.docker.io");
  });

  it("localhost: http with TLS tried first on non-default ports, https on 443/no port, plain http on :80", () => {
    expect(defaultEndpoint("localhost:5000")).toMatchObject({
      url: "http://localhost:5000",
      skipVerify: true,
      httpsFirst: true,
    });
    expect(defaultEndpoint("127.0.0.1:5000")).toMatchObject({
      url: "http://127.0.0.1:5000",
      skipVerify: true,
      httpsFirst: true,
    });
    expect(defaultEndpoint("[::1]:5000")).toMatchObject({ url: "http://[::1]:5000", skipVerify: true });
    expect(defaultEndpoint("localhost")).toMatchObject({ url: "https://localhost", skipVerify: true });
    expect(defaultEndpoint("localhost:443").url).toBe("https://localhost:443");
    const p80 = defaultEndpoint("localhost:80");
    expect(p80.url).toBe("http://localhost:80");
    expect(p80.skipVerify).toBeUndefined();
    expect(p80.httpsFirst).toBeUndefined();
    const plain = defaultEndpoint("localhost:5000", { plainHttp: true });
    expect(plain.url).toBe("http://localhost:5000");
    expect(plain.skipVerify).toBeUndefined();
    expect(isLocalhost("127.1.2.3:80")).toBe(true);
    expect(isLocalhost("10.0.0.1:5000")).toBe(false);
    expect(isLocalhost("localhost.example.com")).toBe(false);
  });

  it("Go durations", () => {
    expect(parseGoDuration("1m30s")).toBe(90_000);
    expect(parseGoDuration("250ms")).toBe(250);
    expect(parseGoDuration("0")).toBe(0);
    expect(() => parseGoDuration("5")).toThrow();
  });
});

describe("snapshotter [resolver] config", () => {
  const configText = `
[resolver]
auth_client_ttl_sec = 0

[[resolver.host."docker.io".mirrors]]
host = "mirror.gcr.io"
request_timeout_sec = 10

[[resolver.host."docker.io".mirrors]]
host = "127.0.0.1:5000"

[[resolver.host."docker.io".mirrors]]
host = "insecure.example.com:8080"
insecure = true
header = { "X-Mirror" = "yes" }

[[resolver.host."ghcr.io".mirrors]]
host = "https://ghcr-mirror.example.com/v2"
request_timeout_sec = -1
`;

  it("mirrors first (http for localhost/insecure), then the host (docker.io ⇒ registry-1)", async () => {
    const doc = parseToml(configText);
    const r = resolverFromConfig(doc);
    const eps = await r.endpoints("docker.io");
    expect(eps).toEqual([
      {
        url: "https://mirror.gcr.io",
        capabilities: ["pull", "resolve"],
        namespace: "docker.io",
        requestTimeoutSec: 10,
      },
      { url: "http://127.0.0.1:5000", capabilities: ["pull", "resolve"], namespace: "docker.io" },
      {
        url: "http://insecure.example.com:8080",
        capabilities: ["pull", "resolve"],
        namespace: "docker.io",
        headers: { "X-Mirror": "yes" },
        headerValues: { "X-Mirror": ["yes"] },
      },
      { url: "https://registry-1.docker.io", capabilities: ["pull", "resolve"], namespace: "docker.io" },
    ]);
    // the [resolver] table alone works too
    const r2 = resolverFromConfig((doc as { resolver: unknown }).resolver);
    expect((await r2.endpoints("ghcr.io")).map((e) => [e.url, e.requestTimeoutSec])).toEqual([
      ["https://ghcr-mirror.example.com", -1],
      ["https://ghcr.io", undefined],
    ]);
    expect((await r2.endpoints("localhost:5000")).map((e) => e.url)).toEqual(["http://localhost:5000"]);
    expect((await resolverFromConfig({}).endpoints("quay.io")).map((e) => e.url)).toEqual(["https://quay.io"]);
    expect(resolverSettings(doc)).toEqual({ authClientTtlSec: 3600, enableAuthClientSharing: false });
  });

  it("reads a config file", async () => {
    await put("config.toml", configText);
    const doc = await readTomlFile(join(root, "config.toml"));
    expect((await resolverFromConfig(doc).endpoints("docker.io"))[0]!.url).toBe("https://mirror.gcr.io");
    await put("bad.toml", "[resolver\n");
    const bad = await readTomlFile(join(root, "bad.toml")).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(HostsConfigError);
    expect(errorCodeOf(bad)).toBe("InvalidArgument");
    expect((bad as Error).message).toMatch(/invalid TOML/);
  });
});
