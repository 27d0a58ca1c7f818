// Registry client against a real registry (Debian's docker-registry, distribution 2.8) and a
// fault-injecting loopback proxy in front of it.

import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  MediaTypeImageConfig,
  MediaTypeImageIndex,
  MediaTypeImageLayerGzip,
  MediaTypeImageManifest,
  MediaTypeEmptyJSON,
  digestOf,
  marshalIndex,
  marshalManifest,
  parseIndex,
  parseManifest,
  type Descriptor,
} from "../src/formats/oci.js";
import { RegistryClient, referrerDescriptor } from "../src/registry/client.js";
import {
  DeniedError,
  DigestMismatchError,
  InvalidArgumentError,
  NotFoundError,
  UnauthorizedError,
  UnavailableError,
  errorFromResponse,
} from "../src/registry/errors.js";
import { SociError } from "../src/errors/errors.js";
import { formatReference, parseReference, referrersTag } from "../src/registry/reference.js";
import { backoffDelay, parseRetryAfter } from "../src/registry/retry.js";
import type { AuthScope, Authorizer } from "../src/registry/types.js";
import { startFaultProxy, type FaultProxy } from "./helpers/fault-proxy.js";
import { startRegistry, type RegistryServer } from "./helpers/registry-server.js";

const enc = (s: string) => new TextEncoder().encode(s);
const eq = (a: Uint8Array, b: Uint8Array) => Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;

async function collect(it: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const c of it) parts.push(c);
  return Buffer.concat(parts);
}

async function* chunksOf(b: Uint8Array, n: number): AsyncGenerator<Uint8Array> {
  for (let o = 0; o < b.length; o += n) yield b.subarray(o, o + n);
}

interface TestImage {
  config: Uint8Array;
  layers: Uint8Array[];
  manifest: Uint8Array;
  manifestDesc: Descriptor;
}

function makeImage(seed: string, arch = "amd64"): TestImage {
  const config = enc(
    JSON.stringify({ architecture: arch, os: "linux", rootfs: { type: "layers", diff_ids: [] }, seed }),
  );
  const layers = [randomBytes(3000), randomBytes(70_000)];
  const manifest = marshalManifest({
    schemaVersion: 2,
    mediaType: MediaTypeImageManifest,
    config: { mediaType: MediaTypeImageConfig, digest: digestOf(config), size: config.length },
    layers: layers.map((l) => ({ mediaType: MediaTypeImageLayerGzip, digest: digestOf(l), size: l.length })),
  });
  return {
    config,
    layers,
    manifest,
    manifestDesc: { mediaType: MediaTypeImageManifest, digest: digestOf(manifest), size: manifest.length },
  };
}

async function pushImage(c: RegistryClient, ref: string, img: TestImage, tag?: string): Promise<void> {
  for (const b of [img.config, ...img.layers]) await c.pushBlob(ref, b, { digest: digestOf(b), size: b.length });
  await c.pushManifest(ref, img.manifest, MediaTypeImageManifest, tag ?? parseReference(ref).tag);
}

describe("references, errors, retry policy", () => {
  it("parses and formats references with Docker Hub defaults", () => {
    expect(parseReference("busybox")).toEqual({ host: "docker.io", repository: "library/busybox", tag: "latest" });
    expect(parseReference("index.docker.io/user/app:1")).toEqual({
      host: "docker.io",
      repository: "user/app",
      tag: "1",
    });
    const d = "sha256:" + "ab".repeat(32);
    expect(parseReference(`127.0.0.1:5000/a/b:v1@${d}`)).toEqual({
      host: "127.0.0.1:5000",
      repository: "a/b",
      tag: "v1",
      digest: d,
    });
    expect(parseReference(`localhost/x@${d}`)).toEqual({ host: "localhost", repository: "x", digest: d });
    expect(formatReference(parseReference("busybox"))).toBe("docker.io/library/busybox:latest");
    expect(referrersTag(d)).toBe("sha256-" + "ab".repeat(32));
    for (const bad of ["", "x/UPPER", "Upper", "a//b", "x:bad tag", "x@sha256:abc", "host:port:x/y"]) {
      expect(() => parseReference(bad), bad).toThrow(InvalidArgumentError);
    }
  });

  it("maps statuses and OCI error bodies to typed errors without credentials in messages", () => {
    const body = enc(JSON.stringify({ errors: [{ code: "MANIFEST_UNKNOWN", message: "manifest unknown" }] }));
    const e = errorFromResponse("GET manifest", 404, "https://user:pw@r.example/v2/x/manifests/t?token=s3cr3t", body);
    expect(e).toBeInstanceOf(NotFoundError);
    expect(e.code).toBe("NotFound");
    expect(e.registryErrors[0]!.code).toBe("MANIFEST_UNKNOWN");
    expect(e.message).not.toMatch(/pw|s3cr3t/);
    expect(errorFromResponse("x", 401, "http://h/v2/")).toBeInstanceOf(UnauthorizedError);
    expect(errorFromResponse("x", 403, "http://h/v2/")).toBeInstanceOf(DeniedError);
    expect(errorFromResponse("x", 503, "http://h/v2/").code).toBe("Unavailable");
    expect(errorFromResponse("x", 405, "http://h/v2/").code).toBe("Unimplemented");
    expect(errorFromResponse("x", 400, "http://h/v2/", enc('{"errors":[{"code":"DIGEST_INVALID"}]}')).code).toBe(
      "DigestMismatch",
    );
  });

  it("parses Retry-After (seconds and HTTP date) and bounds backoff", () => {
    expect(parseRetryAfter("3")).toBe(3000);
    const now = Date.parse("2024-01-01T00:00:00Z");
    expect(parseRetryAfter("Mon, 01 Jan 2024 00:00:05 GMT", now)).toBe(5000);
    expect(parseRetryAfter("soon")).toBeUndefined();
    expect(backoffDelay(1, { baseDelayMs: 100, maxDelayMs: 1000 }, 5000)).toBe(1000);
    for (let a = 1; a < 10; a++)
      expect(backoffDelay(a, { baseDelayMs: 100, maxDelayMs: 1000 })).toBeLessThanOrEqual(1000);
  });
});

describe("RegistryClient against docker-registry", () => {
  let reg: RegistryServer;
  let proxy: FaultProxy;
  let client: RegistryClient;
  let faulty: RegistryClient;
  const repo = (name: string) => `${reg.host}/${name}`;
  const viaProxy = (name: string) => `${proxy.host}/${name}`;

  beforeAll(async () => {
    reg = await startRegistry();
    proxy = await startFaultProxy(reg.host);
    client = new RegistryClient({ plainHttp: true, timeoutMs: 10_000 });
    faulty = new RegistryClient({ plainHttp: true, timeoutMs: 5_000, retries: 3, baseDelayMs: 10, maxDelayMs: 2_000 });
  });
  afterAll(async () => {
    await client?.close();
    await faulty?.close();
    await proxy?.close();
    await reg?.stop();
  });

  let img: TestImage;
  it("pushes an image, resolves the tag and reads everything back verified", async () => {
    img = makeImage("one");
    const ref = repo("app/one:v1");
    await pushImage(client, ref, img);
    const desc = await client.resolve(ref);
    expect(desc).toEqual(img.manifestDesc);
    const got = await client.getManifest(ref);
    expect(eq(got.bytes, img.manifest)).toBe(true);
    expect(got.descriptor).toEqual(img.manifestDesc);
    const byDigest = await client.getManifest(repo("app/one"), desc);
    expect(eq(byDigest.bytes, img.manifest)).toBe(true);
    expect(await client.resolve(`${repo("app/one")}@${desc.digest}`)).toEqual(desc);
    const m = parseManifest(got.bytes);
    for (const [i, l] of (m.layers ?? []).entries()) {
      expect(eq(await client.getBlob(ref, l.digest, { size: l.size }), img.layers[i]!)).toBe(true);
      expect(await client.blobExists(ref, l.digest)).toBe(l.size);
    }
    expect(eq(await client.getBlob(ref, m.config.digest), img.config)).toBe(true);
    // Pushing again is a no-op (HEAD says it exists).
    const again = await client.pushBlob(ref, img.layers[0]!, {
      digest: digestOf(img.layers[0]!),
      size: img.layers[0]!.length,
    });
    expect(again.existed).toBe(true);
  });

  it("pushes and reads a multi-platform index", async () => {
    const ref = repo("app/multi:latest");
    const amd = makeImage("amd", "amd64");
    const arm = makeImage("arm", "arm64");
    await pushImage(client, ref, amd, amd.manifestDesc.digest);
    await pushImage(client, ref, arm, arm.manifestDesc.digest);
    const index = marshalIndex({
      schemaVersion: 2,
      mediaType: MediaTypeImageIndex,
      manifests: [
        { ...amd.manifestDesc, platform: { architecture: "amd64", os: "linux" } },
        { ...arm.manifestDesc, platform: { architecture: "arm64", os: "linux", variant: "v8" } },
      ],
    });
    const pushed = await client.pushManifest(ref, index, MediaTypeImageIndex);
    expect(pushed.descriptor.digest).toBe(digestOf(index));
    const desc = await client.resolve(ref);
    expect(desc).toEqual({ mediaType: MediaTypeImageIndex, digest: digestOf(index), size: index.length });
    const got = await client.getManifest(ref);
    expect(eq(got.bytes, index)).toBe(true);
    const idx = parseIndex(got.bytes);
    const arm64 = idx.manifests!.find((d) => d.platform?.architecture === "arm64")!;
    expect(eq((await client.getManifest(ref, arm64)).bytes, arm.manifest)).toBe(true);
  });

  it("mounts a blob from another repository", async () => {
    const layer = img.layers[1]!;
    const d = { digest: digestOf(layer), size: layer.length };
    expect(await client.blobExists(repo("other/target"), d.digest)).toBeUndefined();
    const r = await client.pushBlob(repo("other/target"), layer, d, { mountFrom: "app/one" });
    expect(r.mounted).toBe(true);
    expect(eq(await client.getBlob(repo("other/target"), d.digest), layer)).toBe(true);
    // Mount from a repository without the blob: the registry opens an upload instead.
    const fresh = randomBytes(1000);
    const r2 = await client.pushBlob(
      repo("other/target2"),
      fresh,
      { digest: digestOf(fresh), size: fresh.length },
      { mountFrom: "nope/none" },
    );
    expect(r2.mounted).toBeFalsy();
    expect(eq(await client.getBlob(repo("other/target2"), digestOf(fresh)), fresh)).toBe(true);
  });

  const big = randomBytes(6 * 1024 * 1024 + 12345);
  const bigDigest = digestOf(big);
  it("uploads a multi-MB stream in chunks and rejects a stream that does not match its digest", async () => {
    const chunked = new RegistryClient({ plainHttp: true, chunkSize: 1 << 20 });
    try {
      await chunked.pushBlob(repo("big/blob"), chunksOf(big, 300_000), { digest: bigDigest, size: big.length });
      expect(eq(await chunked.getBlob(repo("big/blob"), bigDigest), big)).toBe(true);
      const bad = randomBytes(3 << 20);
      await expect(
        chunked.pushBlob(repo("big/blob"), chunksOf(bad, 100_000), {
          digest: digestOf(randomBytes(8)),
          size: bad.length,
        }),
      ).rejects.toBeInstanceOf(DigestMismatchError);
      // Large byte arrays go chunked too.
      const b2 = randomBytes(2_500_000);
      await chunked.pushBlob(repo("big/blob2"), b2, { digest: digestOf(b2), size: b2.length });
      expect(await chunked.blobExists(repo("big/blob2"), digestOf(b2))).toBe(b2.length);
    } finally {
      await chunked.close();
    }
  });

  it("fetches single and multiple byte ranges equal to the blob's slices", async () => {
    const ref = repo("big/blob");
    expect(eq(await client.fetchRange(ref, bigDigest, 0, 100), big.subarray(0, 100))).toBe(true);
    expect(eq(await client.fetchRange(ref, bigDigest, 5_000_000, big.length), big.subarray(5_000_000))).toBe(true);
    expect((await client.fetchRange(ref, bigDigest, 7, 7)).length).toBe(0);
    const ranges = [
      { start: 10, end: 20 },
      { start: 1 << 20, end: (1 << 20) + 65536 },
      { start: 4_000_000, end: 4_000_001 },
      { start: 100, end: 5000 },
    ];
    const got = await client.fetchRanges(ref, bigDigest, ranges);
    ranges.forEach((r, i) => {
      expect(eq(got[i]!, big.subarray(r.start, r.end)), `range ${i}`).toBe(true);
    });
    await expect(client.fetchRange(ref, bigDigest, big.length + 10, big.length + 20)).rejects.toBeInstanceOf(SociError);
    // The multi-range request went out as one request through the proxy.
    proxy.setRules([]);
    const before = proxy.log.length;
    const got2 = await faulty.fetchRanges(viaProxy("big/blob"), bigDigest, ranges);
    ranges.forEach((r, i) => {
      expect(eq(got2[i]!, big.subarray(r.start, r.end))).toBe(true);
    });
    const sent = proxy.log.slice(before).filter((l) => l.method === "GET");
    expect(sent.length).toBe(1);
    expect(sent[0]!.range).toBe("bytes=10-19,1048576-1114111,4000000-4000000,100-4999");
    expect(sent[0]!.status).toBe(206);
    expect(sent[0]!.contentType).toMatch(/^multipart\/byteranges; boundary=/);
    // A server that ignores Range: the 200 body is verified, then sliced.
    proxy.setRules([{ method: "GET", path: /\/blobs\//, action: { kind: "ignoreRange" } }]);
    expect(eq(await faulty.fetchRange(viaProxy("big/blob"), bigDigest, 300, 400), big.subarray(300, 400))).toBe(true);
    const got3 = await faulty.fetchRanges(viaProxy("big/blob"), bigDigest, ranges);
    ranges.forEach((r, i) => {
      expect(eq(got3[i]!, big.subarray(r.start, r.end))).toBe(true);
    });
    proxy.setRules([]);
  });

  it("streams a large blob, verified", async () => {
    let n = 0;
    const parts: Uint8Array[] = [];
    for await (const c of client.blobStream(repo("big/blob"), bigDigest, { size: big.length })) {
      n++;
      parts.push(c);
    }
    expect(n).toBeGreaterThan(1);
    expect(eq(Buffer.concat(parts), big)).toBe(true);
  });

  it("lists tags with pagination", async () => {
    const ref = repo("tags/many:t0");
    const small = makeImage("tags");
    for (const b of [small.config, ...small.layers])
      await client.pushBlob(ref, b, { digest: digestOf(b), size: b.length });
    const tags = ["t0", "t1", "t2", "t3", "t4"];
    for (const t of tags) await client.pushManifest(ref, small.manifest, MediaTypeImageManifest, t);
    expect((await client.listTags(ref, { pageSize: 2 })).sort()).toEqual(tags);
    expect((await client.listTags(ref)).sort()).toEqual(tags);
  });

  it("finds referrers through the fallback tag (no referrers API in distribution 2.8), filtered by artifactType", async () => {
    const ref = repo("app/one:v1");
    const subject = img.manifestDesc;
    expect(await client.referrers(ref, subject.digest)).toEqual([]);
    const empty = enc("{}");
    await client.pushBlob(ref, empty, { digest: digestOf(empty), size: 2 });
    const ztoc = randomBytes(500);
    await client.pushBlob(ref, ztoc, { digest: digestOf(ztoc), size: ztoc.length });
    const mk = (artifactType: string, note: string) =>
      marshalManifest({
        schemaVersion: 2,
        mediaType: MediaTypeImageManifest,
        artifactType,
        config: { mediaType: MediaTypeEmptyJSON, digest: digestOf(empty), size: 2 },
        layers: [{ mediaType: "application/octet-stream", digest: digestOf(ztoc), size: ztoc.length }],
        subject,
        annotations: { note },
      });
    const soci = mk("application/vnd.amazon.soci.index.v1+json", "soci");
    const other = mk("application/vnd.example.sbom", "sbom");
    const descs: Descriptor[] = [];
    for (const m of [soci, other]) {
      const pushed = await client.pushManifest(ref, m, MediaTypeImageManifest, digestOf(m));
      expect(pushed.ociSubject).toBeUndefined(); // 2.8 does not index subjects ⇒ update the fallback tag
      const d = referrerDescriptor(m, MediaTypeImageManifest);
      descs.push(d);
      await client.addToReferrersFallback(ref, subject.digest, d);
    }
    // Idempotent.
    await client.addToReferrersFallback(ref, subject.digest, descs[0]!);
    const all = await client.referrers(ref, subject.digest);
    expect(all).toEqual(descs);
    const sociOnly = await client.referrers(ref, subject.digest, "application/vnd.amazon.soci.index.v1+json");
    expect(sociOnly).toEqual([descs[0]]);
    expect(sociOnly[0]!.annotations).toEqual({ note: "soci" });
    // The fallback index is Go-JSON bytes of the index, as oras writes it.
    const tagged = await client.getManifest(`${repo("app/one")}:${referrersTag(subject.digest)}`);
    expect(eq(tagged.bytes, marshalIndex({ schemaVersion: 2, mediaType: MediaTypeImageIndex, manifests: descs }))).toBe(
      true,
    );
  });

  it("raises typed errors: NotFound for missing manifests, blobs and repositories", async () => {
    await expect(client.resolve(repo("app/one:nope"))).rejects.toBeInstanceOf(NotFoundError);
    await expect(client.getManifest(repo("app/one:nope"))).rejects.toMatchObject({ code: "NotFound" });
    await expect(client.getManifest(repo("no/such:thing"))).rejects.toBeInstanceOf(NotFoundError);
    const missing = digestOf(enc("missing"));
    await expect(client.getBlob(repo("app/one"), missing)).rejects.toBeInstanceOf(NotFoundError);
    await expect(collect(client.blobStream(repo("app/one"), missing))).rejects.toBeInstanceOf(NotFoundError);
    expect(await client.blobExists(repo("app/one"), missing)).toBeUndefined();
    // Wrong bytes for a digest are refused before anything is sent.
    await expect(client.pushBlob(repo("app/one"), enc("abc"), { digest: missing, size: 3 })).rejects.toBeInstanceOf(
      DigestMismatchError,
    );
    // Nothing listening: Unavailable after retries.
    const dead = new RegistryClient({ plainHttp: true, retries: 1, baseDelayMs: 5, connectTimeoutMs: 500 });
    await expect(dead.resolve("127.0.0.1:1/x:y")).rejects.toBeInstanceOf(UnavailableError);
    await dead.close();
  });

  describe("through the fault proxy", () => {
    const layerRef = () => viaProxy("app/one");
    const layer = () => img.layers[1]!;

    it("retries 500s and connection resets", async () => {
      proxy.setRules([{ method: "GET", path: /\/blobs\//, times: 2, action: { kind: "status", status: 500 } }]);
      expect(eq(await faulty.getBlob(layerRef(), digestOf(layer())), layer())).toBe(true);
      proxy.setRules([{ method: "HEAD", path: /\/manifests\//, times: 2, action: { kind: "reset" } }]);
      expect(await faulty.resolve(viaProxy("app/one:v1"))).toEqual(img.manifestDesc);
      proxy.setRules([{ method: "GET", path: /\/blobs\//, action: { kind: "status", status: 503 } }]);
      await expect(faulty.getBlob(layerRef(), digestOf(layer()))).rejects.toBeInstanceOf(UnavailableError);
      proxy.setRules([]);
    });

    it("honours Retry-After on 429", async () => {
      proxy.setRules([{ path: /\/manifests\//, times: 1, action: { kind: "status", status: 429, retryAfter: "1" } }]);
      const t0 = Date.now();
      expect(eq((await faulty.getManifest(viaProxy("app/one:v1"))).bytes, img.manifest)).toBe(true);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
      proxy.setRules([]);
    });

    it("retries a body dropped mid-blob; a stream resumes with a Range request", async () => {
      proxy.setRules([{ method: "GET", path: /\/blobs\//, times: 2, action: { kind: "drop", afterBytes: 10_000 } }]);
      expect(eq(await faulty.getBlob(layerRef(), digestOf(layer())), layer())).toBe(true);
      proxy.setRules([{ method: "GET", path: /\/blobs\//, times: 1, action: { kind: "drop", afterBytes: 2_000_000 } }]);
      const before = proxy.log.length;
      const got = await collect(faulty.blobStream(viaProxy("big/blob"), bigDigest));
      expect(eq(got, big)).toBe(true);
      const ranges = proxy.log
        .slice(before)
        .map((l) => l.range)
        .filter(Boolean);
      expect(ranges.length).toBe(1);
      expect(ranges[0]).toMatch(/^bytes=\d+-$/);
      proxy.setRules([{ method: "GET", path: /\/blobs\//, times: 1, action: { kind: "drop", afterBytes: 100 } }]);
      expect(
        eq(await faulty.fetchRange(viaProxy("big/blob"), bigDigest, 1000, 300_000), big.subarray(1000, 300_000)),
      ).toBe(true);
      proxy.setRules([]);
    });

    it("never accepts a corrupted blob (whole fetch and stream)", async () => {
      proxy.setRules([{ method: "GET", path: /\/blobs\//, action: { kind: "corrupt", offset: 1234 } }]);
      await expect(faulty.getBlob(layerRef(), digestOf(layer()))).rejects.toBeInstanceOf(DigestMismatchError);
      const received: Uint8Array[] = [];
      const err = await (async () => {
        try {
          for await (const c of faulty.blobStream(viaProxy("big/blob"), bigDigest)) received.push(c);
        } catch (e) {
          return e;
        }
      })();
      expect(err).toBeInstanceOf(DigestMismatchError);
      expect(Buffer.concat(received).length).toBeLessThan(big.length); // the last chunk is held back
      // A server ignoring Range (200 full body) is verified too.
      proxy.setRules([{ method: "GET", path: /\/manifests\//, action: { kind: "corrupt", offset: 5 } }]);
      await expect(faulty.getManifest(viaProxy("app/one"), img.manifestDesc)).rejects.toBeInstanceOf(
        DigestMismatchError,
      );
      proxy.setRules([]);
    });

    it("follows blob redirects without sending Authorization to another origin", async () => {
      const authz: Authorizer = {
        authorization: async () => "Bearer s3cr3t-token",
        challenged: async () => false,
      };
      const c = new RegistryClient({ plainHttp: true, authorizer: authz, retries: 1 });
      try {
        proxy.setRules([{ method: "GET", path: /\/blobs\//, times: 1, action: { kind: "redirect" } }]);
        const before = proxy.log.length;
        expect(eq(await c.getBlob(layerRef(), digestOf(layer())), layer())).toBe(true);
        const log = proxy.log.slice(before);
        expect(log.map((l) => l.origin)).toEqual(["main", "redirect"]);
        expect(log[0]!.authorization).toBe("Bearer s3cr3t-token");
        expect(log[1]!.authorization).toBeUndefined();
      } finally {
        await c.close();
        proxy.setRules([]);
      }
    });

    it("answers a 401 challenge once through the Authorizer, else fails Unauthorized", async () => {
      const challenges: [AuthScope, string][] = [];
      const authz: Authorizer = {
        authorization: async () => (challenges.length ? "Bearer fresh" : undefined),
        challenged: async (scope, www) => {
          challenges.push([scope, www]);
          return true;
        },
      };
      const www = 'Bearer realm="http://auth.example/token",service="reg",scope="repository:app/one:pull"';
      const unauthorized = {
        kind: "status" as const,
        status: 401,
        body: '{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
      };
      proxy.setRules([{ path: /\/manifests\//, times: 1, action: unauthorized }]);
      await expect(faulty.getManifest(viaProxy("app/one:v1"))).rejects.toBeInstanceOf(UnauthorizedError);
      const c = new RegistryClient({ plainHttp: true, authorizer: authz, retries: 0 });
      try {
        proxy.setRules([{ path: /\/manifests\//, times: 1, action: { ...unauthorized, wwwAuthenticate: www } }]);
        const before = proxy.log.length;
        expect(eq((await c.getManifest(viaProxy("app/one:v1"))).bytes, img.manifest)).toBe(true);
        expect(challenges).toEqual([[{ host: proxy.host, repository: "app/one", actions: ["pull"] }, www]]);
        expect(proxy.log.slice(before).map((l) => l.authorization)).toEqual([undefined, "Bearer fresh"]);
      } finally {
        await c.close();
        proxy.setRules([]);
      }
    });

    it("resumes a chunked upload after a failed PATCH and retries a failed manifest PUT", async () => {
      const c = new RegistryClient({ plainHttp: true, chunkSize: 1 << 20, retries: 3, baseDelayMs: 10 });
      try {
        const data = randomBytes(3_500_000);
        proxy.setRules([
          { method: "PATCH", times: 1, action: { kind: "status", status: 502 } },
          { method: "PUT", path: /\/manifests\//, times: 1, action: { kind: "status", status: 500 } },
        ]);
        await c.pushBlob(viaProxy("up/load"), chunksOf(data, 200_000), { digest: digestOf(data), size: data.length });
        expect(eq(await client.getBlob(repo("up/load"), digestOf(data)), data)).toBe(true);
        const m = makeImage("upload");
        await pushImage(c, viaProxy("up/load:v1"), m);
        expect(await client.resolve(repo("up/load:v1"))).toEqual(m.manifestDesc);
      } finally {
        await c.close();
        proxy.setRules([]);
      }
    });

    it("bounds concurrency while many range requests run", async () => {
      const c = new RegistryClient({ plainHttp: true, concurrency: 2 });
      try {
        const rs = Array.from({ length: 40 }, (_, i) => ({ start: i * 100_000, end: i * 100_000 + 5000 }));
        const got = await Promise.all(rs.map((r) => c.fetchRange(viaProxy("big/blob"), bigDigest, r.start, r.end)));
        rs.forEach((r, i) => {
          expect(eq(got[i]!, big.subarray(r.start, r.end))).toBe(true);
        });
      } finally {
        await c.close();
      }
    });
  });
});
