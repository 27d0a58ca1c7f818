// Applies tar entries to a private, initially empty directory the way containerd's archive.Apply
// does with overlay whiteout conversion: `.wh.<name>` becomes a 0:0 character device `<name>`,
// `.wh..wh..opq` makes its directory opaque, a later entry replaces an earlier one of the same name
// (a directory over a directory merges), and nothing lands outside the root (see safe-path.ts).
//
// Names are resolved here, against the tree as the entries so far made it (never against the
// filesystem); every filesystem operation (mkdir, removal, create, write, chown, chmod, times) is
// queued to an I/O thread that applies them in entry order (fs-batch.ts), so nothing waits for a
// system call here and later operations always see the earlier ones done. Directories get owner,
// mode and times at the end (so their contents can still be written and their mtimes stay as
// recorded); all extended attributes go in one batch at the end too, after every chown (chown
// clears security.capability).
//
// Times are set through Node, whose libuv truncates to microseconds: sub-microsecond digits of an
// mtime are dropped (Docker and BuildKit layers carry whole seconds).
import { readFile } from "node:fs/promises";
import type { TarEntry } from "../formats/tar.js";
import { FsBatch } from "./fs-batch.js";
import {
  cleanComponents,
  resolveParent,
  show,
  UnsafePathError,
  type NodeKind,
  type ResolvedParent,
  type TreeIndex,
} from "./safe-path.js";
import { setXattrs, type XattrSet } from "./xattrs.js";

const WHITEOUT_PREFIX = ".wh.";
const WHITEOUT_META_PREFIX = ".wh..wh.";
const OPAQUE_MARKER = ".wh..wh..opq";
const XATTR_PAX_PREFIX = "SCHILY.xattr.";

export interface TreeWriterOptions {
  /** Namespace of the opaque-directory attribute: "trusted" (default) or "user" (userxattr overlays). */
  opaqueXattr?: "trusted" | "user";
  /** Unused (the I/O thread applies operations in order); kept for callers that set it. */
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

/** A regular file whose data arrives in pieces (each piece is copied before write() returns). */
export interface FileSink {
  write(data: Uint8Array): void;
  /** All data written: sets owner, mode and times, and closes. */
  close(): void;
  /** Closes without finishing (the unpack failed). */
  abort(): void;
}

interface Node {
  kind: NodeKind;
  target?: string; // symlinks
}

const latin1 = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("latin1");

export class TreeWriter implements TreeIndex {
  private readonly rootStr: string;
  private readonly nodes = new Map<string, Node>();
  private readonly dirs = new Map<string, TarEntry>(); // last header of each directory
  private readonly xattrs = new Map<string, Map<string, Uint8Array>>();
  private readonly io = new FsBatch();
  private readonly opaqueName: string;
  private readonly euid = process.geteuid?.() ?? 0;
  private readonly egid = process.getegid?.() ?? 0;
  private umask: number | undefined;
  private specialSeq = 0;

  /** `root` is where the tree goes (empty, private); `scratch` a private directory on the same filesystem. */
  constructor(
    root: string,
    private readonly scratch: string,
    private readonly opts: TreeWriterOptions = {},
  ) {
    this.rootStr = Buffer.from(root.replace(/\/+$/, "")).toString("latin1");
    this.opaqueName = `${opts.opaqueXattr ?? "trusted"}.overlay.opaque`;
  }

  kind(rel: string): NodeKind | undefined {
    return this.nodes.get(rel)?.kind;
  }

  linkTarget(rel: string): string {
    return this.nodes.get(rel)?.target ?? "";
  }

  /** Call once before the first entry. */
  async begin(): Promise<void> {
    this.umask = await readUmask();
  }

  /** Resolves when the I/O thread has caught up enough for more entries (backpressure). */
  ready(): Promise<void> {
    return this.io.ready();
  }

  /**
   * Applies one entry. Regular files pass all their data in `data` (or use openFile when it
   * arrives in pieces); the data is copied before this returns. Nothing here waits for the
   * filesystem: the operations are queued, and a failure surfaces at a later call or at finish().
   */
  add(e: TarEntry, data?: Uint8Array): void {
    this.check();
    const name = latin1(e.name);
    const at = this.place(name, e);
    if (!at) return;
    const { rel } = at;
    const full = this.full(rel);
    switch (e.type) {
      case "dir":
        if (this.nodes.get(rel)?.kind !== "dir") {
          this.io.queue({ o: "mkdir", n: name, p: full, mode: 0o700, chmod: false });
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
        const created = this.createMode(e);
        this.io.file({ o: "file", n: name, p: full, mode: created, ...this.fileAttrs(e, created) }, body);
        return;
      }
      case "symlink": {
        const target = latin1(e.linkname);
        this.nodes.set(rel, { kind: "symlink", target });
        this.noteXattrs(rel, e, false);
        const chown = e.uid !== this.euid || e.gid !== this.egid;
        this.io.queue({
          o: "symlink",
          n: name,
          target,
          p: full,
          uid: chown ? e.uid : -1,
          gid: e.gid,
          t: times(e),
        });
        return;
      }
      case "hardlink":
        this.hardlink(name, rel, e);
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
        this.special(name, full, e.type, e.devmajor, e.devminor, e, true);
        return;
    }
  }

  /** Starts a regular file whose data will come through the returned sink. */
  openFile(e: TarEntry): FileSink {
    this.check();
    const name = latin1(e.name);
    if (e.type !== "reg") throw new Error(`openFile: ${show(name)} is not a regular file entry`);
    const at = this.place(name, e);
    if (!at) return { write: () => {}, close: () => {}, abort: () => {} }; // a whiteout with data
    const { rel } = at;
    this.nodes.set(rel, { kind: "other" });
    this.noteXattrs(rel, e, false);
    const created = this.createMode(e);
    const id = this.io.open(name, this.full(rel), created);
    let written = 0;
    let closed = false;
    return {
      write: (data) => {
        this.check();
        written += data.length;
        this.io.write(name, id, data);
      },
      close: () => {
        closed = true;
        if (written !== e.size) {
          this.io.queue({ o: "drop", n: name, id });
          throw new LayerEntryError(name, `entry ${show(name)}: got ${written} of ${e.size} bytes`);
        }
        this.io.close(name, id, this.fileAttrs(e, created));
      },
      abort: () => {
        if (!closed) {
          closed = true;
          this.io.queue({ o: "drop", n: name, id });
        }
      },
    };
  }

  /**
   * Waits for every queued operation, then sets directory owners and modes, all extended
   * attributes, and directory times. Returns warnings (attributes the filesystem does not support).
   */
  async finish(): Promise<string[]> {
    try {
      await this.io.drain();
      this.check();
      const signal = this.opts.signal;
      for (const [rel, e] of this.dirs) {
        const chown = e.uid !== this.euid || e.gid !== this.egid;
        this.io.queue({
          o: "attrs",
          n: latin1(e.name),
          p: this.full(rel),
          uid: chown ? e.uid : -1,
          gid: e.gid,
          chmod: e.mode & 0o7777,
        });
      }
      await this.io.drain();
      this.check();
      signal?.throwIfAborted();
      const sets: XattrSet[] = [];
      for (const [rel, attrs] of this.xattrs) {
        sets.push({
          path: this.fullBytes(rel),
          attrs: [...attrs].map(([k, value]) => ({ name: Buffer.from(k, "latin1"), value })),
        });
      }
      const warnings = await setXattrs(sets, signal);
      signal?.throwIfAborted();
      for (const [rel, e] of this.dirs)
        this.io.queue({ o: "utimes", n: latin1(e.name), p: this.full(rel), t: times(e) });
      await this.io.drain();
      this.check();
      return warnings;
    } finally {
      await this.io.release();
    }
  }

  /** Waits for all queued operations, ignoring their failures (used before removing the tree). */
  async settle(): Promise<void> {
    await this.io.release();
  }

  // ---- placement ---------------------------------------------------------------------------

  // Resolves an entry's name to its place, creating missing parents, handling whiteouts, and
  // clearing whatever the name held before. Returns null when the entry needs no further work.
  private place(name: string, e: TarEntry): { rel: string } | null {
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
    const parent = this.ensureParent(name, comps.slice(0, -1));
    const rel = parent === "" ? base : `${parent}/${base}`;

    if (base.startsWith(WHITEOUT_PREFIX)) {
      if (base === OPAQUE_MARKER) {
        this.xattrsOf(parent).set(this.opaqueName, Buffer.from("y"));
      } else if (!base.startsWith(WHITEOUT_META_PREFIX)) {
        this.whiteout(name, parent, base.slice(WHITEOUT_PREFIX.length), e);
      }
      return null; // AUFS metadata (.wh..wh.plnk and the like) is not part of the tree
    }

    const existing = this.nodes.get(rel);
    if (existing && !(existing.kind === "dir" && e.type === "dir")) this.remove(name, rel);
    return { rel };
  }

  private ensureParent(name: string, dirs: string[]): string {
    let resolved: ResolvedParent;
    try {
      resolved = resolveParent(this, dirs, name);
    } catch (err) {
      throw this.entryError(name, err);
    }
    let rel = resolved.existing;
    for (const c of resolved.missing) {
      rel = rel === "" ? c : `${rel}/${c}`;
      // chmod too: umask-proof, as the lazy filesystem shows them
      this.io.queue({ o: "mkdir", n: name, p: this.full(rel), mode: 0o755, chmod: true });
      this.nodes.set(rel, { kind: "dir" });
    }
    return rel;
  }

  private whiteout(name: string, parent: string, original: string, e: TarEntry): void {
    if (original === "" || original === "." || original === "..") {
      throw new LayerEntryError(name, `entry ${show(name)}: invalid whiteout name`);
    }
    const rel = parent === "" ? original : `${parent}/${original}`;
    if (this.nodes.has(rel)) this.remove(name, rel);
    this.nodes.set(rel, { kind: "other" });
    this.special(name, this.full(rel), "char", 0, 0, e, false);
  }

  private hardlink(name: string, rel: string, e: TarEntry): void {
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
    this.io.queue({ o: "link", n: name, from: this.full(trel), p: this.full(rel) });
    this.nodes.set(rel, { ...target });
    // The inode's attributes are set at the end by path: keep them reachable if `trel` is replaced.
    const attrs = this.xattrs.get(trel);
    if (attrs) this.xattrs.set(rel, new Map(attrs));
  }

  // Removes what `rel` holds, with everything below it (after the operations queued before).
  private remove(name: string, rel: string): void {
    const node = this.nodes.get(rel);
    this.io.queue({ o: "rm", n: name, p: this.full(rel) });
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
  private createMode(e: TarEntry): number {
    const mode = e.mode & 0o7777;
    const umask = this.umask;
    return umask !== undefined && mode <= 0o777 && (mode & umask) === 0 ? mode : 0o600;
  }

  // Owner and mode fixes a new regular file needs after its data (chown clears setuid/setgid, and
  // a mode the umask would have cut), and its times.
  private fileAttrs(e: TarEntry, created: number): { uid: number; gid: number; chmod: number; t: string } {
    const chown = e.uid !== this.euid || e.gid !== this.egid;
    const mode = e.mode & 0o7777;
    return { uid: chown ? e.uid : -1, gid: e.gid, chmod: chown || created !== mode ? mode : -1, t: times(e) };
  }

  // mknod/mkfifo get a plain ASCII name in the scratch directory; a rename puts the node in place.
  // Whiteouts keep mode 000 and the creation time.
  private special(
    name: string,
    full: string,
    kind: "char" | "block" | "fifo",
    major: number,
    minor: number,
    e: TarEntry,
    attrs: boolean,
  ): void {
    this.io.queue({
      o: "special",
      n: name,
      tmp: `${this.scratch}/node-${++this.specialSeq}`,
      p: full,
      kind,
      major,
      minor,
      uid: e.uid,
      gid: e.gid,
      chmod: attrs ? e.mode & 0o7777 : -1,
      t: attrs ? times(e) : "",
    });
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

  private check(): void {
    const f = this.io.failure;
    if (f) throw this.entryError(f.entry, f.error);
  }

  private entryError(name: string, err: unknown): Error {
    if (err instanceof LayerEntryError) return err;
    const msg = err instanceof Error ? err.message : String(err);
    const e = new LayerEntryError(name, err instanceof UnsafePathError ? msg : `entry ${show(name)}: ${msg}`);
    e.cause = err;
    return e;
  }

  // The absolute path of `rel` as a binary string (one char per byte, as the I/O thread takes it).
  private full(rel: string): string {
    return rel === "" ? this.rootStr : `${this.rootStr}/${rel}`;
  }

  private fullBytes(rel: string): Buffer {
    return Buffer.from(this.full(rel), "latin1");
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

// The time for utimes (atime = mtime). libuv keeps whole microseconds (truncating), and
// Node replaces negative numbers with "now" but passes numeric strings through: a string aimed at
// the middle of the right microsecond survives both and double rounding.
function times(e: TarEntry): string {
  const us = Math.floor(e.mtimeNsec / 1000) * 1000;
  return String(e.mtimeSec + (us + (e.mtimeSec < 0 ? -500 : 500)) / 1e9);
}
