// The per-endpoint transport settings, against real parts: hosts.toml `dial_timeout` with an address
// whose connects hang (a listener with a full queue), `proxy` with a real HTTP proxy through which a
// real registry is reached (plain HTTP forwarded, HTTPS tunnelled with CONNECT) under host names
// only the proxy knows, and the resolver mirrors' `request_timeout_sec` with a mirror that accepts
// connections and never answers. Then the operations' deadlines (`--timeout`): a registry that
// never answers or stalls mid-transfer is given up on in time, with a message saying what was
// awaited; a slow link that keeps delivering, a slow consumer and a slow upload source are not.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DeadlineExceededError, errorCodeOf } from "../src/errors/errors.js";
import {
  digestOf,
  MediaTypeImageConfig,
  MediaTypeImageLayerGzip,
  MediaTypeImageManifest,
  marshalManifest,
  parseManifest,
} from "../src/formats/oci.js";
import { RegistryClient } from "../src/registry/client.js";
import { Deadline } from "../src/registry/deadline.js";
import { UnavailableError } from "../src/registry/errors.js";
import { HostsDirResolver, hostDirectoryName, resolverFromConfig } from "../src/registry/hosts.js";
import { startFaultProxy, type FaultProxy } from "./helpers/fault-proxy.js";
import { startHttpProxy } from "./helpers/http-proxy.js";
import { startRegistry, type RegistryServer } from "./helpers/registry-server.js";
import { startFullBacklog, startSilentServer, type FullBacklog, type SilentServer } from "./helpers/silent-servers.js";
import { makeServerCerts } from "./helpers/tls-certs.js";

const run = promisify(execFile);
const soci = new URL("../bin/soci.js", import.meta.url).pathname;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let dir = "";
let plain: RegistryServer;
let secure: RegistryServer;
let caFile = "";
let hanging: FullBacklog;
let silent: SilentServer;
const layer = randomBytes(200_000);
const config = new TextEncoder().encode(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: {} }));
const manifest = marshalManifest({
  schemaVersion: 2,
  mediaType: MediaTypeImageManifest,
  config: { mediaType: MediaTypeImageConfig, digest: digestOf(config), size: config.length },
  layers: [{ mediaType: MediaTypeImageLayerGzip, digest: digestOf(layer), size: layer.length }],
});

async function pushTestImage(host: string, client: RegistryClient): Promise<void> {
  const ref = `${host}/app:v1`;
  for (const b of [config, layer]) await client.pushBlob(ref, b, { digest: digestOf(b), size: b.length });
  await client.pushManifest(ref, manifest, MediaTypeImageManifest);
}

/** Everything of `ref`, as a pull reads it: resolve, manifest, config, the layer streamed. */
async function pull(client: RegistryClient, ref: string): Promise<void> {
  const desc = await client.resolve(ref);
  expect(desc.digest).toBe(digestOf(manifest));
  const m = parseManifest((await client.getManifest(ref, desc)).bytes);
  expect(Buffer.from(await client.getBlob(ref, m.config.digest)).equals(config)).toBe(true);
  let n = 0;
  for await (const c of client.blobStream(ref, m.layers![0]!.digest, { size: layer.length })) n += c.length;
  expect(n).toBe(layer.length);
}

/** A hosts directory with one hosts.toml for `host`. */
async function hostsDir(name: string, host: string, toml: string[]): Promise<string> {
  const root = join(dir, name);
  await mkdir(join(root, hostDirectoryName(host)), { recursive: true });
  await writeFile(join(root, hostDirectoryName(host), "hosts.toml"), toml.join("\n"));
  return root;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "soci-transport-"));
  const certs = await makeServerCerts(dir);
  caFile = certs.caFile;
  [plain, secure, hanging, silent] = await Promise.all([
    startRegistry({ accessLog: true }),
    startRegistry({ tls: { certFile: certs.certFile, keyFile: certs.keyFile }, accessLog: true }),
    startFullBacklog(),
    startSilentServer(),
  ]);
  const setup = new RegistryClient({ plainHttp: true });
  await pushTestImage(plain.host, setup);
  await setup.close();
  const tls = new RegistryClient({
    hosts: new HostsDirResolver({
      hostsDir: await hostsDir("setup-tls", secure.host, [`server = "https://${secure.host}"`, `ca = "${caFile}"`]),
    }),
  });
  await pushTestImage(secure.host, tls);
  await tls.close();
}, 120_000);

afterAll(async () => {
  await Promise.all([plain?.stop(), secure?.stop(), hanging?.close(), silent?.close()]);
  await rm(dir, { recursive: true, force: true });
});

describe("hosts.toml dial_timeout", () => {
  it("a mirror whose connects hang is given up after its dial_timeout; the upstream serves", async () => {
    const hosts = await hostsDir("dial-mirror", plain.host, [
      `server = "http://${plain.host}"`,
      `[host."http://${hanging.host}"]`,
      `  capabilities = ["pull", "resolve"]`,
      `  dial_timeout = "300ms"`,
    ]);
    // without the endpoint's dial_timeout the client's own (60 s here) would apply
    const client = new RegistryClient({ hosts: new HostsDirResolver({ hostsDir: hosts }), connectTimeoutMs: 60_000 });
    const t0 = Date.now();
    try {
      await pull(client, `${plain.host}/app:v1`);
    } finally {
      await client.close();
    }
    expect(Date.now() - t0).toBeLessThan(20_000);
  });

  it("the last host: the error arrives after the dial_timeout and names it", async () => {
    const hosts = await hostsDir("dial-only", plain.host, [
      `server = "http://${hanging.host}"`,
      `dial_timeout = "700ms"`,
    ]);
    const client = new RegistryClient({
      hosts: new HostsDirResolver({ hostsDir: hosts }),
      connectTimeoutMs: 60_000,
      retries: 1,
      baseDelayMs: 10,
    });
    const t0 = Date.now();
    const e = await client.resolve(`${plain.host}/app:v1`).then(
      () => undefined,
      (x: unknown) => x,
    );
    await client.close();
    expect(e).toBeInstanceOf(UnavailableError);
    const msg = (e as Error).message;
    expect(msg).toContain(`HEAD manifest: http://${hanging.host}/v2/app/manifests/v1`);
    expect(msg).toContain("UND_ERR_CONNECT_TIMEOUT");
    expect(msg).toContain("timeout: 700ms");
    expect(Date.now() - t0).toBeLessThan(20_000); // two attempts of 0.7 s, not of 60 s
  });
});

describe("hosts.toml proxy", () => {
  it("a plain-HTTP registry known only to the proxy: every request is forwarded through it", async () => {
    const name = "registry.proxied.test:5000";
    const proxy = await startHttpProxy({ [name]: plain.host });
    const hosts = await hostsDir("proxy-plain", name, [`server = "http://${name}"`, `proxy = "${proxy.url}"`]);
    const client = new RegistryClient({ hosts: new HostsDirResolver({ hostsDir: hosts }) });
    plain.requests.length = 0;
    try {
      await pull(client, `${name}/app:v1`);
    } finally {
      await client.close();
      await proxy.close();
    }
    const targets = proxy.log.map((l) => `${l.kind} ${l.target}`);
    expect(targets).toContain(`forward HEAD http://${name}/v2/app/manifests/v1`);
    expect(targets).toContain(`forward GET http://${name}/v2/app/blobs/${digestOf(layer)}`);
    expect(proxy.log.every((l) => l.kind === "forward")).toBe(true);
    // and the registry behind it served them
    expect(plain.requests).toContain(`GET /v2/app/blobs/${digestOf(layer)} 200`);
  });

  it("an HTTPS registry is reached through a CONNECT tunnel, its certificate checked end to end", async () => {
    // nothing listens on localhost:1: only the proxy's route leads to the registry
    const proxy = await startHttpProxy({ "localhost:1": secure.host });
    const hosts = await hostsDir("proxy-tls", "localhost:1", [
      `server = "https://localhost:1"`,
      `ca = "${caFile}"`,
      `proxy = "${proxy.url}"`,
    ]);
    const client = new RegistryClient({ hosts: new HostsDirResolver({ hostsDir: hosts }) });
    try {
      await pull(client, "localhost:1/app:v1");
    } finally {
      await client.close();
    }
    expect(proxy.log.length).toBeGreaterThan(0);
    expect(proxy.log.every((l) => l.kind === "connect" && l.target === "localhost:1")).toBe(true);
    // without the CA the tunnel still opens, and the registry's certificate is refused
    const untrusted = await hostsDir("proxy-tls-noca", "localhost:1", [
      `server = "https://localhost:1"`,
      `proxy = "${proxy.url}"`,
    ]);
    const bad = new RegistryClient({ hosts: new HostsDirResolver({ hostsDir: untrusted }), retries: 0 });
    const e = await bad.resolve("localhost:1/app:v1").catch((x: unknown) => x);
    await bad.close();
    await proxy.close();
    expect(e).toBeInstanceOf(UnavailableError);
    expect((e as Error).message).toContain("certificate signed by an unknown authority");
  });

  it("a proxy that is not an http(s) URL is refused, not ignored", async () => {
    const warnings: string[] = [];
    const hosts = await hostsDir("proxy-bad", plain.host, [
      `server = "http://${silent.host}"`,
      `proxy = "socks4://127.0.0.1:1080"`,
    ]);
    const r = new HostsDirResolver({ hostsDir: hosts, onWarning: (w) => warnings.push(w) });
    // containerd's rule for an unusable hosts.toml: warn and use the host's certificate files only
    expect((await r.endpoints(plain.host)).map((e) => e.url)).toEqual([`http://${plain.host}`]);
    expect(warnings.join("\n")).toMatch(/invalid proxy "socks4:\/\/127\.0\.0\.1:1080"/);
  });
});

describe("resolver mirrors' request_timeout_sec", () => {
  it("a mirror that accepts and never answers is left after its request timeout; the registry serves", async () => {
    const before = silent.connections;
    const client = new RegistryClient({
      hosts: resolverFromConfig({
        resolver: { host: { [plain.host]: { mirrors: [{ host: silent.host, request_timeout_sec: 1 }] } } },
      }),
      timeoutMs: 60_000, // what the mirror would get without its own timeout
    });
    const t0 = Date.now();
    try {
      await pull(client, `${plain.host}/app:v1`);
    } finally {
      await client.close();
    }
    expect(silent.connections).toBeGreaterThan(before); // the mirror was asked first
    expect(silent.bytesIn).toBeGreaterThan(0);
    // one wait of 1 s, then the mirror is skipped for the rest of the pull
    expect(Date.now() - t0).toBeLessThan(20_000);
  });

  it("on the last host the request timeout ends the request with an error naming it", async () => {
    const client = new RegistryClient({
      hosts: {
        endpoints: async () => [
          { url: `http://${silent.host}`, capabilities: ["pull", "resolve"], requestTimeoutSec: 1 },
        ],
      },
      timeoutMs: 60_000,
      retries: 0,
    });
    const t0 = Date.now();
    const e = await client.resolve(`${plain.host}/app:v1`).catch((x: unknown) => x);
    await client.close();
    expect(errorCodeOf(e)).toBe("Unavailable");
    expect((e as Error).message).toContain("UND_ERR_HEADERS_TIMEOUT");
    expect(Date.now() - t0).toBeLessThan(20_000); // 1 s, not the client's 60 s
  });
});

describe("operation deadlines", () => {
  let faults: FaultProxy;
  beforeAll(async () => {
    faults = await startFaultProxy(plain.host);
  });
  afterAll(async () => {
    await faults?.close();
  });
  const blob = digestOf(layer);

  it("a registry that accepts and never answers: the operation fails at its deadline, naming the request", async () => {
    // without a deadline: 5 attempts × the 60 s wait for headers
    const client = new RegistryClient({ plainHttp: true, deadlineMs: 1000, timeoutMs: 60_000 });
    const t0 = Date.now();
    const e = await client.resolve(`${silent.host}/app:v1`).catch((x: unknown) => x);
    await client.close();
    expect(e).toBeInstanceOf(DeadlineExceededError);
    expect((e as Error).message).toBe(
      `HEAD manifest http://${silent.host}/v2/app/manifests/v1: no response within 1s (deadline)`,
    );
    expect(Date.now() - t0).toBeLessThan(20_000);
  });

  it("a transfer that stalls: the stream fails after the deadline with the bytes that arrived", async () => {
    faults.setRules([{ method: "GET", path: /\/blobs\//, action: { kind: "stall", afterBytes: 50_000 } }]);
    const client = new RegistryClient({ plainHttp: true, deadlineMs: 1000 });
    let got = 0;
    const e = await (async () => {
      for await (const c of client.blobStream(`${faults.host}/app:v1`, blob, { size: layer.length })) got += c.length;
    })().catch((x: unknown) => x);
    await client.close();
    faults.setRules([]);
    expect(e).toBeInstanceOf(DeadlineExceededError);
    expect((e as Error).message).toBe(
      `GET blob http://${faults.host}/v2/app/blobs/${blob}: stalled for 1s after 50000 bytes (deadline)`,
    );
    expect(got).toBeLessThan(50_000); // the last chunk is held until the digest matched
  });

  it("a slow link that keeps delivering is not cut short, though the transfer outlasts the deadline", async () => {
    faults.setRules([
      { method: "GET", path: /\/blobs\//, action: { kind: "trickle", bytesPerTick: 16_000, tickMs: 100 } },
    ]);
    const client = new RegistryClient({ plainHttp: true, deadlineMs: 500 });
    const t0 = Date.now();
    try {
      const whole = await client.getBlob(`${faults.host}/app:v1`, blob);
      expect(Buffer.from(whole).equals(layer)).toBe(true);
      let n = 0;
      for await (const c of client.blobStream(`${faults.host}/app:v1`, blob)) n += c.length;
      expect(n).toBe(layer.length);
    } finally {
      await client.close();
      faults.setRules([]);
    }
    expect(Date.now() - t0).toBeGreaterThan(1000); // each transfer took longer than the deadline
  });

  it("the time a consumer spends with a chunk is not the registry's", async () => {
    const client = new RegistryClient({ plainHttp: true, deadlineMs: 300 });
    let n = 0;
    try {
      for await (const c of client.blobStream(`${plain.host}/app:v1`, blob)) {
        if (n === 0) await sleep(1200);
        n += c.length;
      }
    } finally {
      await client.close();
    }
    expect(n).toBe(layer.length);
  });

  it("an upload waiting for its source (a download feeding it) is not cut short", async () => {
    const data = randomBytes(300_000);
    async function* slowSource(): AsyncGenerator<Uint8Array> {
      for (let o = 0; o < data.length; o += 100_000) {
        await sleep(700);
        yield data.subarray(o, o + 100_000);
      }
    }
    const client = new RegistryClient({ plainHttp: true, deadlineMs: 300 });
    try {
      await client.pushBlob(`${plain.host}/upload:v1`, slowSource(), { digest: digestOf(data), size: data.length });
      expect(await client.blobExists(`${plain.host}/upload:v1`, digestOf(data))).toBe(data.length);
    } finally {
      await client.close();
    }
  });

  it("soci convert --timeout 2s: a registry that never answers is reported within seconds, with what was awaited", async () => {
    const t0 = Date.now();
    const e = (await run(process.execPath, [
      soci,
      "convert",
      "--plain-http",
      "--timeout",
      "2s",
      `${silent.host}/app:v1`,
      `${silent.host}/app:soci`,
    ]).catch((x: unknown) => x)) as { code: number; stderr: string };
    expect(e.code).toBe(1);
    expect(e.stderr).toBe(
      `soci: HEAD manifest http://${silent.host}/v2/app/manifests/v1: no response within 2s (deadline)\n`,
    );
    expect(Date.now() - t0).toBeLessThan(30_000); // not 5 × 60 s
    const bad = (await run(process.execPath, [soci, "convert", "--timeout", "soon", "a", "b"]).catch(
      (x: unknown) => x,
    )) as { stderr: string };
    expect(bad.stderr).toContain("not a duration");
  });
});

describe("an operation's deadline", () => {
  it("serves any number of requests at once without Node's listener-leak warning", async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on("warning", onWarning);
    try {
      const deadline = new Deadline(10_000);
      deadline.wait("GET blobs");
      const pending = Array.from({ length: 32 }, (_, i) => deadline.race(new Promise((r) => setTimeout(r, 20, i))));
      expect(await Promise.all(pending)).toHaveLength(32);
      deadline.end();
      await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
    } finally {
      process.off("warning", onWarning);
    }
    expect(warnings.filter((w) => w.name === "MaxListenersExceededWarning")).toEqual([]);
  });
});
