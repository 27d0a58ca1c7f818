// A streaming tar reader that reports entries exactly as Go 1.25's archive/tar Reader.Next() does,
// as the reference ztoc builder sees them (docs/formats.md §1.4). Bytes are pushed in; only header blocks
// and the bodies of meta entries (PAX 'x'/'g', GNU 'L'/'K', PAX 1.0 sparse maps) are buffered.
//
// The walk is written as a generator that mirrors Go's Reader.next(): it yields "read n bytes" or
// "skip n bytes" requests, and the push()/end() driver satisfies them from whatever chunks arrive.
// Internally all tar strings are binary strings (one char per byte, like Go strings), so Go's string
// logic carries over unchanged; they become Uint8Array only when an entry is reported.

import { FailedPreconditionError, InvalidArgumentError } from "../errors/errors.js";
import type { EntryType, PaxRecord } from "./toc.js";

export interface TarEntry {
  name: Uint8Array;
  linkname: Uint8Array;
  type: EntryType;
  /** Raw typeflag byte after the legacy '\0' → '0'/'5' mapping. */
  typeflag: number;
  /** hdr.Size after PAX (and GNU sparse) overrides; header-only types keep their size field. */
  size: number;
  mode: number;
  /** uint32(hdr.Uid), uint32(hdr.Gid). */
  uid: number;
  gid: number;
  uname: Uint8Array;
  gname: Uint8Array;
  /** Unix time of hdr.ModTime; mtimeNsec is in [0, 1e9). */
  mtimeSec: number;
  mtimeNsec: number;
  devmajor: number;
  devminor: number;
  /** hdr.PAXRecords: every record of the preceding 'x' header, keys sorted bytewise. */
  pax: PaxRecord[];
  /** Stream position right after the entry's last header block (ztoc uncompressed_offset). */
  dataOffset: number;
  /** Previous entry's align512(dataOffset + size), 0 for the first (ztoc TarHeaderOffset). */
  headerOffset: number;
}

/**
 * kind "header": an error Go's Reader.Next() returns (the reference wraps it as
 * "error while reading tar header: <message>"); kind "unsupported": Next() returned an entry whose
 * typeflag the TOC builder rejects (the reference reports the message as is).
 */
export class TarError extends InvalidArgumentError {
  constructor(
    message: string,
    readonly kind: "header" | "unsupported" = "header",
  ) {
    super(message);
    this.name = "TarError";
  }
}

const BLOCK = 512;
const MAX_SPECIAL_FILE_SIZE = 1 << 20;
const MAX_INT64 = (1n << 63n) - 1n;
const MIN_INT64 = -(1n << 63n);

const errHeader = () => new TarError("archive/tar: invalid tar header");
const errUnexpectedEOF = () => new TarError("unexpected EOF");
const errFieldTooLong = () => new TarError("archive/tar: header field too long");
const errSparseTooLong = () => new TarError("archive/tar: sparse map too long");

const TYPES: Record<number, EntryType> = {
  0x30: "reg",
  0x31: "hardlink",
  0x32: "symlink",
  0x33: "char",
  0x34: "block",
  0x35: "dir",
  0x36: "fifo",
};
const isHeaderOnlyType = (t: number) => t >= 0x31 && t <= 0x36;
const T_REGA = 0x00,
  T_DIR = 0x35,
  T_X = 0x78,
  T_G = 0x67,
  T_LONGNAME = 0x4c,
  T_LONGLINK = 0x4b,
  T_SPARSE = 0x53;

const GNU_SPARSE = {
  numBlocks: "GNU.sparse.numblocks",
  offset: "GNU.sparse.offset",
  numBytes: "GNU.sparse.numbytes",
  map: "GNU.sparse.map",
  name: "GNU.sparse.name",
  major: "GNU.sparse.major",
  minor: "GNU.sparse.minor",
  size: "GNU.sparse.size",
  realSize: "GNU.sparse.realsize",
};

enum Format {
  Unknown,
  V7,
  USTAR,
  GNU,
  STAR,
}

// ---- byte/string helpers ------------------------------------------------------------------------

const binStr = (b: Uint8Array, start = 0, end = b.length) =>
  Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("latin1", start, end);

const bytesAt = (b: Uint8Array, off: number, s: string) => {
  for (let i = 0; i < s.length; i++) if (b[off + i] !== s.charCodeAt(i)) return false;
  return true;
};

const EMPTY = new Uint8Array(0);
// The last few uname/gname conversions: archives repeat the same few owner names.
const nameCache = new Map<string, Uint8Array>();

/**
 * A binary string's bytes. Short arrays live in V8's heap, longer ones are slices of Node's
 * buffer pool: no per-string backing store for the collector to account and finalize. Empty
 * strings share one empty array (entries' fields are read-only by convention).
 */
function strBytes(s: string): Uint8Array {
  const n = s.length;
  if (n === 0) return EMPTY;
  if (n > 48) return Buffer.from(s, "latin1");
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = s.charCodeAt(i);
  return out;
}

function ownerBytes(s: string): Uint8Array {
  let b = nameCache.get(s);
  if (b === undefined) {
    if (nameCache.size >= 64) nameCache.clear();
    b = strBytes(s);
    nameCache.set(s, b);
  }
  return b;
}

/** Go parser.parseString of a header field: the bytes up to the first NUL. */
function cstr(blk: Buffer, off: number, len: number): string {
  const nul = blk.indexOf(0, off);
  return blk.toString("latin1", off, nul < 0 || nul > off + len ? off + len : nul);
}

/** Go strconv.ParseInt(s, 10, 64); null on any error. */
function parseInt64(s: string): bigint | null {
  if (!/^[+-]?[0-9]+$/.test(s)) return null;
  const v = BigInt(s);
  return v < MIN_INT64 || v > MAX_INT64 ? null : v;
}

/** parseInt64 as a number, exact below 2^53 (no BigInt for the usual short values). */
function parseInt64Num(s: string): number | null {
  if (s.length <= 15) return /^[+-]?[0-9]+$/.test(s) ? Number(s) || 0 : null; // no -0
  const v = parseInt64(s);
  return v === null ? null : Number(v);
}

/** uint32 of a parsed int64. */
function lowUint32(s: string): number | null {
  if (s.length <= 15) {
    const v = parseInt64Num(s);
    return v === null ? null : v >>> 0;
  }
  const v = parseInt64(s);
  return v === null ? null : Number(BigInt.asUintN(32, v));
}

/** Go %q of a byte: a quoted Go character literal. */
export function goQuoteByte(c: number): string {
  if (c === 0x27 || c === 0x5c) return `'\\${String.fromCharCode(c)}'`;
  if ((c >= 0x20 && c <= 0x7e) || (c >= 0xa1 && c <= 0xff && c !== 0xad)) return `'${String.fromCharCode(c)}'`;
  const named: Record<number, string> = { 7: "a", 8: "b", 12: "f", 10: "n", 13: "r", 9: "t", 11: "v" };
  if (named[c] !== undefined) return `'\\${named[c]}'`;
  const hex = c.toString(16).padStart(2, "0");
  return c < 0x20 || c === 0x7f ? `'\\x${hex}'` : `'\\u00${hex}'`;
}

// ---- numeric fields (Go strconv.go) -----------------------------------------------------------

interface Parser {
  err: boolean;
}

function parseOctal(b: Uint8Array, off: number, len: number, p: Parser): number {
  let lo = off,
    hi = off + len;
  while (lo < hi && (b[lo] === 0x20 || b[lo] === 0)) lo++;
  while (hi > lo && (b[hi - 1] === 0x20 || b[hi - 1] === 0)) hi--;
  if (lo === hi) return 0;
  const nul = b.indexOf(0, lo);
  if (nul >= 0 && nul < hi) hi = nul;
  // Fields are at most 12 bytes, so the value is exact in a double.
  let x = 0;
  for (let i = lo; i < hi; i++) {
    const d = b[i]! - 0x30;
    if (d < 0 || d > 7) {
      p.err = true;
      return 0;
    }
    x = x * 8 + d;
  }
  return x;
}

/** Base-256 (first byte has bit 0x80, two's complement) or octal, exactly. */
function parseNumericBig(b: Uint8Array, off: number, len: number, p: Parser): bigint {
  if ((b[off]! & 0x80) === 0) return BigInt(parseOctal(b, off, len, p));
  const inv = b[off]! & 0x40 ? 0xff : 0;
  let x = 0n;
  for (let i = off; i < off + len; i++) {
    let c = b[i]! ^ inv;
    if (i === off) c &= 0x7f;
    if (x >> 56n > 0n) {
      p.err = true;
      return 0n;
    }
    x = (x << 8n) | BigInt(c);
  }
  if (x >> 63n > 0n) {
    p.err = true;
    return 0n;
  }
  return inv ? -x - 1n : x;
}

/** As a number: exact unless a base-256 value exceeds 2^53 in magnitude. */
function parseNumeric(b: Uint8Array, off: number, len: number, p: Parser): number {
  return b[off]! & 0x80 ? Number(parseNumericBig(b, off, len, p)) : parseOctal(b, off, len, p);
}

/** uint32(int(parseNumeric(b))). */
function parseUint32(b: Uint8Array, off: number, len: number, p: Parser): number {
  return b[off]! & 0x80
    ? Number(BigInt.asUintN(32, parseNumericBig(b, off, len, p)))
    : parseOctal(b, off, len, p) >>> 0;
}

/** Go parsePAXTime → [sec, nsec] of time.Unix(secs, ±nsecs), nsec normalised to [0, 1e9). */
function parsePAXTime(s: string): [number, number] {
  const dot = s.indexOf(".");
  const ss = dot < 0 ? s : s.slice(0, dot);
  const sn = dot < 0 ? "" : s.slice(dot + 1);
  const secs = parseInt64Num(ss);
  if (secs === null) throw errHeader();
  if (sn.length === 0) return [secs, 0];
  if (!/^[0-9]+$/.test(sn)) throw errHeader();
  const nsecs = Number((sn + "00000000").slice(0, 9));
  // A negative time counts its fraction backwards too ("-1.5" is 1.5 s before the epoch).
  if (ss.startsWith("-") && nsecs > 0) return [secs - 1, 1e9 - nsecs];
  return [secs, nsecs];
}

// ---- header block ------------------------------------------------------------------------------

function getFormat(blk: Uint8Array): Format {
  const p: Parser = { err: false };
  const value = parseOctal(blk, 148, 8, p);
  // The checksum field itself counts as spaces; the signed sum differs by 256 per byte >= 0x80.
  let unsigned = 0,
    high = 0;
  for (let i = 0; i < BLOCK; i++) {
    const c = blk[i]!;
    unsigned += c;
    high += c >> 7;
  }
  for (let i = 148; i < 156; i++) {
    const c = blk[i]!;
    unsigned += 0x20 - c;
    high -= c >> 7;
  }
  const signed = unsigned - 256 * high;
  if (p.err || (value !== unsigned && value !== signed)) return Format.Unknown;
  if (bytesAt(blk, 257, "ustar\0")) return bytesAt(blk, 508, "tar\0") ? Format.STAR : Format.USTAR;
  if (bytesAt(blk, 257, "ustar  \0")) return Format.GNU;
  return Format.V7;
}

interface Header {
  typeflag: number;
  name: string;
  linkname: string;
  size: number;
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  mtimeSec: number;
  mtimeNsec: number;
  devmajor: number;
  devminor: number;
  pax: Map<string, string> | null;
}

/** Go Reader.readHeader after the end-of-archive checks. */
function parseHeader(blk: Buffer): Header {
  const format = getFormat(blk);
  if (format === Format.Unknown) throw errHeader();
  const p: Parser = { err: false };
  const num = (off: number, len: number, q = p) => parseNumeric(blk, off, len, q);
  const h: Header = {
    typeflag: blk[156]!,
    name: cstr(blk, 0, 100),
    linkname: cstr(blk, 157, 100),
    size: num(124, 12),
    mode: num(100, 8),
    uid: parseUint32(blk, 108, 8, p),
    gid: parseUint32(blk, 116, 8, p),
    mtimeSec: num(136, 12),
    mtimeNsec: 0,
    uname: "",
    gname: "",
    devmajor: 0,
    devminor: 0,
    pax: null,
  };
  if (format !== Format.V7) {
    h.uname = cstr(blk, 265, 32);
    h.gname = cstr(blk, 297, 32);
    h.devmajor = num(329, 8);
    h.devminor = num(337, 8);
    let prefix = "";
    if (format === Format.USTAR) {
      prefix = cstr(blk, 345, 155);
    } else if (format === Format.STAR) {
      prefix = cstr(blk, 345, 131);
      num(476, 12); // atime, ctime: parsed only for their errors
      num(488, 12);
    } else {
      // GNU has atime/ctime where USTAR has its prefix. Archives from pre-1.8 Go wrote a prefix
      // there anyway, so Go falls back to it when these fields don't parse and it looks like ASCII.
      const p2: Parser = { err: false };
      if (blk[345] !== 0) num(345, 12, p2);
      if (blk[357] !== 0) num(357, 12, p2);
      if (p2.err) {
        const s = cstr(blk, 345, 155);
        if (!/[\x80-\xff]/.test(s)) prefix = s;
      }
    }
    if (prefix.length > 0) h.name = prefix + "/" + h.name;
  }
  if (p.err) throw errHeader();
  return h;
}

// ---- PAX records -------------------------------------------------------------------------------

function parsePAX(body: Uint8Array): Map<string, string> {
  const s = binStr(body);
  const records = new Map<string, string>();
  const sparseMap: string[] = []; // GNU sparse 0.0 offset/numbytes pairs, folded as Go does
  let i = 0;
  while (i < s.length) {
    const sp = s.indexOf(" ", i);
    if (sp < 0) throw errHeader();
    const nStr = s.slice(i, sp);
    const n = parseInt64Num(nStr);
    if (n === null || n < 5 || n > s.length - i) throw errHeader();
    const end = i + n; // index just past the record's newline
    if (end - 1 <= sp || s[end - 1] !== "\n") throw errHeader();
    const rec = s.slice(sp + 1, end - 1);
    const eq = rec.indexOf("=");
    if (eq < 0) throw errHeader();
    const k = rec.slice(0, eq),
      v = rec.slice(eq + 1);
    if (!validPAXRecord(k, v)) throw errHeader();
    i = end;
    if (k === GNU_SPARSE.offset || k === GNU_SPARSE.numBytes) {
      const want = sparseMap.length % 2 === 0 ? GNU_SPARSE.offset : GNU_SPARSE.numBytes;
      if (k !== want || v.includes(",")) throw errHeader();
      sparseMap.push(v);
    } else {
      records.set(k, v);
    }
  }
  if (sparseMap.length > 0) records.set(GNU_SPARSE.map, sparseMap.join(","));
  return records;
}

function validPAXRecord(k: string, v: string): boolean {
  if (k === "" || k.includes("=")) return false;
  if (k === "path" || k === "linkpath" || k === "uname" || k === "gname") return !v.includes("\0");
  return !k.includes("\0");
}

/** Go mergePAX: records with an empty value keep the header's value. */
function mergePAX(h: Header, pax: Map<string, string> | null): void {
  for (const [k, v] of pax ?? []) {
    if (v === "") continue;
    switch (k) {
      case "path":
        h.name = v;
        break;
      case "linkpath":
        h.linkname = v;
        break;
      case "uname":
        h.uname = v;
        break;
      case "gname":
        h.gname = v;
        break;
      case "uid":
      case "gid": {
        const id = lowUint32(v);
        if (id === null) throw errHeader();
        h[k] = id;
        break;
      }
      case "mtime":
        [h.mtimeSec, h.mtimeNsec] = parsePAXTime(v);
        break;
      case "atime":
      case "ctime":
        parsePAXTime(v);
        break; // only their errors matter here
      case "size": {
        const size = parseInt64Num(v);
        if (size === null) throw errHeader();
        h.size = size;
        break;
      }
    }
  }
  h.pax = pax;
}

// ---- sparse maps (only what decides errors, sizes and how many bytes Next() consumes) -----------

/** Go validateSparseEntries, fed one entry at a time. */
class SparseCheck {
  ok: boolean;
  private preEnd = 0n;
  constructor(private readonly size: bigint) {
    this.ok = size >= 0n;
  }
  add(offset: bigint, length: bigint): void {
    if (!this.ok) return;
    if (
      offset < 0n ||
      length < 0n ||
      offset > MAX_INT64 - length ||
      offset + length > this.size ||
      this.preEnd > offset
    ) {
      this.ok = false;
    }
    this.preEnd = offset + length;
  }
}

/** GNU sparse 0.0/0.1: the map is in the PAX records. */
function checkSparseMap0x1(pax: Map<string, string>, check: SparseCheck): void {
  const n = parseInt64(pax.get(GNU_SPARSE.numBlocks) ?? "");
  if (n === null || n < 0n || n >= 1n << 62n) throw errHeader();
  let parts = (pax.get(GNU_SPARSE.map) ?? "").split(",");
  if (parts.length === 1 && parts[0] === "") parts = [];
  if (BigInt(parts.length) !== 2n * n) throw errHeader();
  for (let i = 0; i < parts.length; i += 2) {
    const offset = parseInt64(parts[i]!),
      length = parseInt64(parts[i + 1]!);
    if (offset === null || length === null) throw errHeader();
    check.add(offset, length);
  }
}

// ---- the reader ----------------------------------------------------------------------------------

const READ = 0,
  SKIP = 1;
interface Request {
  op: typeof READ | typeof SKIP;
  n: number;
}
/** READ resumes with the bytes (shorter only at end of stream); SKIP with the count skipped. */
type Walk<T> = Generator<Request, T, Uint8Array | number>;

// The walk yields requests itself (`(yield read(n)) as Buffer`) rather than delegating to a
// generator per request (`yield* read(n)`): a delegation per header block and per skip cost a
// generator object each, and its desugaring made TurboFan's graph of next() so large that compiling
// it took 0.25–0.6 s of a fresh worker's first layer (bench/RESULTS.md, 2026-12-08).
const read = (n: number): Request => ({ op: READ, n });
const skip = (n: number): Request => ({ op: SKIP, n });

const align512 = (o: number) => (o % BLOCK > 0 ? o + BLOCK - (o % BLOCK) : o);

export class TarReader {
  private readonly walk: Walk<void>;
  private req: Request | undefined; // undefined once the walk has finished
  private acc = Buffer.alloc(0);
  private have = 0;
  private skipped = 0;
  private pos = 0;
  private failure: unknown;
  private ended = false;
  // Go's tr.curr.physicalRemaining() and tr.pad: what is left of the current entry's data.
  private remaining = 0;
  private pad = 0;

  /**
   * `skipGlobalHeaders`: PAX global headers ('g') are dropped instead of rejected — what an
   * unpacker wants (containerd ignores them); the index builder keeps the reference's error.
   */
  constructor(
    private readonly onEntry: (e: TarEntry) => void,
    private readonly opts: { skipGlobalHeaders?: boolean } = {},
  ) {
    this.walk = this.run();
    this.resume(undefined);
  }

  /** Feeds the next bytes of the tar stream. Bytes after the end-of-archive marker are ignored. */
  push(chunk: Uint8Array): void {
    if (this.failure !== undefined) throw this.failure;
    if (this.ended) throw new FailedPreconditionError("TarReader: push after end");
    let off = 0;
    for (let req = this.req; req; req = this.req) {
      if (req.op === READ) {
        if (this.have < req.n) {
          if (off === chunk.length) return;
          const k = Math.min(req.n - this.have, chunk.length - off);
          this.acc.set(chunk.subarray(off, off + k), this.have);
          this.have += k;
          off += k;
          this.pos += k;
        }
        if (this.have === req.n) this.resume(this.acc);
      } else {
        if (this.skipped < req.n) {
          if (off === chunk.length) return;
          const k = Math.min(req.n - this.skipped, chunk.length - off);
          this.skipped += k;
          off += k;
          this.pos += k;
        }
        if (this.skipped === req.n) this.resume(this.skipped);
      }
    }
  }

  /** The stream has ended: returns the bytes the reader consumed (ztoc uncompressed_archive_size). */
  end(): number {
    if (this.failure !== undefined) throw this.failure;
    this.ended = true;
    while (this.req) this.resume(this.req.op === READ ? this.acc.subarray(0, this.have) : this.skipped);
    return this.pos;
  }

  private resume(value: Uint8Array | number | undefined): void {
    let r: IteratorResult<Request, void>;
    try {
      r = this.walk.next(value as Uint8Array | number);
    } catch (e) {
      this.failure = e;
      this.req = undefined;
      throw e;
    }
    this.req = r.done ? undefined : r.value;
    if (this.req?.op === READ) {
      this.acc = Buffer.allocUnsafe(this.req.n);
      this.have = 0;
    } else {
      this.skipped = 0;
    }
  }

  private *run(): Walk<void> {
    let headerOffset = 0;
    for (;;) {
      const h = yield* this.next();
      if (!h) return;
      if (h.typeflag === T_G && this.opts.skipGlobalHeaders) {
        headerOffset = align512(this.pos + this.remaining);
        continue;
      }
      const type = TYPES[h.typeflag];
      if (!type) throw new TarError(`unsupported input tar entry ${goQuoteByte(h.typeflag)}`, "unsupported");
      const pax =
        h.pax && h.pax.size > 0
          ? [...h.pax]
              .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
              .map(([k, v]) => ({ key: strBytes(k), value: strBytes(v) }))
          : [];
      const dataOffset = this.pos;
      this.onEntry({
        name: strBytes(h.name),
        linkname: strBytes(h.linkname),
        type,
        typeflag: h.typeflag,
        size: h.size,
        mode: h.mode,
        uid: h.uid,
        gid: h.gid,
        uname: ownerBytes(h.uname),
        gname: ownerBytes(h.gname),
        mtimeSec: h.mtimeSec,
        mtimeNsec: h.mtimeNsec,
        devmajor: h.devmajor,
        devminor: h.devminor,
        pax,
        dataOffset,
        headerOffset,
      });
      headerOffset = align512(dataOffset + h.size);
    }
  }

  /** Go Reader.next(): the next entry, or null at the end of the archive. */
  private *next(): Walk<Header | null> {
    let pax: Map<string, string> | null = null;
    let longName = "",
      longLink = "";
    for (;;) {
      // Discard the rest of the previous entry; running out of stream inside its padding is a clean end.
      if (this.remaining > 0 && ((yield skip(this.remaining)) as number) < this.remaining) throw errUnexpectedEOF();
      this.remaining = 0;
      if (this.pad > 0 && ((yield skip(this.pad)) as number) < this.pad) return null;
      this.pad = 0;

      const blk = (yield read(BLOCK)) as Buffer;
      if (blk.length === 0) return null;
      if (blk.length < BLOCK) throw errUnexpectedEOF();
      if (isZero(blk)) {
        const blk2 = (yield read(BLOCK)) as Buffer;
        if (blk2.length === 0) return null;
        if (blk2.length < BLOCK) throw errUnexpectedEOF();
        if (isZero(blk2)) return null;
        throw errHeader();
      }
      const h = parseHeader(blk);
      this.handleRegularFile(h);

      switch (h.typeflag) {
        case T_X:
        case T_G:
          pax = parsePAX(yield* this.readSpecialFile());
          // Go hands a global header to the caller as an entry of its own (then rejected as 'g').
          if (h.typeflag === T_G) return { ...h, pax };
          continue;
        case T_LONGNAME:
        case T_LONGLINK: {
          const body = yield* this.readSpecialFile();
          const nul = body.indexOf(0);
          const s = binStr(body, 0, nul < 0 ? body.length : nul);
          if (h.typeflag === T_LONGNAME) longName = s;
          else longLink = s;
          continue;
        }
      }

      mergePAX(h, pax);
      if (longName !== "") h.name = longName;
      if (longLink !== "") h.linkname = longLink;
      if (h.typeflag === T_REGA) h.typeflag = h.name.endsWith("/") ? T_DIR : 0x30;
      this.handleRegularFile(h); // PAX may have changed the size
      if (h.typeflag === T_SPARSE) yield* this.readOldGNUSparseMap(h, blk);
      else if (h.pax !== null) yield* this.readGNUSparsePAXHeaders(h); // no records: not sparse
      return h;
    }
  }

  private handleRegularFile(h: Header): void {
    const nb = isHeaderOnlyType(h.typeflag) ? 0 : h.size;
    if (nb < 0) throw errHeader();
    this.remaining = nb;
    this.pad = (BLOCK - (nb % BLOCK)) % BLOCK;
  }

  /** Go readSpecialFile: the whole body of a meta entry, at most 1 MiB. */
  private *readSpecialFile(): Walk<Buffer> {
    const n = this.remaining;
    if (n > MAX_SPECIAL_FILE_SIZE) {
      // Go reads 1 MiB + 1 bytes before giving up; nothing of it needs keeping.
      const got = (yield skip(MAX_SPECIAL_FILE_SIZE + 1)) as number;
      throw got <= MAX_SPECIAL_FILE_SIZE ? errUnexpectedEOF() : errFieldTooLong();
    }
    const body = n > 0 ? ((yield read(n)) as Buffer) : Buffer.alloc(0);
    if (body.length < n) throw errUnexpectedEOF();
    this.remaining = 0;
    return body;
  }

  /** Go mustReadFull on the current entry's data. */
  private *readData(n: number): Walk<Buffer> {
    if (this.remaining < n) throw errUnexpectedEOF();
    const b = (yield read(n)) as Buffer;
    if (b.length < n) throw errUnexpectedEOF();
    this.remaining -= n;
    return b;
  }

  /**
   * Old GNU sparse ('S'): the map is in the header and in extension blocks that follow it. Go reads
   * and validates it before returning the entry, which the TOC builder then rejects; this decides
   * which of the two errors the reference reports.
   */
  private *readOldGNUSparseMap(h: Header, blk: Buffer): Walk<void> {
    if (getFormat(blk) !== Format.GNU) throw errHeader();
    const p: Parser = { err: false };
    const realSize = parseNumericBig(blk, 483, 12, p);
    if (p.err) throw errHeader();
    h.size = Number(realSize);
    const check = new SparseCheck(realSize);
    let b = blk,
      start = 386,
      count = 4,
      isExtended = 482;
    for (;;) {
      for (let i = 0; i < count; i++) {
        const at = start + i * 24;
        if (b[at] === 0) break;
        const offset = parseNumericBig(b, at, 12, p);
        const length = parseNumericBig(b, at + 12, 12, p);
        if (p.err) throw errHeader();
        check.add(offset, length);
      }
      if (b[isExtended]! === 0) break;
      b = (yield read(BLOCK)) as Buffer;
      if (b.length < BLOCK) throw errUnexpectedEOF();
      [start, count, isExtended] = [0, 21, 504];
    }
    if (!check.ok) throw errHeader();
  }

  /** Go readGNUSparsePAXHeaders + the validation in handleSparseFile. */
  private *readGNUSparsePAXHeaders(h: Header): Walk<void> {
    const pax = h.pax ?? new Map<string, string>();
    const major = pax.get(GNU_SPARSE.major) ?? "",
      minor = pax.get(GNU_SPARSE.minor) ?? "";
    let is1x0: boolean;
    if (major === "0" && (minor === "0" || minor === "1")) is1x0 = false;
    else if (major === "1" && minor === "0") is1x0 = true;
    else if (major !== "" || minor !== "")
      return; // unknown version: a regular file
    else if ((pax.get(GNU_SPARSE.map) ?? "") !== "") is1x0 = false;
    else return; // not sparse

    const name = pax.get(GNU_SPARSE.name) ?? "";
    if (name !== "") h.name = name;
    const size = pax.get(GNU_SPARSE.size) || pax.get(GNU_SPARSE.realSize) || "";
    if (size !== "") {
      const n = parseInt64(size);
      if (n === null) throw errHeader();
      h.size = Number(n);
    }
    const check = new SparseCheck(BigInt(h.size));
    if (is1x0) yield* this.checkSparseMap1x0(check);
    else checkSparseMap0x1(pax, check);
    if (isHeaderOnlyType(h.typeflag) || !check.ok) throw errHeader();
  }

  /**
   * GNU sparse 1.0: newline-separated decimal numbers (count, then offset/length pairs) at the
   * start of the entry's data, read a block at a time. The entry's reported data starts after it.
   */
  private *checkSparseMap1x0(check: SparseCheck): Walk<void> {
    let text = "",
      at = 0,
      newlines = 0,
      total = 0;
    const self = this;
    function* feed(n: number): Walk<void> {
      while (newlines < n) {
        total += BLOCK;
        if (total > MAX_SPECIAL_FILE_SIZE) throw errSparseTooLong();
        const s = binStr(yield* self.readData(BLOCK));
        text += s;
        for (let i = s.indexOf("\n"); i >= 0; i = s.indexOf("\n", i + 1)) newlines++;
      }
    }
    const token = () => {
      newlines--;
      const nl = text.indexOf("\n", at);
      const tok = text.slice(at, nl);
      at = nl + 1;
      return tok;
    };
    yield* feed(1);
    const n = parseInt64(token());
    if (n === null || n < 0n || n >= 1n << 62n) throw errHeader();
    yield* feed(2 * Number(n));
    for (let i = 0n; i < n; i++) {
      const offset = parseInt64(token()),
        length = parseInt64(token());
      if (offset === null || length === null) throw errHeader();
      check.add(offset, length);
    }
  }
}

function isZero(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/** Reads a whole tar held in memory. */
export function readTarEntries(bytes: Uint8Array): { entries: TarEntry[]; consumed: number } {
  const entries: TarEntry[] = [];
  const r = new TarReader((e) => entries.push(e));
  r.push(bytes);
  return { entries, consumed: r.end() };
}
