// Test layers for the span machinery: a generated directory (small and large files, random and
// compressible data, symlinks, a hardlink, an empty file, a long name, an xattr) packed by GNU
// tar as gzip -6, as a multi-member pigz stream, and as an uncompressed GNU-format tar, each with
// its ztoc (built by the project's indexer, read back as the snapshotter reads it), and GNU tar's
// own extraction as ground truth.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, symlink, link, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { LayerIndexer, type LayerCompression } from "../../src/indexer/layer-indexer.js";
import { decodeZtoc, type Ztoc } from "../../src/formats/ztoc.js";
import type { FileMetadata } from "../../src/formats/toc.js";

const run = promisify(execFile);

export interface TestLayer {
  name: "gzip" | "pigz" | "tar";
  path: string;
  blob: Buffer;
  digest: string;
  size: number;
  ztoc: Ztoc;
}

export interface TestLayers {
  /** GNU tar's extraction of the layer. */
  extracted: string;
  layers: TestLayer[];
  /** Regular files with content, by TOC name. */
  files: FileMetadata[];
}

/** Deterministic pseudo-random bytes. */
export function prng(seed: number, n: number): Buffer {
  const out = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** Compressible text-like bytes. */
function words(seed: number, n: number): Buffer {
  const vocab = ["span", "layer", "ztoc", "gzip", "inflate", "checkpoint", "registry", "fuse", "soci", "lazy", "\n"];
  const r = prng(seed, n);
  const parts: string[] = [];
  let len = 0;
  for (let i = 0; len < n; i++) {
    const w = vocab[r[i % n]! % vocab.length]! + (r[(i * 7) % n]! % 3 === 0 ? ` ${i} ` : " ");
    parts.push(w);
    len += w.length;
  }
  return Buffer.from(parts.join("")).subarray(0, n);
}

export const sha256 = (b: Uint8Array) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

export async function makeTree(root: string): Promise<void> {
  await mkdir(join(root, "small"), { recursive: true });
  await mkdir(join(root, "big"), { recursive: true });
  for (let i = 0; i < 150; i++) {
    const n = (i * 977) % 6000;
    await writeFile(
      join(root, "small", `f${String(i).padStart(3, "0")}.txt`),
      i % 3 ? words(i + 1, n) : prng(i + 1, n),
    );
  }
  await writeFile(join(root, "big", "text.bin"), words(7, 3 << 20));
  await writeFile(join(root, "big", "random.bin"), prng(9, 1536 << 10));
  await writeFile(
    join(root, "big", "mixed.bin"),
    Buffer.concat([words(11, 700_000), prng(12, 300_000), words(13, 1_000_000)]),
  );
  await writeFile(join(root, "empty"), "");
  await writeFile(join(root, `${"long-name-".repeat(14)}end.txt`), words(21, 5000));
  await symlink("big/text.bin", join(root, "text-link"));
  await link(join(root, "small", "f001.txt"), join(root, "hardlink"));
  await writeFile(join(root, "xattr.txt"), words(31, 1000));
  await run("setfattr", ["-n", "user.test", "-v", "value", join(root, "xattr.txt")]);
}

function index(bytes: Uint8Array, compression: LayerCompression, spanSize: number): Ztoc {
  const ix = new LayerIndexer({ spanSize, compression });
  for (let i = 0; i < bytes.length; i += 1 << 20) ix.push(bytes.subarray(i, i + (1 << 20)));
  return decodeZtoc(ix.finish().bytes); // as the snapshotter sees it (sorted, header offsets)
}

/** Builds the tree, the three layers and GNU tar's extraction under `dir`. */
export async function buildTestLayers(dir: string, spanSize = 64 << 10): Promise<TestLayers> {
  const src = join(dir, "src");
  await makeTree(src);
  const posix = join(dir, "layer.tar");
  await run("tar", ["--format=posix", "--xattrs", "--sort=name", "-C", src, "-cf", posix, "."]);
  const gnu = join(dir, "layer-gnu.tar");
  await run("tar", ["--format=gnu", "--sort=name", "-C", src, "-cf", gnu, "."]);
  await run("sh", ["-c", `gzip -6 -n -c ${posix} > ${dir}/layer.tar.gz`]);
  // two gzip members, split mid-file: the span machinery must cross the member boundary
  const size = (await readFile(posix)).length;
  const cut = Math.floor(size / 3) + 123;
  await run("sh", [
    "-c",
    `head -c ${cut} ${posix} | pigz -6 -b 128 > ${dir}/a.gz && tail -c +${cut + 1} ${posix} | pigz -6 -b 128 > ${dir}/b.gz && cat ${dir}/a.gz ${dir}/b.gz > ${dir}/layer.pigz.gz`,
  ]);
  const extracted = join(dir, "extracted");
  await mkdir(extracted);
  await run("tar", ["--xattrs", "-C", extracted, "-xf", posix]);

  const layers: TestLayer[] = [];
  for (const [name, path, compression] of [
    ["gzip", `${dir}/layer.tar.gz`, "gzip"],
    ["pigz", `${dir}/layer.pigz.gz`, "gzip"],
    ["tar", gnu, "uncompressed"],
  ] as const) {
    const blob = await readFile(path);
    layers.push({
      name,
      path,
      blob,
      digest: sha256(blob),
      size: blob.length,
      ztoc: index(blob, compression, spanSize),
    });
  }
  const files = layers[0]!.ztoc.toc.filter((e) => e.type === "reg" && e.uncompressedSize > 0);
  return { extracted, layers, files };
}

export const nameOf = (e: FileMetadata) => Buffer.from(e.name).toString("utf8").replace(/^\.\//, "");

/** The entry named `name` in `ztoc`. */
export function entryOf(ztoc: Ztoc, name: string): FileMetadata {
  const e = ztoc.toc.find((m) => nameOf(m) === name);
  if (!e) throw new Error(`no entry ${name}`);
  return e;
}

/** A test file's layers: built in a new temporary directory, with the plain tar's bytes. */
export async function setUpTestLayers(prefix: string): Promise<{ dir: string; fx: TestLayers; tarBytes: Buffer }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const fx = await buildTestLayers(dir);
  return { dir, fx, tarBytes: await readFile(join(dir, "layer.tar")) };
}

/** Closes the test file's fetchers and removes its directory (if it was made). */
export async function tearDownTestLayers(dir: string, fetchers: { close(): Promise<void> }[]): Promise<void> {
  await Promise.all(fetchers.map((f) => f.close()));
  if (dir) await rm(dir, { recursive: true, force: true });
}
