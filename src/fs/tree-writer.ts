// Applies tar entries to a private, initially empty directory the way containerd's archive.Apply
// does with overlay whiteout conversion: `.wh.<name>` becomes a 0:0 character device `<name>`,
// `.wh..wh..opq` makes its directory opaque, a later entry replaces an earlier one of the same name
// (a directory over a directory merges), and nothing lands outside the root (see safe-path.ts).
//
// Structural steps (mkdir, removal, name resolution) run in entry order; the work on each leaf
// (create, write, chown, chmod, times) runs as a bounded set of concurrent tasks, and anything that
// depends on a leaf waits for its task. Directories get owner, mode and times at the end (so their
// contents can still be written and their mtimes stay as recorded); all extended attributes go in
// one batch at the end too, after every chown (chown clears security.capability).
//
// Times are set through Node, whose libuv truncates to microseconds: sub-microsecond digits of an
// mtime are dropped (Docker and BuildKit layers carry whole seconds).
import {
  chmod,
  link,
  lchown,
  lutimes,
  mkdir,
  open,
  readFile,
  rename,
  rm,
  symlink,
  utimes,
  type FileHandle,
} from "node:fs/promises";
import { Semaphore } from "../registry/semaphore.js";
import type { TarEntry } from "../formats/tar.js";
import {
  cleanComponents,
  resolveParent,
  show,
  UnsafePathError,
  type NodeKind,
  type ResolvedParent,
  type TreeIndex,
} from "./safe-path.js";
import { makeSpecial } from "./special-files.js";
import { setXattrs, type XattrSet } from "./xattrs.js";

const WHITEOUT_PREFIX = ".wh.";
const WHITEOUT_META_PREFIX = ".wh..wh.";
const OPAQUE_MARKER = ".wh..wh..opq";
const XATTR_PAX_PREFIX = "SCHILY.xattr.";

export interface TreeWriterOptions {
  /** Namespace of the opaque-directory attribute: "trusted" (default) or "user" (userxattr overlays). */
  opaqueXattr?: "trusted" | "user";
  /** Leaf tasks in flight at once (default 16). */
  concurrency?: number;
  signal?: AbortSignal;
}

/** A problem with one entry of the layer (hostile name, missing link target, device without root...). */
export class LayerEntryError extends Error {
  override name = "LayerEntryError";
  constructor(
    readonly entry: string,
    message: string,
  ) {
    super(message);
  }
}

/** A regular file whose data arrives in pieces. */
export interface FileSink {
  write(data: Uint8Array): Promise<void>;
  /** All data written: sets owner, mode and times, and closes. */
  close(): Promise<void>;
  /** Closes without finishing (the unpack failed). */
  abort(): Promise<void>;
}

interface Node {
  kind: NodeKind;
  target?: string; // symlinks
}

const latin1 = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("latin1");

export class TreeWriter implements TreeIndex {
  private readonly rootBytes: Buffer;
  private readonly nodes = new Map<string, Node>();
  private readonly pending = new Map<string, Promise<void>>();
  private readonly dirs = new Map<string, TarEntry>(); // last header of each directory
  private readonly xattrs = new Map<string, Map<string, Uint8Array>>();
  private readonly slots: Semaphore;
  private readonly opaqueName: string;
  private readonly euid = process.geteuid?.() ?? 0;
  private readonly egid = process.getegid?.() ?? 0;
  private readonly umask: Promise<number | undefined> = readUmask();
  private failure: { error: unknown } | undefined;
  private specialSeq = 0;

  /** `root` is where the tree goes (empty, private); `scratch` a private directory on the same filesystem. */
  constructor(
    root: string,
    private readonly scratch: string,
    private readonly opts: TreeWriterOptions = {},
  ) {
    this.rootBytes = Buffer.from(root.replace(/\/+$/, ""));
    this.slots = new Semaphore(opts.concurrency ?? 16);
    this.opaqueName = `${opts.opaqueXattr ?? "trusted"}.overlay.opaque`;
  }

  kind(rel: string): NodeKind | undefined {
    return this.nodes.get(rel)?.kind;
  }

  linkTarget(rel: string): string {
    return this.nodes.get(rel)?.target ?? "";
  }

  /**
   * Applies one entry. Regular files pass all their data in `data` (or use openFile when it
   * arrives in pieces).
   */
  async add(e: TarEntry, data?: Uint8Array): Promise<void> {
    this.check();
    const name = latin1(e.name);
    const at = await this.place(name, e);
    if (!at) return;
    const { rel } = at;
    const full = this.full(rel);
    switch (e.type) {
      case "dir":
        if (this.nodes.get(rel)?.kind !== "dir") {
          await this.guard(name, mkdir(full, 0o700));
          this.nodes.set(rel, { kind: "dir" });
        }
        this.dirs.set(rel, e);
        this.noteXattrs(rel, e, true);
        return;
      case "reg": {
        const body = data ?? new Uint8Array(0);
        if (body.length !== e.size)
          throw new LayerEntryError(name, `entry ${show(name)}: got ${body.length} of ${e.size} bytes`);
        this.nodes.set(rel, { kind: "other" });
        this.noteXattrs(rel, e, false);
        await this.task(rel, name, async () => {
          const created = await this.createMode(e);
          const fh = await open(full, "wx", created);
          try {
            await writeAll(fh, body);
            await this.finishFile(fh, e, created);
          } finally {
            await fh.close();
          }
        });
        return;
      }
      case "symlink": {
        const target = latin1(e.linkname);
        this.nodes.set(rel, { kind: "symlink", target });
        this.noteXattrs(rel, e, false);
        await this.task(rel, name, async () => {
          await symlink(Buffer.from(target, "latin1"), full);
          if (e.uid !== this.euid || e.gid !== this.egid) await lchown(full, e.uid, e.gid);
          await lutimes(full, ...times(e));
        });
        return;
      }
      case "hardlink":
        await this.hardlink(name, rel, e);
        return;
      case "char":
      case "block":
      case "fifo":
        if (e.type !== "fifo" && this.euid !== 0) {
          throw new LayerEntryError(
            name,
            `entry ${show(name)}: creating ${e.type} device ${e.devmajor}:${e.devminor} needs root`,
          );
        }
        this.nodes.set(rel, { kind: "other" });
        this.noteXattrs(rel, e, false);
        await this.task(rel, name, async () => {
          await this.special(full, e.type as "char" | "block" | "fifo", e.devmajor, e.devminor);
          await lchown(full, e.uid, e.gid);
          await chmod(full, e.mode & 0o7777);
          await lutimes(full, ...times(e));
        });
        return;
    }
  }

  /** Starts a regular file whose data will come through the returned sink. */
  async openFile(e: TarEntry): Promise<FileSink> {
    this.check();
    const name = latin1(e.name);
    if (e.type !== "reg") throw new Error(`openFile: ${show(name)} is not a regular file entry`);
    const at = await this.place(name, e);
    if (!at) return { write: async () => {}, close: async () => {}, abort: async () => {} }; // a whiteout with data
    const { rel } = at;
    this.nodes.set(rel, { kind: "other" });
    this.noteXattrs(rel, e, false);
    const created = await this.createMode(e);
    const fh = await this.guard(name, open(this.full(rel), "wx", created));
    let written = 0;
    let closed = false;
    return {
      write: async (data) => {
        written += data.length;
        await this.guard(name, writeAll(fh, data));
      },
      close: async () => {
        closed = true;
        try {
          if (written !== e.size)
            throw new LayerEntryError(name, `entry ${show(name)}: got ${written} of ${e.size} bytes`);
          await this.guard(name, this.finishFile(fh, e, created));
        } finally {
          await fh.close();
        }
      },
      abort: async () => {
        if (!closed) {
          closed = true;
          await fh.close().catch(() => {});
        }
      },
    };
  }

  /**
   * Waits for every task, then sets directory owners and modes, all extended attributes, and
   * directory times. Returns warnings (attributes the filesystem does not support).
   */
  async finish(): Promise<string[]> {
    await this.settle();
    this.check();
    const signal = this.opts.signal;
    await this.each([...this.dirs], async ([rel, e]) => {
      const full = this.full(rel);
      if (e.uid !== this.euid || e.gid !== this.egid) await this.guard(latin1(e.name), lchown(full, e.uid, e.gid));
      await this.guard(latin1(e.name), chmod(full, e.mode & 0o7777));
    });
    signal?.throwIfAborted();
    const sets: XattrSet[] = [];
    for (const [rel, attrs] of this.xattrs) {
      sets.push({
        path: this.full(rel),
        attrs: [...attrs].map(([k, value]) => ({ name: Buffer.from(k, "latin1"), value })),
      });
    }
    const warnings = await setXattrs(sets, signal);
    signal?.throwIfAborted();
    await this.each([...this.dirs], async ([rel, e]) => {
      await this.guard(latin1(e.name), utimes(this.full(rel), ...times(e)));
    });
    return warnings;
  }

  /** Waits for all tasks in flight, ignoring their failures (used before removing the tree). */
  async settle(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending.values()]);
  }

  // ---- placement ---------------------------------------------------------------------------

  // Resolves an entry's name to its place, creating missing parents, handling whiteouts, and
  // clearing whatever the name held before. Returns null when the entry needs no further work.
  private async place(name: string, e: TarEntry): Promise<{ rel: string } | null> {
    let comps: string[];
    try {
      comps = cleanComponents(name, "entry name");
      if (e.pax.some((r) => latin1(r.key).startsWith("GNU.sparse."))) {
        throw new UnsafePathError(`entry ${show(name)}: GNU sparse files are not supported`);
      }
    } catch (err) {
      throw this.entryError(name, err);
    }
    if (comps.length === 0) return null; // "./": containerd leaves the root alone
    const base = comps[comps.length - 1]!;
    const parent = await this.ensureParent(name, comps.slice(0, -1));
    const rel = parent === "" ? base : `${parent}/${base}`;

    if (base.startsWith(WHITEOUT_PREFIX)) {
      if (base === OPAQUE_MARKER) {
        this.xattrsOf(parent).set(this.opaqueName, Buffer.from("y"));
      } else if (!base.startsWith(WHITEOUT_META_PREFIX)) {
        await this.whiteout(name, parent, base.slice(WHITEOUT_PREFIX.length), e);
      }
      return null; // AUFS metadata (.wh..wh.plnk and the like) is not part of the tree
    }

    const existing = this.nodes.get(rel);
    if (existing && !(existing.kind === "dir" && e.type === "dir")) await this.remove(rel);
    return { rel };
  }

  private async ensureParent(name: string, dirs: string[]): Promise<string> {
    let resolved: ResolvedParent;
    try {
      resolved = resolveParent(this, dirs, name);
    } catch (err) {
      throw this.entryError(name, err);
    }
    let rel = resolved.existing;
    for (const c of resolved.missing) {
      rel = rel === "" ? c : `${rel}/${c}`;
      const full = this.full(rel);
      await this.guard(name, mkdir(full, 0o755));
      await this.guard(name, chmod(full, 0o755)); // umask-proof, as the lazy filesystem shows them
      this.nodes.set(rel, { kind: "dir" });
    }
    return rel;
  }

  private async whiteout(name: string, parent: string, original: string, e: TarEntry): Promise<void> {
    if (original === "" || original === "." || original === "..") {
      throw new LayerEntryError(name, `entry ${show(name)}: invalid whiteout name`);
    }
    const rel = parent === "" ? original : `${parent}/${original}`;
    if (this.nodes.has(rel)) await this.remove(rel);
    this.nodes.set(rel, { kind: "other" });
    const full = this.full(rel);
    await this.task(rel, name, async () => {
      await this.special(full, "char", 0, 0);
      await lchown(full, e.uid, e.gid);
    });
  }

  private async hardlink(name: string, rel: string, e: TarEntry): Promise<void> {
    const linkname = latin1(e.linkname);
    let trel: string;
    try {
      const comps = cleanComponents(linkname, "hardlink target");
      if (comps.length === 0) throw new UnsafePathError(`entry ${show(name)}: hardlink to the layer root`);
      const p = resolveParent(this, comps.slice(0, -1), name);
      if (p.missing.length > 0)
        throw new UnsafePathError(`entry ${show(name)}: hardlink target ${show(linkname)} does not exist in the layer`);
      trel = p.existing === "" ? comps[comps.length - 1]! : `${p.existing}/${comps[comps.length - 1]}`;
    } catch (err) {
      throw this.entryError(name, err);
    }
    const target = this.nodes.get(trel);
    if (!target)
      throw new LayerEntryError(
        name,
        `entry ${show(name)}: hardlink target ${show(linkname)} does not exist in the layer`,
      );
    if (target.kind === "dir")
      throw new LayerEntryError(name, `entry ${show(name)}: hardlink target ${show(linkname)} is a directory`);
    await this.pending.get(trel);
    this.check();
    await this.guard(name, link(this.full(trel), this.full(rel)));
    this.nodes.set(rel, { ...target });
    // The inode's attributes are set at the end by path: keep them reachable if `trel` is replaced.
    const attrs = this.xattrs.get(trel);
    if (attrs) this.xattrs.set(rel, new Map(attrs));
  }

  // Removes what `rel` holds, with everything below it, once no task touches it.
  private async remove(rel: string): Promise<void> {
    const node = this.nodes.get(rel);
    if (node?.kind === "dir") await this.settle();
    else await this.pending.get(rel);
    this.check();
    await rm(this.full(rel), { recursive: true, force: true });
    this.forget(rel, node?.kind === "dir");
  }

  private forget(rel: string, subtree: boolean): void {
    for (const m of [this.nodes, this.dirs, this.xattrs] as Map<string, unknown>[]) {
      m.delete(rel);
      if (subtree) {
        const prefix = rel + "/";
        for (const k of m.keys()) if (k.startsWith(prefix)) m.delete(k);
      }
    }
  }

  // ---- leaves ------------------------------------------------------------------------------

  // The mode a new file is opened with: the final one when the umask leaves it intact (saving a
  // chmod per file), else owner-only until finishFile sets it.
  private async createMode(e: TarEntry): Promise<number> {
    const mode = e.mode & 0o7777;
    const umask = await this.umask;
    return umask !== undefined && mode <= 0o777 && (mode & umask) === 0 ? mode : 0o600;
  }

  private async finishFile(fh: FileHandle, e: TarEntry, created: number): Promise<void> {
    const chown = e.uid !== this.euid || e.gid !== this.egid;
    if (chown) await fh.chown(e.uid, e.gid);
    // After chown, which clears setuid/setgid (and a mode the umask would have cut).
    if (chown || created !== (e.mode & 0o7777)) await fh.chmod(e.mode & 0o7777);
    await fh.utimes(...times(e));
  }

  // mknod/mkfifo get a plain ASCII name in the scratch directory; a rename puts the node in place.
  private async special(full: Buffer, kind: "char" | "block" | "fifo", major: number, minor: number): Promise<void> {
    const tmp = `${this.scratch}/node-${++this.specialSeq}`;
    await makeSpecial(tmp, kind, major, minor, this.opts.signal);
    await rename(tmp, full);
  }

  private noteXattrs(rel: string, e: TarEntry, merge: boolean): void {
    if (!merge) this.xattrs.delete(rel);
    for (const r of e.pax) {
      const key = latin1(r.key);
      if (key.startsWith(XATTR_PAX_PREFIX)) this.xattrsOf(rel).set(key.slice(XATTR_PAX_PREFIX.length), r.value);
    }
  }

  private xattrsOf(rel: string): Map<string, Uint8Array> {
    let m = this.xattrs.get(rel);
    if (!m) {
      m = new Map();
      this.xattrs.set(rel, m);
    }
    return m;
  }

  // Runs `fn` as a leaf task once a slot is free; its failure fails the whole unpack.
  private async task(rel: string, name: string, fn: () => Promise<void>): Promise<void> {
    const release = await this.slots.acquire();
    if (this.failure) {
      release();
      this.check();
    }
    const p: Promise<void> = fn()
      .catch((err) => {
        this.failure ??= { error: this.entryError(name, err) };
      })
      .finally(() => {
        release();
        if (this.pending.get(rel) === p) this.pending.delete(rel);
      });
    this.pending.set(rel, p);
  }

  private async each<T>(items: T[], fn: (item: T) => Promise<void>): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < items.length) await fn(items[next++]!);
    };
    await Promise.all(Array.from({ length: Math.min(items.length, this.opts.concurrency ?? 16) }, worker));
  }

  private check(): void {
    if (this.failure) throw this.failure.error;
  }

  private async guard<T>(name: string, p: Promise<T>): Promise<T> {
    try {
      return await p;
    } catch (err) {
      throw this.entryError(name, err);
    }
  }

  private entryError(name: string, err: unknown): Error {
    if (err instanceof LayerEntryError) return err;
    const msg = err instanceof Error ? err.message : String(err);
    const e = new LayerEntryError(name, err instanceof UnsafePathError ? msg : `entry ${show(name)}: ${msg}`);
    e.cause = err;
    return e;
  }

  private full(rel: string): Buffer {
    return rel === "" ? this.rootBytes : Buffer.concat([this.rootBytes, Buffer.from("/" + rel, "latin1")]);
  }
}

// The process umask without changing it (process.umask() to read it is deprecated).
async function readUmask(): Promise<number | undefined> {
  try {
    const m = /^Umask:\s*([0-7]+)$/m.exec(await readFile("/proc/self/status", "latin1"));
    return m ? parseInt(m[1]!, 8) : undefined;
  } catch {
    return undefined;
  }
}

async function writeAll(fh: FileHandle, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) {
    const { bytesWritten } = await fh.write(data, off, data.length - off);
    off += bytesWritten;
  }
}

// [atime, mtime] for utimes: atime = mtime. libuv keeps whole microseconds (truncating), and
// Node replaces negative numbers with "now" but passes numeric strings through: a string aimed at
// the middle of the right microsecond survives both and double rounding.
function times(e: TarEntry): [string, string] {
  const us = Math.floor(e.mtimeNsec / 1000) * 1000;
  const t = String(e.mtimeSec + (us + (e.mtimeSec < 0 ? -500 : 500)) / 1e9);
  return [t, t];
}
