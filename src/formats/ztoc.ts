// The ztoc: a FlatBuffer holding a layer's table of contents and its zinfo (docs/formats.md §1).
//
// Writing follows the reference's builder call sequence exactly (§1.5) so the bytes — and hence the ztoc
// digest — are identical. Reading (§1.6) emulates the Go generated accessors (uint32 offset arithmetic,
// absent fields ⇒ defaults, absent TOC / CompressionInfo tables ⇒ failure) but bounds-checks every read
// and turns any failure into a ZtocError instead of crashing.
import { InvalidArgumentError } from "../errors/errors.js";
import * as flatbuffers from "flatbuffers";
import { goString } from "./go-json.js";
import type { EntryType, FileMetadata, PaxRecord } from "./toc.js";
import { canonicalGoTimeText } from "./go-time.js";

export interface Ztoc {
  /** "0.9" (copied without validation on read). */
  version: string;
  buildToolIdentifier: string;
  compressedArchiveSize: number;
  uncompressedArchiveSize: number;
  /** Tar order when built; sorted by uncompressedOffset when read. */
  toc: FileMetadata[];
  /**
   * "gzip" | "uncompressed" | "" ("" ⇒ the field is not written, readers then see "gzip").
   * On read: missing ⇒ "gzip"; enum names lowercased; unknown value n ⇒ `compressionalgorithm(n)`.
   */
  compressionAlgorithm: string;
  maxSpanId: number;
  /** "sha256:<hex>" per span, span 0 first. */
  spanDigests: string[];
  /** The zinfo blob (gzip checkpoint blob or TarZinfo flatbuffer), opaque here. */
  checkpoints: Uint8Array;
}

export const ZTOC_VERSION = "0.9";
/** Shared by every absent or empty byte field of a decoded ztoc (never written to). */
const EMPTY_BYTES = new Uint8Array(0);
export const BUILD_TOOL_IDENTIFIER = "AWS SOCI CLI v0.2";
/** Message of the reference's ErrInvalidTOCEntry. */
export const INVALID_TOC_ENTRY = "invalid toc entry";

export class ZtocError extends InvalidArgumentError {
  override name = "ZtocError";
}

/** Round an offset up to a multiple of 512 (ztoc/tar.go `AlignToTarBlock`; negative values are left alone). */
export function alignToTarBlock(o: number): number {
  const r = o % 512;
  return r > 0 ? o + 512 - r : o;
}

// ---------------------------------------------------------------------------------------------------
// Serialization

const textEncoder = new TextEncoder();

/** Enum values of `CompressionAlgorithm` (ztoc.fbs:28) by lowercased name. */
const ALGORITHM_VALUES: ReadonlyMap<string, number> = new Map([
  ["gzip", 1],
  ["uncompressed", 2],
]);
const ALGORITHM_NAMES: ReadonlyMap<number, string> = new Map([
  [1, "gzip"],
  [2, "uncompressed"],
]);

function int64(v: number, what: string): bigint {
  if (!Number.isInteger(v)) throw new ZtocError(`cannot marshal ztoc: ${what} is not an integer: ${v}`);
  return BigInt.asIntN(64, BigInt(v));
}

function int32(v: number, what: string): number {
  if (!Number.isInteger(v)) throw new ZtocError(`cannot marshal ztoc: ${what} is not an integer: ${v}`);
  return v | 0; // Go int32(x): two's-complement truncation
}

function uint32(v: number, what: string): number {
  if (!Number.isInteger(v)) throw new ZtocError(`cannot marshal ztoc: ${what} is not an integer: ${v}`);
  return v >>> 0; // Go uint32(x)
}

/** Bytewise comparison (Go string order). */
function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return a[i]! - b[i]!;
  }
  return a.length - b.length;
}

/**
 * The PAX map as the reference's `prepareXattrsOffset` sees it: a Go map (a later duplicate key replaces
 * an earlier one), keys sorted bytewise.
 */
function sortedPax(records: readonly PaxRecord[]): PaxRecord[] {
  const byKey = new Map<string, PaxRecord>();
  for (const r of records) byKey.set(latin1(r.key), r);
  return [...byKey.values()].sort((a, b) => compareBytes(a.key, b.key));
}

function latin1(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i += 8192) s += String.fromCharCode(...b.subarray(i, i + 8192));
  return s;
}

/** The builder's internals that addFieldInt64 uses (the runtime's own path takes a bigint). */
interface BuilderInternals {
  bb: flatbuffers.ByteBuffer;
  space: number;
}

/**
 * `b.addFieldInt64(voffset, int64(v), 0n)` for a number: the same bytes (prep, two little-endian
 * words, slot) without the BigInt conversions, which cost more than the rest of an entry.
 */
function addFieldInt64(b: flatbuffers.Builder, voffset: number, v: number, what: string): void {
  if (!Number.isSafeInteger(v)) {
    b.addFieldInt64(voffset, int64(v, what), 0n);
    return;
  }
  if (v === 0) return; // the default (defaults are not forced)
  b.prep(8, 0);
  const w = b as unknown as BuilderInternals;
  w.space -= 8;
  w.bb.writeInt32(w.space, (v >>> 0) | 0);
  w.bb.writeInt32(w.space + 4, Math.floor(v / 0x100000000) | 0);
  b.slot(voffset);
}

const typeBytes = new Map<string, Uint8Array>();
let lastModTime = "";
let lastModTimeBytes = new Uint8Array(0);

function fileMetadataToFlatbuffer(b: flatbuffers.Builder, e: FileMetadata): number {
  const name = b.createString(e.name);
  let tb = typeBytes.get(e.type);
  if (tb === undefined) {
    tb = textEncoder.encode(e.type);
    typeBytes.set(e.type, tb);
  }
  const type = b.createString(tb);
  const linkname = b.createString(e.linkname);
  const uname = b.createString(e.uname);
  const gname = b.createString(e.gname);
  if (e.modTime !== lastModTime) {
    lastModTime = e.modTime;
    lastModTimeBytes = textEncoder.encode(e.modTime);
  }
  const modTime = b.createString(lastModTimeBytes);

  const xattrOffsets: number[] = [];
  for (const r of sortedPax(e.xattrs)) {
    const k = b.createString(r.key);
    const v = b.createString(r.value);
    b.startObject(2);
    b.addFieldOffset(0, k, 0);
    b.addFieldOffset(1, v, 0);
    xattrOffsets.push(b.endObject());
  }
  const xattrs = offsetVector(b, xattrOffsets);

  b.startObject(14);
  b.addFieldOffset(0, name, 0);
  b.addFieldOffset(1, type, 0);
  addFieldInt64(b, 2, e.uncompressedOffset, "uncompressed offset");
  addFieldInt64(b, 3, e.uncompressedSize, "uncompressed size");
  b.addFieldOffset(4, linkname, 0);
  addFieldInt64(b, 5, e.mode, "mode");
  b.addFieldInt32(6, uint32(e.uid, "uid"), 0);
  b.addFieldInt32(7, uint32(e.gid, "gid"), 0);
  b.addFieldOffset(8, uname, 0);
  b.addFieldOffset(9, gname, 0);
  b.addFieldOffset(10, modTime, 0);
  addFieldInt64(b, 11, e.devmajor, "devmajor");
  addFieldInt64(b, 12, e.devminor, "devminor");
  b.addFieldOffset(13, xattrs, 0);
  return b.endObject();
}

/** A vector of table/string offsets, prepended last to first as the Go builder does. */
function offsetVector(b: flatbuffers.Builder, offsets: readonly number[]): number {
  b.startVector(4, offsets.length, 4);
  for (let i = offsets.length - 1; i >= 0; i--) b.addOffset(offsets[i]!);
  return b.endVector();
}

/** Serialize a ztoc byte-identically to the reference (`ztocToFlatbuffer`, ztoc_marshaler.go:164-294). */
export function encodeZtoc(z: Ztoc): Uint8Array {
  let algorithm: number | undefined;
  if (z.compressionAlgorithm !== "") {
    algorithm = ALGORITHM_VALUES.get(z.compressionAlgorithm);
    if (algorithm === undefined) {
      throw new ZtocError(`compression algorithm not defined in flatbuf: ${z.compressionAlgorithm}`);
    }
  }
  // sized for the whole ztoc up front (growing copies the buffer each time it doubles)
  let estimate = 1024 + z.checkpoints.length + z.spanDigests.length * 80;
  for (const e of z.toc) estimate += 160 + e.name.length + e.linkname.length + e.uname.length + e.gname.length;
  const b = new flatbuffers.Builder(estimate);
  const version = b.createString(textEncoder.encode(z.version));
  const tool = b.createString(textEncoder.encode(z.buildToolIdentifier));

  // TOC: entries serialized last to first
  const md: number[] = new Array<number>(z.toc.length);
  for (let i = z.toc.length - 1; i >= 0; i--) md[i] = fileMetadataToFlatbuffer(b, z.toc[i]!);
  const mdVec = offsetVector(b, md);
  b.startObject(1);
  b.addFieldOffset(0, mdVec, 0);
  const toc = b.endObject();

  // CompressionInfo
  const checkpoints = b.createByteVector(z.checkpoints);
  const digests = z.spanDigests.map((d) => b.createString(textEncoder.encode(d)));
  const digestVec = offsetVector(b, digests);
  b.startObject(4);
  b.addFieldInt32(1, int32(z.maxSpanId, "max span id"), 0);
  b.addFieldOffset(2, digestVec, 0);
  b.addFieldOffset(3, checkpoints, 0);
  if (algorithm !== undefined) b.addFieldInt8(0, algorithm, 1);
  const ci = b.endObject();

  // Ztoc
  b.startObject(6);
  b.addFieldOffset(0, version, 0);
  b.addFieldOffset(1, tool, 0);
  b.addFieldOffset(4, toc, 0);
  b.addFieldInt64(2, int64(z.compressedArchiveSize, "compressed archive size"), 0n);
  b.addFieldInt64(3, int64(z.uncompressedArchiveSize, "uncompressed archive size"), 0n);
  b.addFieldOffset(5, ci, 0);
  b.finish(b.endObject());
  return b.asUint8Array().slice();
}

// ---------------------------------------------------------------------------------------------------
// Deserialization

/** Thrown inside the reader; converted to "cannot unmarshal ztoc: ..." (the reference's recovered panic). */
class ReadFault extends InvalidArgumentError {
  override name = "ReadFault";
}

/**
 * Bounds-checked emulation of the Go flatbuffers runtime over one buffer. Offsets are uint32 with Go's
 * wrap-around arithmetic; any read outside the buffer is a fault (where Go would panic).
 */
class FbReader {
  private readonly dv: DataView;
  /** Work budget against aliasing bombs (many vector slots pointing at the same large table/string). */
  private budget: number;

  /** With `views`, byte fields are views of `buf` (the caller hands it over) instead of copies. */
  constructor(
    readonly buf: Uint8Array,
    private readonly views = false,
  ) {
    this.dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.budget = 8 * buf.length + (1 << 20);
  }

  charge(units: number): void {
    this.budget -= units;
    if (this.budget < 0) throw new ReadFault("too many aliased elements");
  }

  private check(off: number, size: number): void {
    if (off + size > this.buf.length) {
      throw new ReadFault(`index out of range [${off + size - 1}] with length ${this.buf.length}`);
    }
  }

  u16(off: number): number {
    this.check(off, 2);
    return this.dv.getUint16(off, true);
  }
  i8(off: number): number {
    this.check(off, 1);
    return this.dv.getInt8(off);
  }
  i32(off: number): number {
    this.check(off, 4);
    return this.dv.getInt32(off, true);
  }
  u32(off: number): number {
    this.check(off, 4);
    return this.dv.getUint32(off, true);
  }
  i64(off: number): number {
    this.check(off, 8);
    return Number(this.dv.getBigInt64(off, true));
  }

  /** Table.Offset: the field's offset from the table start, 0 if absent. */
  field(tablePos: number, slot: number): number {
    const vtable = (tablePos - this.i32(tablePos)) >>> 0;
    const vo = 4 + 2 * slot;
    if (vo < this.u16(vtable)) return this.u16((vtable + vo) >>> 0);
    return 0;
  }

  /** Table.Indirect. */
  indirect(off: number): number {
    return (off + this.u32(off)) >>> 0;
  }

  /**
   * Table.ByteVector(off): the string/[ubyte] the uoffset at `off` points to: a copy, or a view of
   * the buffer (tens of thousands of small copies cost more to allocate and collect than the rest
   * of the decode).
   */
  byteVector(off: number): Uint8Array {
    const at = (off + this.u32(off)) >>> 0;
    const start = (at + 4) >>> 0;
    const len = this.u32(at);
    const end = (start + len) >>> 0;
    if (start > end || end > this.buf.length) {
      throw new ReadFault(`slice bounds out of range [${start}:${end}] with capacity ${this.buf.length}`);
    }
    this.charge(len + 1);
    return this.views ? new Uint8Array(this.buf.buffer, this.buf.byteOffset + start, len) : this.buf.slice(start, end);
  }

  /** Table.Vector(o) for table at tablePos and field offset o: position of element 0. */
  vector(tablePos: number, o: number): number {
    const off = (o + tablePos) >>> 0;
    return (((off + this.u32(off)) >>> 0) + 4) >>> 0;
  }

  /** Table.VectorLen(o). Fails (as Go eventually would) when the elements cannot all lie in the buffer. */
  vectorLen(tablePos: number, o: number, elemSize: number): number {
    let off = (o + tablePos) >>> 0;
    off = (off + this.u32(off)) >>> 0;
    const n = this.u32(off);
    if (n > 0 && off + 4 + n * elemSize > this.buf.length) {
      throw new ReadFault(`vector of ${n} elements at ${off} exceeds the buffer (length ${this.buf.length})`);
    }
    return n;
  }

  /** Table string/byte field: empty when absent (one shared empty array: most entries have no link, user or group name). */
  bytesField(tablePos: number, slot: number): Uint8Array {
    const o = this.field(tablePos, slot);
    if (!o) return EMPTY_BYTES;
    const v = this.byteVector((o + tablePos) >>> 0);
    return v.length === 0 ? EMPTY_BYTES : v;
  }

  int64Field(tablePos: number, slot: number, def = 0): number {
    const o = this.field(tablePos, slot);
    return o ? this.i64((o + tablePos) >>> 0) : def;
  }

  /** Sub-table field: its position, or null when absent. */
  tableField(tablePos: number, slot: number): number | null {
    const o = this.field(tablePos, slot);
    return o ? this.indirect((o + tablePos) >>> 0) : null;
  }

  /** Positions of the tables of a [table] field. */
  tableVector(tablePos: number, slot: number): number[] {
    const o = this.field(tablePos, slot);
    if (!o) return [];
    const n = this.vectorLen(tablePos, o, 4);
    this.charge(4 * n);
    const base = this.vector(tablePos, o);
    const out = new Array<number>(n);
    for (let j = 0; j < n; j++) out[j] = this.indirect((base + j * 4) >>> 0);
    return out;
  }
}

const utf8 = new TextDecoder("utf-8");

/**
 * Values many entries of a ztoc repeat (owner names, PAX keys), shared by the entries of one decode:
 * a layer server keeps every entry of its layers, and one small view per field per entry (each
 * also keeping the whole ztoc buffer reachable) is most of what an entry costs. (Modification
 * times are shared by canonicalGoTimeText, which remembers each distinct text.)
 */
class Interned {
  private readonly names = new Map<string, Uint8Array>();

  /** A copy of short `bytes` shared with equal ones. */
  bytes(b: Uint8Array): Uint8Array {
    if (b.length === 0 || b.length > 64) return b;
    const key = latin1(b);
    let v = this.names.get(key);
    if (!v) {
      v = new Uint8Array(b);
      this.names.set(key, v);
    }
    return v;
  }
}

/** Shared by the entries without PAX headers (never modified). */
const NO_XATTRS = Object.freeze([]) as unknown as PaxRecord[];

function readPaxHeaders(r: FbReader, pos: number, intern: Interned): PaxRecord[] {
  const byKey = new Map<string, PaxRecord>();
  for (const x of r.tableVector(pos, 13)) {
    const key = r.bytesField(x, 0);
    const value = r.bytesField(x, 1);
    byKey.set(latin1(key), { key: intern.bytes(key), value });
  }
  return [...byKey.values()].sort((a, b) => compareBytes(a.key, b.key));
}

function readFileMetadata(r: FbReader, pos: number, intern: Interned): FileMetadata {
  const name = r.bytesField(pos, 0);
  const type = utf8.decode(r.bytesField(pos, 1)) as EntryType;
  const uncompressedOffset = r.int64Field(pos, 2);
  const uncompressedSize = r.int64Field(pos, 3);
  const linkname = r.bytesField(pos, 4);
  const mode = r.int64Field(pos, 5);
  const uidO = r.field(pos, 6);
  const uid = uidO ? r.u32((uidO + pos) >>> 0) : 0;
  const gidO = r.field(pos, 7);
  const gid = gidO ? r.u32((gidO + pos) >>> 0) : 0;
  const uname = intern.bytes(r.bytesField(pos, 8));
  const gname = intern.bytes(r.bytesField(pos, 9));
  // time.UnmarshalText with the error ignored: unparsable ⇒ zero time
  const modTime = canonicalGoTimeText(r.bytesField(pos, 10));
  const devmajor = r.int64Field(pos, 11);
  const devminor = r.int64Field(pos, 12);
  // PAXHeaders map: a later duplicate key replaces an earlier one (most entries have none)
  const xattrs = r.field(pos, 13) ? readPaxHeaders(r, pos, intern) : NO_XATTRS;
  return {
    name,
    type,
    uncompressedOffset,
    uncompressedSize,
    linkname,
    mode,
    uid,
    gid,
    uname,
    gname,
    modTime,
    devmajor,
    devminor,
    xattrs,
    tarHeaderOffset: 0,
  };
}

/**
 * Parse a ztoc (`flatbufToZtoc`, ztoc_marshaler.go:56-162). Entries come back sorted by uncompressed
 * offset with tarHeaderOffset recomputed; overlapping entries ⇒ ZtocError("invalid toc entry"); anything
 * unreadable ⇒ ZtocError("cannot unmarshal ztoc: ..."). With `owned` (the caller never touches
 * `bytes` again), names and other byte fields are views of `bytes`, which they keep alive.
 */
export function decodeZtoc(bytes: Uint8Array, opts: { owned?: boolean } = {}): Ztoc {
  let r: FbReader;
  let result: Ztoc;
  try {
    r = new FbReader(bytes, opts.owned);
    const root = r.u32(0);
    const version = utf8.decode(r.bytesField(root, 0));
    const buildToolIdentifier = utf8.decode(r.bytesField(root, 1));
    const compressedArchiveSize = r.int64Field(root, 2);
    const uncompressedArchiveSize = r.int64Field(root, 3);

    const tocPos = r.tableField(root, 4);
    if (tocPos === null) throw new ReadFault("invalid memory address or nil pointer dereference (no toc)");
    const intern = new Interned();
    const toc = r.tableVector(tocPos, 0).map((p) => readFileMetadata(r, p, intern));
    sortByOffset(toc);
    let nextTarHeader = 0;
    for (const e of toc) {
      if (nextTarHeader > e.uncompressedOffset) throw new ZtocError(INVALID_TOC_ENTRY);
      e.tarHeaderOffset = nextTarHeader;
      nextTarHeader = alignToTarBlock(e.uncompressedOffset + e.uncompressedSize);
    }

    const ci = r.tableField(root, 5);
    if (ci === null) throw new ReadFault("invalid memory address or nil pointer dereference (no compression info)");
    const msO = r.field(ci, 1);
    const maxSpanId = msO ? r.i32((msO + ci) >>> 0) : 0;
    const spanDigests: string[] = [];
    const sdO = r.field(ci, 2);
    if (sdO) {
      const n = r.vectorLen(ci, sdO, 4);
      r.charge(4 * n);
      const base = r.vector(ci, sdO);
      // digest.Parse errors are ignored and the string is kept as-is
      for (let j = 0; j < n; j++) spanDigests.push(utf8.decode(r.byteVector((base + j * 4) >>> 0)));
    }
    const checkpoints = r.bytesField(ci, 3);
    const caO = r.field(ci, 0);
    const ca = caO ? r.i8((caO + ci) >>> 0) : 1;
    const compressionAlgorithm = ALGORITHM_NAMES.get(ca) ?? `compressionalgorithm(${ca})`;

    result = {
      version,
      buildToolIdentifier,
      compressedArchiveSize,
      uncompressedArchiveSize,
      toc,
      compressionAlgorithm,
      maxSpanId,
      spanDigests,
      checkpoints,
    };
  } catch (err) {
    if (err instanceof ZtocError) throw err;
    const msg = err instanceof Error ? err.message : String(err);
    throw new ZtocError(`cannot unmarshal ztoc: ${msg}`);
  }
  return result;
}

// ---------------------------------------------------------------------------------------------------
// Go `sort.Slice` (pdqsort_func, Go ≥ 1.22) — not stable; reproduced so entries with equal offsets end up
// in the same order as in the reference.

function sortByOffset(a: FileMetadata[]): void {
  const n = a.length;
  if (n <= 1) return;
  const less = (i: number, j: number) => a[i]!.uncompressedOffset < a[j]!.uncompressedOffset;
  const swap = (i: number, j: number) => {
    const t = a[i]!;
    a[i] = a[j]!;
    a[j] = t;
  };
  pdqsort(less, swap, 0, n, bitsLen(n));
}

type Less = (i: number, j: number) => boolean;
type Swap = (i: number, j: number) => void;

const UNKNOWN_HINT = 0;
const INCREASING_HINT = 1;
const DECREASING_HINT = 2;

function bitsLen(x: number): number {
  return x <= 0 ? 0 : 32 - Math.clz32(x);
}

function insertionSort(less: Less, swap: Swap, a: number, b: number): void {
  for (let i = a + 1; i < b; i++) {
    for (let j = i; j > a && less(j, j - 1); j--) swap(j, j - 1);
  }
}

function siftDown(less: Less, swap: Swap, lo: number, hi: number, first: number): void {
  let root = lo;
  for (;;) {
    let child = 2 * root + 1;
    if (child >= hi) return;
    if (child + 1 < hi && less(first + child, first + child + 1)) child++;
    if (!less(first + root, first + child)) return;
    swap(first + root, first + child);
    root = child;
  }
}

function heapSort(less: Less, swap: Swap, a: number, b: number): void {
  const first = a;
  const lo = 0;
  const hi = b - a;
  for (let i = Math.trunc((hi - 1) / 2); i >= 0; i--) siftDown(less, swap, i, hi, first);
  for (let i = hi - 1; i >= 0; i--) {
    swap(first, first + i);
    siftDown(less, swap, lo, i, first);
  }
}

function pdqsort(less: Less, swap: Swap, a: number, b: number, limit: number): void {
  const maxInsertion = 12;
  let wasBalanced = true;
  let wasPartitioned = true;
  for (;;) {
    const length = b - a;
    if (length <= maxInsertion) {
      insertionSort(less, swap, a, b);
      return;
    }
    if (limit === 0) {
      heapSort(less, swap, a, b);
      return;
    }
    if (!wasBalanced) {
      breakPatterns(swap, a, b);
      limit--;
    }
    let [pivot, hint] = choosePivot(less, a, b);
    if (hint === DECREASING_HINT) {
      reverseRange(swap, a, b);
      pivot = b - 1 - (pivot - a);
      hint = INCREASING_HINT;
    }
    if (wasBalanced && wasPartitioned && hint === INCREASING_HINT) {
      if (partialInsertionSort(less, swap, a, b)) return;
    }
    if (a > 0 && !less(a - 1, pivot)) {
      a = partitionEqual(less, swap, a, b, pivot);
      continue;
    }
    const [mid, alreadyPartitioned] = partition(less, swap, a, b, pivot);
    wasPartitioned = alreadyPartitioned;
    const leftLen = mid - a;
    const rightLen = b - mid;
    const balanceThreshold = Math.trunc(length / 8);
    if (leftLen < rightLen) {
      wasBalanced = leftLen >= balanceThreshold;
      pdqsort(less, swap, a, mid, limit);
      a = mid + 1;
    } else {
      wasBalanced = rightLen >= balanceThreshold;
      pdqsort(less, swap, mid + 1, b, limit);
      b = mid;
    }
  }
}

function partition(less: Less, swap: Swap, a: number, b: number, pivot: number): [number, boolean] {
  swap(a, pivot);
  let i = a + 1;
  let j = b - 1;
  while (i <= j && less(i, a)) i++;
  while (i <= j && !less(j, a)) j--;
  if (i > j) {
    swap(j, a);
    return [j, true];
  }
  swap(i, j);
  i++;
  j--;
  for (;;) {
    while (i <= j && less(i, a)) i++;
    while (i <= j && !less(j, a)) j--;
    if (i > j) break;
    swap(i, j);
    i++;
    j--;
  }
  swap(j, a);
  return [j, false];
}

function partitionEqual(less: Less, swap: Swap, a: number, b: number, pivot: number): number {
  swap(a, pivot);
  let i = a + 1;
  let j = b - 1;
  for (;;) {
    while (i <= j && !less(a, i)) i++;
    while (i <= j && less(a, j)) j--;
    if (i > j) break;
    swap(i, j);
    i++;
    j--;
  }
  return i;
}

function partialInsertionSort(less: Less, swap: Swap, a: number, b: number): boolean {
  const maxSteps = 5;
  const shortestShifting = 50;
  let i = a + 1;
  for (let step = 0; step < maxSteps; step++) {
    while (i < b && !less(i, i - 1)) i++;
    if (i === b) return true;
    if (b - a < shortestShifting) return false;
    swap(i, i - 1);
    if (i - a >= 2) {
      for (let j = i - 1; j >= 1; j--) {
        if (!less(j, j - 1)) break;
        swap(j, j - 1);
      }
    }
    if (b - i >= 2) {
      for (let j = i + 1; j < b; j++) {
        if (!less(j, j - 1)) break;
        swap(j, j - 1);
      }
    }
  }
  return false;
}

function breakPatterns(swap: Swap, a: number, b: number): void {
  const length = b - a;
  if (length >= 8) {
    const mask64 = (1n << 64n) - 1n;
    let random = BigInt(length);
    const next = (): bigint => {
      random ^= (random << 13n) & mask64;
      random ^= random >> 7n;
      random ^= (random << 17n) & mask64;
      return random;
    };
    const modulus = BigInt(2 ** bitsLen(length));
    const start = a + Math.trunc(length / 4) * 2 - 1;
    for (let idx = start; idx <= start + 2; idx++) {
      let other = Number(next() & (modulus - 1n));
      if (other >= length) other -= length;
      swap(idx, a + other);
    }
  }
}

function choosePivot(less: Less, a: number, b: number): [number, number] {
  const shortestNinther = 50;
  const maxSwaps = 4 * 3;
  const l = b - a;
  const swaps = { n: 0 };
  const q = Math.trunc(l / 4);
  let i = a + q * 1;
  let j = a + q * 2;
  let k = a + q * 3;
  if (l >= 8) {
    if (l >= shortestNinther) {
      i = median(less, i - 1, i, i + 1, swaps);
      j = median(less, j - 1, j, j + 1, swaps);
      k = median(less, k - 1, k, k + 1, swaps);
    }
    j = median(less, i, j, k, swaps);
  }
  if (swaps.n === 0) return [j, INCREASING_HINT];
  if (swaps.n === maxSwaps) return [j, DECREASING_HINT];
  return [j, UNKNOWN_HINT];
}

function median(less: Less, a: number, b: number, c: number, swaps: { n: number }): number {
  const order2 = (x: number, y: number): [number, number] => {
    if (less(y, x)) {
      swaps.n++;
      return [y, x];
    }
    return [x, y];
  };
  [a, b] = order2(a, b);
  [b, c] = order2(b, c);
  [, b] = order2(a, b);
  return b;
}

function reverseRange(swap: Swap, a: number, b: number): void {
  let i = a;
  let j = b - 1;
  while (i < j) {
    swap(i, j);
    i++;
    j--;
  }
}

// ---------------------------------------------------------------------------------------------------
// `soci ztoc info`

/** Go `encoding/json` string encoding of raw bytes (docs/formats.md §3.8). */
export const goJsonString = goString;

/** What `soci ztoc info` needs from the zinfo (GzipZinfo / TarZinfo both fit). */
export interface SpanMath {
  readonly spanSize: number;
  spanForOffset(off: number): number;
}

/**
 * Exact stdout of `soci ztoc info` (cmd/soci/commands/ztoc/info.go): Go `json.MarshalIndent(info, "", "  ")`
 * plus a newline. `size` is the ztoc size recorded in the artifacts DB.
 */
export function ztocInfoJson(z: Ztoc, size: number, zinfo: SpanMath): string {
  let multiSpan = 0;
  const files: string[] = [];
  for (const e of z.toc) {
    const startSpan = zinfo.spanForOffset(e.uncompressedOffset);
    const endSpan = zinfo.spanForOffset(e.uncompressedOffset + e.uncompressedSize);
    if (startSpan !== endSpan) multiSpan++;
    files.push(
      "    {\n" +
        `      "filename": ${goJsonString(e.name)},\n` +
        `      "offset": ${e.uncompressedOffset},\n` +
        `      "size": ${e.uncompressedSize},\n` +
        `      "type": ${goJsonString(e.type)},\n` +
        `      "start_span": ${startSpan},\n` +
        `      "end_span": ${endSpan}\n` +
        "    }",
    );
  }
  // a nil slice (no entries) marshals as null
  const filesJson = files.length === 0 ? "null" : "[\n" + files.join(",\n") + "\n  ]";
  return (
    "{\n" +
    `  "version": ${goJsonString(z.version)},\n` +
    `  "build_tool": ${goJsonString(z.buildToolIdentifier)},\n` +
    `  "size": ${size},\n` +
    `  "span_size": ${zinfo.spanSize},\n` +
    `  "num_spans": ${z.maxSpanId + 1},\n` +
    `  "num_files": ${z.toc.length},\n` +
    `  "num_multi_span_files": ${multiSpan},\n` +
    `  "files": ${filesJson}\n` +
    "}\n"
  );
}
