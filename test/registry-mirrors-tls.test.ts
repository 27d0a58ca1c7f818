// Mirrors and TLS with real registries: a containerd hosts.toml directory lists a mirror that is
// down (connection refused) and a mirror that is a real docker-registry; the client falls through
// to the next host and the upstream, and the registries' access logs show who served what. A
// registry over TLS with a private CA works with `ca = ...`, fails clearly without it, and works
// with `skip_verify = true`.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { freePort, startRegistry, type RegistryServer } from "./helpers/registry-server.js";
import { makeServerCerts, type ServerCerts } from "./helpers/tls-certs.js";
import { RegistryClient } from "../src/registry/client.js";
import { HostsDirResolver, hostDirectoryName } from "../src/registry/hosts.js";
import { UnavailableError } from "../src/registry/errors.js";
import { parseManifest, type Descriptor } from "../src/formats/oci.js";
import { SociIndexArtifactTypeV2 } from "../src/formats/soci-index.js";

const run = promisify(execFile);
const soci = new URL("../bin/soci.js", import.meta.url).pathname;
let dir = "";
let upstream: RegistryServer;
let mirror: RegistryServer;
let secure: RegistryServer;
let certs: ServerCerts;
let deadPort = 0;
let layout = "";

/** A hosts directory with one hosts.toml for `host`. */
async function hostsDir(name: string, host: string, toml: string): Promise<string> {
  const root = join(dir, name);
  await mkdir(join(root, hostDirectoryName(host)), { recursive: true });
  await writeFile(join(root, hostDirectoryName(host), "hosts.toml"), toml);
  return root;
}

/** Waits until the registries' access logs stop growing (lines land just after each response). */
async function logsSettled(...rs: RegistryServer[]): Promise<void> {
  let last = -1;
  for (let i = 0; i < 40; i++) {
    await new Promise((r) => setTimeout(r, 50));
    const n = rs.reduce((a, r) => a + r.requests.length, 0);
    if (n === last) return;
    last = n;
  }
}

/** Blob downloads a registry served (status 200). */
const blobGets = (r: RegistryServer) => r.requests.filter((l) => /^GET \/v2\/.*\/blobs\/sha256:\S+ 200$/.test(l));
const manifestReqs = (r: RegistryServer) => r.requests.filter((l) => /\/manifests\//.test(l));

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "soci-mirrors-"));
  certs = await makeServerCerts(dir);
  [upstream, mirror, secure] = await Promise.all([
    startRegistry({ accessLog: true }),
    startRegistry({ accessLog: true }),
    startRegistry({ tls: { certFile: certs.certFile, keyFile: certs.keyFile } }),
  ]);
  deadPort = await freePort(); // nothing listens there: connection refused
  layout = join(dir, "image");
  await run("umoci", ["init", "--layout", layout]);
  await run("umoci", ["new", "--image", `${layout}:latest`]);
  await run("umoci", ["unpack", "--rootless", "--image", `${layout}:latest`, join(dir, "bundle")]);
  await writeFile(join(dir, "bundle/rootfs/data.bin"), randomBytes(256 << 10));
  await writeFile(join(dir, "bundle/rootfs/hello.txt"), "hello\n");
  await run("umoci", ["repack", "--image", `${layout}:latest`, join(dir, "bundle")]);
  await run("skopeo", [
    "copy",
    "--dest-tls-verify=false",
    `oci:${layout}:latest`,
    `docker://${upstream.host}/src/app:latest`,
  ]);
  await run("skopeo", [
    "copy",
    "--dest-tls-verify=false",
    `oci:${layout}:latest`,
    `docker://${secure.host}/src/app:latest`,
  ]);
}, 120_000);

afterAll(async () => {
  await Promise.all([upstream?.stop(), mirror?.stop(), secure?.stop()]);
  await rm(dir, { recursive: true, force: true });
});

async function pullAll(client: RegistryClient, ref: string): Promise<{ manifest: Descriptor; blobs: number }> {
  const manifest = await client.resolve(ref);
  const m = parseManifest((await client.getManifest(ref, manifest)).bytes);
  let blobs = 0;
  await client.getBlob(ref, m.config.digest);
  blobs++;
  for (const l of m.layers ?? []) {
    let n = 0;
    for await (const c of client.blobStream(ref, l.digest, { size: l.size })) n += c.length;
    expect(n).toBe(l.size);
    blobs++;
  }
  return { manifest, blobs };
}

describe("hosts.toml mirrors with real registries", () => {
  const toml = () =>
    [
      `server = "http://${upstream.host}"`,
      "",
      `[host."http://127.0.0.1:${deadPort}"]`,
      `  capabilities = ["pull", "resolve"]`,
      "",
      `[host."http://${mirror.host}"]`,
      `  capabilities = ["pull", "resolve"]`,
      "",
    ].join("\n");

  it("a mirror that is down and a mirror without the image: the upstream serves, quickly", async () => {
    const hosts = await hostsDir("hosts-fallthrough", upstream.host, toml());
    const client = new RegistryClient({ hosts: new HostsDirResolver({ hostsDir: hosts }) });
    upstream.requests.length = 0;
    mirror.requests.length = 0;
    const t0 = Date.now();
    try {
      const { blobs } = await pullAll(client, `${upstream.host}/src/app:latest`);
      expect(blobs).toBe(2);
    } finally {
      await client.close();
    }
    expect(Date.now() - t0).toBeLessThan(1000); // the dead mirror is not retried with backoff (≥ 1.5 s)
    await logsSettled(upstream, mirror);
    // the mirror was asked first (with containerd's ns parameter) and had nothing
    expect(manifestReqs(mirror)[0]).toBe(
      `HEAD /v2/src/app/manifests/latest?ns=${encodeURIComponent(upstream.host)} 404`,
    );
    expect(mirror.requests.filter((l) => l.includes("/blobs/")).every((l) => l.endsWith(" 404"))).toBe(true);
    expect(blobGets(mirror)).toHaveLength(0);
    expect(blobGets(upstream)).toHaveLength(2);
  });

  it("a mirror that has the image serves manifests and blobs; the upstream sees none of it", async () => {
    await run("skopeo", [
      "copy",
      "--src-tls-verify=false",
      "--dest-tls-verify=false",
      `docker://${upstream.host}/src/app:latest`,
      `docker://${mirror.host}/src/app:latest`,
    ]);
    const hosts = await hostsDir("hosts-mirror", upstream.host, toml());
    const client = new RegistryClient({ hosts: new HostsDirResolver({ hostsDir: hosts }) });
    upstream.requests.length = 0;
    mirror.requests.length = 0;
    try {
      await pullAll(client, `${upstream.host}/src/app:latest`);
    } finally {
      await client.close();
    }
    await logsSettled(upstream, mirror);
    expect(blobGets(mirror)).toHaveLength(2);
    expect(blobGets(mirror).every((l) => l.endsWith(`?ns=${encodeURIComponent(upstream.host)} 200`))).toBe(true);
    expect(upstream.requests.filter((l) => l.includes("/src/app/"))).toEqual([]);
  });

  it("soci convert through the hosts dir: pulls from the mirror, pushes to the upstream only", async () => {
    const hosts = await hostsDir("hosts-cli", upstream.host, toml());
    upstream.requests.length = 0;
    mirror.requests.length = 0;
    const r = await run("node", [
      soci,
      "convert",
      "--hosts-dir",
      hosts,
      "--min-layer-size",
      "0",
      `${upstream.host}/src/app:latest`,
      `${upstream.host}/dst/app:soci`,
    ]);
    expect(r.stderr).toBe("");
    await logsSettled(upstream, mirror);
    // layers came from the mirror; the upstream received the pushes (and mounts)
    expect(blobGets(mirror).length).toBeGreaterThan(0);
    expect(blobGets(upstream).filter((l) => l.includes("/src/app/"))).toEqual([]);
    expect(upstream.requests).toContain("PUT /v2/dst/app/manifests/soci 201");
    expect(mirror.requests.some((l) => l.startsWith("PUT ") || l.startsWith("POST "))).toBe(false);
    const index = JSON.parse(
      (await run("skopeo", ["inspect", "--raw", "--tls-verify=false", `docker://${upstream.host}/dst/app:soci`]))
        .stdout,
    ) as { manifests: Descriptor[] };
    expect(index.manifests.map((m) => m.artifactType)).toContain(SociIndexArtifactTypeV2);
  });
});

describe("TLS with a private CA", () => {
  const ref = () => `${secure.host}/src/app:latest`;
  const client = (hosts: string) =>
    new RegistryClient({ hosts: new HostsDirResolver({ hostsDir: hosts }), retries: 1 });

  it("works with ca = <the CA> in hosts.toml", async () => {
    const hosts = await hostsDir("tls-ca", secure.host, `server = "https://${secure.host}"\nca = "${certs.caFile}"\n`);
    const c = client(hosts);
    try {
      expect((await pullAll(c, ref())).blobs).toBe(2);
    } finally {
      await c.close();
    }
  });

  it("fails clearly without it", async () => {
    const hosts = await hostsDir("tls-none", secure.host, `server = "https://${secure.host}"\n`);
    const c = client(hosts);
    try {
      const err = await c.resolve(ref()).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UnavailableError);
      expect((err as Error).message).toContain(`https://${secure.host}/v2/src/app/manifests/latest`);
      expect((err as Error).message).toMatch(/TLS: certificate signed by an unknown authority/);
      expect((err as Error).message).toMatch(/ca.*hosts\.toml.*skip_verify/);
    } finally {
      await c.close();
    }
    const r = await run("node", [
      soci,
      "convert",
      "--hosts-dir",
      hosts,
      `${secure.host}/src/app:latest`,
      `oci-archive:${join(dir, "never.tar")}`,
    ]).catch((e: { stderr: string; code: number }) => e);
    expect((r as { code: number }).code).toBe(1);
    expect((r as { stderr: string }).stderr).toMatch(/^soci: .*TLS: certificate signed by an unknown authority/m);
  });

  it("works with skip_verify = true (also through the CLI)", async () => {
    const hosts = await hostsDir("tls-skip", secure.host, `server = "https://${secure.host}"\nskip_verify = true\n`);
    const c = client(hosts);
    try {
      expect((await pullAll(c, ref())).blobs).toBe(2);
    } finally {
      await c.close();
    }
    const out = join(dir, "secure.tar");
    const r = await run("node", [
      soci,
      "convert",
      "--hosts-dir",
      hosts,
      "--min-layer-size",
      "0",
      ref(),
      `oci-archive:${out}:soci`,
    ]);
    expect(r.stderr).toBe("");
    const index = JSON.parse((await run("skopeo", ["inspect", "--raw", `oci-archive:${out}:soci`])).stdout) as {
      manifests: Descriptor[];
    };
    expect(index.manifests).toHaveLength(2);
  });
});

describe("localhost without hosts.toml (containerd's defaults)", () => {
  it("tries HTTPS first (unverified), and plain HTTP only when the registry speaks it", async () => {
    const empty = join(dir, "hosts-empty");
    await mkdir(empty, { recursive: true });
    const c = new RegistryClient({ hosts: new HostsDirResolver({ hostsDir: empty }), retries: 1 });
    try {
      expect((await pullAll(c, `${upstream.host}/src/app:latest`)).blobs).toBe(2); // plain HTTP registry
      expect((await pullAll(c, `${secure.host}/src/app:latest`)).blobs).toBe(2); // TLS registry, private CA
    } finally {
      await c.close();
    }
    // a blob stream as the first request takes the same way (HTTPS refused by plain HTTP → HTTP)
    const fresh = new RegistryClient({ hosts: new HostsDirResolver({ hostsDir: empty }), retries: 1 });
    const plain = new RegistryClient({ plainHttp: true });
    try {
      const m = parseManifest((await plain.getManifest(`${upstream.host}/src/app:latest`)).bytes);
      let n = 0;
      for await (const c of fresh.blobStream(`${upstream.host}/src/app:latest`, m.layers![0]!.digest)) n += c.length;
      expect(n).toBe(m.layers![0]!.size);
    } finally {
      await fresh.close();
      await plain.close();
    }
    const r = await run("node", [
      soci,
      "convert",
      "--hosts-dir",
      empty,
      "--min-layer-size",
      "0",
      `${upstream.host}/src/app:latest`,
      `oci-archive:${join(dir, "localhost.tar")}`,
    ]);
    expect(r.stderr).toBe("");
  });

  it("an https-first failure other than plain HTTP is reported, not hidden by the plain attempt", async () => {
    // the TLS registry's certificate is not trusted here: the plain-HTTP twin must not be tried
    const hosts = await hostsDir(
      "tls-first-strict",
      secure.host,
      `server = "http://${secure.host}"\nskip_verify = false\n`,
    );
    const c = new RegistryClient({ hosts: new HostsDirResolver({ hostsDir: hosts }), retries: 1 });
    try {
      const err = await c.resolve(`${secure.host}/src/app:latest`).catch((e: unknown) => e);
      expect((err as Error).message).toMatch(/^HEAD manifest: https:.*TLS: certificate signed by an unknown authority/);
    } finally {
      await c.close();
    }
  });
});

describe("registry → registry convert across registries", () => {
  it("downloads each layer once: the builder and the upload share the download", async () => {
    upstream.requests.length = 0;
    mirror.requests.length = 0;
    // upstream → mirror (another registry: no mount possible)
    const r = await run("node", [
      soci,
      "convert",
      "--plain-http",
      "--min-layer-size",
      "0",
      `${upstream.host}/src/app:latest`,
      `${mirror.host}/copied/app:soci`,
    ]);
    expect(r.stderr).toBe("");
    await logsSettled(upstream, mirror);
    const m = parseManifest(
      Buffer.from(
        (await run("skopeo", ["inspect", "--raw", "--tls-verify=false", `docker://${upstream.host}/src/app:latest`]))
          .stdout,
      ),
    );
    const layer = m.layers![0]!.digest;
    expect(blobGets(upstream).filter((l) => l.includes(layer))).toHaveLength(1);
    // the destination has the whole image: skopeo copies it out
    await run("skopeo", [
      "copy",
      "--all",
      "--src-tls-verify=false",
      `docker://${mirror.host}/copied/app:soci`,
      `oci:${join(dir, "copied-out")}:x`,
    ]);
  });
});

describe("tee of one download into two readers", () => {
  const chunks = (n: number, size: number) =>
    (async function* () {
      for (let i = 0; i < n; i++) yield new Uint8Array(size).fill(i);
    })();
  const drain = async (s: AsyncIterable<Uint8Array>) => {
    let n = 0;
    for await (const c of s) n += c.length;
    return n;
  };

  it("both readers see every byte; the side gets copies; the source is read as the slower allows", async () => {
    const { teeStream } = await import("../src/registry/tee-stream.js");
    let pulled = 0;
    const src = (async function* () {
      for await (const c of chunks(64, 1024)) {
        pulled++;
        yield c;
      }
    })();
    const tee = teeStream(src, { maxQueuedBytes: 8 * 1024 });
    const it = tee.main[Symbol.asyncIterator]();
    for (let i = 0; i < 8; i++) await it.next();
    // main may run ahead of the idle side only by 8 KiB: the 9th chunk waits for the side to read
    let ninth = false;
    const pending = it.next().then((r) => {
      ninth = true;
      return r;
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(ninth).toBe(false);
    expect(pulled).toBe(8);
    const rest = (async () => {
      let n = ((await pending).value as Uint8Array).length;
      for (let r = await it.next(); !r.done; r = await it.next()) n += r.value.length;
      return n;
    })();
    const [side, main] = await Promise.all([drain(tee.side), rest]);
    expect(side).toBe(64 * 1024);
    expect(main).toBe(56 * 1024);
    expect(pulled).toBe(64);
  });

  it("a cancelled side no longer holds the main reader back; source errors reach both", async () => {
    const { teeStream } = await import("../src/registry/tee-stream.js");
    const tee = teeStream(chunks(100, 1024), { maxQueuedBytes: 4 * 1024 });
    tee.cancelSide();
    expect(await drain(tee.main)).toBe(100 * 1024);
    const failing = teeStream(
      (async function* () {
        yield new Uint8Array(10);
        throw new Error("connection reset");
      })(),
    );
    await expect(drain(failing.main)).rejects.toThrow("connection reset");
    await expect(drain(failing.side)).rejects.toThrow("connection reset");
  });
});
