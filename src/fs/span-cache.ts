// The span cache: spans of a layer on disk under `<root>/<layer digest hex>/`, shared by every
// mount of that layer (and kept across mounts), plus a daemon-wide in-memory LRU of hot
// uncompressed spans bounded in bytes.
//
// On disk a span is `<id>` (uncompressed) or `<id>.z` (compressed, as fetched), the gzip header
// bytes are `header`; a span fetched only in part (chunk verification, docs/formats.md §9) is
// `<id>.up` (its uncompressed prefix) with `<id>.zp` (what resuming it needs: its checkpoint
// window and the verified compressed chunks so far). Each file is the data followed by a 40-byte trailer: magic + sha256(data).
// Files are written under `wip/` and renamed into place, so a crash leaves either no file or a
// whole one; a torn, truncated or altered file fails its trailer check and is never served.
// A file is checked whole once per process (or written by it); after that a read of part of an
// uncompressed span reads only that part from disk, so spans need not stay in memory.
//
// The cache holds decompressed image content, whatever the image's file modes: its root is kept
// 0700 and its files 0600, so only root reads them. A write that fails (a full disk: ENOSPC,
// EDQUOT) leaves the span uncached and the read that produced it still answered; the owner hears of
// every failure and, once, that the cache stopped growing.
import { createHash, randomBytes } from "node:crypto";
import { chmod, mkdir, open, readFile, readdir, rename, rm, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import { ReadHandles } from "./read-handles.js";
import { noteDroppedBuffers } from "../wasm/garbage.js";
import { readAt, writeAt } from "./positioned-io.js";

const MAGIC = Buffer.from("SOCISPN1");
const TRAILER = MAGIC.length + 32;
export const DEFAULT_MEMORY_BYTES = 256 << 20;
/** Temp files older than this are a crashed writer's leftovers. */
const WIP_MAX_AGE_MS = 10 * 60_000;

export interface SpanCacheOptions {
  /** Directory holding one subdirectory per layer. */
  root: string;
  /** Bound of the in-memory LRU of uncompressed spans (default 256 MiB; 0 disables it). */
  memoryBytes?: number;
  /** Told about every cache write that failed (`noSpace`: ENOSPC or EDQUOT). */
  onWriteFailure?: (err: Error, noSpace: boolean) => void;
  /**
   * Told once, at the first write that fails for lack of space: the cache stops growing, reads go
   * on from memory and the network. (Once per cache: a disk near full fails big spans and takes
   * small files, and must not fill the log.)
   */
  onFull?: (err: Error) => void;
}

/** What every layer's cache shares. */
interface Shared {
  readonly lru: ByteLru;
  /** Cache files (by path) whose trailer this process checked, or that it wrote. */
  readonly checked: Set<string>;
  /** Creates the cache root (0700, also when it existed with a wider mode). */
  prepareRoot(): Promise<void>;
  /** Reports a failed write (and a full disk's first one). */
  writeFailed(err: unknown): void;
  /** Read handles of cache files, kept open across reads. */
  readonly handles: ReadHandles;
}

const isNoSpace = (e: unknown) => {
  const code = (e as NodeJS.ErrnoException).code;
  return code === "ENOSPC" || code === "EDQUOT";
};

/** What a layer's cache directory holds (found when a layer is opened). */
export interface CachedSpans {
  uncompressed: Set<number>;
  compressed: Set<number>;
  header: boolean;
  /** Spans held in part: the data lengths of their `.up` and `.zp` files. */
  partial: Map<number, { prefix: number; resume: number }>;
}

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest();

function trailer(data: Uint8Array): Buffer {
  return Buffer.concat([MAGIC, sha256(data)]);
}

/** The data of a cache file, or undefined when the file is torn or altered. */
function checkTrailer(file: Buffer): Uint8Array | undefined {
  if (file.length < TRAILER) return undefined;
  const n = file.length - TRAILER;
  if (!file.subarray(n, n + MAGIC.length).equals(MAGIC)) return undefined;
  const data = file.subarray(0, n);
  return sha256(data).equals(file.subarray(n + MAGIC.length)) ? data : undefined;
}

async function readIfExists(path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
}

/** Least-recently-used map of byte arrays bounded by their total length. */
class ByteLru {
  private readonly map = new Map<string, Uint8Array>();
  private bytes = 0;

  constructor(private readonly limit: number) {}

  get(key: string): Uint8Array | undefined {
    const v = this.map.get(key);
    if (v !== undefined) {
      this.map.delete(key);
      this.map.set(key, v);
    }
    return v;
  }

  set(key: string, value: Uint8Array): void {
    this.delete(key);
    if (value.length > this.limit) return;
    this.map.set(key, value);
    this.bytes += value.length;
    for (const [k, v] of this.map) {
      if (this.bytes <= this.limit) break;
      this.map.delete(k);
      this.bytes -= v.length;
    }
  }

  delete(key: string): void {
    const v = this.map.get(key);
    if (v === undefined) return;
    this.map.delete(key);
    this.bytes -= v.length;
  }

  deletePrefix(prefix: string): void {
    for (const k of [...this.map.keys()]) if (k.startsWith(prefix)) this.delete(k);
  }

  get size(): number {
    return this.bytes;
  }
}

export class SpanCache {
  readonly root: string;
  private readonly shared: Shared;
  private rootReady: Promise<void> | undefined;
  private toldFull = false;

  constructor(opts: SpanCacheOptions) {
    this.root = opts.root;
    this.shared = {
      lru: new ByteLru(Math.max(0, opts.memoryBytes ?? DEFAULT_MEMORY_BYTES)),
      checked: new Set(),
      handles: new ReadHandles(),
      prepareRoot: () => {
        this.rootReady ??= mkdir(this.root, { recursive: true, mode: 0o700 })
          .then(() => chmod(this.root, 0o700))
          .catch((e: unknown) => {
            this.rootReady = undefined;
            throw e;
          });
        return this.rootReady;
      },
      writeFailed: (e) => {
        const err = e instanceof Error ? e : new Error(String(e));
        const noSpace = isNoSpace(err);
        opts.onWriteFailure?.(err, noSpace);
        if (noSpace && !this.toldFull) {
          this.toldFull = true;
          opts.onFull?.(err);
        }
      },
    };
  }

  /**
   * The cache of one layer, by its digest ("sha256:<hex>"); with `ztocDigest`, of the spans that
   * ztoc defines (another ztoc of the layer may cut it into other spans).
   */
  layer(digest: string, ztocDigest?: string): LayerSpanCache {
    const m = /^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$/.exec(digest);
    if (!m) throw new Error(`invalid layer digest ${JSON.stringify(digest)}`);
    const z = ztocDigest === undefined ? undefined : /^sha256:([0-9a-f]{16})[0-9a-f]{48}$/.exec(ztocDigest)?.[1];
    if (ztocDigest !== undefined && !z) throw new Error(`invalid ztoc digest ${JSON.stringify(ztocDigest)}`);
    const name = (m[1] === "sha256" ? m[2]! : `${m[1]}-${m[2]}`) + (z ? `.${z}` : "");
    return new LayerSpanCache(join(this.root, name), `${digest}/${z ?? ""}/`, this.shared);
  }

  /** Bytes held in memory. */
  get memoryBytes(): number {
    return this.shared.lru.size;
  }
}

export class LayerSpanCache {
  private ready: Promise<void> | undefined;

  private readonly lru: ByteLru;
  private readonly checked: Set<string>;

  constructor(
    readonly dir: string,
    private readonly key: string,
    private readonly shared: Shared,
  ) {
    this.lru = shared.lru;
    this.checked = shared.checked;
  }

  /** The uncompressed span if it is hot in memory (synchronous: the warm read path). */
  hot(span: number): Uint8Array | undefined {
    return this.lru.get(this.key + span);
  }

  /** Keeps an uncompressed span in memory only. */
  remember(span: number, bytes: Uint8Array): void {
    this.lru.set(this.key + span, bytes);
  }

  /** Which spans the directory holds (an absent directory holds none). */
  async list(): Promise<CachedSpans> {
    const found: CachedSpans = { uncompressed: new Set(), compressed: new Set(), header: false, partial: new Map() };
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "ENOTDIR") return found;
      throw e;
    }
    if (names.includes("wip")) await this.sweepWip();
    for (const n of names) {
      const m = /^(\d+)(\.z)?$/.exec(n);
      if (m) (m[2] ? found.compressed : found.uncompressed).add(Number(m[1]));
      else if (n === "header") found.header = true;
    }
    for (const n of names) {
      const m = /^(\d+)\.up$/.exec(n);
      if (!m || !names.includes(`${m[1]}.zp`)) continue;
      const [up, zp] = await Promise.all([this.dataSize(n), this.dataSize(`${m[1]}.zp`)]);
      if (up !== undefined && zp !== undefined) found.partial.set(Number(m[1]), { prefix: up, resume: zp });
    }
    return found;
  }

  /** Removes temp files a crashed writer left (old enough that no live writer owns them). */
  private async sweepWip(): Promise<void> {
    const wip = join(this.dir, "wip");
    const names = await readdir(wip).catch(() => [] as string[]);
    const cutoff = Date.now() - WIP_MAX_AGE_MS;
    await Promise.all(
      names.map(async (n) => {
        const st = await stat(join(wip, n)).catch(() => undefined);
        if (st && st.mtimeMs < cutoff) await unlink(join(wip, n)).catch(() => undefined);
      }),
    );
  }

  /** An uncompressed span of `length` bytes from memory or disk; undefined when absent or damaged. */
  async loadUncompressed(span: number, length: number): Promise<Uint8Array | undefined> {
    const h = this.hot(span);
    if (h) return h;
    const data = await this.load(String(span));
    if (data === undefined || data.length !== length) return this.discard(String(span));
    this.remember(span, data);
    return data;
  }

  /**
   * Bytes [start, end) of an uncompressed span of `length` bytes: from memory, else from disk —
   * only those bytes once the file's trailer has been checked in this process, else the whole
   * file, checked. Undefined when the span is absent or damaged.
   */
  async readUncompressed(span: number, length: number, start: number, end: number): Promise<Uint8Array | undefined> {
    const h = this.hot(span);
    if (h) return h.subarray(start, end);
    return this.readPart(String(span), start, end, () => this.loadUncompressed(span, length));
  }

  /**
   * Bytes [start, end) of cache file `name`: once its trailer was checked in this process, only
   * those bytes; else `whole()` (which checks it) and a slice of that.
   */
  private async readPart(
    name: string,
    start: number,
    end: number,
    whole: () => Promise<Uint8Array | undefined>,
  ): Promise<Uint8Array | undefined> {
    const path = join(this.dir, name);
    const sliceOfWhole = async () => {
      const data = await whole();
      if (data) noteDroppedBuffers(data.length);
      return data?.subarray(start, end);
    };
    if (!this.checked.has(path)) return sliceOfWhole();
    const out = Buffer.allocUnsafe(end - start);
    let got = 0;
    try {
      got = await this.shared.handles.with(path, (fh) => readAt(fh, out, start));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    }
    if (got === out.length) return out;
    this.checked.delete(path); // removed or truncated behind our back: check it whole again
    this.shared.handles.drop(path);
    return sliceOfWhole();
  }

  /** Stores an uncompressed span (memory and disk) and drops its compressed form. */
  async storeUncompressed(span: number, bytes: Uint8Array): Promise<void> {
    this.remember(span, bytes);
    await this.store(String(span), bytes);
    await unlink(join(this.dir, `${span}.z`)).catch(() => undefined);
  }

  /** A compressed span whose sha256 equals `digest` ("sha256:<hex>"); undefined otherwise. */
  async loadCompressed(span: number, digest: string): Promise<Uint8Array | undefined> {
    const data = await this.load(`${span}.z`);
    if (data === undefined || `sha256:${sha256(data).toString("hex")}` !== digest) return this.discard(`${span}.z`);
    return data;
  }

  async storeCompressed(span: number, bytes: Uint8Array): Promise<void> {
    await this.store(`${span}.z`, bytes);
  }

  async loadHeader(): Promise<Uint8Array | undefined> {
    return this.load("header");
  }

  async storeHeader(bytes: Uint8Array): Promise<void> {
    await this.store("header", bytes);
  }

  /**
   * Stores the uncompressed prefix of a span fetched in part, with what resuming it needs; the
   * prefix is written last, so a found `.up` always has its `.zp`.
   */
  async storePartial(span: number, prefix: Uint8Array, resume: Uint8Array): Promise<void> {
    await this.store(`${span}.zp`, resume);
    await this.store(`${span}.up`, prefix);
  }

  /** Bytes [start, end) of a span's stored prefix of `length` bytes; undefined when absent or damaged. */
  async readPartial(span: number, length: number, start: number, end: number): Promise<Uint8Array | undefined> {
    return this.readPart(`${span}.up`, start, end, async () => {
      const data = await this.load(`${span}.up`);
      if (data === undefined || data.length !== length) return this.discard(`${span}.up`);
      return data;
    });
  }

  /** What resuming a partial span needs (checked against its trailer); undefined when absent or damaged. */
  async loadResume(span: number): Promise<Uint8Array | undefined> {
    return this.load(`${span}.zp`);
  }

  /** Drops a span's partial files. */
  async removePartial(span: number): Promise<void> {
    await Promise.all([this.discard(`${span}.up`), this.discard(`${span}.zp`)]);
  }

  /** Length of a cache file's data (without its trailer), or undefined. */
  private async dataSize(name: string): Promise<number | undefined> {
    const st = await stat(join(this.dir, name)).catch(() => undefined);
    return st && st.size >= TRAILER ? st.size - TRAILER : undefined;
  }

  /** Forgets a span (memory and disk, both forms). */
  async remove(span: number): Promise<void> {
    this.lru.delete(this.key + span);
    await Promise.all([this.discard(String(span)), this.discard(`${span}.z`)]);
  }

  /** Deletes the layer's whole cache. */
  async clear(): Promise<void> {
    this.lru.deletePrefix(this.key);
    for (const p of [...this.checked]) if (p.startsWith(this.dir + "/")) this.checked.delete(p);
    this.ready = undefined;
    this.shared.handles.dropUnder(this.dir);
    await rm(this.dir, { recursive: true, force: true });
  }

  private async load(name: string): Promise<Uint8Array | undefined> {
    const path = join(this.dir, name);
    const file = await readIfExists(path);
    if (file === undefined) return undefined;
    const data = checkTrailer(file);
    if (data === undefined) await this.discard(name);
    else this.checked.add(path);
    return data;
  }

  private async discard(name: string): Promise<undefined> {
    const path = join(this.dir, name);
    this.checked.delete(path);
    this.shared.handles.drop(path);
    await unlink(path).catch(() => undefined);
    return undefined;
  }

  private async store(name: string, data: Uint8Array): Promise<void> {
    try {
      await this.write(name, data);
    } catch (e) {
      this.shared.writeFailed(e);
      throw e;
    }
  }

  private async write(name: string, data: Uint8Array): Promise<void> {
    this.ready ??= this.shared
      .prepareRoot()
      .then(() => mkdir(join(this.dir, "wip"), { recursive: true, mode: 0o700 }))
      .then(() => undefined);
    try {
      await this.ready;
    } catch (e) {
      this.ready = undefined;
      throw e;
    }
    const tmp = join(this.dir, "wip", `${name}-${randomBytes(6).toString("hex")}`);
    const path = join(this.dir, name);
    this.checked.delete(path);
    try {
      // data then trailer: no second copy of a 4 MiB span just to append 40 bytes
      const fh = await open(tmp, "w", 0o600);
      try {
        await writeAt(fh, data, 0);
        await writeAt(fh, trailer(data), data.length);
      } finally {
        await fh.close();
      }
      await rename(tmp, path);
      this.shared.handles.drop(path); // a handle of the file it replaced
      this.checked.add(path);
    } catch (e) {
      await unlink(tmp).catch(() => undefined);
      throw e;
    }
  }
}
