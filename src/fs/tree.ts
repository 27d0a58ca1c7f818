// A layer's directory tree built from its ztoc TOC (docs/snapshotter.md §4.1), and the rules by which the
// FUSE layer presents it (§4.2): inode numbers, attributes, readdir/lookup with overlay whiteouts,
// opaque directories, extended attributes, the state directory and its JSON file. Pure: no I/O.
//
// Names. The TOC holds names as raw bytes; FUSE (through fuse-native) hands paths over as UTF-8 JS
// strings, and bytes that are not valid UTF-8 arrive as U+FFFD. Children are therefore keyed by the
// UTF-8 decoding of their names (invalid bytes → U+FFFD), so that every name readdir shows can be
// looked up again. Two names that differ only in invalid bytes collapse into one (the later wins,
// like a repeated name); valid UTF-8 names, whatever their characters, are exact.
import type { FileMetadata } from "../formats/toc.js";
import type { LayerState } from "./types.js";
import { GO_ZERO_TIME_UNIX, parseGoTimeText } from "../formats/go-time.js";
import { compareUtf8, goInt, goString } from "../formats/go-json.js";
import { goQuote } from "../formats/layers.js";

export const WHITEOUT_PREFIX = ".wh.";
export const OPAQUE_WHITEOUT = ".wh..wh..opq";
export const OPAQUE_XATTR_VALUE = "y";
export const STATE_DIR_NAME = ".soci-snapshotter";
export const BLOCK_SIZE = 4096;
/** Prefix of the PAX records that carry extended attributes (ztoc/tar.go). */
export const PAX_XATTR_PREFIX = "SCHILY.xattr.";

/** The xattr that marks an opaque directory for overlayfs (`user.` when the overlay uses `userxattr`). */
export type OpaqueXattr = "trusted.overlay.opaque" | "user.overlay.opaque";
export const DEFAULT_OPAQUE_XATTR: OpaqueXattr = "trusted.overlay.opaque";

// File type bits (Linux).
export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_IFBLK = 0o060000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;

/** `-r-------- root root` */
export const STAT_FILE_MODE = S_IFREG | 0o400;
/** `dr-x------ root root` */
export const STATE_DIR_MODE = S_IFDIR | 0o500;

export type NodeKind = "dir" | "reg" | "symlink" | "char" | "block" | "fifo";

const TYPE_BITS: Readonly<Record<NodeKind, number>> = {
  dir: S_IFDIR,
  reg: S_IFREG,
  symlink: S_IFLNK,
  char: S_IFCHR,
  block: S_IFBLK,
  fifo: S_IFIFO,
};

export class TreeError extends Error {
  override name = "TreeError";
}

/** A directory entry of the tree: the node it names, and whether a hardlink entry put it there. */
export interface Child {
  readonly node: TreeNode;
  readonly hardlink: boolean;
}

const EMPTY = new Uint8Array(0);
const NO_XATTRS: ReadonlyMap<string, Uint8Array> = new Map();

/** One inode of the layer (hardlinked names share one). */
export class TreeNode {
  /** TOC entry the attributes come from; null for the root (unless a `./` entry) and implicit dirs. */
  entry: FileMetadata | null = null;
  /** Permission bits plus setuid/setgid/sticky (07777). */
  perm = 0o755;
  uid = 0;
  gid = 0;
  /** Payload size (regular files); symlinks report `linkname.length` instead. */
  size = 0;
  linkname: Uint8Array = EMPTY;
  /** Unix seconds of the mtime; Go's zero time for nodes without an entry (as the reference). */
  mtimeSec = GO_ZERO_TIME_UNIX;
  mtimeNsec = 0;
  devmajor = 0;
  devminor = 0;
  nlink: number;
  /** `SCHILY.xattr.*` PAX records with the prefix stripped. */
  xattrs: ReadonlyMap<string, Uint8Array> = NO_XATTRS;
  /** Directory entries, keyed by name (also kept for a non-directory that a later entry used as a parent, like the reference; such children are unreachable). */
  children: Map<string, Child> | null = null;

  constructor(
    /** Per-layer node ID, from 1 (the root). */
    readonly id: number,
    public kind: NodeKind,
  ) {
    this.nlink = kind === "dir" ? 2 : 1;
    if (kind === "dir") this.children = new Map();
  }

  get isDir(): boolean {
    return this.kind === "dir";
  }
}

export interface LayerTree {
  root: TreeNode;
  /** Number of nodes created (IDs 1..count). */
  count: number;
}

// ---------------------------------------------------------------------------------------------------
// Construction (metadata/reader.go initNodes)

const utf8 = new TextDecoder("utf-8", { fatal: false });
const latin1 = new TextDecoder("latin1");

/** Decodes name bytes the way FUSE will show them (invalid UTF-8 → U+FFFD). */
export function presentedName(bytes: Uint8Array): string {
  return utf8.decode(bytes);
}

/**
 * `cleanEntryName`: `path.Clean("/" + name)` without the leading slash — separators collapsed, `.`
 * dropped, `..` resolved (never above the root), no trailing slash. "" names the root.
 */
export function cleanEntryName(name: Uint8Array | string): string {
  let s = typeof name === "string" ? name : utf8.decode(name);
  // the common case (`./usr/lib/x`, `usr/lib/`): nothing to resolve once the `./` and the
  // trailing slash are off
  if (s.startsWith("./")) s = s.slice(2);
  if (s.endsWith("/")) s = s.slice(0, -1);
  if (!NEEDS_CLEANING.test(s)) return s;
  const out: string[] = [];
  for (const seg of s.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") out.pop();
    else out.push(seg);
  }
  return out.join("/");
}

/** An empty, `.` or `..` segment, or a leading or trailing slash. */
const NEEDS_CLEANING = /(^|\/)\.{0,2}(\/|$)/;

/** `path.Split` dir part without its trailing slash ("" for a top-level name). */
function parentDir(clean: string): string {
  const i = clean.lastIndexOf("/");
  return i < 0 ? "" : clean.slice(0, i);
}

/** `path.Base` of a cleaned name ("." for ""). */
function baseName(clean: string): string {
  if (clean === "") return ".";
  const i = clean.lastIndexOf("/");
  return i < 0 ? clean : clean.slice(i + 1);
}

function xattrsOf(entry: FileMetadata): ReadonlyMap<string, Uint8Array> {
  let m: Map<string, Uint8Array> | undefined;
  for (const r of entry.xattrs) {
    const key = latin1.decode(r.key);
    if (!key.startsWith(PAX_XATTR_PREFIX)) continue;
    m ??= new Map();
    m.set(utf8.decode(r.key.subarray(PAX_XATTR_PREFIX.length)), r.value);
  }
  return m ?? NO_XATTRS;
}

/** `attrFromZtocEntry` (ztoc.go FileMode: permissions + setuid/setgid/sticky from the tar mode, type from `type`). */
function setAttrs(node: TreeNode, entry: FileMetadata): void {
  node.entry = entry;
  node.perm = entry.mode & 0o7777;
  node.uid = entry.uid;
  node.gid = entry.gid;
  node.size = entry.uncompressedSize;
  node.linkname = entry.linkname;
  const t = parseGoTimeText(entry.modTime);
  node.mtimeSec = t ? t.sec : GO_ZERO_TIME_UNIX;
  node.mtimeNsec = t ? t.nsec : 0;
  node.devmajor = entry.devmajor;
  node.devminor = entry.devminor;
  node.xattrs = xattrsOf(entry);
}

function kindOf(entry: FileMetadata): NodeKind {
  switch (entry.type) {
    case "dir":
    case "reg":
    case "symlink":
    case "char":
    case "block":
    case "fifo":
      return entry.type;
    default:
      // the TOC only knows these types; anything else is shown as a regular file, like the reference
      return "reg";
  }
}

/**
 * Builds the node tree from the TOC entries in order (§4.1):
 * - IDs from 1 (root, dir 0755); a new node takes the next ID *before* its missing parents do;
 * - missing parents are created as dirs 0755;
 * - a `dir` entry whose name already exists (implicit, repeated, or any earlier node of that name) is
 *   overwritten in place, keeping its ID;
 * - a `hardlink` entry adds a name for the node its (cleaned) linkname names — which must already
 *   exist — and increments that node's link count;
 * - later entries with the same name replace the name's mapping;
 * - a `./` (root) entry sets the root's attributes; the reference also registers the root as its own
 *   child named `.`, which is never reachable and is not kept here.
 * Link counts: non-directories 1 + hardlink names; directories 2 + subdirectories, counted once per
 * name (the reference bumps the parent again for a repeated or late explicit dir entry; a real
 * filesystem, and `find`'s leaf optimisation, expect the exact count).
 */
export function buildTree(toc: readonly FileMetadata[]): LayerTree {
  let nextId = 1;
  const newNode = (kind: NodeKind): TreeNode => {
    if (nextId >= 0xffffffff) throw new TreeError("sequence id too large");
    return new TreeNode(nextId++, kind);
  };
  const root = newNode("dir");
  const dirs: TreeNode[] = [root];

  // getIDByName: walks the children maps from the root (any node's, as the reference's metadata map).
  const byName = (clean: string): TreeNode | string => {
    if (clean === "") return root;
    let n = root;
    for (const seg of clean.split("/")) {
      const c = n.children?.get(seg);
      if (!c)
        return n.children
          ? `not found child ${goQuote(seg)} in ${n.id}`
          : `not found children of ${goQuote(String(n.id))}`;
      n = c.node;
    }
    return n;
  };

  // tar lists a directory's entries together: the last parent looked up is remembered (and
  // forgotten whenever a name is mapped anew, though only an entry of the parent's own name, whose
  // lookup comes first, could change what it resolves to)
  let lastDirName: string | undefined;
  let lastDir: TreeNode | undefined;

  const setChild = (parent: TreeNode, base: string, node: TreeNode, hardlink: boolean): void => {
    if (base === ".") return; // the `./` quirk (see above)
    parent.children ??= new Map();
    if (parent.children.has(base)) lastDir = undefined;
    parent.children.set(base, { node, hardlink });
  };

  const getOrCreateDir = (d: string): TreeNode => {
    const found = byName(d);
    if (typeof found !== "string") return found;
    const dir = newNode("dir");
    dirs.push(dir);
    if (d !== "") setChild(getOrCreateDir(parentDir(d)), baseName(d), dir, false);
    return dir;
  };

  for (const entry of toc) {
    const name = cleanEntryName(entry.name);
    let node: TreeNode;
    const isLink = entry.type === "hardlink";
    if (isLink) {
      const target = byName(cleanEntryName(entry.linkname));
      if (typeof target === "string") {
        throw new TreeError(
          `${goQuote(utf8.decode(entry.name))} is a hardlink but cannot get link destination ${goQuote(utf8.decode(entry.linkname))}: ${target}`,
        );
      }
      node = target;
      node.nlink++;
    } else {
      const kind = kindOf(entry);
      const existing = kind === "dir" ? byName(name) : undefined;
      if (existing !== undefined && typeof existing !== "string") {
        node = existing;
        if (node.kind !== "dir") {
          node.kind = "dir";
          node.children ??= new Map();
          dirs.push(node);
        }
      } else {
        node = newNode(kind);
        if (kind === "dir") dirs.push(node);
      }
      setAttrs(node, entry);
    }
    if (name === "") continue; // root: parent is itself (quirk child `.` not kept)
    const dirName = parentDir(name);
    let parent = lastDir !== undefined && lastDirName === dirName ? lastDir : undefined;
    if (!parent) {
      parent = getOrCreateDir(dirName);
      lastDirName = dirName;
      lastDir = parent;
    }
    setChild(parent, baseName(name), node, isLink);
  }

  for (const d of dirs) {
    if (d.kind !== "dir") continue;
    let sub = 0;
    for (const c of d.children!.values()) if (!c.hardlink && c.node.kind === "dir" && c.node !== d) sub++;
    d.nlink = 2 + sub;
  }
  return { root, count: nextId - 1 };
}

// ---------------------------------------------------------------------------------------------------
// Inodes and attributes (fs/layer/node.go)

/** Reserved low inode numbers: 0 go-fuse, 1 the state dir, 2 the stat file. */
export const STATE_DIR_INO_LOW = 1;
export const STAT_FILE_INO_LOW = 2;

/** `(baseInode << 32) | low` as a JS number (exact while baseInode < 2^21). */
function withBase(low: number, baseInode: number): number {
  return baseInode * 0x1_0000_0000 + low;
}

/** `inodeOfID`: `(baseInode << 32) | (id + 3)`; root (id 1) ⇒ 4. */
export function inodeOf(id: number, baseInode = 0): number {
  if (id > 0xffffffff - 3) throw new TreeError("too many inodes");
  return withBase(id + 3, baseInode);
}

/**
 * `unix.Mkdev(major, minor)` truncated to 32 bits, as go-fuse sends `rdev` (and as the kernel's
 * `new_decode_dev` reads it back): minor low byte | major << 8 (12 bits) | minor bits 8..19 << 20.
 */
export function makedev(major: number, minor: number): number {
  return (((major & 0xfff) << 8) | (minor & 0xff) | ((minor & 0xfff00) << 12)) >>> 0;
}

/** `fileModeToSystemMode`: type bits + permission bits + setuid/setgid/sticky. */
export function systemMode(node: TreeNode): number {
  return TYPE_BITS[node.kind] | (node.perm & 0o7777);
}

export interface Attr {
  ino: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  size: number;
  /** 512-byte blocks. */
  blocks: number;
  blksize: number;
  /** mtime: Unix seconds (may be negative) and nanoseconds. atime and ctime are 0, as the reference. */
  mtimeSec: number;
  mtimeNsec: number;
}

/** Size as presented: payload size, or the link target's length for a symlink. */
export function presentedSize(node: TreeNode): number {
  return node.kind === "symlink" ? node.linkname.length : node.size;
}

/** blocks = ceil(size / 4096) · 8 (512-byte units). */
export function blocksOf(size: number): number {
  return Math.ceil(size / BLOCK_SIZE) * (BLOCK_SIZE / 512);
}

/** `entryToAttr`. */
export function nodeAttr(node: TreeNode, baseInode = 0): Attr {
  const size = presentedSize(node);
  return {
    ino: inodeOf(node.id, baseInode),
    mode: systemMode(node),
    nlink: node.nlink || 1,
    uid: node.uid,
    gid: node.gid,
    rdev: makedev(node.devmajor, node.devminor),
    size,
    blocks: blocksOf(size),
    blksize: BLOCK_SIZE,
    mtimeSec: node.mtimeSec,
    mtimeNsec: node.mtimeNsec,
  };
}

/** The synthetic nodes below: root-owned, one link, no device. */
function syntheticAttr(ino: number, mode: number, size: number, mtimeSec: number, mtimeNsec: number, blocks = 0): Attr {
  return { ino, mode, nlink: 1, uid: 0, gid: 0, rdev: 0, size, blocks, blksize: BLOCK_SIZE, mtimeSec, mtimeNsec };
}

/** `entryToWhAttr`: a whiteout `X` presented from the node of `.wh.X` — char 0:0, perm 0, root, mtime of the `.wh.` entry. */
export function whiteoutAttr(wh: TreeNode, baseInode = 0): Attr {
  return syntheticAttr(inodeOf(wh.id, baseInode), S_IFCHR, 0, wh.mtimeSec, wh.mtimeNsec);
}

/** `stateToAttr`: `dr-x------ root root`, nlink 1, times 0. */
export function stateDirAttr(baseInode = 0): Attr {
  return syntheticAttr(withBase(STATE_DIR_INO_LOW, baseInode), STATE_DIR_MODE, 0, 0, 0);
}

/** `statFileToAttr`: `-r-------- root root`, nlink 1, times 0, size = length of the JSON. */
export function statFileAttr(size: number, baseInode = 0): Attr {
  return syntheticAttr(withBase(STAT_FILE_INO_LOW, baseInode), STAT_FILE_MODE, size, 0, 0, blocksOf(size));
}

// ---------------------------------------------------------------------------------------------------
// readdir and lookup

export interface DirEntry {
  name: string;
  ino: number;
  /** Mode as the directory entry reports it (whiteouts: S_IFCHR). */
  mode: number;
}

/**
 * `node.readdir`: the children sorted by name (bytewise); names starting `.wh.` hidden;
 * `.wh..wh..opq` hidden; `.wh.X` gives a char-device entry `X` unless a real `X` exists. The state
 * directory is not listed. No `.`/`..` (the FUSE layer adds them).
 */
export function readDir(dir: TreeNode, baseInode = 0): DirEntry[] {
  const ents: DirEntry[] = [];
  const whiteouts: [string, TreeNode][] = [];
  const children = dir.children;
  if (children) {
    for (const [name, c] of children) {
      if (name.startsWith(WHITEOUT_PREFIX)) {
        if (name !== OPAQUE_WHITEOUT) whiteouts.push([name.slice(WHITEOUT_PREFIX.length), c.node]);
        continue;
      }
      ents.push({ name, ino: inodeOf(c.node.id, baseInode), mode: systemMode(c.node) });
    }
    for (const [name, node] of whiteouts) {
      if (name === "" || children.has(name)) continue;
      ents.push({ name, ino: inodeOf(node.id, baseInode), mode: S_IFCHR });
    }
  }
  ents.sort((a, b) => compareUtf8(a.name, b.name));
  return ents;
}

export type Resolved =
  | { kind: "node"; node: TreeNode }
  /** A whiteout `X` presented from `node`, the node of `.wh.X`. */
  | { kind: "whiteout"; node: TreeNode }
  | { kind: "state-dir" }
  | { kind: "stat-file" };

/**
 * `node.Lookup` of `name` in directory `dir`: `.wh.*` ⇒ not found; `.soci-snapshotter` at the root ⇒
 * the state dir; a real child; else a whiteout if `.wh.<name>` exists; else not found (null).
 */
export function lookupChild(dir: TreeNode, name: string, isRoot: boolean): Resolved | null {
  if (name.startsWith(WHITEOUT_PREFIX)) return null;
  if (isRoot && name === STATE_DIR_NAME) return { kind: "state-dir" };
  const children = dir.children;
  if (!children) return null;
  const c = children.get(name);
  if (c) return { kind: "node", node: c.node };
  const wh = children.get(WHITEOUT_PREFIX + name);
  if (wh) return { kind: "whiteout", node: wh.node };
  return null;
}

/**
 * Resolves an absolute FUSE path ("/", "/a/b") by successive lookups. Only directories can be
 * descended (the kernel never asks for more); the state dir holds exactly `statFileName`.
 */
export function resolvePath(tree: LayerTree, path: string, statFileName: string): Resolved | null {
  let cur: Resolved = { kind: "node", node: tree.root };
  if (path === "/" || path === "") return cur;
  let start = path.charCodeAt(0) === 0x2f ? 1 : 0;
  while (start <= path.length) {
    let end = path.indexOf("/", start);
    if (end < 0) end = path.length;
    const name = path.slice(start, end);
    start = end + 1;
    if (name === "") continue;
    if (cur.kind === "node") {
      if (!cur.node.isDir) return null;
      const next = lookupChild(cur.node, name, cur.node === tree.root);
      if (!next) return null;
      cur = next;
    } else if (cur.kind === "state-dir") {
      if (name !== statFileName) return null;
      cur = { kind: "stat-file" };
    } else {
      return null;
    }
  }
  return cur;
}

// ---------------------------------------------------------------------------------------------------
// Extended attributes

/** A directory holding `.wh..wh..opq`. */
export function isOpaqueDir(node: TreeNode): boolean {
  return node.kind === "dir" && node.children !== null && node.children.has(OPAQUE_WHITEOUT);
}

/** listxattr: the opaque marker first (opaque dirs), then the node's xattrs sorted by name. */
export function listXattrs(node: TreeNode, opaque: OpaqueXattr = DEFAULT_OPAQUE_XATTR): string[] {
  const names: string[] = [];
  if (isOpaqueDir(node)) names.push(opaque);
  if (node.xattrs.size > 0) {
    const keys = [...node.xattrs.keys()].sort(compareUtf8);
    for (const k of keys) if (!(k === opaque && names.length > 0 && names[0] === opaque)) names.push(k);
  }
  return names;
}

const OPAQUE_VALUE_BYTES = new Uint8Array([0x79]); // "y"

/** getxattr: the opaque marker wins on an opaque dir; else the node's xattr; undefined ⇒ ENODATA. */
export function getXattr(
  node: TreeNode,
  name: string,
  opaque: OpaqueXattr = DEFAULT_OPAQUE_XATTR,
): Uint8Array | undefined {
  if (name === opaque && isOpaqueDir(node)) return OPAQUE_VALUE_BYTES;
  return node.xattrs.get(name);
}

// ---------------------------------------------------------------------------------------------------
// State file

/**
 * The state file's bytes as the reference writes them: `json.Marshal` of
 * `{error?, digest, size, fetchedSize, fetchedPercent}` plus "\n". `fetchedPercent` is
 * `fetchedSize / size · 100` formatted as Go's encoder does (shortest round-trip digits, exponent
 * form below 1e-6 and from 1e21, which JS's Number#toString matches); a zero-size layer gives NaN,
 * which Go refuses to marshal — that throws here too (the FUSE layer answers EIO, as the reference).
 */
export function stateJson(state: LayerState): string {
  const pct = (state.fetchedSize / state.size) * 100;
  if (!Number.isFinite(pct)) throw new TreeError(`json: unsupported value: ${pct}`);
  let out = "{";
  if (state.error) out += `"error":${goString(state.error)},`;
  out += `"digest":${goString(state.digest)},"size":${goInt(state.size)},"fetchedSize":${goInt(state.fetchedSize)},`;
  out += `"fetchedPercent":${Object.is(pct, -0) ? "-0" : String(pct)}}\n`;
  return out;
}
