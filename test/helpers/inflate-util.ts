// Shared helpers for the inflate test files: deterministic data, gzip framing, pigz, span maths.
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { crc32 } from "./ref-inflate.js";

// ---- golden vectors ----
export const VECTORS_DIR = join(fileURLToPath(new URL(".", import.meta.url)), "..", "vectors");

export function vector(name: string): Uint8Array {
  const b = readFileSync(join(VECTORS_DIR, name));
  return new Uint8Array(b.buffer, b.byteOffset, b.length);
}

// ---- deterministic PRNG (mulberry32) ----
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  /** Uniform 32-bit unsigned integer. */
  u32(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor((this.u32() / 2 ** 32) * n);
  }
  /** Integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)]!;
  }
  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff;
    return b;
  }
}

// ---- data generators ----
const WORDS = (
  "the of and to in is that for it as with was on be by this are or his from at which but " +
  "have an they not had one all were can their there been if more when will would who so no " +
  "container snapshot layer checkpoint compressed window deflate gzip span offset index manifest " +
  "lazy loading registry digest blob fetch mount overlay filesystem kernel fuse daemon socket"
).split(" ");

/** English-ish text: words, punctuation, line breaks, a few numbers. */
export function textLike(rng: Rng, size: number): Uint8Array {
  const parts: string[] = [];
  let n = 0;
  let line = 0;
  while (n < size) {
    let w = rng.pick(WORDS);
    const r = rng.int(100);
    if (r < 5) w = String(rng.int(100000));
    else if (r < 10) w = w[0]!.toUpperCase() + w.slice(1);
    let sep = " ";
    line += w.length + 1;
    if (line > 60 + rng.int(20)) {
      sep = rng.int(4) === 0 ? ".\n\n" : "\n";
      line = 0;
    } else if (rng.int(12) === 0) sep = ", ";
    parts.push(w + sep);
    n += w.length + sep.length;
  }
  return new TextEncoder().encode(parts.join("")).subarray(0, size);
}

/** `size` bytes repeating a random pattern of length `period` (distance-`period` matches). */
export function repeating(rng: Rng, period: number, size: number): Uint8Array {
  const pat = rng.bytes(period);
  const b = new Uint8Array(size);
  for (let i = 0; i < size; i++) b[i] = pat[i % period]!;
  return b;
}

/** A mix of segments of different kinds: random, zero runs, text, short periods, counters, near-repeats. */
export function mixed(rng: Rng, size: number): Uint8Array {
  const b = new Uint8Array(size);
  let p = 0;
  while (p < size) {
    const len = Math.min(size - p, rng.range(1, 1 << rng.range(4, 17)));
    const kind = rng.int(7);
    let seg: Uint8Array;
    switch (kind) {
      case 0:
        seg = rng.bytes(len);
        break;
      case 1:
        seg = new Uint8Array(len).fill(rng.int(2) ? 0 : rng.int(256));
        break;
      case 2:
        seg = textLike(rng, len);
        break;
      case 3:
        seg = repeating(rng, rng.range(1, 40), len);
        break;
      case 4: {
        seg = new Uint8Array(len);
        const dv = new DataView(seg.buffer);
        let v = rng.u32();
        for (let i = 0; i + 4 <= len; i += 4) dv.setUint32(i, v++, true);
        break;
      }
      case 5: {
        // copy of earlier output (long-distance matches), with a few byte changes
        const from = p > 0 ? rng.int(p) : 0;
        seg = b.slice(from, Math.min(p, from + len));
        for (let i = 0; i < seg.length; i += rng.range(50, 500)) seg[i] = rng.int(256);
        break;
      }
      default: {
        // low-entropy binary: few distinct symbols
        seg = new Uint8Array(len);
        for (let i = 0; i < len; i++) seg[i] = rng.int(4) * 17;
      }
    }
    b.set(seg.subarray(0, size - p), p);
    p += Math.max(1, seg.length);
  }
  return b;
}

// ---- gzip framing ----
export interface HeaderFields {
  ftext?: boolean;
  fhcrc?: boolean;
  extra?: Uint8Array;
  name?: Uint8Array | string;
  comment?: Uint8Array | string;
  mtime?: number;
  xfl?: number;
  os?: number;
  /** Raw FLG override (for reserved-bit tests); the other fields still decide what follows. */
  flagsOverride?: number;
}

const enc = (s: Uint8Array | string) => (typeof s === "string" ? new TextEncoder().encode(s) : s);

/** A gzip member header with the requested optional fields (RFC 1952 2.3). */
export function gzipHeader(f: HeaderFields = {}): Uint8Array {
  let flg = 0;
  if (f.ftext) flg |= 1;
  if (f.fhcrc) flg |= 2;
  if (f.extra) flg |= 4;
  if (f.name !== undefined) flg |= 8;
  if (f.comment !== undefined) flg |= 16;
  const parts: number[] = [0x1f, 0x8b, 8, f.flagsOverride ?? flg];
  const m = f.mtime ?? 0;
  parts.push(m & 0xff, (m >>> 8) & 0xff, (m >>> 16) & 0xff, (m >>> 24) & 0xff, f.xfl ?? 0, f.os ?? 3);
  const chunks: Uint8Array[] = [Uint8Array.from(parts)];
  if (f.extra) {
    if (f.extra.length > 0xffff) throw new Error("FEXTRA is at most 65535 bytes");
    chunks.push(Uint8Array.of(f.extra.length & 0xff, f.extra.length >>> 8), f.extra);
  }
  if (f.name !== undefined) chunks.push(enc(f.name), Uint8Array.of(0));
  if (f.comment !== undefined) chunks.push(enc(f.comment), Uint8Array.of(0));
  let h = concat(chunks);
  if (f.fhcrc) {
    const c = crc32(h) & 0xffff;
    h = concat([h, Uint8Array.of(c & 0xff, c >>> 8)]);
  }
  return h;
}

/** CRC32 + ISIZE of `data`, little endian. */
export function gzipTrailer(data: Uint8Array): Uint8Array {
  const t = new Uint8Array(8);
  const dv = new DataView(t.buffer);
  dv.setUint32(0, crc32(data), true);
  dv.setUint32(4, data.length >>> 0, true);
  return t;
}

/** header ++ raw deflate body ++ trailer(data). */
export function gzipMember(header: Uint8Array, rawBody: Uint8Array, data: Uint8Array): Uint8Array {
  return concat([header, rawBody, gzipTrailer(data)]);
}

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const r = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    r.set(p, o);
    o += p.length;
  }
  return r;
}

export function u8(b: Buffer | Uint8Array): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.length);
}

/** Byte-exact equality with a useful failure message (first difference) instead of a huge diff. */
export function sameBytes(actual: Uint8Array, expected: Uint8Array): string {
  // memcmp first; the byte loop below only runs to describe a difference
  if (
    actual.length === expected.length &&
    Buffer.from(actual.buffer, actual.byteOffset, actual.length).equals(expected)
  )
    return "equal";
  if (actual.length !== expected.length) {
    let i = 0;
    const n = Math.min(actual.length, expected.length);
    while (i < n && actual[i] === expected[i]) i++;
    return `length ${actual.length} != expected ${expected.length} (first difference at ${i})`;
  }
  for (let i = 0; i < actual.length; i++) {
    if (actual[i] !== expected[i])
      return `differ at byte ${i} of ${actual.length}: ${actual[i]} != expected ${expected[i]}`;
  }
  return "equal";
}

// ---- pigz ----
export const PIGZ = existsSync("/usr/bin/pigz") ? "/usr/bin/pigz" : "pigz";

/** Runs `pigz <args>` with `input` on stdin and resolves with its stdout. */
export function pigz(args: string[], input: Uint8Array): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const p = spawn(PIGZ, args, { stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    p.stdout.on("data", (d: Buffer) => out.push(d));
    p.stderr.on("data", (d: Buffer) => err.push(d));
    p.on("error", reject);
    p.on("close", (code) => {
      if (code !== 0) reject(new Error(`pigz ${args.join(" ")} exited ${code}: ${Buffer.concat(err).toString()}`));
      else resolve(u8(Buffer.concat(out)));
    });
    p.stdin.on("error", reject);
    p.stdin.end(input);
  });
}

// ---- span maths (docs/formats.md §2.3) ----
export interface CpLike {
  in: number;
  out: number;
  bits: number;
}

/** [StartCompressedOffset(i), EndCompressedOffset(i)) for every span. */
export function spanCompressedRanges(cps: readonly CpLike[], fileSize: number): [number, number][] {
  return cps.map((c, i) => [c.in - (c.bits ? 1 : 0), i + 1 < cps.length ? cps[i + 1]!.in : fileSize]);
}

/** [StartUncompressedOffset(i), EndUncompressedOffset(i)) for every span. */
export function spanUncompressedRanges(cps: readonly CpLike[], uncompressedSize: number): [number, number][] {
  return cps.map((c, i) => [c.out, i + 1 < cps.length ? cps[i + 1]!.out : uncompressedSize]);
}

/** Splits `data` into chunks whose sizes are drawn from `sizes` (cycled) or by `rng`. */
export function chunked(data: Uint8Array, next: () => number): Uint8Array[] {
  const res: Uint8Array[] = [];
  for (let p = 0; p < data.length; ) {
    const n = Math.max(1, next());
    res.push(data.subarray(p, p + n));
    p += n;
  }
  return res;
}
