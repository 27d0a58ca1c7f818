// Parallel pull mode (docs/snapshotter.md §6): instead of mounting layers lazily, the snapshotter
// downloads and unpacks an image's layers itself, all of them at once. The first Prepare of an
// image starts a job for its layer and for every later layer of the manifest; each layer's
// Prepare then claims its job, waits for it and moves the unpacked tree into its snapshot.
//
// A layer is unpacked into `<root>/unpack/<id>/fs` with both digests checked (the layer digest and
// the diff ID): streamed from one request straight through the unpacker, or, when a chunk size is
// set, first downloaded in ranged chunks (several at a time) into `<root>/unpack/<id>/blob`. The
// blob is kept in containerd's content store unless it is to be discarded. Downloads and unpacks
// are bounded per image and daemon-wide. A failed layer cancels its whole image; so does
// removing one of the image's snapshots. `<root>/unpack` is wiped when the puller starts, and a
// timer drops jobs nobody claimed for two hours and directories no job owns.
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, readdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import type { Descriptor } from "../formats/oci.js";
import type { RegistryClient } from "../registry/client.js";
import { Semaphore } from "../registry/semaphore.js";
import type { ImageRef } from "../registry/types.js";
import type { Logger } from "../log/log.js";
import { writeAt } from "./positioned-io.js";
import { unpackLayer, type UnpackOptions } from "./unpack-layer.js";

/** An external decompressor (`decompress_streams.<name>`): compressed bytes in on stdin, tar out on stdout. */
export interface Decompressor {
  path: string;
  args: string[];
}

export interface ParallelPullOptions {
  /** The daemon root; scratch space is `<root>/unpack`. */
  root: string;
  client: RegistryClient;
  /** Daemon-wide downloads (requests) in flight; −1 or 0 = unbounded. */
  maxConcurrentDownloads?: number;
  /** Downloads in flight per image (default 3). */
  maxConcurrentDownloadsPerImage?: number;
  /** Daemon-wide unpacks at once; −1 or 0 = unbounded. */
  maxConcurrentUnpacks?: number;
  /** Unpacks at once per image (default 1). */
  maxConcurrentUnpacksPerImage?: number;
  /** Bytes per ranged request; ≤ 0 = one request per layer. */
  chunkSize?: number;
  /** Layer media type short name (`gzip`, `zstd`) → external decompressor. */
  decompressors?: Record<string, Decompressor>;
  /** Keeps the downloaded blob (containerd's content store) before it is deleted; absent with `discard_unpacked_layers`. */
  storeLayer?: (namespace: string, layer: Descriptor, file: string) => Promise<void>;
  logger?: Logger;
  /** Image jobs older than this are cancelled (default 2 h). */
  maxJobAgeMs?: number;
  /** How often old jobs and stray directories are looked for (default 10 s). */
  gcIntervalMs?: number;
}

/** The image a layer belongs to, as the Prepare's labels and the registry describe it. */
export interface ParallelImage {
  /** The image's manifest digest: jobs are per image. */
  key: string;
  ref: ImageRef;
  namespace: string;
  layers: Descriptor[];
  diffIds: string[];
}

interface LayerJob {
  dir: string;
  /** Resolves to the unpacked tree (`<dir>/fs`). */
  done: Promise<string>;
}

interface ImageJob {
  created: number;
  abort: AbortController;
  layers: Map<string, LayerJob>;
  downloads: Semaphore | undefined;
  unpacks: Semaphore | undefined;
}

const DEFAULT_MAX_AGE_MS = 2 * 3600_000;
const DEFAULT_GC_INTERVAL_MS = 10_000;

function semaphore(limit: number | undefined, fallback: number): Semaphore | undefined {
  const n = limit ?? fallback;
  return n > 0 ? new Semaphore(n) : undefined;
}

async function bounded<T>(sems: (Semaphore | undefined)[], fn: () => Promise<T>): Promise<T> {
  const releases: (() => void)[] = [];
  try {
    for (const s of sems) if (s) releases.push(await s.acquire());
    return await fn();
  } finally {
    for (const r of releases.reverse()) r();
  }
}

/** `application/vnd.oci.image.layer.v1.tar+gzip` → `gzip`; plain tar → `uncompressed`. */
export function compressionOf(mediaType: string): string {
  const plus = mediaType.lastIndexOf("+");
  if (plus >= 0) return mediaType.slice(plus + 1);
  return mediaType.endsWith(".tar.gzip") || mediaType.endsWith(".tar.gz") ? "gzip" : "uncompressed";
}

export class ParallelPuller {
  private readonly images = new Map<string, ImageJob>();
  private readonly downloads: Semaphore | undefined;
  private readonly unpacks: Semaphore | undefined;
  private readonly unpackRoot: string;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: ParallelPullOptions) {
    this.unpackRoot = join(opts.root, "unpack");
    this.downloads = semaphore(opts.maxConcurrentDownloads, -1);
    this.unpacks = semaphore(opts.maxConcurrentUnpacks, -1);
  }

  /** Wipes what an earlier process left in `<root>/unpack` and starts the cleanup timer. */
  async start(): Promise<void> {
    await rm(this.unpackRoot, { recursive: true, force: true });
    await mkdir(this.unpackRoot, { recursive: true, mode: 0o700 }); // unpacked layers: root only
    this.timer = setInterval(() => {
      this.collect().catch((e: Error) => this.opts.logger?.warn("parallel pull: cleanup failed", { error: e.message }));
    }, this.opts.gcIntervalMs ?? DEFAULT_GC_INTERVAL_MS);
    this.timer.unref();
  }

  /**
   * Provides layer `index` of `image`, unpacked, at `into` (an empty directory). On an image's
   * first call, the jobs for this layer and every later one start; a failure of any of them fails
   * this call too (and the image's jobs are dropped, so a retry starts over).
   */
  async pullLayer(image: ParallelImage, index: number, into: string): Promise<void> {
    const layer = image.layers[index];
    if (!layer) throw new RangeError(`image ${image.key} has no layer ${index}`);
    let job = this.images.get(image.key);
    if (!job) {
      job = {
        created: Date.now(),
        abort: new AbortController(),
        layers: new Map(),
        downloads: semaphore(this.opts.maxConcurrentDownloadsPerImage, 3),
        unpacks: semaphore(this.opts.maxConcurrentUnpacksPerImage, 1),
      };
      this.images.set(image.key, job);
    }
    for (let i = index; i < image.layers.length; i++) this.layerJob(image, job, i);
    const mine = this.layerJob(image, job, index);
    const tree = await mine.done;
    // claimed: the job's tree becomes the snapshot's, the rest of its directory goes
    await rename(tree, into);
    job.layers.delete(layer.digest);
    await rm(mine.dir, { recursive: true, force: true });
    if (job.layers.size === 0 && this.images.get(image.key) === job) this.images.delete(image.key);
  }

  /** Cancels an image's jobs and removes their directories (Remove of one of its snapshots). */
  async cleanImage(key: string): Promise<void> {
    const job = this.images.get(key);
    if (!job) return;
    this.images.delete(key);
    await this.cancel(job, new Error(`image ${key} was removed`));
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    const jobs = [...this.images.values()];
    this.images.clear();
    await Promise.all(jobs.map((j) => this.cancel(j, new Error("snapshotter is shutting down"))));
  }

  private async cancel(job: ImageJob, reason: Error): Promise<void> {
    job.abort.abort(reason);
    await Promise.all([...job.layers.values()].map((l) => l.done.catch(() => undefined)));
    await Promise.all([...job.layers.values()].map((l) => rm(l.dir, { recursive: true, force: true })));
    job.layers.clear();
  }

  /** Drops jobs older than the limit and directories that belong to no job. */
  private async collect(): Promise<void> {
    const now = Date.now();
    for (const [key, job] of this.images) {
      if (now - job.created < (this.opts.maxJobAgeMs ?? DEFAULT_MAX_AGE_MS)) continue;
      this.images.delete(key);
      await this.cancel(job, new Error(`image ${key}: parallel pull job expired`));
    }
    const owned = new Set<string>();
    for (const job of this.images.values()) for (const l of job.layers.values()) owned.add(l.dir);
    for (const name of await readdir(this.unpackRoot).catch(() => [] as string[])) {
      const dir = join(this.unpackRoot, name);
      if (!owned.has(dir)) await rm(dir, { recursive: true, force: true });
    }
  }

  private layerJob(image: ParallelImage, job: ImageJob, index: number): LayerJob {
    const layer = image.layers[index]!;
    const existing = job.layers.get(layer.digest);
    if (existing) return existing;
    const dir = join(this.unpackRoot, randomBytes(5).toString("hex"));
    const done = this.fetchAndUnpack(image, job, layer, image.diffIds[index], dir);
    const entry: LayerJob = { dir, done };
    job.layers.set(layer.digest, entry);
    done.catch((e: Error) => {
      // one layer failing fails the image: the others stop, their directories go, and the next
      // Prepare starts over
      if (this.images.get(image.key) !== job) return;
      this.images.delete(image.key);
      this.cancel(job, e).catch(() => undefined);
    });
    return entry;
  }

  private async fetchAndUnpack(
    image: ParallelImage,
    job: ImageJob,
    layer: Descriptor,
    diffId: string | undefined,
    dir: string,
  ): Promise<string> {
    const signal = job.abort.signal;
    const started = Date.now();
    await mkdir(dir, { recursive: true });
    const blob = join(dir, "blob");
    const tree = join(dir, "fs");
    const chunk = this.opts.chunkSize ?? 0;
    const store = this.opts.storeLayer;
    if (chunk > 0 && layer.size > chunk) {
      // ranged requests in parallel into a file, unpacked once all have arrived
      await this.downloadChunks(image.ref, layer, blob, chunk, [job.downloads, this.downloads], signal);
      signal.throwIfAborted();
      await bounded([job.unpacks, this.unpacks], () => this.unpack(layer, fileChunks(blob), tree, diffId, signal));
    } else {
      // one request streamed through the unpacker: the unpack keeps pace with the download instead
      // of starting after it (kept in a file only when the blob is to be stored)
      await bounded([job.unpacks, this.unpacks, job.downloads, this.downloads], async () => {
        const body = this.opts.client.blobStream(image.ref, layer.digest, { size: layer.size });
        await this.unpack(layer, store ? teeToFile(body, blob) : body, tree, diffId, signal);
      });
    }
    if (store) await store(image.namespace, layer, blob);
    await rm(blob, { force: true });
    const tool = this.opts.decompressors?.[compressionOf(layer.mediaType)];
    this.opts.logger?.debug("parallel pull: layer unpacked", {
      layer: layer.digest,
      ms: Date.now() - started,
      decompressor: tool?.path ?? "built-in",
    });
    return tree;
  }

  /** The blob into `file` in ranged chunks, several at a time, each written at its offset (checked by the unpack). */
  private async downloadChunks(
    ref: ImageRef,
    layer: Descriptor,
    file: string,
    chunk: number,
    sems: (Semaphore | undefined)[],
    signal: AbortSignal,
  ): Promise<void> {
    const fh = await open(file, "w", 0o600);
    try {
      const starts: number[] = [];
      for (let s = 0; s < layer.size; s += chunk) starts.push(s);
      await Promise.all(
        starts.map((start) =>
          bounded(sems, async () => {
            signal.throwIfAborted();
            const bytes = await this.opts.client.fetchRange(
              ref,
              layer.digest,
              start,
              Math.min(start + chunk, layer.size),
            );
            await writeAt(fh, bytes, start);
          }),
        ),
      );
    } finally {
      await fh.close();
    }
  }

  /** Unpacks the blob's bytes; an external decompressor, when configured for its media type, inflates them. */
  private async unpack(
    layer: Descriptor,
    source: AsyncIterable<Uint8Array>,
    tree: string,
    diffId: string | undefined,
    signal: AbortSignal,
  ): Promise<void> {
    const kind = compressionOf(layer.mediaType);
    const tool = this.opts.decompressors?.[kind];
    const opts: UnpackOptions = { diffId, signal };
    if (!tool) {
      if (kind !== "gzip" && kind !== "uncompressed")
        throw new Error(`layer ${layer.digest}: no decompressor for ${layer.mediaType}`);
      await unpackLayer(source, tree, { ...opts, digest: layer.digest, compression: kind });
      return;
    }
    await unpackWithTool(tool, layer, source, tree, opts);
  }
}

/** Passes `source` through, writing every chunk to `file` on the way. */
async function* teeToFile(source: AsyncIterable<Uint8Array>, file: string): AsyncGenerator<Uint8Array> {
  const fh = await open(file, "w", 0o600);
  try {
    let pos = 0;
    for await (const bytes of source) {
      await writeAt(fh, bytes, pos);
      pos += bytes.byteLength;
      yield bytes;
    }
  } finally {
    await fh.close();
  }
}

/** A file's bytes in 1 MiB chunks. */
export async function* fileChunks(file: string): AsyncGenerator<Uint8Array> {
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) yield chunk as Buffer;
}

/**
 * The blob's bytes through `tool` (its stdin; the tar comes out of its stdout): the layer digest
 * is checked on the way in, the diff ID by the unpack.
 */
async function unpackWithTool(
  tool: Decompressor,
  layer: Descriptor,
  source: AsyncIterable<Uint8Array>,
  tree: string,
  opts: UnpackOptions,
): Promise<void> {
  const child = spawn(tool.path, tool.args, { stdio: ["pipe", "pipe", "pipe"], shell: false });
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr = (stderr + d).slice(-2000)));
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => resolve(code));
  });
  const hash = createHash("sha256");
  child.stdin.on("error", () => undefined); // a tool that stops reading is reported by its exit status
  const feed = (async () => {
    try {
      for await (const chunk of source) {
        hash.update(chunk);
        if (child.stdin.destroyed) throw new Error(`${tool.path} stopped reading its input`);
        if (!child.stdin.write(chunk)) {
          await new Promise((r) => {
            child.stdin.once("drain", r);
            child.stdin.once("close", r);
          });
        }
      }
    } finally {
      child.stdin.end();
    }
  })();
  feed.catch(() => undefined);
  try {
    // a tool that cannot start or fails is reported as such, not as the truncated tar it leaves
    const status = exited.then((code) => {
      if (code !== 0) throw new Error(`${tool.path} exited with ${code}: ${stderr.trim()}`);
    });
    // read through a PassThrough at once: Node discards the output of a child that exits before
    // anyone read its stdout (a small layer, while the unpack is still creating directories)
    const tar = child.stdout.pipe(new PassThrough({ highWaterMark: 1 << 20 }));
    await Promise.all([unpackLayer(tar, tree, { ...opts, compression: "uncompressed" }), status, feed]);
    const digest = `sha256:${hash.digest("hex")}`;
    if (digest !== layer.digest) {
      await rm(tree, { recursive: true, force: true });
      throw new Error(`layer ${layer.digest}: downloaded blob has digest ${digest}`);
    }
  } catch (e) {
    child.kill();
    throw e;
  }
}
