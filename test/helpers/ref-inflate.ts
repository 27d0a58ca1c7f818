// An independent, deliberately simple gzip/DEFLATE reference decoder (in the style of zlib's
// contrib/puff: bit by bit, canonical Huffman decoding by counting) used as a test oracle.
// Besides the output it records every point where zlib's inflate(Z_BLOCK) would return:
// right after each gzip member header and after each deflate block, with the exact bit position.
// It shares no code with src/ or assembly/.

export class RefInflateError extends Error {
  override name = "RefInflateError";
}

/** A place where zlib's inflate(Z_BLOCK) stops: after a member header or after a block. */
export interface Boundary {
  /** Bit position in the file of the first bit not consumed. */
  bit: number;
  /** Uncompressed bytes produced so far (all members). */
  out: number;
  /** True when the block just finished was the final block of its member. */
  final: boolean;
  /** "header" (just after a gzip member header) or "block" (after a deflate block). */
  kind: "header" | "block";
  /** For "block": BTYPE of the block just finished (0 stored, 1 fixed, 2 dynamic). */
  btype?: number;
}

export interface RefResult {
  output: Uint8Array;
  boundaries: Boundary[];
  members: number;
  /** For each member: [headerStart, trailerEnd) in the file and its uncompressed [start, end). */
  memberRanges: { inStart: number; inEnd: number; outStart: number; outEnd: number }[];
}

// ---- CRC-32 (IEEE), table driven ----
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(data: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

// ---- growable output ----
class Output {
  buf = new Uint8Array(1 << 16);
  len = 0;
  private grow(min: number): void {
    let n = this.buf.length * 2;
    while (n < min) n *= 2;
    const b = new Uint8Array(n);
    b.set(this.buf.subarray(0, this.len));
    this.buf = b;
  }
  push(b: number): void {
    if (this.len === this.buf.length) this.grow(this.len + 1);
    this.buf[this.len++] = b;
  }
  pushBytes(src: Uint8Array): void {
    if (this.len + src.length > this.buf.length) this.grow(this.len + src.length);
    this.buf.set(src, this.len);
    this.len += src.length;
  }
  result(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

// ---- bit reader ----
class BitReader {
  pos = 0; // bit position
  constructor(readonly buf: Uint8Array) {}
  bit(): number {
    const byte = this.pos >>> 3;
    if (byte >= this.buf.length) throw new RefInflateError("unexpected end of input");
    const v = (this.buf[byte]! >>> (this.pos & 7)) & 1;
    this.pos++;
    return v;
  }
  bits(n: number): number {
    let v = 0;
    for (let i = 0; i < n; i++) v |= this.bit() << i;
    return v >>> 0;
  }
  align(): void {
    this.pos = (this.pos + 7) & ~7;
  }
  get byte(): number {
    if (this.pos & 7) throw new Error("BitReader: not byte aligned");
    return this.pos >>> 3;
  }
  readByte(): number {
    const b = this.byte;
    if (b >= this.buf.length) throw new RefInflateError("unexpected end of input");
    this.pos += 8;
    return this.buf[b]!;
  }
}

// ---- canonical Huffman code (puff style) ----
interface Huffman {
  count: Int32Array; // number of codes of each length 0..15
  symbol: Int32Array; // symbols ordered by code
  maxLen: number;
}

/** Returns the code and how many code slots are left (0 = complete, > 0 incomplete). */
function construct(lengths: ArrayLike<number>): { h: Huffman; left: number } {
  const count = new Int32Array(16);
  let maxLen = 0;
  for (let i = 0; i < lengths.length; i++) {
    count[lengths[i]!]!++;
    if (lengths[i]! > maxLen) maxLen = lengths[i]!;
  }
  const symbol = new Int32Array(lengths.length);
  const h = { count, symbol, maxLen };
  if (count[0] === lengths.length) return { h, left: 0 }; // no codes: complete but useless
  let left = 1;
  for (let len = 1; len < 16; len++) {
    left <<= 1;
    left -= count[len]!;
    if (left < 0) throw new RefInflateError("over-subscribed code");
  }
  const offs = new Int32Array(16);
  for (let len = 1; len < 15; len++) offs[len + 1] = offs[len]! + count[len]!;
  for (let s = 0; s < lengths.length; s++) if (lengths[s]) symbol[offs[lengths[s]!]!++] = s;
  return { h, left };
}

function decode(r: BitReader, h: Huffman): number {
  let code = 0,
    first = 0,
    index = 0;
  for (let len = 1; len < 16; len++) {
    code |= r.bit();
    const count = h.count[len]!;
    if (code - count < first) return h.symbol[index + (code - first)]!;
    index += count;
    first += count;
    first <<= 1;
    code <<= 1;
  }
  throw new RefInflateError("invalid Huffman code");
}

const LBASE = [
  3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258,
];
const LEXT = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
const DBASE = [
  1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145,
  8193, 12289, 16385, 24577,
];
const DEXT = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];
const ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

let fixedCodes: { lit: Huffman; dist: Huffman } | undefined;
function fixed(): { lit: Huffman; dist: Huffman } {
  if (!fixedCodes) {
    const l = new Array<number>(288);
    for (let i = 0; i < 144; i++) l[i] = 8;
    for (let i = 144; i < 256; i++) l[i] = 9;
    for (let i = 256; i < 280; i++) l[i] = 7;
    for (let i = 280; i < 288; i++) l[i] = 8;
    fixedCodes = { lit: construct(l).h, dist: construct(new Array<number>(30).fill(5)).h };
  }
  return fixedCodes;
}

// zlib's rule: an incomplete code is only allowed when it is a single code of length 1.
function checkIncomplete(left: number, h: Huffman, what: string): void {
  if (left > 0 && h.maxLen !== 1) throw new RefInflateError(`incomplete ${what} code`);
}

function dynamicCodes(r: BitReader): { lit: Huffman; dist: Huffman } {
  const nlen = r.bits(5) + 257;
  const ndist = r.bits(5) + 1;
  const ncode = r.bits(4) + 4;
  if (nlen > 286 || ndist > 30) throw new RefInflateError("too many length or distance symbols");
  const pre = new Array<number>(19).fill(0);
  for (let i = 0; i < ncode; i++) pre[ORDER[i]!] = r.bits(3);
  const pc = construct(pre);
  if (pc.left !== 0) throw new RefInflateError("incomplete code-length code");
  const lengths: number[] = [];
  while (lengths.length < nlen + ndist) {
    const sym = decode(r, pc.h);
    if (sym < 16) {
      lengths.push(sym);
      continue;
    }
    let rep: number,
      val = 0;
    if (sym === 16) {
      if (lengths.length === 0) throw new RefInflateError("repeat with no first length");
      val = lengths[lengths.length - 1]!;
      rep = 3 + r.bits(2);
    } else if (sym === 17) rep = 3 + r.bits(3);
    else rep = 11 + r.bits(7);
    if (lengths.length + rep > nlen + ndist) throw new RefInflateError("too many lengths");
    for (let i = 0; i < rep; i++) lengths.push(val);
  }
  if (lengths[256] === 0) throw new RefInflateError("no end-of-block code");
  const lit = construct(lengths.slice(0, nlen));
  checkIncomplete(lit.left, lit.h, "literal/length");
  const dist = construct(lengths.slice(nlen));
  checkIncomplete(dist.left, dist.h, "distance");
  return { lit: lit.h, dist: dist.h };
}

/**
 * Decodes a whole (multi-member) gzip file. Throws RefInflateError on anything zlib would reject,
 * including trailing garbage and CRC/ISIZE mismatches.
 */
export function refGunzip(file: Uint8Array): RefResult {
  const r = new BitReader(file);
  const out = new Output();
  const boundaries: Boundary[] = [];
  const memberRanges: RefResult["memberRanges"] = [];
  if (file.length === 0) throw new RefInflateError("empty input");
  let members = 0;
  while (r.byte < file.length) {
    const inStart = r.byte;
    const outStart = out.len;
    // -- header (RFC 1952 2.3)
    const h = (n: number) => {
      const a: number[] = [];
      for (let i = 0; i < n; i++) a.push(r.readByte());
      return a;
    };
    const [id1, id2, cm, flg] = h(4) as [number, number, number, number];
    if (id1 !== 0x1f || id2 !== 0x8b) throw new RefInflateError(members ? "trailing garbage" : "bad magic");
    if (cm !== 8) throw new RefInflateError("bad method");
    if (flg & 0xe0) throw new RefInflateError("reserved flags");
    h(6);
    if (flg & 4) {
      const [a, b] = h(2) as [number, number];
      h(a | (b << 8));
    }
    if (flg & 8) while (r.readByte() !== 0);
    if (flg & 16) while (r.readByte() !== 0);
    if (flg & 2) {
      const want = crc32(file.subarray(inStart, r.byte)) & 0xffff;
      const [a, b] = h(2) as [number, number];
      if ((a | (b << 8)) !== want) throw new RefInflateError("header crc mismatch");
    }
    members++;
    boundaries.push({ bit: r.pos, out: out.len, final: false, kind: "header" });
    // -- blocks
    let last = false;
    while (!last) {
      last = r.bit() === 1;
      const type = r.bits(2);
      if (type === 0) {
        r.align();
        const len = r.readByte() | (r.readByte() << 8);
        const nlen = r.readByte() | (r.readByte() << 8);
        if ((len ^ 0xffff) !== nlen) throw new RefInflateError("stored length mismatch");
        const at = r.byte;
        if (at + len > file.length) throw new RefInflateError("unexpected end of input");
        out.pushBytes(file.subarray(at, at + len));
        r.pos += len * 8;
      } else if (type === 1 || type === 2) {
        const { lit, dist } = type === 1 ? fixed() : dynamicCodes(r);
        for (;;) {
          const sym = decode(r, lit);
          if (sym < 256) out.push(sym);
          else if (sym === 256) break;
          else {
            const li = sym - 257;
            if (li >= 29) throw new RefInflateError("invalid literal/length symbol");
            const len = LBASE[li]! + r.bits(LEXT[li]!);
            const ds = decode(r, dist);
            if (ds >= 30) throw new RefInflateError("invalid distance symbol");
            const d = DBASE[ds]! + r.bits(DEXT[ds]!);
            if (d > out.len - outStart) throw new RefInflateError("distance too far back");
            for (let i = 0; i < len; i++) out.push(out.buf[out.len - d]!);
          }
        }
      } else {
        throw new RefInflateError("invalid block type");
      }
      boundaries.push({ bit: r.pos, out: out.len, final: last, kind: "block", btype: type });
    }
    // -- trailer
    r.align();
    const t = h(8);
    const crc = (t[0]! | (t[1]! << 8) | (t[2]! << 16) | (t[3]! << 24)) >>> 0;
    const isize = (t[4]! | (t[5]! << 8) | (t[6]! << 16) | (t[7]! << 24)) >>> 0;
    const data = out.buf.subarray(outStart, out.len);
    if (crc !== crc32(data)) throw new RefInflateError("crc mismatch");
    if (isize !== data.length % 2 ** 32) throw new RefInflateError("isize mismatch");
    memberRanges.push({ inStart, inEnd: r.byte, outStart, outEnd: out.len });
  }
  return { output: out.result(), boundaries, members, memberRanges };
}

export interface ExpectedCheckpoint {
  in: number;
  out: number;
  bits: number;
}

/** Applies the zran rule (docs/formats.md §2.1) to the boundaries of a stream. */
export function zranCheckpoints(boundaries: Boundary[], span: number): ExpectedCheckpoint[] {
  const res: ExpectedCheckpoint[] = [];
  let last = 0;
  for (const b of boundaries) {
    if (b.final) continue;
    if (b.out === 0 || b.out - last > span) {
      res.push({ in: Math.ceil(b.bit / 8), out: b.out, bits: (8 - (b.bit & 7)) & 7 });
      last = b.out;
    }
  }
  return res;
}

/** window = (32768 zero bytes ++ output[0:out])[-32768:] */
export function expectedWindow(output: Uint8Array, out: number): Uint8Array {
  const w = new Uint8Array(32768);
  const from = Math.max(0, out - 32768);
  const part = output.subarray(from, out);
  w.set(part, 32768 - part.length);
  return w;
}

// ---- bit writer for hand-crafted deflate streams ----
export class BitWriter {
  private bytes: number[] = [];
  private acc = 0;
  private n = 0;
  /** Writes `n` bits of `value`, least significant first (extra bits, header fields). */
  bits(value: number, n: number): this {
    for (let i = 0; i < n; i++) {
      this.acc |= ((value >>> i) & 1) << this.n;
      if (++this.n === 8) {
        this.bytes.push(this.acc);
        this.acc = 0;
        this.n = 0;
      }
    }
    return this;
  }
  /** Writes a Huffman code of `len` bits, most significant bit first. */
  code(code: number, len: number): this {
    for (let i = len - 1; i >= 0; i--) this.bits((code >>> i) & 1, 1);
    return this;
  }
  /** Fixed-Huffman literal/length symbol (RFC 1951 3.2.6). */
  fixedLit(sym: number): this {
    if (sym < 144) return this.code(0x30 + sym, 8);
    if (sym < 256) return this.code(0x190 + sym - 144, 9);
    if (sym < 280) return this.code(sym - 256, 7);
    return this.code(0xc0 + sym - 280, 8);
  }
  /** Fixed-Huffman distance symbol (5 bits). */
  fixedDist(sym: number): this {
    return this.code(sym, 5);
  }
  /** Pads to a byte boundary with zero bits. */
  align(): this {
    if (this.n) this.bits(0, 8 - this.n);
    return this;
  }
  raw(bytes: ArrayLike<number>): this {
    this.align();
    for (let i = 0; i < bytes.length; i++) this.bytes.push(bytes[i]!);
    return this;
  }
  finish(): Uint8Array {
    this.align();
    return Uint8Array.from(this.bytes);
  }
}
