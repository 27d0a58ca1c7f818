import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ContentStore } from "../src/store/content-store.js";
import {
  BlobNotFoundError,
  DigestMismatchError,
  InvalidDigestError,
  InvalidLayoutError,
  SizeMismatchError,
} from "../src/store/errors.js";
import { digestOf } from "../src/store/digest.js";
import { contentStorePath } from "../src/store/paths.js";

const MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json";
const INDEX_TYPE = "application/vnd.oci.image.index.v1+json";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "store-content-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const enc = (s: string) => new TextEncoder().encode(s);
const sha256 = (b: Uint8Array) => "sha256:" + createHash("sha256").update(b).digest("hex");

async function collect(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

async function ingestEntries(root: string): Promise<string[]> {
  return readdir(join(root, "ingest")).catch(() => []);
}

describe("ContentStore layout", () => {
  it("openReadOnly reads a layout without creating or rewriting anything, and refuses writes", async () => {
    const root = join(dir, "content");
    const rw = await ContentStore.open(root);
    const body = enc('{"schemaVersion":2}');
    const desc = { mediaType: MANIFEST_TYPE, digest: sha256(body), size: body.length };
    await rw.putDescriptor(desc, body);
    await rw.tag(desc, "v1");
    const indexBefore = await readFile(join(root, "index.json"));
    const ro = await ContentStore.openReadOnly(root);
    expect(Buffer.from(await ro.get(desc.digest)).toString()).toBe('{"schemaVersion":2}');
    expect(ro.resolve("v1")?.digest).toBe(desc.digest);
    await expect(ro.put(enc("x"))).rejects.toThrow(/read-only/);
    await expect(ro.tag(desc, "v2")).rejects.toMatchObject({ code: "FailedPrecondition" });
    await expect(ro.delete(desc.digest)).rejects.toThrow(/read-only/);
    expect(await readFile(join(root, "index.json"))).toEqual(indexBefore);
    expect(await ingestEntries(root)).toEqual([]);
    // a directory that is no layout stays untouched: no blobs/, oci-layout or index.json appear
    const bare = join(dir, "bare");
    await mkdir(bare);
    const empty = await ContentStore.openReadOnly(bare);
    expect(empty.manifests()).toEqual([]);
    expect(await empty.exists(desc.digest)).toBe(false);
    expect(await readdir(bare)).toEqual([]);
    // an oci-layout of another version is refused, as by open
    await writeFile(join(bare, "oci-layout"), '{"imageLayoutVersion":"2.0.0"}');
    await expect(ContentStore.openReadOnly(bare)).rejects.toBeInstanceOf(InvalidLayoutError);
  });

  it("creates oci-layout, index.json and blobs/ exactly as oras-go's oci.Store", async () => {
    const root = join(dir, "content");
    await ContentStore.open(root);
    expect(await readFile(join(root, "oci-layout"), "utf8")).toBe('{"imageLayoutVersion":"1.0.0"}');
    expect(await readFile(join(root, "index.json"), "utf8")).toBe(
      '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}',
    );
    expect((await stat(join(root, "blobs"))).isDirectory()).toBe(true);
    expect((await readdir(root)).sort()).toEqual(["blobs", "index.json", "oci-layout"]);
  });

  it("re-opening keeps existing files untouched", async () => {
    const root = join(dir, "content");
    const s = await ContentStore.open(root);
    const body = enc('{"schemaVersion":2}');
    await s.putDescriptor({ mediaType: MANIFEST_TYPE, digest: sha256(body), size: body.length }, body);
    const before = await readFile(join(root, "index.json"), "utf8");
    const s2 = await ContentStore.open(root);
    expect(await readFile(join(root, "index.json"), "utf8")).toBe(before);
    expect(s2.manifests().map((d) => d.digest)).toEqual([sha256(body)]);
  });

  it("rejects a layout with an unsupported version", async () => {
    await writeFile(join(dir, "oci-layout"), '{"imageLayoutVersion":"2.0.0"}');
    await expect(ContentStore.open(dir)).rejects.toBeInstanceOf(InvalidLayoutError);
  });

  it("contentStorePath follows the root", () => {
    expect(contentStorePath("")).toBe("/var/lib/soci-snapshotter-grpc/content");
    expect(contentStorePath("/tmp/x/")).toBe("/tmp/x/content");
  });
});

describe("ContentStore blobs", () => {
  it("put/get/exists/size/delete round trip", async () => {
    const s = await ContentStore.open(dir);
    const data = enc("hello, soci");
    const d = sha256(data);
    expect(await s.exists(d)).toBe(false);
    expect(await s.put(data)).toEqual({ digest: d, size: data.length });
    expect(await s.exists(d)).toBe(true);
    expect(await s.size(d)).toBe(data.length);
    expect(Buffer.from(await s.get(d)).toString()).toBe("hello, soci");
    expect(s.path(d)).toBe(join(dir, "blobs", "sha256", d.slice(7)));
    expect((await stat(s.path(d))).mode & 0o777).toBe(0o444);
    expect(await s.list()).toEqual([{ digest: d, size: data.length }]);
    expect(await s.delete(d)).toBe(true);
    expect(await s.exists(d)).toBe(false);
    expect(await s.delete(d)).toBe(false);
    await expect(s.get(d)).rejects.toBeInstanceOf(BlobNotFoundError);
    await expect(s.size(d)).rejects.toBeInstanceOf(BlobNotFoundError);
    await expect(s.createReadStream(d)).rejects.toBeInstanceOf(BlobNotFoundError);
    expect(await ingestEntries(dir)).toEqual([]);
  });

  it("the empty blob and the 2-byte {} config blob have the well-known digests", async () => {
    const s = await ContentStore.open(dir);
    expect((await s.put(new Uint8Array(0))).digest).toBe(
      "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    );
    const cfg = await s.put(enc("{}"), {
      digest: "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
      size: 2,
    });
    expect(cfg.size).toBe(2);
  });

  it("streams a multi-MB AsyncIterable and verifies it against the expected digest", async () => {
    const s = await ContentStore.open(dir);
    const chunks = Array.from({ length: 40 }, (_, i) => randomBytes(100_000 + i * 997));
    const whole = Buffer.concat(chunks);
    const expected = { digest: sha256(whole), size: whole.length };
    async function* gen() {
      for (const c of chunks) {
        await new Promise((r) => setImmediate(r));
        yield c;
      }
    }
    expect(await s.put(gen(), expected)).toEqual(expected);
    expect(Buffer.compare(Buffer.from(await s.get(expected.digest)), whole)).toBe(0);
    const range = async (start?: number, end?: number) =>
      collect(await s.createReadStream(expected.digest, start, end));
    expect((await range(1_000_000, 2_500_001)).equals(whole.subarray(1_000_000, 2_500_001))).toBe(true);
    expect((await range(whole.length - 10)).equals(whole.subarray(whole.length - 10))).toBe(true);
    expect((await range(5, 5)).length).toBe(0);
    expect((await range(0, whole.length + 100)).equals(whole)).toBe(true);
    expect((await range()).equals(whole)).toBe(true);
    await expect(s.createReadStream(expected.digest, 10, 5)).rejects.toBeInstanceOf(RangeError);
  });

  it("a digest mismatch is rejected and leaves neither blob nor temp file", async () => {
    const s = await ContentStore.open(dir);
    const data = enc("actual content");
    const wrong = sha256(enc("something else"));
    const err = await s.put(data, { digest: wrong, size: data.length }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DigestMismatchError);
    expect((err as DigestMismatchError).actual).toBe(sha256(data));
    expect((err as DigestMismatchError).code).toBe("DigestMismatch");
    expect(await s.exists(wrong)).toBe(false);
    expect(await s.exists(sha256(data))).toBe(false);
    expect(await s.list()).toEqual([]);
    expect(await ingestEntries(dir)).toEqual([]);
  });

  it("size mismatches (short and long, streamed) are rejected and leave nothing", async () => {
    const s = await ContentStore.open(dir);
    const data = randomBytes(300_000);
    const d = sha256(data);
    await expect(s.put(data, { digest: d, size: data.length + 1 })).rejects.toBeInstanceOf(SizeMismatchError);
    let pulled = 0;
    async function* gen() {
      for (let off = 0; off < data.length; off += 10_000) {
        pulled++;
        yield data.subarray(off, off + 10_000);
      }
    }
    await expect(s.put(gen(), { digest: d, size: 50_000 })).rejects.toBeInstanceOf(SizeMismatchError);
    expect(pulled).toBeLessThan(10); // aborted as soon as the size was exceeded
    expect(await s.exists(d)).toBe(false);
    expect(await s.list()).toEqual([]);
    expect(await ingestEntries(dir)).toEqual([]);
  });

  it("a failing source leaves no temp file", async () => {
    const s = await ContentStore.open(dir);
    async function* gen() {
      yield enc("partial");
      throw new Error("source broke");
    }
    await expect(s.put(gen())).rejects.toThrow("source broke");
    expect(await ingestEntries(dir)).toEqual([]);
    expect(await s.list()).toEqual([]);
  });

  it("concurrent puts of the same blob all succeed and store it once", async () => {
    const s = await ContentStore.open(dir);
    const data = randomBytes(2_000_000);
    const d = sha256(data);
    async function* slices() {
      for (let off = 0; off < data.length; off += 65536) {
        await new Promise((r) => setImmediate(r));
        yield data.subarray(off, off + 65536);
      }
    }
    const s2 = await ContentStore.open(dir);
    const results = await Promise.all([
      ...Array.from({ length: 6 }, () => s.put(slices(), { digest: d, size: data.length })),
      s2.put(data),
      s2.put(slices()),
    ]);
    for (const r of results) expect(r).toEqual({ digest: d, size: data.length });
    expect(await s.list()).toEqual([{ digest: d, size: data.length }]);
    expect(Buffer.compare(Buffer.from(await s.get(d)), data)).toBe(0);
    expect(await ingestEntries(dir)).toEqual([]);
  });

  it("putting an existing blob is a no-op (and checks a given size)", async () => {
    const s = await ContentStore.open(dir);
    const data = enc("once");
    const d = sha256(data);
    await s.put(data);
    const mtime = (await stat(s.path(d))).mtimeMs;
    expect(await s.put(data, { digest: d })).toEqual({ digest: d, size: 4 });
    expect((await stat(s.path(d))).mtimeMs).toBe(mtime);
    await expect(s.put(data, { digest: d, size: 5 })).rejects.toBeInstanceOf(SizeMismatchError);
  });

  it("supports sha512 digests", async () => {
    const s = await ContentStore.open(dir);
    const data = enc("sha512 blob");
    const d = digestOf(data, "sha512");
    expect(await s.put(data, { digest: d, size: data.length })).toEqual({ digest: d, size: data.length });
    expect(s.path(d)).toBe(join(dir, "blobs", "sha512", d.slice(7)));
    expect(await s.list()).toEqual([{ digest: d, size: data.length }]);
  });

  it("list() ignores files that are not blobs", async () => {
    const s = await ContentStore.open(dir);
    const { digest } = await s.put(enc("x"));
    await writeFile(join(dir, "blobs", "sha256", "not-a-digest"), "junk");
    await writeFile(join(dir, "blobs", "sha256", "A".repeat(64)), "junk");
    await writeFile(join(dir, "blobs", "README"), "junk");
    expect(await s.list()).toEqual([{ digest, size: 1 }]);
  });

  const hostile = [
    "sha256:../../etc/passwd",
    "sha256:../../../../../../../../etc/passwd/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "sha256:" + "A".repeat(64),
    "SHA256:" + "a".repeat(64),
    "sha256:" + "a".repeat(63),
    "sha256:" + "a".repeat(65),
    "sha256:" + "a".repeat(63) + "/",
    "sha256:" + "g".repeat(64),
    "sha256:/" + "a".repeat(63),
    "md5:" + "a".repeat(32),
    "sha512:" + "a".repeat(64),
    "../" + "a".repeat(64),
    "a".repeat(64),
    "",
    "sha256:" + "a".repeat(64) + "\n",
    "sha256:" + "a".repeat(64) + "\0",
  ];
  it.each(hostile)("rejects malformed digest %j everywhere", async (bad) => {
    const s = await ContentStore.open(dir);
    const data = enc("x");
    expect(() => s.path(bad)).toThrow(InvalidDigestError);
    await expect(s.put(data, { digest: bad })).rejects.toBeInstanceOf(InvalidDigestError);
    await expect(s.putDescriptor({ mediaType: MANIFEST_TYPE, digest: bad, size: 1 }, data)).rejects.toBeInstanceOf(
      InvalidDigestError,
    );
    await expect(s.get(bad)).rejects.toBeInstanceOf(InvalidDigestError);
    await expect(s.exists(bad)).rejects.toBeInstanceOf(InvalidDigestError);
    await expect(s.size(bad)).rejects.toBeInstanceOf(InvalidDigestError);
    await expect(s.delete(bad)).rejects.toBeInstanceOf(InvalidDigestError);
    await expect(s.createReadStream(bad)).rejects.toBeInstanceOf(InvalidDigestError);
    expect(await s.list()).toEqual([]);
    expect(await ingestEntries(dir)).toEqual([]);
  });
});

describe("ContentStore index.json tracking", () => {
  const manifest = enc('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}');
  const index = enc('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}');

  async function indexJson(root: string): Promise<{ manifests: Array<Record<string, unknown>> }> {
    return JSON.parse(await readFile(join(root, "index.json"), "utf8")) as {
      manifests: Array<Record<string, unknown>>;
    };
  }

  it("manifest and index media types are added (tagged by digest, no ref-name annotation); other blobs are not", async () => {
    const s = await ContentStore.open(dir);
    const ztoc = randomBytes(1000);
    await s.putDescriptor({ mediaType: "application/octet-stream", digest: sha256(ztoc), size: ztoc.length }, ztoc);
    await s.putDescriptor(
      { mediaType: "application/vnd.amazon.soci.index.v1+json", digest: sha256(enc("{}")), size: 2 },
      enc("{}"),
    );
    expect((await indexJson(dir)).manifests).toEqual([]);

    const mDesc = {
      mediaType: MANIFEST_TYPE,
      digest: sha256(manifest),
      size: manifest.length,
      artifactType: "application/vnd.amazon.soci.index.v2+json",
      annotations: { "com.amazon.soci.image-manifest-digest": "sha256:" + "1".repeat(64) },
      platform: { architecture: "amd64", os: "linux" },
    };
    await s.putDescriptor(mDesc, manifest);
    await s.putDescriptor({ mediaType: INDEX_TYPE, digest: sha256(index), size: index.length }, index);
    const text = await readFile(join(dir, "index.json"), "utf8");
    expect(text).toBe(
      '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[' +
        `{"mediaType":"${MANIFEST_TYPE}","digest":"${mDesc.digest}","size":${manifest.length},` +
        `"annotations":{"com.amazon.soci.image-manifest-digest":"sha256:${"1".repeat(64)}"},` +
        `"platform":{"architecture":"amd64","os":"linux"},"artifactType":"application/vnd.amazon.soci.index.v2+json"},` +
        `{"mediaType":"${INDEX_TYPE}","digest":"${sha256(index)}","size":${index.length}}]}`,
    );
    expect(s.resolve(mDesc.digest)).toEqual(mDesc);
  });

  it("Docker manifest media types are tracked as well; re-pushing does not duplicate", async () => {
    const s = await ContentStore.open(dir);
    const desc = {
      mediaType: "application/vnd.docker.distribution.manifest.v2+json",
      digest: sha256(manifest),
      size: manifest.length,
    };
    await s.putDescriptor(desc, manifest);
    await s.putDescriptor(desc, manifest);
    expect((await indexJson(dir)).manifests).toEqual([desc]);
  });

  it("tags add the ref-name annotation and come first; delete untracks", async () => {
    const s = await ContentStore.open(dir);
    const mDesc = { mediaType: MANIFEST_TYPE, digest: sha256(manifest), size: manifest.length };
    const iDesc = { mediaType: INDEX_TYPE, digest: sha256(index), size: index.length };
    await s.putDescriptor(iDesc, index);
    await s.putDescriptor(mDesc, manifest);
    await s.tag(mDesc, "latest");
    expect((await indexJson(dir)).manifests).toEqual([
      { ...mDesc, annotations: { "org.opencontainers.image.ref.name": "latest" } },
      iDesc,
    ]);
    expect(s.resolve("latest")?.digest).toBe(mDesc.digest);
    const reopened = await ContentStore.open(dir);
    expect(reopened.manifests()).toEqual(s.manifests());
    await reopened.delete(mDesc.digest);
    expect((await indexJson(dir)).manifests).toEqual([iDesc]);
    await expect(reopened.tag(mDesc, "again")).rejects.toBeInstanceOf(BlobNotFoundError);
  });

  it("concurrent manifest pushes all end up in index.json", async () => {
    const s = await ContentStore.open(dir);
    const bodies = Array.from({ length: 20 }, (_, i) => enc(`{"schemaVersion":2,"n":${i}}`));
    await Promise.all(
      bodies.map((b) => s.putDescriptor({ mediaType: MANIFEST_TYPE, digest: sha256(b), size: b.length }, b)),
    );
    const listed = (await indexJson(dir)).manifests.map((m) => m.digest).sort();
    expect(listed).toEqual(bodies.map(sha256).sort());
    expect((await readdir(dir)).filter((n) => n.endsWith(".tmp"))).toEqual([]);
  });
});
