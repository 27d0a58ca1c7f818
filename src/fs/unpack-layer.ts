// Unpacks one OCI layer (gzip or plain tar) into a directory in overlayfs form, as containerd's
// archive.Apply with overlay whiteout conversion does, for layers that are not mounted lazily
// (`soci mount` for layers without a ztoc, the snapshotter's local fallback, docs/snapshotter.md §3.6).
//
// The blob streams through the digest hash, the WASM inflater, the diff-ID hash and the tar reader
// into a private work directory beside `dir`; only when the tar ended cleanly and the digests
// match is the tree renamed into place. On any failure the work directory is removed and nothing
// is left at `dir`.
import { chmod, lchown, lstat, mkdir, mkdtemp, readdir, rename, rm } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { TarError } from "../formats/tar.js";
import { Inflater } from "../wasm/inflater.js";
import { prestartIoThread } from "./fs-batch.js";
import { LayerDecodeError, LayerDecoder, type Compression } from "./layer-decoder.js";
import { TarApplier } from "./tar-applier.js";
import { LayerEntryError, TreeWriter } from "./tree-writer.js";

export interface UnpackOptions {
  /** Default "auto": gzip when the blob starts with the gzip magic number, else a plain tar. */
  compression?: Compression;
  /** Expected diff ID (digest of the uncompressed tar); a mismatch fails the unpack. */
  diffId?: string;
  /** Expected digest of the blob as received; a mismatch fails the unpack. */
  digest?: string;
  signal?: AbortSignal;
  /** Opaque directories get `trusted.overlay.opaque` (default) or `user.overlay.opaque`. */
  opaqueXattr?: "trusted" | "user";
  /** File-level operations in flight at once (default 16). */
  concurrency?: number;
}

export interface UnpackResult {
  /** Digest of the uncompressed tar. */
  diffId: string;
  /** Digest of the blob as received. */
  digest: string;
  /** Bytes received. */
  size: number;
  /** Bytes of the uncompressed tar. */
  uncompressedSize: number;
  /** Extended attributes the filesystem refused as unsupported (skipped, as containerd does). */
  warnings: string[];
}

/** Why an unpack failed; `entry` names the tar entry when one is to blame. */
export class UnpackError extends Error {
  override name = "UnpackError";
  constructor(
    message: string,
    readonly entry?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

const DIGEST = /^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$/;
const WORK_DIR = /^\..+\.unpack-[A-Za-z0-9]{6}$/; // mkdtemp(".<name>.unpack-")

/**
 * Unpacks the layer blob `source` into `dir`, which must not exist or be an empty directory (its
 * parent is created if needed). Each source chunk is done with before the next one is asked for.
 */
export async function unpackLayer(
  source: AsyncIterable<Uint8Array>,
  dir: string,
  opts: UnpackOptions = {},
): Promise<UnpackResult> {
  const what = opts.digest ?? dir;
  const fail = (msg: string, entry?: string, cause?: unknown) =>
    new UnpackError(`unpacking layer ${what}: ${msg}`, entry, cause === undefined ? undefined : { cause });
  const signal = opts.signal;
  dir = resolve(dir);
  let target: Awaited<ReturnType<typeof emptyTarget>>;
  let work: string;
  try {
    for (const [k, v] of [
      ["digest", opts.digest],
      ["diffId", opts.diffId],
    ] as const) {
      if (v !== undefined && !DIGEST.test(v)) throw new Error(`invalid expected ${k} ${JSON.stringify(v)}`);
    }
    signal?.throwIfAborted();
    target = await emptyTarget(dir);
    await mkdir(dirname(dir), { recursive: true });
    work = await mkdtemp(join(dirname(dir), `.${basename(dir)}.unpack-`));
  } catch (e) {
    void closeSource(source); // not awaited: a source already stalled may never answer
    if (signal?.aborted) throw signal.reason;
    throw fail((e as Error).message, undefined, e);
  }
  const root = join(work, "root");
  const scratch = join(work, "scratch");
  const decoder = new LayerDecoder(
    opts.compression ?? "auto",
    opts.digest?.split(":")[0] ?? "sha256",
    opts.diffId?.split(":")[0] ?? "sha256",
  );
  const writer = new TreeWriter(root, scratch, {
    opaqueXattr: opts.opaqueXattr ?? "trusted",
    concurrency: opts.concurrency ?? 16,
    ...(signal ? { signal } : {}),
  });
  const tar = new TarApplier(writer);
  try {
    await mkdir(root, 0o700);
    await mkdir(scratch, 0o700);
    // The root ends up as `dir`: keep what the caller prepared, else 0755 root-owned.
    if (target) await lchown(root, target.uid, target.gid);
    await chmod(root, target ? target.mode & 0o7777 : 0o755);

    await writer.begin();
    const onTar = (view: Uint8Array) => tar.push(view);
    const between = () => writer.ready();
    for await (const chunk of signal ? abortable(source, signal) : source) await decoder.push(chunk, onTar, between);
    signal?.throwIfAborted();
    await decoder.end(onTar, between);
    tar.end();

    const digest = decoder.digest();
    const diffId = decoder.diffId();
    if (opts.digest && opts.digest !== digest)
      throw fail(`layer digest mismatch: expected ${opts.digest}, got ${digest}`);
    if (opts.diffId && opts.diffId !== diffId) throw fail(`diff id mismatch: expected ${opts.diffId}, got ${diffId}`);

    const warnings = await writer.finish();
    signal?.throwIfAborted();
    await rename(root, dir).catch((e: NodeJS.ErrnoException) => {
      throw fail(
        e.code === "ENOTEMPTY" || e.code === "EEXIST" ? `${dir} appeared and is not empty` : e.message,
        undefined,
        e,
      );
    });
    await rm(work, { recursive: true, force: true });
    return { diffId, digest, size: decoder.size, uncompressedSize: decoder.uncompressedSize, warnings };
  } catch (e) {
    void closeSource(source);
    tar.abort();
    await writer.settle();
    await rm(work, { recursive: true, force: true });
    if (signal?.aborted) throw signal.reason; // whatever broke on the way, the caller asked to stop
    if (e instanceof UnpackError) throw e;
    if (e instanceof LayerEntryError) throw fail(e.message, e.entry, e);
    if (e instanceof TarError)
      throw fail(e.kind === "unsupported" ? e.message : `corrupt tar: ${e.message}`, undefined, e);
    if (e instanceof LayerDecodeError) throw fail(e.message, undefined, e);
    throw fail((e as Error).message ?? String(e), undefined, e);
  } finally {
    decoder.release();
  }
}

// Lets a source that will not be read release what it holds (an open file, a connection). A
// stream is destroyed (an unstarted iterator's return() would not reach it); a generator is returned.
async function closeSource(source: AsyncIterable<Uint8Array>): Promise<void> {
  try {
    const stream = source as { destroy?: () => void };
    if (typeof stream.destroy === "function") stream.destroy();
    else await source[Symbol.asyncIterator]().return?.();
  } catch {
    // it was going to be discarded anyway
  }
}

// Stops waiting for a source that stalls once the signal fires (and closes the source).
async function* abortable<T>(source: AsyncIterable<T>, signal: AbortSignal): AsyncGenerator<T> {
  const it = source[Symbol.asyncIterator]();
  let onAbort = () => {};
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
  });
  aborted.catch(() => {});
  try {
    for (;;) {
      signal.throwIfAborted();
      const r = await Promise.race([it.next(), aborted]);
      if (r.done) return;
      yield r.value;
    }
  } finally {
    signal.removeEventListener("abort", onAbort);
    void Promise.resolve(it.return?.()).catch(() => {}); // not awaited: a stalled source may never answer
  }
}

// `dir` must be absent or an empty directory (whose owner and mode are kept).
async function emptyTarget(dir: string): Promise<{ uid: number; gid: number; mode: number } | null> {
  const st = await lstat(dir).catch((e: NodeJS.ErrnoException) => {
    if (e.code === "ENOENT") return null;
    throw e;
  });
  if (!st) return null;
  if (!st.isDirectory()) throw new Error(`${dir} exists and is not a directory`);
  if ((await readdir(dir)).length > 0) throw new Error(`${dir} exists and is not empty`);
  return { uid: st.uid, gid: st.gid, mode: st.mode };
}

/**
 * Readies what the first unpack of a process would otherwise set up on its own path: the I/O
 * thread (started and parked) and one WebAssembly inflater instance. Daemons call it when they
 * start, so that a layer unpacked during a pull does not wait for them. Never fails.
 */
export async function warmUnpacker(): Promise<void> {
  try {
    Inflater.gzip(null, true).release(); // back to the free list, instantiated
  } catch {
    // the unpack will report it
  }
  await prestartIoThread();
}

/**
 * Removes the work directories unpacks into `parent` left behind when their process was killed.
 * Call it only while no unpack into `parent` is running (e.g. when a daemon starts).
 */
export async function removeStaleUnpacks(parent: string): Promise<string[]> {
  const names = await readdir(parent).catch((e: NodeJS.ErrnoException) => {
    if (e.code === "ENOENT") return [] as string[];
    throw e;
  });
  const stale = names.filter((n) => WORK_DIR.test(n));
  for (const n of stale) await rm(join(parent, n), { recursive: true, force: true });
  return stale;
}

export interface LayerJob {
  /** Called when the job's turn comes, so downloads start only as slots free up. */
  source: () => AsyncIterable<Uint8Array>;
  dir: string;
  opts?: UnpackOptions;
}

/**
 * Unpacks several layers, at most `concurrency` at once (default 2); results are in job order. The
 * first failure is thrown after aborting the layers still in progress (which leave nothing behind)
 * and starting no more; layers already unpacked stay.
 */
export async function unpackLayers(
  jobs: LayerJob[],
  opts: { concurrency?: number; signal?: AbortSignal } = {},
): Promise<UnpackResult[]> {
  const ac = new AbortController();
  const onAbort = () => ac.abort(opts.signal!.reason);
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  if (opts.signal?.aborted) onAbort();
  const results: UnpackResult[] = new Array(jobs.length);
  let next = 0;
  let first: { error: unknown } | undefined;
  const worker = async () => {
    while (next < jobs.length && !ac.signal.aborted) {
      const i = next++;
      const job = jobs[i]!;
      const signal = job.opts?.signal ? AbortSignal.any([job.opts.signal, ac.signal]) : ac.signal;
      try {
        results[i] = await unpackLayer(job.source(), job.dir, { ...job.opts, signal });
      } catch (e) {
        if (!first) {
          first = { error: e };
          ac.abort(e);
        }
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.max(1, Math.min(opts.concurrency ?? 2, jobs.length)) }, worker));
  } finally {
    opts.signal?.removeEventListener("abort", onAbort);
  }
  if (first) throw first.error;
  opts.signal?.throwIfAborted();
  return results;
}
