// Sample images for the demo and the end-to-end benchmark: directories → gzip layers (GNU tar +
// node:zlib level 6, diff-id hashed while streaming) → an OCI image layout, pushed to a registry
// with the same client `soci convert` uses.
import { FailedPreconditionError, NotFoundError } from "../errors/errors.js";
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { copyFile, mkdir, rm, stat, symlink } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { PassThrough } from "node:stream";
import zlib from "node:zlib";
import { ContentStore } from "../store/content-store.js";
import {
  marshalManifest,
  MediaTypeImageConfig,
  MediaTypeImageLayerGzip,
  MediaTypeImageManifest,
  parseManifest,
  type Descriptor,
} from "../formats/oci.js";
import { parseReference } from "../registry/reference.js";
import { RegistryClient } from "../registry/client.js";

export interface LayerSource {
  /** Directory the layer's paths are relative to. */
  dir: string;
  /** Paths (relative to `dir`) to put in the layer; default `.` (everything). */
  paths?: string[];
  /** GNU tar `--exclude` patterns. */
  exclude?: string[];
}

export interface LayerFile {
  gzPath: string;
  diffId: string;
  tarSize: number;
  gzSize: number;
}

/** Tars `src` (ustar/pax, numeric root ownership) and gzips it to `gzPath`, hashing the tar on the way. */
export async function writeLayer(src: LayerSource, gzPath: string): Promise<LayerFile> {
  const args = [
    "--format=posix",
    "--pax-option=delete=atime,delete=ctime",
    "--numeric-owner",
    "--owner=0",
    "--group=0",
    "--sort=name",
    "-C",
    src.dir,
    "-cf",
    "-",
  ];
  for (const e of src.exclude ?? []) args.push(`--exclude=${e}`);
  args.push(...(src.paths ?? ["."]));
  const tar = spawn("tar", args, { stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  tar.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => tar.once("close", (code) => r(code)));
  const hash = createHash("sha256");
  let tarSize = 0;
  const tee = new PassThrough();
  tee.on("data", (c: Buffer) => {
    hash.update(c);
    tarSize += c.length;
  });
  await pipeline(tar.stdout!, tee, zlib.createGzip({ level: 6 }), createWriteStream(gzPath));
  const code = await exited;
  if (code !== 0) throw new FailedPreconditionError(`tar -C ${src.dir} exited ${code}: ${err.trim()}`);
  return { gzPath, diffId: `sha256:${hash.digest("hex")}`, tarSize, gzSize: (await stat(gzPath)).size };
}

export interface ImageConfig {
  cmd: string[];
  env?: string[];
}

const goArch = (): string =>
  ({ x64: "amd64", arm64: "arm64", arm: "arm", ia32: "386", ppc64: "ppc64le", s390x: "s390x" })[
    process.arch as string
  ] ?? process.arch;

/** An OCI image layout at `layout` with these layers (lowest first), tagged `tag`. */
export async function writeImageLayout(
  layout: string,
  layers: LayerFile[],
  cfg: ImageConfig,
  tag = "latest",
): Promise<Descriptor> {
  await rm(layout, { recursive: true, force: true });
  const store = await ContentStore.open(layout);
  const descs: Descriptor[] = [];
  for (const l of layers) {
    const info = await store.put(createReadStream(l.gzPath, { highWaterMark: 1 << 20 }));
    descs.push({ mediaType: MediaTypeImageLayerGzip, digest: info.digest, size: info.size });
  }
  const config = Buffer.from(
    JSON.stringify({
      architecture: goArch(),
      os: "linux",
      config: { Env: cfg.env ?? ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], Cmd: cfg.cmd },
      rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
      history: layers.map(() => ({ created_by: "soci demo" })),
    }),
  );
  const c = await store.put(config);
  const manifest = marshalManifest({
    schemaVersion: 2,
    mediaType: MediaTypeImageManifest,
    config: { mediaType: MediaTypeImageConfig, digest: c.digest, size: c.size },
    layers: descs,
  });
  const desc: Descriptor = {
    mediaType: MediaTypeImageManifest,
    digest: `sha256:${createHash("sha256").update(manifest).digest("hex")}`,
    size: manifest.length,
  };
  await store.putDescriptor(desc, manifest);
  await store.tag(desc, tag);
  return desc;
}

/** Pushes the image tagged `tag` in `layout` to `ref` (plain HTTP); blobs the repository has are skipped. */
export async function pushLayout(layout: string, tag: string, ref: string): Promise<void> {
  const store = await ContentStore.open(layout);
  const root = store.resolve(tag);
  if (!root) throw new NotFoundError(`${layout}: no image tagged ${tag}`);
  const client = new RegistryClient({ plainHttp: true });
  const target = parseReference(ref);
  try {
    const bytes = await store.get(root.digest);
    const m = parseManifest(bytes);
    await Promise.all(
      [m.config, ...(m.layers ?? [])].map(async (b) => {
        if ((await client.blobExists(target, b.digest)) !== undefined) return;
        await client.pushBlob(target, await store.createReadStream(b.digest), {
          digest: b.digest,
          size: b.size,
          mediaType: b.mediaType,
        });
      }),
    );
    await client.pushManifest(target, bytes, root.mediaType, target.tag ?? root.digest);
  } finally {
    await client.close();
  }
}

/** The statically linked busybox (Debian's busybox-static). */
export const BUSYBOX = "/bin/busybox";

/** `dir/bin/busybox` and applet links for a shell. */
export async function writeBusyboxRootfs(
  dir: string,
  applets = ["sh", "cat", "head", "ls", "echo", "dd", "true", "wc"],
): Promise<void> {
  await mkdir(join(dir, "bin"), { recursive: true });
  await mkdir(join(dir, "tmp"), { recursive: true });
  await copyFile(BUSYBOX, join(dir, "bin", "busybox"));
  for (const a of applets) await symlink("busybox", join(dir, "bin", a));
}

/**
 * `size` bytes that gzip about 2:1 like binaries and libraries do: each 4 KiB holds 2 KiB of
 * random bytes and 2 KiB of text.
 */
export function sampleData(size: number): Buffer {
  const out = Buffer.allocUnsafe(size);
  const text = Buffer.from(
    "layer span checkpoint window inflate registry snapshot container image lazy fetch verify ".repeat(32),
  );
  for (let o = 0; o < size; o += 4096) {
    const rnd = randomBytes(Math.min(2048, size - o));
    rnd.copy(out, o);
    if (o + 2048 < size) text.copy(out, o + 2048, (o >> 12) % 64, ((o >> 12) % 64) + Math.min(2048, size - o - 2048));
  }
  return out;
}
