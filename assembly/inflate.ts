// Resumable gzip/DEFLATE decoder over caller-filled buffers in linear memory.
//
// Memory (allocated by configure()): [output: 32 KiB history | outCap | slack] [input: inCap | slack]
// The output area doubles as the sliding window: back-references read the bytes just before `op`,
// and slide() moves the last 32 KiB to the front once the caller has taken the new output.
// The input area holds bytes the caller appended; compact() keeps the unread tail (and the bytes
// still held in the bit buffer, so parsers can always step back to a byte boundary).
//
// The decoder stops at every point the caller must act on: more input, output full, a checkpoint
// candidate (a block boundary that satisfies the zran rule), an output limit, the end, or an error.

// CRC-32 (zlib's crc32(): pre/post-conditioned, continuing from `crc`) of [ptr, ptr+len), computed by
// the host (node:zlib's native crc32 reads the module's memory in place: several times faster than
// a table-driven CRC in WebAssembly).
@external("env", "crc32")
declare function crc32Update(crc: u32, ptr: usize, len: usize): u32;
import {
  buildFixed, buildTable, DIST_BITS, DIST_TABLE, F_EOB, F_EXCEPTIONAL, F_INVALID, F_SUB,
  KIND_DIST, KIND_LITLEN, KIND_PRECODE, LIT_BITS, LIT_TABLE, PRE_BITS, PRE_TABLE,
} from "./huffman";

// ---- status codes (mirrored in src/wasm/codes.ts) ----
export const ST_DONE: i32 = 0;
export const ST_NEED_INPUT: i32 = 1;
export const ST_OUTPUT_FULL: i32 = 2;
export const ST_CHECKPOINT: i32 = 3;
export const ST_LIMIT: i32 = 4;

export const E_BAD_MAGIC: i32 = -1;
export const E_BAD_METHOD: i32 = -2;
export const E_BAD_FLAGS: i32 = -3;
export const E_HEADER_CRC: i32 = -4;
export const E_BLOCK_TYPE: i32 = -5;
export const E_STORED_LEN: i32 = -6;
export const E_TOO_MANY_CODES: i32 = -7;
export const E_BAD_CODE_LENGTHS: i32 = -8;
export const E_NO_END_OF_BLOCK: i32 = -9;
export const E_BAD_LITLEN: i32 = -10;
export const E_BAD_DISTANCE: i32 = -11;
export const E_DISTANCE_TOO_FAR: i32 = -12;
export const E_CRC_MISMATCH: i32 = -13;
export const E_SIZE_MISMATCH: i32 = -14;
export const E_TRUNCATED: i32 = -15;
export const E_TRAILING_GARBAGE: i32 = -16;
export const E_BAD_REPEAT: i32 = -17;
export const E_HEADER_TOO_LARGE: i32 = -18;
export const E_STATE: i32 = -19;

// ---- decoder modes ----
const M_GZHEAD: i32 = 0;
const M_TYPE: i32 = 1;
const M_STORED: i32 = 2;
const M_HUFF: i32 = 3;
const M_TRAILER: i32 = 4;
const M_MEMBER_END: i32 = 5;
const M_DONE: i32 = 6;
const M_ERROR: i32 = 7;

export const WIN: usize = 32768;
const OUT_SLACK: usize = 512;
const IN_SLACK: usize = 64;
// Fast loop guards: enough input for two 8-byte refills, enough output for a literal pair,
// a longest match and a 16-byte copy overshoot.
const FAST_IN: usize = 48;
const FAST_OUT: usize = 320;
// The slow path needs room for one longest match (plus copy slack).
const SLOW_OUT: usize = 274;

const PRE_ORDER: StaticArray<u8> = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];
const LENS: usize = memory.data(320, 16);
const LIT_MASK: u32 = (1 << LIT_BITS) - 1;
const DIST_MASK: u32 = (1 << DIST_BITS) - 1;

// ---- buffers ----
let outBuf: usize = 0; // start of the 32 KiB history
let outCapEnd: usize = 0; // end of usable output space
let inBuf: usize = 0;
let inCap: usize = 0;

// ---- bit reader ----
let gBB: u64 = 0; // bit buffer, LSB first, only the low gBC bits are meaningful
let gBC: u32 = 0; // bits held (0..63)
let gIP: usize = 0; // next input byte not yet loaded into gBB
let gIE: usize = 0; // end of input bytes present
let inFinal: bool = false; // the input present is the end of the stream
let inBase: i64 = 0; // stream offset of inBuf[0]

// ---- output ----
let gOP: usize = 0; // next output byte
let outBase: i64 = 0; // stream offset of outBuf[0] (negative while the history is unfilled)
let histLow: usize = 0; // lowest address a back-reference may reach
let pendStart: usize = 0; // output not yet taken by the caller starts here
let limitTot: i64 = 0x7fffffffffffffff; // stop once this much output exists

// ---- member / block state ----
let mode: i32 = M_GZHEAD;
let errCode: i32 = 0;
let blockFinal: bool = false;
let storedLeft: u32 = 0;
let tablesFixed: bool = false;
let firstMemberRaw: bool = false; // extraction starts inside a member: its trailer is skipped unchecked
let verifyCrc: bool = true;
let crc: u32 = 0;
let crcPos: usize = 0;
let memberStart: i64 = 0; // stream output offset where the current member began
let members: i32 = 0;
let nameScanned: usize = 0; // header bytes already searched for FNAME's terminator
let commentScanned: usize = 0; // the same for FCOMMENT
let primeBits: u32 = 0; // extraction: bits of the first input byte that belong to the first block

// ---- checkpoints ----
let spanSize: i64 = -1; // < 0: no checkpoint capture
let lastCk: i64 = 0;
let boundaryDone: bool = false;
let ckIn: i64 = 0;
let ckOut: i64 = 0;
let ckBits: u32 = 0;

// ---------------------------------------------------------------------------------------------
// set-up

/** Lays out the buffers after the static data. Returns the input pointer, or 0 if memory is short. */
export function configure(inCapacity: usize, outCapacity: usize): usize {
  const base = (__heap_base + 63) & ~(<usize>63);
  outBuf = base;
  outCapEnd = outBuf + WIN + outCapacity;
  inBuf = (outCapEnd + OUT_SLACK + 63) & ~(<usize>63);
  inCap = inCapacity;
  if (!ensureMemory(inBuf + inCap + IN_SLACK)) return 0;
  return inBuf;
}

function ensureMemory(end: usize): bool {
  const have = <usize>memory.size() << 16;
  if (end <= have) return true;
  const pages = <i32>((end - have + 0xffff) >>> 16);
  return memory.grow(pages) >= 0;
}

/** Enlarges the input area (it is last in memory, so nothing moves). */
export function growInput(newCap: usize): bool {
  if (newCap <= inCap) return true;
  if (!ensureMemory(inBuf + newCap + IN_SLACK)) return false;
  inCap = newCap;
  return true;
}

function resetCommon(): void {
  gBB = 0;
  gBC = 0;
  gIP = inBuf;
  gIE = inBuf;
  inFinal = false;
  inBase = 0;
  gOP = outBuf + WIN;
  pendStart = gOP;
  crcPos = gOP;
  crc = 0;
  limitTot = 0x7fffffffffffffff;
  errCode = 0;
  blockFinal = false;
  storedLeft = 0;
  tablesFixed = false;
  boundaryDone = false;
  memberStart = 0;
  members = 0;
  lastCk = 0;
  primeBits = 0;
  nameScanned = 0;
  commentScanned = 0;
}

/** Starts a gzip stream from its first byte. span < 0 disables checkpoint capture. */
export function startGzip(span: f64, checkCrc: bool): void {
  resetCommon();
  memory.fill(outBuf, 0, WIN); // the zran window is zero-filled before output exists
  outBase = -(<i64>WIN);
  histLow = gOP;
  mode = M_GZHEAD;
  firstMemberRaw = false;
  verifyCrc = checkCrc;
  spanSize = <i64>span;
}

/**
 * Starts raw inflation from a checkpoint. The caller then writes the 32 KiB window at
 * windowPtr() and appends the span bytes as input. `bits` (0..7) unused bits of the first input
 * byte belong to the first block. `outAt` is the checkpoint's uncompressed offset.
 */
export function startRaw(bits: u32, outAt: f64): void {
  resetCommon();
  outBase = <i64>outAt - <i64>WIN;
  histLow = outBuf;
  mode = M_TYPE;
  firstMemberRaw = true;
  verifyCrc = false;
  spanSize = -1;
  primeBits = bits & 7;
}

// ---------------------------------------------------------------------------------------------
// caller I/O

/** Drops consumed input (keeping bytes still in the bit buffer); returns the free space. */
export function compact(): usize {
  const keep = gIP - (<usize>(gBC >>> 3));
  const n = gIE - keep;
  if (keep > inBuf) {
    memory.copy(inBuf, keep, n);
    const delta = keep - inBuf;
    inBase += <i64>delta;
    gIP -= delta;
    gIE -= delta;
  }
  return inCap - (gIE - inBuf);
}

export function inputEnd(): usize { return gIE; }
export function inputFree(): usize { return inCap - (gIE - inBuf); }
export function windowPtr(): usize { return outBuf; }

/** The caller wrote n bytes at inputEnd(); `last` marks the end of the stream. */
export function pushed(n: usize, last: bool): void {
  gIE += n;
  if (last) inFinal = true;
}

export function pendingPtr(): usize { return pendStart; }
export function pendingLen(): usize { return gOP - pendStart; }
export function takePending(): void { pendStart = gOP; }
export function outPtr(): usize { return gOP; }

/** Moves the last 32 KiB of output to the front to make room (the caller took the output). */
export function slide(): void {
  const hist = outBuf + WIN;
  if (gOP <= hist) return;
  if (verifyCrc && gOP > crcPos) {
    crc = crc32Update(crc, crcPos, gOP - crcPos);
    crcPos = gOP;
  }
  const delta = gOP - hist;
  memory.copy(outBuf, gOP - WIN, WIN);
  gOP = hist;
  pendStart = hist;
  crcPos = hist;
  histLow = histLow - outBuf > delta ? histLow - delta : outBuf;
  outBase += <i64>delta;
}

export function setLimit(total: f64): void { limitTot = <i64>total; }
export function totalOut(): f64 { return <f64>(outBase + <i64>(gOP - outBuf)); }
export function totalIn(): f64 { return <f64>(inBase + <i64>(gIP - inBuf) - <i64>(gBC >>> 3)); }
export function checkpointIn(): f64 { return <f64>ckIn; }
export function checkpointOut(): f64 { return <f64>ckOut; }
export function checkpointBits(): u32 { return ckBits; }
export function memberCount(): i32 { return members; }
export function lastError(): i32 { return errCode; }

// ---------------------------------------------------------------------------------------------
// main loop

function fail(code: i32): i32 {
  errCode = code;
  mode = M_ERROR;
  return code;
}

@inline function shortage(): i32 {
  return inFinal ? fail(E_TRUNCATED) : ST_NEED_INPUT;
}

@inline function tot(op: usize): i64 { return outBase + <i64>(op - outBuf); }

export function run(): i32 {
  if (primeBits != 0) {
    if (gIP >= gIE) return shortage();
    gBB = <u64>(load<u8>(gIP) >>> (8 - primeBits));
    gBC = primeBits;
    gIP++;
    primeBits = 0;
  }
  while (true) {
    // An extraction ends as soon as it has its bytes, before reading any further headers: the
    // span's compressed range may end exactly at the next block or member boundary.
    if (limitReached() && mode != M_DONE && mode != M_ERROR) return ST_LIMIT;
    switch (mode) {
      case M_GZHEAD: {
        const r = gzipHeader();
        if (r != 0) return r;
        break;
      }
      case M_TYPE: {
        if (spanSize >= 0 && !boundaryDone) {
          boundaryDone = true;
          const t = tot(gOP);
          if (t == 0 || t - lastCk > spanSize) {
            ckOut = t;
            ckIn = inBase + <i64>(gIP - inBuf) - <i64>(gBC >>> 3);
            ckBits = gBC & 7;
            lastCk = t;
            return ST_CHECKPOINT;
          }
        }
        const r = blockHeader();
        if (r != 0) return r;
        boundaryDone = false;
        break;
      }
      case M_HUFF: {
        const r = huffman();
        if (r != 0) return r;
        break;
      }
      case M_STORED: {
        const r = stored();
        if (r != 0) return r;
        break;
      }
      case M_TRAILER: {
        const r = trailer();
        if (r != 0) return r;
        break;
      }
      case M_MEMBER_END: {
        toByteBoundary();
        if (gIP >= gIE) {
          if (inFinal) {
            mode = M_DONE;
            return ST_DONE;
          }
          return ST_NEED_INPUT;
        }
        mode = M_GZHEAD;
        break;
      }
      case M_DONE:
        return ST_DONE;
      default:
        return errCode != 0 ? errCode : E_STATE;
    }
  }
}

/** Discards the partial byte and hands whole buffered bytes back to the input. */
@inline function toByteBoundary(): void {
  gIP -= <usize>(gBC >>> 3);
  gBB = 0;
  gBC = 0;
}

// ---- gzip member header (RFC 1952) ----
function gzipHeader(): i32 {
  toByteBoundary();
  const start = gIP;
  const avail = gIE - start;
  if (avail < 10) {
    if (!inFinal) return needHeaderBytes(avail);
    if ((avail >= 1 && load<u8>(start) != 0x1f) || (avail >= 2 && load<u8>(start + 1) != 0x8b)) {
      return fail(members == 0 ? E_BAD_MAGIC : E_TRAILING_GARBAGE);
    }
    return fail(E_TRUNCATED);
  }
  if (load<u8>(start) != 0x1f || load<u8>(start + 1) != 0x8b) {
    return fail(members == 0 ? E_BAD_MAGIC : E_TRAILING_GARBAGE);
  }
  if (load<u8>(start + 2) != 8) return fail(E_BAD_METHOD);
  const flg = <u32>load<u8>(start + 3);
  if (flg & 0xe0) return fail(E_BAD_FLAGS);
  let p = start + 10;
  if (flg & 4) {
    if (gIE - p < 2) return headerShort();
    const xlen = <usize>load<u16>(p);
    p += 2;
    if (gIE - p < xlen) return headerShort();
    p += xlen;
  }
  // FNAME and FCOMMENT are unbounded: remember how far a short scan got so that a long name
  // arriving in small chunks is scanned once, not once per chunk.
  if (flg & 8) {
    if (p < start + nameScanned) p = start + nameScanned;
    while (p < gIE && load<u8>(p) != 0) p++;
    if (p >= gIE) {
      nameScanned = p - start;
      return headerShort();
    }
    p++;
  }
  if (flg & 16) {
    if (p < start + commentScanned) p = start + commentScanned;
    while (p < gIE && load<u8>(p) != 0) p++;
    if (p >= gIE) {
      commentScanned = p - start;
      return headerShort();
    }
    p++;
  }
  if (flg & 2) {
    if (gIE - p < 2) return headerShort();
    const want = <u32>load<u16>(p);
    if ((crc32Update(0, start, p - start) & 0xffff) != want) return fail(E_HEADER_CRC);
    p += 2;
  }
  gIP = p;
  nameScanned = 0;
  commentScanned = 0;
  members++;
  memberStart = tot(gOP);
  histLow = gOP; // a new member cannot refer to the previous one's output
  crc = 0;
  crcPos = gOP;
  blockFinal = false;
  boundaryDone = false;
  mode = M_TYPE;
  return 0;
}

function headerShort(): i32 {
  if (inFinal) return fail(E_TRUNCATED);
  return needHeaderBytes(gIE - gIP);
}

// Asks for more input; if the whole input area is one unfinished header, the caller must grow it.
function needHeaderBytes(have: usize): i32 {
  if (have >= inCap) return E_HEADER_TOO_LARGE; // not fatal: caller may growInput() and retry
  return ST_NEED_INPUT;
}

// ---- slow bit reader (bounds-checked) ----
@inline function pull(): void {
  while (gBC <= 55 && gIP < gIE) {
    gBB |= <u64>load<u8>(gIP) << <u64>gBC;
    gIP++;
    gBC += 8;
  }
}

@inline function bits(n: u32): u32 {
  const v = <u32>gBB & ((1 << n) - 1);
  gBB >>= <u64>n;
  gBC -= n;
  return v;
}

// ---- block header ----
function blockHeader(): i32 {
  const sIP = gIP, sBB = gBB, sBC = gBC;
  pull();
  if (gBC < 3) return shortage();
  blockFinal = bits(1) != 0;
  const type = bits(2);
  if (type == 0) {
    toByteBoundary();
    if (gIE - gIP < 4) {
      gIP = sIP; gBB = sBB; gBC = sBC;
      return shortage();
    }
    const len = <u32>load<u16>(gIP);
    const nlen = <u32>load<u16>(gIP + 2);
    if ((len ^ 0xffff) != nlen) return fail(E_STORED_LEN);
    gIP += 4;
    storedLeft = len;
    mode = M_STORED;
    return 0;
  }
  if (type == 1) {
    if (!tablesFixed) {
      buildFixed();
      tablesFixed = true;
    }
    mode = M_HUFF;
    return 0;
  }
  if (type == 2) {
    const r = dynamicHeader();
    if (r == ST_NEED_INPUT) {
      gIP = sIP; gBB = sBB; gBC = sBC;
      return r;
    }
    if (r != 0) return r;
    tablesFixed = false;
    mode = M_HUFF;
    return 0;
  }
  return fail(E_BLOCK_TYPE);
}

function dynamicHeader(): i32 {
  pull();
  if (gBC < 14) return shortage();
  const nlen = bits(5) + 257;
  const ndist = bits(5) + 1;
  const ncode = bits(4) + 4;
  if (nlen > 286 || ndist > 30) return fail(E_TOO_MANY_CODES);
  memory.fill(LENS, 0, 19);
  for (let i: u32 = 0; i < ncode; i++) {
    pull();
    if (gBC < 3) return shortage();
    store<u8>(LENS + <usize>unchecked(PRE_ORDER[i]), <u8>bits(3));
  }
  if (buildTable(LENS, 19, PRE_TABLE, PRE_BITS, KIND_PRECODE) != 0) return fail(E_BAD_CODE_LENGTHS);
  const total = nlen + ndist;
  let i: u32 = 0;
  while (i < total) {
    pull();
    const e = load<u32>(PRE_TABLE + ((<u32>gBB & 0x7f) << 2));
    const cl = e & 63;
    if (cl > gBC) return shortage();
    if (e & F_INVALID) return fail(E_BAD_CODE_LENGTHS);
    const sym = e >>> 16;
    if (sym < 16) {
      bits(cl);
      store<u8>(LENS + i, <u8>sym);
      i++;
      continue;
    }
    let rep: u32 = 0;
    let val: u8 = 0;
    if (sym == 16) {
      if (cl + 2 > gBC) return shortage();
      if (i == 0) return fail(E_BAD_REPEAT);
      bits(cl);
      rep = 3 + bits(2);
      val = load<u8>(LENS + i - 1);
    } else if (sym == 17) {
      if (cl + 3 > gBC) return shortage();
      bits(cl);
      rep = 3 + bits(3);
    } else {
      if (cl + 7 > gBC) return shortage();
      bits(cl);
      rep = 11 + bits(7);
    }
    if (i + rep > total) return fail(E_BAD_REPEAT);
    memory.fill(LENS + i, val, rep);
    i += rep;
  }
  if (load<u8>(LENS + 256) == 0) return fail(E_NO_END_OF_BLOCK);
  if (buildTable(LENS, nlen, LIT_TABLE, LIT_BITS, KIND_LITLEN) != 0) return fail(E_BAD_CODE_LENGTHS);
  if (buildTable(LENS + nlen, ndist, DIST_TABLE, DIST_BITS, KIND_DIST) != 0) return fail(E_BAD_CODE_LENGTHS);
  return 0;
}

// ---- stored block ----
function stored(): i32 {
  while (storedLeft > 0) {
    if (limitReached()) return ST_LIMIT;
    const room = outCapEnd - gOP;
    if (room == 0) return ST_OUTPUT_FULL;
    const avail = gIE - gIP;
    if (avail == 0) return shortage();
    let n = <usize>storedLeft;
    if (n > room) n = room;
    if (n > avail) n = avail;
    memory.copy(gOP, gIP, n);
    gOP += n;
    gIP += n;
    storedLeft -= <u32>n;
  }
  endOfBlock();
  return 0;
}

@inline function endOfBlock(): void {
  if (verifyCrc && gOP > crcPos) {
    // while the block's output is still in cache
    crc = crc32Update(crc, crcPos, gOP - crcPos);
    crcPos = gOP;
  }
  mode = blockFinal ? M_TRAILER : M_TYPE;
  boundaryDone = false;
}

@inline function limitReached(): bool {
  return tot(gOP) >= limitTot;
}

// ---- member trailer ----
function trailer(): i32 {
  toByteBoundary();
  if (gIE - gIP < 8) return shortage();
  if (firstMemberRaw) {
    firstMemberRaw = false;
  } else if (verifyCrc) {
    if (gOP > crcPos) crc = crc32Update(crc, crcPos, gOP - crcPos);
    crcPos = gOP;
    if (load<u32>(gIP) != crc) return fail(E_CRC_MISMATCH);
    if (load<u32>(gIP + 4) != <u32>(tot(gOP) - memberStart)) return fail(E_SIZE_MISMATCH);
  }
  gIP += 8;
  mode = M_MEMBER_END;
  return 0;
}

// ---- Huffman-coded block data ----
function huffman(): i32 {
  while (true) {
    if (limitReached()) return ST_LIMIT;
    // The fast loop stops at the output limit (it may overshoot by one match) or near the end.
    let opEnd = outCapEnd - FAST_OUT;
    if (gOP < opEnd) {
      const room = limitTot - tot(gOP); // > 0 here
      if (room < <i64>(opEnd - gOP)) opEnd = gOP + <usize>room;
    }
    if (gIP + FAST_IN < gIE && gOP < opEnd) {
      // (each call makes progress: both loop guards hold on entry)
      const r = fastLoop(opEnd);
      if (r == 1) {
        endOfBlock();
        return 0;
      }
      if (r < 0) return fail(r);
      continue;
    }
    if (outCapEnd - gOP < SLOW_OUT) return ST_OUTPUT_FULL;
    const r = slowSymbol();
    if (r == SYM_END_OF_BLOCK) {
      endOfBlock();
      return 0;
    }
    if (r != 0) return r;
  }
}

const SYM_END_OF_BLOCK: i32 = 64; // distinct from every ST_* status

// Decodes one symbol with full bounds checks; commits nothing unless the symbol is complete.
// Returns 0 (symbol done), SYM_END_OF_BLOCK, ST_NEED_INPUT, or an error (already recorded).
function slowSymbol(): i32 {
  pull();
  let bb = gBB;
  let bc = gBC;
  let e = load<u32>(LIT_TABLE + ((<u32>bb & LIT_MASK) << 2));
  if (e & F_SUB) {
    if (bc < LIT_BITS) return shortage();
    e = subEntry(LIT_TABLE, e, <u32>(bb >> <u64>LIT_BITS));
  }
  let n = e & 63; // code length (+ extra bits)
  if (n > bc) return shortage();
  if (<i32>e < 0) {
    store<u8>(gOP, <u8>(e >>> 16));
    gOP++;
    gBB = bb >> <u64>n;
    gBC = bc - n;
    return 0;
  }
  if (e & F_EXCEPTIONAL) {
    if (e & F_EOB) {
      gBB = bb >> <u64>n;
      gBC = bc - n;
      return SYM_END_OF_BLOCK;
    }
    return fail(E_BAD_LITLEN);
  }
  const len = extraValue(e, bb);
  bb >>= <u64>n;
  bc -= n;
  let d = load<u32>(DIST_TABLE + ((<u32>bb & DIST_MASK) << 2));
  if (d & F_SUB) {
    if (bc < DIST_BITS) return shortage();
    d = subEntry(DIST_TABLE, d, <u32>(bb >> <u64>DIST_BITS));
  }
  n = d & 63;
  if (n > bc) return shortage();
  if (d & F_EXCEPTIONAL) return fail(E_BAD_DISTANCE);
  const dist = <usize>extraValue(d, bb);
  bb >>= <u64>n;
  bc -= n;
  if (dist > gOP - histLow) return fail(E_DISTANCE_TOO_FAR);
  let op = gOP;
  let src = op - dist;
  const end = op + <usize>len;
  while (op < end) {
    store<u8>(op, load<u8>(src));
    op++;
    src++;
  }
  gOP = op;
  gBB = bb;
  gBC = bc;
  return 0;
}

// Base value plus the extra bits after the code: `bb` holds the code at its low end.
@inline function extraValue(e: u32, bb: u64): u32 {
  return (e >>> 16) + ((<u32>bb & ((<u32>1 << (e & 63)) - 1)) >>> ((e >>> 8) & 31));
}

// Second-level lookup: `e` is a SUBTABLE entry, `rest` the input bits after the main-table bits.
@inline function subEntry(table: usize, e: u32, rest: u32): u32 {
  const idx = (e >>> 16) + (rest & ((<u32>1 << ((e >>> 8) & 31)) - 1));
  return load<u32>(table + (<usize>idx << 2));
}

// Byte shuffles that repeat the first d bytes of a vector (d = 1..15), 16 bytes per distance,
// and how far to advance after storing one: the largest multiple of d that is at most 16.
const REPEAT: usize = memory.data(16 * 16, 16);
const REPEAT_STEP: usize = memory.data(16, 16);

export function copyInit(): void {
  for (let d: u32 = 1; d < 16; d++) {
    for (let i: u32 = 0; i < 16; i++) store<u8>(REPEAT + (d << 4) + i, <u8>(i % d));
    store<u8>(REPEAT_STEP + d, <u8>(16 - (16 % d)));
  }
}

// The hot loop: no bounds checks inside, guarded by opEnd / input slack. Returns 0 when a bound
// is reached, 1 at end of block, or a negative error. Leaves the reader at an exact bit position.
//
// After every refill the bit buffer holds at least 56 bits: enough for three literals (15 bits
// each) and a table lookup, or a length (15 + 5) after two literals; a distance (15 + 13) comes
// after a refill of its own. The next literal/length entry is looked up before a match is copied,
// so the table load overlaps the copy.
function fastLoop(opEnd: usize): i32 {
  let bb = gBB;
  let bc = <u64>gBC;
  let ip = gIP;
  let op = gOP;
  const ipEnd = gIE - FAST_IN;
  const low = histLow;
  let r: i32 = 0;
  bb |= load<u64>(ip) << bc;
  ip += <usize>((63 - bc) >> 3);
  bc |= 56;
  let e = load<u32>(LIT_TABLE + ((<u32>bb & LIT_MASK) << 2));
  // (the caller checked both bounds: the first iteration always runs)
  do {
    // refill: only bits above the ones `e` was looked up from change
    bb |= load<u64>(ip) << bc;
    ip += <usize>((63 - bc) >> 3);
    bc |= 56;
    if (<i32>e < 0) {
      bb >>= <u64>e;
      bc -= <u64>(e & 63);
      store<u8>(op, <u8>(e >>> 16));
      op++;
      e = load<u32>(LIT_TABLE + ((<u32>bb & LIT_MASK) << 2));
      if (<i32>e < 0) {
        bb >>= <u64>e;
        bc -= <u64>(e & 63);
        store<u8>(op, <u8>(e >>> 16));
        op++;
        e = load<u32>(LIT_TABLE + ((<u32>bb & LIT_MASK) << 2));
        if (<i32>e < 0) {
          bb >>= <u64>e;
          bc -= <u64>(e & 63);
          store<u8>(op, <u8>(e >>> 16));
          op++;
          e = load<u32>(LIT_TABLE + ((<u32>bb & LIT_MASK) << 2));
          continue;
        }
      }
    }
    // at least 34 bits buffered here
    if (e & F_EXCEPTIONAL) {
      if (e & F_SUB) {
        e = subEntry(LIT_TABLE, e, <u32>(bb >> <u64>LIT_BITS));
        if (<i32>e < 0) {
          bb >>= <u64>e;
          bc -= <u64>(e & 63);
          store<u8>(op, <u8>(e >>> 16));
          op++;
          e = load<u32>(LIT_TABLE + ((<u32>bb & LIT_MASK) << 2));
          continue;
        }
      }
      if (e & F_EXCEPTIONAL) {
        if (e & F_EOB) {
          bb >>= <u64>e;
          bc -= <u64>(e & 63);
          r = 1;
        } else {
          r = E_BAD_LITLEN;
        }
        break;
      }
    }
    const len = <usize>extraValue(e, <u64>bb);
    bb >>= <u64>e;
    bc -= <u64>(e & 63);
    bb |= load<u64>(ip) << bc;
    ip += <usize>((63 - bc) >> 3);
    bc |= 56;
    let d = load<u32>(DIST_TABLE + ((<u32>bb & DIST_MASK) << 2));
    if (d & F_EXCEPTIONAL) {
      if (d & F_SUB) d = subEntry(DIST_TABLE, d, <u32>(bb >> <u64>DIST_BITS));
      if (d & F_EXCEPTIONAL) {
        r = E_BAD_DISTANCE;
        break;
      }
    }
    const dist = <usize>extraValue(d, bb);
    bb >>= <u64>d;
    bc -= <u64>(d & 63);
    if (dist > op - low) {
      r = E_DISTANCE_TOO_FAR;
      break;
    }
    e = load<u32>(LIT_TABLE + ((<u32>bb & LIT_MASK) << 2));
    let src = op - dist;
    const end = op + len;
    if (dist >= 16) {
      v128.store(op, v128.load(src));
      v128.store(op, v128.load(src, 16), 16);
      if (len > 32) {
        op += 32;
        src += 32;
        do {
          v128.store(op, v128.load(src));
          op += 16;
          src += 16;
        } while (op < end);
      }
    } else {
      // the pattern of the last `dist` bytes, repeated across a vector, stored every `step` bytes
      const v = i8x16.swizzle(v128.load(src), v128.load(REPEAT + (dist << 4)));
      const step = <usize>load<u8>(REPEAT_STEP + dist);
      do {
        v128.store(op, v);
        op += step;
      } while (op < end);
    }
    op = end;
  } while (ip < ipEnd && op < opEnd);
  // Hand back whole bytes that were loaded but not consumed, so the position is exact.
  ip -= <usize>(bc >> 3);
  bc &= 7;
  gBB = bb & ((<u64>1 << bc) - 1);
  gBC = <u32>bc;
  gIP = ip;
  gOP = op;
  return r;
}
