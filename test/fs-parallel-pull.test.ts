// The parallel puller (docs/snapshotter.md §6) against a real registry (Distribution on loopback, its
// access log showing the ranged requests): layers downloaded whole or in chunks, through the WASM
// inflater or an external decompressor (pigz), unpacked trees equal to GNU tar's extraction, later
// layers started by the first request, and the failure paths (wrong diff ID, a decompressor that
// fails, a removed image) leave nothing in `<root>/unpack`.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ParallelPuller, compressionOf, type ParallelImage } from "../src/fs/parallel-pull.js";
import { RegistryClient } from "../src/registry/client.js";
import { RegistryAuthorizer } from "../src/registry/auth.js";
import { parseReference } from "../src/registry/reference.js";
import type { Descriptor } from "../src/formats/oci.js";
import { startRegistry, type RegistryServer } from "./helpers/registry-server.js";
import { pushTestImage, type PushedImage } from "./helpers/test-image.js";

const run = promisify(execFile);
const REPO = "pp/img";
const GZIP = "application/vnd.oci.image.layer.v1.tar+gzip";

let dir = "";
let registry: RegistryServer;
let client: RegistryClient;
let img: PushedImage;
let diffIds: string[] = [];

/** The image as the puller sees it (namespace "default"), under `key`, with these diff IDs. */
function image(key = img.manifestDigest, ids = diffIds): ParallelImage {
  const layers: Descriptor[] = img.layers.map((l) => ({ mediaType: GZIP, ...l }));
  return { key, ref: parseReference(img.ref), namespace: "default", layers, diffIds: ids };
}

/** GNU tar's extraction of a layer blob: relative path → content ("" for dirs, "-> target" for links). */
async function tarView(tree: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const { stdout } = await run("find", [tree, "-mindepth", "1", "-printf", "%y %P %l\\n"], { maxBuffer: 64 << 20 });
  for (const line of stdout.trim().split("\n")) {
    const [type, path, link] = line.split(" ");
    if (type === "f") out.set(path!, (await readFile(join(tree, path!))).toString("base64"));
    else out.set(path!, type === "l" ? `-> ${link}` : "");
  }
  return out;
}

async function groundTruth(layer: number): Promise<Map<string, string>> {
  const gz = await client.getBlob(img.ref, img.layers[layer]!.digest);
  const where = join(dir, `truth-${layer}`);
  await mkdir(where, { recursive: true });
  await writeFile(`${where}.tgz`, gz);
  await run("tar", ["-xzf", `${where}.tgz`, "-C", where]);
  return tarView(where);
}

const unpackEntries = async (root: string) => readdir(join(root, "unpack"));

/** `<root>/unpack` once it is empty (a cancelled image's layers stop and go shortly after the failure). */
async function emptiedUnpack(root: string): Promise<string[]> {
  for (let i = 0; i < 100; i++) {
    const left = await unpackEntries(root);
    if (left.length === 0) return left;
    await new Promise((res) => setTimeout(res, 50));
  }
  return unpackEntries(root);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "soci-pp-"));
  registry = await startRegistry({ accessLog: true });
  client = new RegistryClient({ plainHttp: true, authorizer: new RegistryAuthorizer({ dockerConfig: false }) });
  img = await pushTestImage(client, registry.host, REPO, "a", 4 << 20);
  const manifest = JSON.parse(Buffer.from(img.manifestBytes).toString("utf8")) as { config: Descriptor };
  const config = JSON.parse(Buffer.from(await client.getBlob(img.ref, manifest.config.digest)).toString("utf8")) as {
    rootfs: { diff_ids: string[] };
  };
  diffIds = config.rootfs.diff_ids;
}, 120_000);

afterAll(async () => {
  await registry?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("compressionOf", () => {
  it("names the compression of OCI and Docker layer media types", () => {
    expect(compressionOf(GZIP)).toBe("gzip");
    expect(compressionOf("application/vnd.oci.image.layer.v1.tar+zstd")).toBe("zstd");
    expect(compressionOf("application/vnd.docker.image.rootfs.diff.tar.gzip")).toBe("gzip");
    expect(compressionOf("application/vnd.oci.image.layer.v1.tar")).toBe("uncompressed");
  });
});

describe("ParallelPuller", () => {
  it("downloads the data layer in ranged chunks and unpacks every layer as tar would", async () => {
    const root = join(dir, "chunked");
    const puller = new ParallelPuller({ root, client, chunkSize: 256 << 10, maxConcurrentDownloadsPerImage: 3 });
    await puller.start();
    try {
      const before = registry.requests.length;
      const targets = [0, 1, 2].map((i) => join(root, "snap", String(i)));
      for (const t of targets) await mkdir(t, { recursive: true });
      // containerd asks bottom-up; the first request starts all three
      await puller.pullLayer(image(), 0, targets[0]!);
      await puller.pullLayer(image(), 1, targets[1]!);
      await puller.pullLayer(image(), 2, targets[2]!);
      for (let i = 0; i < 3; i++) expect(await tarView(targets[i]!)).toEqual(await groundTruth(i));
      const data = img.layers[1]!;
      const ranged = registry.requests
        .slice(before)
        .filter((r) => r.startsWith(`GET /v2/${REPO}/blobs/${data.digest} 206`));
      expect(ranged).toHaveLength(Math.ceil(data.size / (256 << 10)));
      expect(await unpackEntries(root)).toEqual([]);
    } finally {
      await puller.close();
    }
  });

  it("streams a whole-layer request through the unpacker and hands the stored blob over intact", async () => {
    const root = join(dir, "stream");
    const stored: string[] = [];
    const puller = new ParallelPuller({
      root,
      client,
      storeLayer: async (namespace, layer, file) => {
        const bytes = await readFile(file);
        stored.push(
          `${namespace} ${layer.digest} sha256:${createHash("sha256").update(bytes).digest("hex")} ${bytes.length}`,
        );
      },
    });
    await puller.start();
    try {
      const before = registry.requests.length;
      const into = join(root, "snap");
      await mkdir(into, { recursive: true });
      await puller.pullLayer(image(`${img.manifestDigest}-stream`, diffIds), 2, into);
      const requests = registry.requests.slice(before);
      expect(await tarView(into)).toEqual(await groundTruth(2));
      const layer = img.layers[2]!;
      expect(stored).toEqual([`default ${layer.digest} ${layer.digest} ${layer.size}`]);
      // one plain GET of the blob, no ranges
      expect(requests.filter((r) => r.includes(`/blobs/${layer.digest} `))).toEqual([
        `GET /v2/${REPO}/blobs/${layer.digest} 200`,
      ]);
      expect(await unpackEntries(root)).toEqual([]);
    } finally {
      await puller.close();
    }
  });

  it("pipes layers through an external decompressor and still checks both digests", async () => {
    const root = join(dir, "pigz");
    const puller = new ParallelPuller({
      root,
      client,
      decompressors: { gzip: { path: "/usr/bin/pigz", args: ["-d", "-c"] } },
    });
    await puller.start();
    try {
      const into = join(root, "snap");
      await mkdir(into, { recursive: true });
      await puller.pullLayer(image(`${img.manifestDigest}-pigz`), 1, into);
      expect(await tarView(into)).toEqual(await groundTruth(1));
      // layer 2, started with layer 1, waits for its own request
      expect(await unpackEntries(root)).toHaveLength(1);
    } finally {
      await puller.close();
    }
  });

  it("fails a layer whose diff ID does not match, and the image's other layers with it", async () => {
    const root = join(dir, "diffid");
    const puller = new ParallelPuller({ root, client });
    await puller.start();
    try {
      const wrong = [...diffIds];
      wrong[2] = `sha256:${"0".repeat(64)}`;
      const into = join(root, "snap");
      await mkdir(into, { recursive: true });
      const key = `${img.manifestDigest}-wrong`;
      // layer 0 starts 1 and 2 too; 2's failure cancels the image
      const first = puller.pullLayer(image(key, wrong), 0, into).catch((e: Error) => e);
      const third = await puller.pullLayer(image(key, wrong), 2, join(root, "snap2")).catch((e: Error) => e);
      expect(String(third)).toMatch(/diff/i);
      const r = await first;
      // layer 0 either finished before the failure or was cancelled by it
      if (r instanceof Error) expect(r.message).toMatch(/diff|cancel|abort/i);
      expect(await emptiedUnpack(root)).toEqual([]);
    } finally {
      await puller.close();
    }
  });

  it("reports a decompressor that fails, with its status and message", async () => {
    const root = join(dir, "badtool");
    await mkdir(join(dir, "bin"), { recursive: true });
    const tool = join(dir, "bin", "broken-gunzip");
    await writeFile(tool, "#!/bin/sh\necho 'broken on purpose' >&2\nexit 3\n", { mode: 0o755 });
    const puller = new ParallelPuller({ root, client, decompressors: { gzip: { path: tool, args: [] } } });
    await puller.start();
    try {
      const into = join(root, "snap");
      await mkdir(into, { recursive: true });
      const err = await puller.pullLayer(image(`${img.manifestDigest}-bad`), 2, into).catch((e: Error) => e);
      expect(String(err)).toMatch(/exited with 3: broken on purpose/);
      expect(await readdir(into)).toEqual([]);
      expect(await emptiedUnpack(root)).toEqual([]);
    } finally {
      await puller.close();
    }
  });

  it("drops an image's unclaimed layers when the image is cleaned, and what an earlier process left at start", async () => {
    const root = join(dir, "clean");
    await mkdir(join(root, "unpack", "stale0000"), { recursive: true });
    const puller = new ParallelPuller({ root, client });
    await puller.start();
    try {
      expect(await unpackEntries(root)).toEqual([]);
      const key = `${img.manifestDigest}-clean`;
      const into = join(root, "snap");
      await mkdir(into, { recursive: true });
      await puller.pullLayer(image(key), 0, into);
      // layers 1 and 2 were started for the Prepares that would follow; nobody claims them
      expect((await unpackEntries(root)).length).toBe(2);
      await puller.cleanImage(key);
      expect(await unpackEntries(root)).toEqual([]);
    } finally {
      await puller.close();
    }
  });

  it("does not leave a layer half-downloaded when the registry does not have it", async () => {
    const root = join(dir, "missing");
    const puller = new ParallelPuller({ root, client, chunkSize: 64 << 10 });
    await puller.start();
    try {
      const broken = image(`${img.manifestDigest}-missing`);
      broken.layers = [{ mediaType: GZIP, digest: `sha256:${"1".repeat(64)}`, size: 300_000 }];
      const into = join(root, "snap");
      await mkdir(into, { recursive: true });
      const err = await puller.pullLayer(broken, 0, into).catch((e: Error) => e);
      expect(err).toBeInstanceOf(Error);
      expect(String(err)).toMatch(/not found|unknown|404/i);
      expect(await emptiedUnpack(root)).toEqual([]);
    } finally {
      await puller.close();
    }
  });
});
