// Canonical Huffman decode tables for DEFLATE (RFC 1951).
//
// One u32 entry per table slot:
//   bits  0-5   bits the entry consumes: the code length, plus the extra bits that follow it for
//               lengths and distances (so one shift consumes a whole length or distance); bits 6-7 are 0
//   bits  8-12  code length (extra bits are (bits & mask(total)) >> code length); for a SUBTABLE
//               entry: the sub-table's index bits
//   bit   13    END_OF_BLOCK
//   bit   14    SUBTABLE: bits 16-30 = sub-table start index
//   bit   15    INVALID (a code that is not assigned, or a symbol DEFLATE forbids)
//   bits 16-30  value: literal byte, length base, distance base or precode symbol
//   bit  31     LITERAL (so `(i32)entry < 0` tests for a literal)
// A main table is indexed by the next `tableBits` input bits (LSB first); codes longer than
// that continue in a sub-table indexed by the following bits. Sub-table entries carry the full
// code length, so the same arithmetic applies to them.

export const F_EOB: u32 = 0x2000;
export const F_SUB: u32 = 0x4000;
export const F_INVALID: u32 = 0x8000;
export const F_EXCEPTIONAL: u32 = 0xe000;
export const F_LITERAL: u32 = 0x80000000;

export const KIND_PRECODE: i32 = 0;
export const KIND_LITLEN: i32 = 1;
export const KIND_DIST: i32 = 2;

export const LIT_BITS: u32 = 11;
export const DIST_BITS: u32 = 8;
export const PRE_BITS: u32 = 7;

// Generous upper bounds: main table plus a full-size sub-table for every long symbol.
export const LIT_TABLE: usize = memory.data(((1 << LIT_BITS) + 288 * 16) * 4, 64);
export const DIST_TABLE: usize = memory.data(((1 << DIST_BITS) + 32 * 128) * 4, 64);
export const PRE_TABLE: usize = memory.data(128 * 4, 64);

const COUNT: usize = memory.data(16 * 4, 16); // u32 per length
const GROUP_MAX: usize = memory.data(1 << LIT_BITS, 16); // longest code per main-table prefix
const GROUP_START: usize = memory.data((1 << LIT_BITS) * 4, 16); // sub-table start per prefix

const LEN_BASE: StaticArray<u16> = [
  3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31,
  35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258,
];
const LEN_EXTRA: StaticArray<u8> = [
  0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_BASE: StaticArray<u16> = [
  1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193,
  257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: StaticArray<u8> = [
  0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13,
];

function symbolEntry(kind: i32, sym: u32, len: u32): u32 {
  if (kind == KIND_LITLEN) {
    if (sym < 256) return F_LITERAL | (sym << 16) | len;
    if (sym == 256) return F_EOB | len;
    if (sym < 286) {
      const i = sym - 257;
      return (<u32>unchecked(LEN_BASE[i]) << 16) | (len << 8) | (len + <u32>unchecked(LEN_EXTRA[i]));
    }
    return F_INVALID | len;
  }
  if (kind == KIND_DIST) {
    if (sym < 30) {
      return (<u32>unchecked(DIST_BASE[sym]) << 16) | (len << 8) | (len + <u32>unchecked(DIST_EXTRA[sym]));
    }
    return F_INVALID | len;
  }
  return (sym << 16) | len;
}

const SORTED: usize = memory.data(320 * 2, 16); // symbols by code length, then symbol value
const OFFS: usize = memory.data(17 * 4, 16);
const LONG_CW: usize = memory.data(320 * 2, 16); // reversed codewords of codes longer than the main table

// The reversed codeword that follows `cw` among codes of `len` bits (canonical order: the normal
// codeword plus one). `cw` must not be all ones.
@inline function nextReversed(cw: u32, len: u32): u32 {
  const bit = <u32>1 << (31 - clz(cw ^ ((<u32>1 << len) - 1)));
  return (cw & (bit - 1)) | bit;
}

/**
 * Builds the decode table for `n` code lengths (u8 each) at `lens`.
 * Follows zlib's acceptance rules: over-subscribed sets are rejected; incomplete sets are
 * rejected except a single code of length 1 (lengths/distances) or no codes at all (distances),
 * whose unused slots decode as INVALID. Returns 0 or -1.
 */
export function buildTable(lens: usize, n: u32, table: usize, tableBits: u32, kind: i32): i32 {
  memory.fill(COUNT, 0, 64);
  for (let i: u32 = 0; i < n; i++) {
    const l = <u32>load<u8>(lens + i);
    store<u32>(COUNT + (l << 2), load<u32>(COUNT + (l << 2)) + 1);
  }
  let maxLen: u32 = 0;
  for (let l: u32 = 1; l < 16; l++) if (load<u32>(COUNT + (l << 2)) != 0) maxLen = l;
  const mainSize: u32 = 1 << tableBits;
  const invalid: u32 = F_INVALID | tableBits;
  if (maxLen == 0) {
    // No symbols: every lookup is an error (zlib defers the error to decode time too).
    for (let i: u32 = 0; i < mainSize; i++) store<u32>(table + (i << 2), invalid);
    return 0;
  }
  let left: i32 = 1;
  for (let l: u32 = 1; l < 16; l++) {
    left = (left << 1) - <i32>load<u32>(COUNT + (l << 2));
    if (left < 0) return -1; // over-subscribed
  }
  if (left > 0) {
    if (kind == KIND_PRECODE || maxLen != 1) return -1; // incomplete
    for (let i: u32 = 0; i < mainSize; i++) store<u32>(table + (i << 2), invalid);
  }
  // Counting sort: symbols by code length, in symbol order within a length (canonical order).
  let o: u32 = 0;
  for (let l: u32 = 1; l < 16; l++) {
    store<u32>(OFFS + (l << 2), o);
    o += load<u32>(COUNT + (l << 2));
  }
  const total = o;
  for (let sym: u32 = 0; sym < n; sym++) {
    const l = <u32>load<u8>(lens + sym);
    if (l == 0) continue;
    const at = load<u32>(OFFS + (l << 2));
    store<u32>(OFFS + (l << 2), at + 1);
    store<u16>(SORTED + (at << 1), <u16>sym);
  }
  // Codes up to the main table's width, shortest first, each at its bit-reversed codeword; the
  // filled part of the table doubles (a copy of itself) whenever the length grows by one, which
  // replicates every shorter code into the slots whose low bits are its codeword.
  let cw: u32 = 0;
  let i: u32 = 0;
  const shortMax = maxLen < tableBits ? maxLen : tableBits;
  for (let l: u32 = 1; l <= shortMax; l++) {
    if (l > 1) memory.copy(table + (<usize>1 << (l + 1)), table, <usize>1 << (l + 1));
    const cnt = load<u32>(COUNT + (l << 2));
    for (let k: u32 = 0; k < cnt; k++) {
      const sym = <u32>load<u16>(SORTED + (i << 1));
      store<u32>(table + (cw << 2), symbolEntry(kind, sym, l));
      i++;
      if (i < total) cw = nextReversed(cw, l);
    }
  }
  for (let l = shortMax; l < tableBits; l++) memory.copy(table + (<usize>1 << (l + 2)), table, <usize>1 << (l + 2));
  if (maxLen <= tableBits) return 0;
  // Longer codes: the longest code under each main-table prefix sizes that prefix's sub-table.
  const mask = mainSize - 1;
  const first = i;
  memory.fill(GROUP_MAX, 0, mainSize);
  for (let l: u32 = tableBits + 1; l <= maxLen; l++) {
    const cnt = load<u32>(COUNT + (l << 2));
    for (let k: u32 = 0; k < cnt; k++) {
      store<u16>(LONG_CW + ((i - first) << 1), <u16>cw);
      const p = cw & mask;
      if (<u32>load<u8>(GROUP_MAX + p) < l) store<u8>(GROUP_MAX + p, <u8>l);
      i++;
      if (i < total) cw = nextReversed(cw, l);
    }
  }
  let next: u32 = mainSize;
  for (let p: u32 = 0; p < mainSize; p++) {
    const g = <u32>load<u8>(GROUP_MAX + p);
    if (g != 0) {
      const sb = g - tableBits;
      store<u32>(GROUP_START + (p << 2), next);
      store<u32>(table + (p << 2), F_SUB | (next << 16) | (sb << 8) | tableBits);
      next += 1 << sb;
    }
  }
  i = first;
  for (let l: u32 = tableBits + 1; l <= maxLen; l++) {
    const cnt = load<u32>(COUNT + (l << 2));
    for (let k: u32 = 0; k < cnt; k++) {
      const sym = <u32>load<u16>(SORTED + (i << 1));
      const rev = <u32>load<u16>(LONG_CW + ((i - first) << 1));
      const entry = symbolEntry(kind, sym, l);
      const p = rev & mask;
      const sb = <u32>load<u8>(GROUP_MAX + p) - tableBits;
      const start = load<u32>(GROUP_START + (p << 2));
      const subSize: u32 = 1 << sb;
      for (let j = rev >>> tableBits; j < subSize; j += 1 << (l - tableBits)) {
        store<u32>(table + ((start + j) << 2), entry);
      }
      i++;
    }
  }
  return 0;
}

const FIXED_LENS: usize = memory.data(320, 16);

/** Tables for a fixed-Huffman block (BTYPE=01). */
export function buildFixed(): void {
  for (let i: u32 = 0; i < 144; i++) store<u8>(FIXED_LENS + i, 8);
  for (let i: u32 = 144; i < 256; i++) store<u8>(FIXED_LENS + i, 9);
  for (let i: u32 = 256; i < 280; i++) store<u8>(FIXED_LENS + i, 7);
  for (let i: u32 = 280; i < 288; i++) store<u8>(FIXED_LENS + i, 8);
  buildTable(FIXED_LENS, 288, LIT_TABLE, LIT_BITS, KIND_LITLEN);
  for (let i: u32 = 0; i < 32; i++) store<u8>(FIXED_LENS + i, 5);
  buildTable(FIXED_LENS, 32, DIST_TABLE, DIST_BITS, KIND_DIST);
}
