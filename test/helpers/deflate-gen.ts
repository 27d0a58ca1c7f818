// A generator of random but valid raw DEFLATE streams with known output. Unlike zlib (whose
// matches never reach further back than 32506 bytes), it uses every length and distance code,
// including distance 32768, empty stored blocks and blocks of every type back to back.
import { BitWriter } from "./ref-inflate.js";
import type { Rng } from "./inflate-util.js";

const LBASE = [
  3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258,
];
const LEXT = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
const DBASE = [
  1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145,
  8193, 12289, 16385, 24577,
];
const DEXT = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];

/** Writes a match in a fixed-Huffman block (length 3..258, distance 1..32768). */
export function fixedMatch(w: BitWriter, len: number, dist: number): void {
  let li = 28;
  if (len !== 258) {
    li = 27;
    while (LBASE[li]! > len) li--;
  }
  w.fixedLit(257 + li).bits(len - LBASE[li]!, LEXT[li]!);
  let di = 29;
  while (DBASE[di]! > dist) di--;
  w.fixedDist(di).bits(dist - DBASE[di]!, DEXT[di]!);
}

export interface GenOptions {
  /** Probability (0..1) that a match uses one of the longest distances (32768 - small). */
  farMatches?: number;
  /** Favour length-258 matches. */
  longMatches?: number;
}

/**
 * Returns a raw deflate stream of about `size` output bytes and that output. Blocks: stored
 * (sometimes empty), and fixed-Huffman blocks of literals and matches.
 */
export function randomDeflate(r: Rng, size: number, opts: GenOptions = {}): { raw: Uint8Array; data: Uint8Array } {
  const out = new Uint8Array(size + 300);
  let n = 0;
  const w = new BitWriter();
  while (n < size) {
    const kind = r.int(10);
    if (kind === 0) {
      // stored block, possibly empty
      const len = r.int(4) === 0 ? 0 : Math.min(size - n, r.range(1, 5000));
      w.bits(0, 1)
        .bits(0, 2)
        .raw([len & 0xff, len >> 8, ~len & 0xff, (~len >> 8) & 0xff]);
      const b = r.bytes(len);
      w.raw(b);
      out.set(b, n);
      n += len;
      continue;
    }
    // fixed-Huffman block
    w.bits(0, 1).bits(1, 2);
    const target = Math.min(size, n + r.range(1, 60000));
    while (n < target) {
      if (n === 0 || r.int(5) === 0) {
        const b = r.int(3) === 0 ? r.int(256) : 0x61 + r.int(4);
        w.fixedLit(b);
        out[n++] = b;
        continue;
      }
      let len = r.int(1 + Math.floor((opts.longMatches ?? 0) * 10)) > 0 ? 258 : r.range(3, 258);
      len = Math.min(len, size + 258 - n);
      if (len < 3) len = 3;
      const maxD = Math.min(n, 32768);
      let dist: number;
      const p = r.u32() / 2 ** 32;
      if (p < (opts.farMatches ?? 0.1)) dist = Math.max(1, maxD - r.int(Math.min(maxD, 8)));
      else if (p < 0.5) dist = r.range(1, Math.min(maxD, 20));
      else dist = r.range(1, maxD);
      fixedMatch(w, len, dist);
      for (let i = 0; i < len; i++, n++) out[n] = out[n - dist]!;
    }
    w.fixedLit(256);
  }
  // an empty final fixed block ends the stream
  w.bits(1, 1).bits(1, 2).fixedLit(256);
  return { raw: w.finish(), data: out.slice(0, n) };
}
