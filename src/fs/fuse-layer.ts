// One lazily loaded layer as a read-only FUSE filesystem (docs/snapshotter.md §4.2), on fuse-native
// (libfuse 2.9 high-level, path-based API, multi-threaded loop; every operation is answered on the
// JS thread). Tree and presentation rules come from ./tree.ts; file contents from a LayerFileReader.
//
// Mount options: `allow_other`, `fsname=soci`, `subtype=rawBridge` (so /proc/mounts shows
// `soci <mnt> fuse.rawBridge`), `suid`, `use_ino` (libfuse otherwise invents inode numbers and
// hardlinks would differ; fuse-native has no option for it, so `_fuseOptions()` is replaced),
// `kernel_cache` (= FOPEN_KEEP_CACHE on every open, as the reference), the attribute/entry/negative
// timeouts, and `default_permissions` with `ro`: the kernel checks every access against the modes,
// owners and groups presented here, so a 0600 root file is refused to other users on the layer mount
// itself, not only through an overlay above it (docs/snapshotter.md §4.2); `ro` makes the kernel
// answer EROFS to writes and `access(W_OK)`, which no longer reach us. Right after mounting, the
// root is stat'ed once: until the kernel asks for its attributes it holds the root as mode 0
// (fusermount's `rootmode`), and an overlay stacked on it copies that and refuses every non-root
// caller.
//
// What libfuse 2 / fuse-native cannot carry, and what that means here:
// - times travel as milliseconds: mtimes are presented truncated to the millisecond (the TOC has
//   nanoseconds); negative times (before 1970, and Go's zero time that the reference gives
//   implicit directories) are presented as 0;
// - inode numbers travel as uint32: the base inode is always 0 (ino = id + 3);
// - names, symlink targets and xattr names travel as UTF-8 strings: invalid UTF-8 bytes show as U+FFFD
//   (see tree.ts);
// - reads are at most 128 KiB per request (libfuse 2 cannot negotiate FUSE_MAX_PAGES; `max_read`
//   can only lower it), and with `kernel_cache` repeated reads are served from the page cache.
import Fuse from "fuse-native";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { constants as osConstants } from "node:os";
import { readFile, statfs as statfsAsync, mkdir, stat } from "node:fs/promises";
import { resolve as resolvePathname } from "node:path";
import type { Ztoc } from "../formats/ztoc.js";
import type { FileMetadata } from "../formats/toc.js";
import type { LayerFileReader } from "./types.js";
import { noteYoungGarbage } from "../wasm/garbage.js";
import {
  buildTree,
  DEFAULT_OPAQUE_XATTR,
  getXattr,
  inodeOf,
  listXattrs,
  nodeAttr,
  readDir,
  resolvePath,
  STATE_DIR_INO_LOW,
  stateDirAttr,
  statFileAttr,
  stateJson,
  STAT_FILE_INO_LOW,
  STAT_FILE_MODE,
  S_IFDIR,
  whiteoutAttr,
  type Attr,
  type LayerTree,
  type OpaqueXattr,
  type Resolved,
  type TreeNode,
} from "./tree.js";

const E = osConstants.errno;
const EIO = -E.EIO;
const ENOENT = -E.ENOENT;
const EROFS = -E.EROFS;
const ERANGE = -E.ERANGE;
const ENODATA = -E.ENODATA;
const EINVAL = -E.EINVAL;
const ENOTDIR = -E.ENOTDIR;
const EBADF = -E.EBADF;

const O_ACCMODE = 3;
const W_OK = 2;

export interface MountLayerOptions {
  mountpoint: string;
  ztoc: Ztoc;
  /** Layer (compressed blob) digest, "sha256:…": names the state file. */
  digest: string;
  reader: LayerFileReader;
  /** Kernel attribute cache timeout, seconds (default 1). */
  attrTimeout?: number;
  /** Kernel dentry cache timeout, seconds (default 1). */
  entryTimeout?: number;
  /** Kernel negative dentry cache timeout, seconds (default 1). */
  negativeTimeout?: number;
  /**
   * Longest a read may wait for the reader before the kernel gets EIO (default 60 000 ms). Every other
   * operation answers synchronously. fuse-native's own per-operation timeout (which answers
   * ETIMEDOUT) is kept slightly longer as a backstop.
   */
  operationTimeoutMs?: number;
  /** The zTOC descriptor's `com.amazon.soci.disable-xattrs=true`: xattr operations get ENOSYS. */
  disableXattrs?: boolean;
  /** `user.overlay.opaque` when the overlay above is mounted with `userxattr`. */
  opaqueXattr?: OpaqueXattr;
  /** Directory whose statfs(2) the mount reports (the reference: `<root>/soci`); zeros when absent. */
  statfsDir?: string;
  /** Add `default_permissions` (kernel permission checks against the presented modes). Default on. */
  defaultPermissions?: boolean;
  /** Add `allow_other` (default on). */
  allowOther?: boolean;
  /** Extra libfuse `-o` options (e.g. "max_read=131072"). */
  extraOptions?: string[];
  /** Create the mountpoint if missing. */
  mkdir?: boolean;
  /** libfuse debug output on stderr. */
  debug?: boolean;
  /** A tree already built from `ztoc` (otherwise built here). */
  tree?: LayerTree;
  /** Told about every internal failure answered with EIO (for logs and metrics). */
  onError?: (operation: string, path: string, err: unknown) => void;
  /**
   * Told about every operation the kernel asks for, by the reference's names (`node.Getattr`,
   * `whiteout.Getattr`, `node.Readdir`, `node.Readlink`, `node.Open`, `file.Read`, `node.Getxattr`,
   * `node.Listxattr`): per-image operation counts and `log_fuse_operations`.
   */
  onOperation?: (operation: string, path: string) => void;
}

export interface MountedLayer {
  readonly mountpoint: string;
  readonly tree: LayerTree;
  /** The libfuse `-o` option string used. */
  readonly options: string;
  /** Unmounts (lazily, so a stacked overlay or open files cannot block it); idempotent. */
  unmount(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------------
// fuse-native plumbing

/** fuse-native's stat transport: 18 uint32 (see fuse-native.c populate_stat). */
export function statArray(a: Attr): Uint32Array {
  const s = new Uint32Array(18);
  s[0] = a.mode;
  s[1] = a.uid;
  s[2] = a.gid;
  setU64(s, 3, a.size);
  s[5] = 0; // dev (the kernel fills it)
  s[6] = a.nlink;
  s[7] = a.ino;
  s[8] = a.rdev;
  s[9] = a.blksize;
  setU64(s, 10, a.blocks);
  // atime, ctime: 0 (as the reference); mtime in milliseconds — fuse-native's C side turns ms into
  // a timespec (ms / 1000, (ms % 1000) · 1e6), so sub-millisecond digits cannot be passed: truncate.
  setU64(s, 14, mtimeMs(a));
  return s;
}

function mtimeMs(a: Attr): number {
  const ms = a.mtimeSec * 1000 + Math.floor(a.mtimeNsec / 1e6);
  return Math.max(ms, 0);
}

function setU64(arr: Uint32Array, i: number, v: number): void {
  const lo = v % 0x1_0000_0000;
  arr[i] = lo;
  arr[i + 1] = (v - lo) / 0x1_0000_0000;
}

const EMPTY_STAT = new Uint32Array(18);
const clampU32 = (n: number) => (n > 0xffffffff ? 0xffffffff : n < 0 ? 0 : Math.floor(n));

type Handle = { kind: "file"; entry: FileMetadata } | { kind: "stat" };

/** Bound of each of a mounted layer's lookup caches (paths, attributes, directory entries). */
export const FS_CACHE_ENTRIES = 8192;

/** The JS side of one mount: a layer's file system operations (exported for tests; `mountLayer` serves it over FUSE). */
export class LayerFs {
  readonly tree: LayerTree;
  readonly statFileName: string;
  private readonly reader: LayerFileReader;
  private readonly opaque: OpaqueXattr;
  private readonly readTimeout: number;
  private readonly onError: MountLayerOptions["onError"];
  private readonly onOp: MountLayerOptions["onOperation"];
  private readonly statfsDir: string | undefined;
  /** Positive path resolutions (the tree is immutable); cleared when it grows too large. */
  private readonly paths = new Map<string, Resolved>();
  // Each cache is bounded by entries (cleared when full): per file they cost more than the tree
  // itself, and reading a whole image would otherwise keep one of each for every file.
  private readonly nodeStats = new Map<TreeNode, Uint32Array>();
  private readonly whiteoutStats = new Map<TreeNode, Uint32Array>();
  private readonly dirCache = new Map<string, [string[], Uint32Array[]]>();
  /** Directory entries held by `dirCache`. */
  private dirCacheEntries = 0;
  private readonly handles = new Map<number, Handle>();
  private nextHandle = 1;
  private readonly stateDirStat = statArray(stateDirAttr());

  constructor(opts: MountLayerOptions) {
    this.tree = opts.tree ?? buildTree(opts.ztoc.toc);
    this.statFileName = `${opts.digest}.json`;
    this.reader = opts.reader;
    this.opaque = opts.opaqueXattr ?? DEFAULT_OPAQUE_XATTR;
    this.readTimeout = opts.operationTimeoutMs ?? 60_000;
    this.onError = opts.onError;
    this.onOp = opts.onOperation;
    this.statfsDir = opts.statfsDir;
  }

  /** Records an internal failure (state file via the reader, the onError hook) and returns EIO. */
  fail(op: string, path: string, err: unknown): number {
    const msg = err instanceof Error ? err.message : String(err);
    try {
      this.reader.noteError(new Error(`${op}: ${msg}`));
    } catch {
      // the reader's bookkeeping must not turn one failure into another
    }
    try {
      this.onError?.(op, path, err);
    } catch {
      // a logger failing is not the kernel's problem
    }
    return EIO;
  }

  resolve(path: string): Resolved | null {
    const hit = this.paths.get(path);
    if (hit) return hit;
    const r = resolvePath(this.tree, path, this.statFileName);
    if (r) {
      if (this.paths.size >= FS_CACHE_ENTRIES) this.paths.clear();
      this.paths.set(path, r);
    }
    return r;
  }

  private stateBytes(): Buffer {
    return Buffer.from(stateJson(this.reader.state()), "utf8");
  }

  stat(r: Resolved): Uint32Array {
    switch (r.kind) {
      case "node": {
        let s = this.nodeStats.get(r.node);
        if (!s) {
          s = statArray(nodeAttr(r.node));
          if (this.nodeStats.size >= FS_CACHE_ENTRIES) this.nodeStats.clear();
          this.nodeStats.set(r.node, s);
        }
        return s;
      }
      case "whiteout": {
        let s = this.whiteoutStats.get(r.node);
        if (!s) {
          s = statArray(whiteoutAttr(r.node));
          if (this.whiteoutStats.size >= FS_CACHE_ENTRIES) this.whiteoutStats.clear();
          this.whiteoutStats.set(r.node, s);
        }
        return s;
      }
      case "state-dir":
        return this.stateDirStat;
      case "stat-file":
        return statArray(statFileAttr(this.stateBytes().length));
    }
  }

  // -- operations (each returns synchronously except read and statfs) --

  getattr(path: string, signal: Fuse.Signal): void {
    let r: Resolved | null;
    try {
      r = this.resolve(path);
      this.onOp?.(r?.kind === "whiteout" ? "whiteout.Getattr" : "node.Getattr", path);
      if (!r) {
        signal(ENOENT, EMPTY_STAT);
        return;
      }
      signal(0, this.stat(r));
    } catch (err) {
      signal(this.fail("node.Getattr", path, err), EMPTY_STAT);
    }
  }

  access(path: string, mode: number): number {
    const r = this.resolve(path);
    if (!r) return ENOENT;
    return mode & W_OK ? EROFS : 0;
  }

  readdir(path: string): [number, string[], Uint32Array[]] {
    this.onOp?.("node.Readdir", path);
    const hit = this.dirCache.get(path);
    if (hit) return [0, hit[0], hit[1]];
    try {
      const r = this.resolve(path);
      if (!r) return [ENOENT, [], []];
      const names = [".", ".."];
      const stats: Uint32Array[] = [];
      const parent = path === "/" ? "/" : path.slice(0, Math.max(1, path.lastIndexOf("/")));
      const parentIno = r.kind === "state-dir" || path === "/" ? inodeOf(this.tree.root.id) : this.dirIno(parent);
      if (r.kind === "state-dir") {
        stats.push(dirEntStat(S_IFDIR, STATE_DIR_INO_LOW), dirEntStat(S_IFDIR, parentIno));
        names.push(this.statFileName);
        stats.push(dirEntStat(STAT_FILE_MODE, STAT_FILE_INO_LOW));
      } else if (r.kind === "node" && r.node.isDir) {
        stats.push(dirEntStat(S_IFDIR, inodeOf(r.node.id)), dirEntStat(S_IFDIR, parentIno));
        for (const e of readDir(r.node)) {
          names.push(e.name);
          stats.push(dirEntStat(e.mode, e.ino));
        }
      } else {
        return [ENOTDIR, [], []];
      }
      if (this.dirCacheEntries + names.length > FS_CACHE_ENTRIES) {
        this.dirCache.clear();
        this.dirCacheEntries = 0;
      }
      this.dirCache.set(path, [names, stats]);
      this.dirCacheEntries += names.length;
      return [0, names, stats];
    } catch (err) {
      return [this.fail("node.Readdir", path, err), [], []];
    }
  }

  /** Entries held by the lookup caches (for tests). */
  get cachedEntries(): number {
    return this.paths.size + this.nodeStats.size + this.whiteoutStats.size + this.dirCacheEntries;
  }

  private dirIno(path: string): number {
    const r = this.resolve(path);
    if (r?.kind === "node") return inodeOf(r.node.id);
    if (r?.kind === "state-dir") return STATE_DIR_INO_LOW;
    return inodeOf(this.tree.root.id);
  }

  readlink(path: string): [number, string] {
    this.onOp?.("node.Readlink", path);
    const r = this.resolve(path);
    if (!r) return [ENOENT, ""];
    if (r.kind !== "node" || r.node.kind !== "symlink") return [EINVAL, ""];
    return [0, Buffer.from(r.node.linkname).toString("utf8")];
  }

  open(path: string, flags: number): number {
    this.onOp?.("node.Open", path);
    try {
      const r = this.resolve(path);
      if (!r) return ENOENT;
      if ((flags & O_ACCMODE) !== 0) return EROFS;
      let h: Handle;
      if (r.kind === "stat-file") h = { kind: "stat" };
      else if (r.kind === "node" && r.node.kind === "reg" && r.node.entry) h = { kind: "file", entry: r.node.entry };
      else throw new Error(`${JSON.stringify(path)} is not a regular file`);
      const fh = this.nextHandle;
      this.nextHandle = this.nextHandle >= 0x7fffffff ? 1 : this.nextHandle + 1;
      this.handles.set(fh, h);
      return fh;
    } catch (err) {
      return this.fail("node.Open", path, err);
    }
  }

  release(fh: number): void {
    this.handles.delete(fh);
  }

  /** The read hot path: one reader call, one copy into the kernel's buffer. */
  read(path: string, fh: number, buf: Buffer, len: number, off: number, signal: Fuse.Signal): void {
    const h = this.handles.get(fh);
    if (!h) {
      signal(EBADF, 0, buf.buffer);
      return;
    }
    if (h.kind === "stat") {
      try {
        const st = this.stateBytes();
        const n = off >= st.length ? 0 : st.copy(buf, 0, off, Math.min(st.length, off + len));
        signal(n, 0, buf.buffer);
      } catch (err) {
        signal(this.fail("statFile.Read", path, err), 0, buf.buffer);
      }
      return;
    }
    this.onOp?.("file.Read", path);
    const entry = h.entry;
    const size = entry.uncompressedSize;
    if (off >= size || len <= 0) {
      signal(0, 0, buf.buffer);
      return;
    }
    const want = Math.min(len, size - off);
    let done = false;
    const timer = setTimeout(() => {
      if (done) return;
      done = true;
      signal(
        this.fail(
          "file.Read",
          path,
          new Error(`read of ${want} bytes at ${off} timed out after ${this.readTimeout} ms`),
        ),
        0,
        buf.buffer,
      );
    }, this.readTimeout);
    let p: Promise<Uint8Array>;
    try {
      p = this.reader.read(entry, off, want);
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      (data) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        // a short answer would read as end-of-file to the kernel (which then zero-fills and may
        // shrink its idea of the size): never let one through as data
        if (data.length !== want) {
          signal(
            this.fail("file.Read", path, new Error(`reader returned ${data.length} of ${want} bytes at ${off}`)),
            0,
            buf.buffer,
          );
          return;
        }
        buf.set(data);
        noteYoungGarbage(data.length);
        signal(want, 0, buf.buffer);
      },
      (err: unknown) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        signal(this.fail("file.Read", path, err), 0, buf.buffer);
      },
    );
  }

  getxattr(path: string, name: string): Uint8Array | number {
    this.onOp?.("node.Getxattr", path);
    const r = this.resolve(path);
    if (!r) return ENOENT;
    if (r.kind !== "node") return ENODATA;
    return getXattr(r.node, name, this.opaque) ?? ENODATA;
  }

  listxattr(path: string): Buffer | number {
    this.onOp?.("node.Listxattr", path);
    const r = this.resolve(path);
    if (!r) return ENOENT;
    if (r.kind !== "node") return Buffer.alloc(0);
    const names = listXattrs(r.node, this.opaque);
    return Buffer.from(names.map((n) => n + "\0").join(""), "utf8");
  }

  statfs(): Promise<Fuse.Statfs> {
    const zeros: Fuse.Statfs = { bsize: 4096, frsize: 4096, namemax: 255 };
    if (!this.statfsDir) return Promise.resolve(zeros);
    const timeout = new Promise<Fuse.Statfs>((res) => setTimeout(res, 5_000, zeros).unref());
    const real = statfsAsync(this.statfsDir).then(
      (s): Fuse.Statfs => ({
        bsize: clampU32(s.bsize),
        frsize: clampU32(s.bsize),
        blocks: clampU32(s.blocks),
        bfree: clampU32(s.bfree),
        bavail: clampU32(s.bavail),
        files: clampU32(s.files),
        ffree: clampU32(s.ffree),
        namemax: 255,
      }),
      () => zeros,
    );
    return Promise.race([real, timeout]);
  }
}

function dirEntStat(mode: number, ino: number): Uint32Array {
  const s = new Uint32Array(18);
  s[0] = mode;
  s[6] = 1;
  s[7] = ino;
  return s;
}

/** fuse-native with the option string, xattr size negotiation and read path this layer needs. */
class LayerFuse extends Fuse {
  constructor(
    mnt: string,
    ops: Fuse.Operations,
    opts: Fuse.Options,
    private readonly layer: LayerFs,
    private readonly optionString: string,
  ) {
    super(mnt, ops, opts);
  }

  override _fuseOptions(): string {
    return this.optionString;
  }

  // The overrides below replace fuse-native's generic handlers (same names, looked up per call):
  // they skip its per-call Date/array conversions and answer xattr size queries exactly.

  _op_getattr(signal: Fuse.Signal, path: string): void {
    this.layer.getattr(path, signal);
  }

  _op_readdir(signal: Fuse.Signal, path: string): void {
    const [err, names, stats] = this.layer.readdir(path);
    if (err) signal(err);
    else signal(0, names, stats);
  }

  _op_read(
    signal: Fuse.Signal,
    path: string,
    fh: number,
    buf: Buffer,
    len: number,
    offLo: number,
    offHi: number,
  ): void {
    this.layer.read(path, fh, buf, len, offLo + offHi * 0x1_0000_0000, signal);
  }

  /** size 0 ⇒ the value's length; too small ⇒ ERANGE; else the value. */
  _op_getxattr(signal: Fuse.Signal, path: string, name: string, valueBuf: Buffer, _position: number): void {
    let v: Uint8Array | number;
    try {
      v = this.layer.getxattr(path, name);
    } catch {
      v = ENODATA; // getxattr never fails in the reference
    }
    if (typeof v === "number") signal(v, valueBuf.buffer);
    else if (valueBuf.length === 0) signal(v.length, valueBuf.buffer);
    else if (valueBuf.length < v.length) signal(ERANGE, valueBuf.buffer);
    else {
      valueBuf.set(v);
      signal(v.length, valueBuf.buffer);
    }
  }

  _op_listxattr(signal: Fuse.Signal, path: string, listBuf: Buffer): void {
    let l: Buffer | number;
    try {
      l = this.layer.listxattr(path);
    } catch {
      l = Buffer.alloc(0);
    }
    if (typeof l === "number") signal(l, listBuf.buffer);
    else if (listBuf.length === 0) signal(l.length, listBuf.buffer);
    else if (listBuf.length < l.length) signal(ERANGE, listBuf.buffer);
    else {
      l.copy(listBuf);
      signal(l.length, listBuf.buffer);
    }
  }
}

/** The libfuse option string for a layer mount. */
export function layerMountOptions(
  opts: Pick<
    MountLayerOptions,
    "attrTimeout" | "entryTimeout" | "negativeTimeout" | "defaultPermissions" | "allowOther" | "extraOptions" | "debug"
  >,
): string {
  const o: string[] = [];
  if (opts.debug) o.push("debug");
  if (opts.allowOther ?? true) o.push("allow_other");
  o.push("fsname=soci", "subtype=rawBridge", "suid", "use_ino", "kernel_cache");
  // with the kernel checking permissions, `access(W_OK)` no longer reaches us: `ro` makes it EROFS
  if (opts.defaultPermissions ?? true) o.push("default_permissions", "ro");
  o.push(
    `attr_timeout=${opts.attrTimeout ?? 1}`,
    `entry_timeout=${opts.entryTimeout ?? 1}`,
    `negative_timeout=${opts.negativeTimeout ?? 1}`,
  );
  for (const x of opts.extraOptions ?? []) o.push(x);
  return "-o" + o.join(",");
}

/**
 * Mounts one layer read-only at `opts.mountpoint`. A dead FUSE mount left at the mountpoint (a
 * crashed daemon: "transport endpoint is not connected") is lazily unmounted first; a live one is an
 * error.
 */
export async function mountLayer(opts: MountLayerOptions): Promise<MountedLayer> {
  const mountpoint = resolvePathname(opts.mountpoint);
  const layer = new LayerFs(opts);
  const options = layerMountOptions(opts);

  const status = await mountStatus(mountpoint);
  if (status === "dead") await unmountPath(mountpoint);
  else if (status === "alive") throw new Error(`mount ${mountpoint}: already a mountpoint`);
  if (opts.mkdir) await mkdir(mountpoint, { recursive: true });

  const ro = (_path: string, ...rest: unknown[]) => (rest[rest.length - 1] as Fuse.Callback)(EROFS);
  const ops: Fuse.Operations = {
    // getattr, readdir, read, getxattr, listxattr are served by LayerFuse's _op_* overrides; these
    // entries only mark the operations as implemented for fuse-native.
    getattr: () => {},
    readdir: () => {},
    read: () => {},
    access: (path, mode, cb) => cb(layer.access(path, mode)),
    readlink: (path, cb) => {
      const [err, target] = layer.readlink(path);
      cb(err, target);
    },
    open: (path, flags, cb) => {
      const r = layer.open(path, flags);
      if (r < 0) cb(r);
      else cb(0, r);
    },
    release: (_path, fh, cb) => {
      layer.release(fh);
      cb(0);
    },
    statfs: (_path, cb) => {
      layer.statfs().then((s) => cb(0, s));
    },
    write: (_p, _fd, _buf, _len, _pos, cb) => cb(EROFS),
    create: ro,
    mknod: ro,
    mkdir: ro,
    unlink: ro,
    rmdir: ro,
    rename: ro,
    link: ro,
    symlink: ro,
    chmod: ro,
    chown: ro,
    truncate: ro,
    ftruncate: ro,
    utimens: ro,
  };
  if (!opts.disableXattrs) {
    ops.getxattr = () => {};
    ops.listxattr = () => {};
    ops.setxattr = ro;
    ops.removexattr = ro;
  }
  // fuse-native's timeout answers ETIMEDOUT; reads carry their own (EIO) timer, so theirs is off and
  // the rest keep a generous backstop (they answer synchronously).
  const backstop = (opts.operationTimeoutMs ?? 60_000) + 5_000;
  const fuse = new LayerFuse(
    mountpoint,
    ops,
    { timeout: { default: backstop, read: false, statfs: backstop } },
    layer,
    options,
  );

  await new Promise<void>((resolve, reject) => {
    fuse.mount((err) => (err ? reject(new Error(`mount ${mountpoint}: ${err.message}`)) : resolve()));
  });
  // The kernel's root inode has mode 0 until its first GETATTR; an overlay mounted on top copies the
  // root's attributes once, at its own mount, so fetch them now (answered by this event loop: the
  // stat runs on libuv's threadpool).
  await stat(mountpoint).catch(() => undefined);

  let unmounting: Promise<void> | undefined;
  return {
    mountpoint,
    tree: layer.tree,
    options,
    unmount(): Promise<void> {
      unmounting ??= new Promise<void>((resolve, reject) => {
        fuse.unmount((err) => {
          if (!err) return resolve();
          // fusermount failed (e.g. gone already): make sure nothing is left, then report
          unmountPath(mountpoint).then(resolve, () => reject(err));
        });
      });
      return unmounting;
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// Mount table helpers (usable by a daemon recovering after a crash)

function run(
  cmd: string,
  args: string[],
  timeoutMs: number,
): Promise<{ code: number; stdout: string; stderr: string }> {
  // C locale: callers read the error messages
  const options = { timeout: timeoutMs, killSignal: "SIGKILL" as const, env: { ...process.env, LC_ALL: "C" } };
  return new Promise((resolve) => {
    execFile(cmd, args, options, (err, stdout, stderr) => {
      const code = err
        ? typeof (err as { code?: unknown }).code === "number"
          ? (err as { code: number }).code
          : -1
        : 0;
      resolve({
        code,
        stdout: String(stdout),
        stderr: String(stderr) + (err && code === -1 ? String(err.message) : ""),
      });
    });
  });
}

/** A /proc/self/mountinfo field: octal escapes (`\040` …) decoded, then UTF-8. */
function mountField(s: string): string {
  return Buffer.from(
    s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))),
    "latin1",
  ).toString("utf8");
}

export interface MountInfo {
  mountpoint: string;
  fstype: string;
  source: string;
  /** The superblock's options (`default_permissions`, `allow_other` …). */
  superOptions: string;
}

/**
 * Every mount of this mount namespace, in mount order, from /proc/self/mountinfo (never by stat,
 * which could wait on a mount this process serves).
 */
export async function mountTable(): Promise<MountInfo[]> {
  const out: MountInfo[] = [];
  for (const line of (await readFile("/proc/self/mountinfo", "latin1")).split("\n")) {
    const sep = line.indexOf(" - ");
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(" ");
    const right = line.slice(sep + 3).split(" ");
    out.push({
      mountpoint: mountField(left[4] ?? ""),
      fstype: right[0] ?? "",
      source: mountField(right[1] ?? ""),
      superOptions: mountField(right[2] ?? ""),
    });
  }
  return out;
}

/** Mount points at or below `dir`. */
export async function mountsUnder(dir: string): Promise<string[]> {
  const root = resolvePathname(dir);
  return (await mountTable()).map((m) => m.mountpoint).filter((p) => p === root || p.startsWith(`${root}/`));
}

/** The mounts at `mountpoint` (innermost last). */
export async function mountsAt(mountpoint: string): Promise<MountInfo[]> {
  const mp = resolvePathname(mountpoint);
  return (await mountTable()).filter((m) => m.mountpoint === mp);
}

export type MountStatus = "alive" | "dead" | "unmounted";

/**
 * Whether something is mounted at `mountpoint`, and whether it answers: a stat(2) below the mountpoint in
 * a child process (never in this process, whose event loop may be the one serving the mount) that
 * fails with ENOTCONN ("transport endpoint is not connected": the FUSE server is gone) or does not
 * finish within `timeoutMs` means dead.
 */
export async function mountStatus(mountpoint: string, timeoutMs = 5_000): Promise<MountStatus> {
  const mounts = await mountsAt(mountpoint);
  if (mounts.length === 0) return "unmounted";
  // a name that cannot exist: its lookup always reaches the server (the mountpoint's own attributes
  // may come from the kernel's cache for a while after the server died)
  const probe = `${resolvePathname(mountpoint)}/.soci-probe-${randomBytes(6).toString("hex")}`;
  const r = await run("stat", ["-c", "%i", "--", probe], timeoutMs);
  if (r.code === 0 || r.stderr.includes("No such file or directory")) return "alive";
  return "dead";
}

/** True when a mount at `mountpoint` answers (see mountStatus). */
export async function isMountAlive(mountpoint: string, timeoutMs = 5_000): Promise<boolean> {
  return (await mountStatus(mountpoint, timeoutMs)) === "alive";
}

/**
 * Lazily detaches whatever is mounted at `mountpoint` (`fusermount -u -z`, else `umount -l`), dead or
 * alive, even when busy. Resolves when nothing is mounted there any more (no-op if nothing was).
 */
export async function unmountPath(mountpoint: string): Promise<void> {
  const mp = resolvePathname(mountpoint);
  for (let i = 0; i < 8; i++) {
    if ((await mountsAt(mp)).length === 0) return;
    let r = await run("fusermount", ["-u", "-z", "--", mp], 30_000);
    if (r.code !== 0) r = await run("umount", ["-l", "--", mp], 30_000);
    if (r.code !== 0 && (await mountsAt(mp)).length > 0)
      throw new Error(`unmount ${mp}: ${r.stderr.trim() || `exit ${r.code}`}`);
  }
  if ((await mountsAt(mp)).length > 0) throw new Error(`unmount ${mp}: still mounted`);
}
