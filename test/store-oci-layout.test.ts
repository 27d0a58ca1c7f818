// Interop with OCI layouts written and read by real tools (umoci, skopeo: apt packages `umoci skopeo`),
// plus the Go-JSON form of index.json.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { ContentStore } from "../src/store/content-store.js";
import { InvalidDigestError, InvalidLayoutError } from "../src/store/errors.js";
import { readOciLayout, writeIndexJson } from "../src/store/oci-layout.js";

const run = promisify(execFile);
const sha256 = (b: Uint8Array) => "sha256:" + createHash("sha256").update(b).digest("hex");
const REF_NAME = "org.opencontainers.image.ref.name";
const MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "store-layout-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Manifest {
  config: { mediaType: string; digest: string; size: number };
  layers: Array<{ mediaType: string; digest: string; size: number }>;
}

/** An image made by umoci: empty base plus one gzip layer holding /etc/hello.txt. */
async function umociImage(layout: string): Promise<void> {
  await run("umoci", ["init", "--layout", layout]);
  await run("umoci", ["new", "--image", `${layout}:latest`]);
  const file = join(dir, "hello.txt");
  await writeFile(file, "hello from umoci\n");
  const rootless = process.getuid?.() === 0 ? [] : ["--rootless"];
  await run("umoci", ["insert", ...rootless, "--image", `${layout}:latest`, file, "/etc/hello.txt"]);
}

describe("layouts made by umoci", () => {
  it("readOciLayout reads umoci's index.json and blobs", async () => {
    const layout = join(dir, "umoci");
    await umociImage(layout);
    const l = await readOciLayout(layout);
    expect(l.index.schemaVersion).toBe(2);
    expect(l.index.manifests).toHaveLength(1);
    const desc = l.index.manifests[0]!;
    expect(desc.mediaType).toBe(MANIFEST_TYPE);
    expect(desc.annotations?.[REF_NAME]).toBe("latest");
    const manifestBytes = await l.readBlob(desc.digest);
    expect(sha256(manifestBytes)).toBe(desc.digest);
    expect(manifestBytes.length).toBe(desc.size);
    const manifest = JSON.parse(Buffer.from(manifestBytes).toString()) as Manifest;
    expect(manifest.layers).toHaveLength(1);
    expect(manifest.layers[0]!.mediaType).toBe("application/vnd.oci.image.layer.v1.tar+gzip");
    for (const d of [manifest.config, ...manifest.layers]) {
      const blob = await l.readBlob(d.digest);
      expect(sha256(blob)).toBe(d.digest);
      expect(blob.length).toBe(d.size);
    }
    expect(l.blobPath(desc.digest)).toBe(join(layout, "blobs", "sha256", desc.digest.slice(7)));
    expect(() => l.blobPath("sha256:../../index.json")).toThrow(InvalidDigestError);
  });

  it("ContentStore opens a umoci layout without rewriting it, then adds manifests the tools still accept", async () => {
    const layout = join(dir, "umoci");
    await umociImage(layout);
    const before = await readFile(join(layout, "index.json"), "utf8");
    const store = await ContentStore.open(layout);
    expect(await readFile(join(layout, "index.json"), "utf8")).toBe(before);

    const latest = store.resolve("latest")!;
    expect(latest.mediaType).toBe(MANIFEST_TYPE);
    const manifest = JSON.parse(Buffer.from(await store.get(latest.digest)).toString()) as Manifest;
    expect(await store.size(manifest.layers[0]!.digest)).toBe(manifest.layers[0]!.size);
    const all = await store.list();
    for (const b of all) expect(sha256(await store.get(b.digest))).toBe(b.digest);
    expect(all.map((b) => b.digest)).toEqual(
      expect.arrayContaining([latest.digest, manifest.config.digest, manifest.layers[0]!.digest]),
    );

    // a SOCI-index-like manifest referring to the image: tracked by digest next to the "latest" tag
    const soci = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MANIFEST_TYPE,
        config: { mediaType: "application/vnd.amazon.soci.index.v1+json", digest: sha256(Buffer.from("{}")), size: 2 },
        layers: [],
        subject: { mediaType: MANIFEST_TYPE, digest: latest.digest, size: latest.size },
      }),
    );
    await store.put(Buffer.from("{}"));
    const sociDesc = {
      mediaType: MANIFEST_TYPE,
      digest: sha256(soci),
      size: soci.length,
      artifactType: "application/vnd.amazon.soci.index.v1+json",
    };
    await store.putDescriptor(sociDesc, soci);
    const index = JSON.parse(await readFile(join(layout, "index.json"), "utf8")) as { manifests: unknown[] };
    expect(index.manifests).toEqual([{ ...latest, annotations: { [REF_NAME]: "latest" } }, sociDesc]);

    const { stdout: tags } = await run("umoci", ["ls", "--layout", layout]);
    expect(tags.trim().split("\n")).toEqual(["latest"]);
    const { stdout: raw } = await run("skopeo", ["inspect", "--raw", `oci:${layout}:latest`]);
    expect(sha256(Buffer.from(raw))).toBe(latest.digest);
  });

  it("skopeo copies an image out of a layout written by ContentStore", async () => {
    const src = join(dir, "umoci");
    await umociImage(src);
    const l = await readOciLayout(src);
    const mDesc = l.index.manifests[0]!;
    const manifest = JSON.parse(Buffer.from(await l.readBlob(mDesc.digest)).toString()) as Manifest;

    const ours = join(dir, "ours");
    const store = await ContentStore.open(ours);
    for (const d of [manifest.config, ...manifest.layers]) {
      await store.putDescriptor(
        d,
        (async function* () {
          yield await l.readBlob(d.digest);
        })(),
      );
    }
    const plain = { mediaType: mDesc.mediaType, digest: mDesc.digest, size: mDesc.size };
    await store.putDescriptor(plain, await l.readBlob(mDesc.digest));
    await store.tag(plain, "v1");

    const out = join(dir, "copy");
    await run("skopeo", ["copy", `oci:${ours}:v1`, `oci:${out}:copied`]);
    const copied = await readOciLayout(out);
    expect(copied.index.manifests.map((d) => [d.digest, d.annotations?.[REF_NAME]])).toEqual([
      [mDesc.digest, "copied"],
    ]);
    const layer = manifest.layers[0]!;
    expect(Buffer.from(await copied.readBlob(layer.digest)).equals(Buffer.from(await store.get(layer.digest)))).toBe(
      true,
    );
  });
});

describe("readOciLayout rejects broken layouts", () => {
  it("missing oci-layout / index.json, bad version, malformed digests", async () => {
    await expect(readOciLayout(dir)).rejects.toBeInstanceOf(InvalidLayoutError);
    await writeFile(join(dir, "oci-layout"), '{"imageLayoutVersion":"1.0.0"}');
    await expect(readOciLayout(dir)).rejects.toThrow(/missing index.json/);
    await writeFile(join(dir, "index.json"), "{not json");
    await expect(readOciLayout(dir)).rejects.toBeInstanceOf(InvalidLayoutError);
    await writeFile(
      join(dir, "index.json"),
      JSON.stringify({
        schemaVersion: 2,
        manifests: [{ mediaType: MANIFEST_TYPE, digest: "sha256:../../x", size: 1 }],
      }),
    );
    await expect(readOciLayout(dir)).rejects.toBeInstanceOf(InvalidLayoutError);
    await writeFile(
      join(dir, "index.json"),
      JSON.stringify({
        schemaVersion: 2,
        manifests: [{ mediaType: MANIFEST_TYPE, digest: sha256(Buffer.from("")), size: -1 }],
      }),
    );
    await expect(readOciLayout(dir)).rejects.toBeInstanceOf(InvalidLayoutError);
    await writeFile(join(dir, "index.json"), JSON.stringify({ schemaVersion: 2, manifests: [] }));
    const l = await readOciLayout(dir);
    await expect(l.readBlob("sha256:" + "0".repeat(64))).rejects.toMatchObject({ code: "ENOENT" });
    await writeFile(join(dir, "oci-layout"), '{"imageLayoutVersion":"1.1.0"}');
    await expect(readOciLayout(dir)).rejects.toThrow(/unsupported imageLayoutVersion/);
  });

  it("drops unknown fields and keeps known optional ones", async () => {
    await writeFile(join(dir, "oci-layout"), '{"imageLayoutVersion":"1.0.0"}');
    const d = sha256(Buffer.from("x"));
    await writeFile(
      join(dir, "index.json"),
      JSON.stringify({
        schemaVersion: 2,
        extra: true,
        annotations: { a: "b" },
        manifests: [
          {
            mediaType: MANIFEST_TYPE,
            digest: d,
            size: 1,
            bogus: 1,
            platform: { os: "linux", architecture: "arm64", variant: "v8", junk: 1 },
          },
        ],
      }),
    );
    const l = await readOciLayout(dir);
    expect(l.index).toEqual({
      schemaVersion: 2,
      annotations: { a: "b" },
      manifests: [
        {
          mediaType: MANIFEST_TYPE,
          digest: d,
          size: 1,
          platform: { architecture: "arm64", os: "linux", variant: "v8" },
        },
      ],
    });
  });
});

describe("Go-JSON index.json", () => {
  it("writeIndexJson writes the standalone-convert index form", async () => {
    const desc = {
      mediaType: "application/vnd.oci.image.index.v1+json",
      digest: "sha256:" + "ab".repeat(32),
      size: 1234,
    };
    await writeIndexJson(dir, [desc]);
    expect(await readFile(join(dir, "index.json"), "utf8")).toBe(
      `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:${"ab".repeat(32)}","size":1234}]}`,
    );
    expect((await readdir(dir)).sort()).toEqual(["index.json"]);
  });

  it("index.json written by ContentStore is Go-JSON (HTML-safe escapes, sorted annotation keys)", async () => {
    const store = await ContentStore.open(dir);
    const body = Buffer.from('{"schemaVersion":2}');
    const desc = {
      mediaType: MANIFEST_TYPE,
      digest: sha256(body),
      size: body.length,
      annotations: { z: "<&>", a: "\u2028" },
    };
    await store.putDescriptor(desc, body);
    expect(await readFile(join(dir, "index.json"), "utf8")).toBe(
      `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"${MANIFEST_TYPE}","digest":"${desc.digest}","size":${body.length},"annotations":{"a":"\\u2028","z":"\\u003c\\u0026\\u003e"}}]}`,
    );
    expect((await readOciLayout(dir)).index.manifests).toEqual([desc]);
  });
});
