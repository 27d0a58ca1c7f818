// Corrupt input: hand-crafted invalid streams (one per error class), truncation/trailing-data rules,
// argument validation, and a seeded mutation fuzzer checked against the reference decoder.
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { constants, deflateRawSync, gunzipSync, gzipSync, inflateRawSync } from "node:zlib";
import {
  buildCheckpoints,
  buildCheckpointsSync,
  CheckpointBuilder,
  extract,
  gunzip,
  InflateError,
  WINDOW_SIZE,
  type CheckpointResult,
} from "../src/index.js";
import { BitWriter, crc32, refGunzip, zranCheckpoints, type RefResult } from "./helpers/ref-inflate.js";
import {
  concat,
  gzipHeader,
  gzipMember,
  gzipTrailer,
  mixed,
  Rng,
  sameBytes,
  spanCompressedRanges,
  spanUncompressedRanges,
  textLike,
  u8,
  vector,
} from "./helpers/inflate-util.js";
import { key } from "./helpers/verify-checkpoints.js";
import { Watchdog } from "./helpers/watchdog.js";
import { fixedMatch } from "./helpers/deflate-gen.js";

const dog = new Watchdog("inflate-errors.test.ts", 30_000);
beforeEach((ctx) => dog.step(ctx.task.name));
afterAll(() => dog.stop());

// Error codes of InflateError (src/wasm/codes.ts), named after zlib's messages.
const E = {
  BAD_MAGIC: -1,
  BAD_METHOD: -2,
  BAD_FLAGS: -3,
  HEADER_CRC: -4,
  BLOCK_TYPE: -5,
  STORED_LEN: -6,
  TOO_MANY_CODES: -7,
  BAD_CODE_LENGTHS: -8,
  NO_END_OF_BLOCK: -9,
  BAD_LITLEN: -10,
  BAD_DISTANCE: -11,
  DISTANCE_TOO_FAR: -12,
  CRC: -13,
  ISIZE: -14,
  TRUNCATED: -15,
  TRAILING_GARBAGE: -16,
  BAD_REPEAT: -17,
} as const;

/** Runs f, returning the thrown value (or fails if nothing was thrown). */
function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  return expect.fail("expected an exception, but the call returned");
}

function expectInflateError(f: () => unknown, code?: number): InflateError {
  const e = thrown(f);
  if (!(e instanceof InflateError)) expect.fail(`expected InflateError, got ${String(e)}`);
  expect(typeof e.code).toBe("number");
  expect(e.code).toBeLessThan(0);
  expect(e.message.length).toBeGreaterThan(0);
  if (code !== undefined) expect(e.code, e.message).toBe(code);
  return e;
}

/** Every decoder entry point rejects `gz` with `code`. */
function expectAllReject(gz: Uint8Array, code?: number): void {
  expectInflateError(() => gunzip(gz), code);
  expectInflateError(() => buildCheckpointsSync(gz, 0), code);
  expectInflateError(() => {
    const b = new CheckpointBuilder(1000);
    for (let i = 0; i < gz.length; i += 5) b.push(gz.subarray(i, i + 5));
    b.finish();
  }, code);
}

/**
 * Runs f and returns the largest byte size requested from the JavaScript allocators
 * (new Uint8Array(n), new ArrayBuffer(n), Buffer.alloc/allocUnsafe/allocUnsafeSlow(n)).
 */
function largestAllocation(f: () => void): number {
  let largest = 0;
  const note = (n: unknown) => {
    if (typeof n === "number" && n > largest) largest = n;
  };
  const g = globalThis as unknown as Record<string, unknown>;
  const saved = { Uint8Array: g.Uint8Array, ArrayBuffer: g.ArrayBuffer };
  const B = Buffer as unknown as Record<string, (...a: unknown[]) => unknown>;
  const savedB = { alloc: B.alloc!, allocUnsafe: B.allocUnsafe!, allocUnsafeSlow: B.allocUnsafeSlow! };
  for (const name of ["Uint8Array", "ArrayBuffer"] as const) {
    g[name] = new Proxy(saved[name] as object as new (...a: unknown[]) => object, {
      construct(target, args, newTarget) {
        note(args[0]);
        return Reflect.construct(target, args, newTarget) as object;
      },
    });
  }
  for (const name of ["alloc", "allocUnsafe", "allocUnsafeSlow"] as const) {
    B[name] = (...args: unknown[]) => {
      note(args[0]);
      return savedB[name].apply(Buffer, args);
    };
  }
  try {
    f();
  } finally {
    g.Uint8Array = saved.Uint8Array;
    g.ArrayBuffer = saved.ArrayBuffer;
    Object.assign(B, savedB);
  }
  return largest;
}

const wrap = (raw: Uint8Array, data: Uint8Array = new Uint8Array(0)) => gzipMember(gzipHeader(), raw, data);

// ---- small hand-made deflate streams ----
function fixedBlock(w: BitWriter, final: boolean, emit: (w: BitWriter) => void): BitWriter {
  w.bits(final ? 1 : 0, 1).bits(1, 2);
  emit(w);
  return w.fixedLit(256);
}
const lits = (w: BitWriter, s: string) => {
  for (const ch of s) w.fixedLit(ch.charCodeAt(0));
};
/** A match of length 3..258 at distance 1..32768 in a fixed-Huffman block. */
const match = fixedMatch;

/** Canonical codes for a set of code lengths (symbol -> [code, length]). */
function canonical(lengths: Record<number, number>): Map<number, [number, number]> {
  const syms = Object.keys(lengths)
    .map(Number)
    .sort((a, b) => a - b);
  const count = new Array<number>(16).fill(0);
  for (const s of syms) count[lengths[s]!]!++;
  const next = new Array<number>(16).fill(0);
  let code = 0;
  count[0] = 0;
  for (let b = 1; b < 16; b++) {
    code = (code + count[b - 1]!) << 1;
    next[b] = code;
  }
  const res = new Map<number, [number, number]>();
  for (const s of syms) res.set(s, [next[lengths[s]!]!++, lengths[s]!]);
  return res;
}

const ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

/**
 * A dynamic block header: HLIT/HDIST as counts, a precode given as symbol -> length, then the
 * code-length symbols given as [precodeSymbol, extraBitsValue?] pairs.
 */
function dynamicHeader(
  w: BitWriter,
  final: boolean,
  nlen: number,
  ndist: number,
  pre: Record<number, number>,
  seq: [number, number?][],
): Map<number, [number, number]> {
  w.bits(final ? 1 : 0, 1)
    .bits(2, 2)
    .bits(nlen - 257, 5)
    .bits(ndist - 1, 5);
  let ncode = 4;
  ORDER.forEach((s, i) => {
    if (pre[s]) ncode = Math.max(ncode, i + 1);
  });
  w.bits(ncode - 4, 4);
  for (let i = 0; i < ncode; i++) w.bits(pre[ORDER[i]!] ?? 0, 3);
  const codes = canonical(pre);
  for (const [sym, extra] of seq) {
    const c = codes.get(sym);
    if (!c) throw new Error(`precode symbol ${sym} has no code`);
    w.code(c[0], c[1]);
    if (sym === 16) w.bits(extra! - 3, 2);
    if (sym === 17) w.bits(extra! - 3, 3);
    if (sym === 18) w.bits(extra! - 11, 7);
  }
  return codes;
}
/** Code-length symbols for `n` zeros. */
function zeros(n: number): [number, number?][] {
  const s: [number, number?][] = [];
  while (n >= 11) {
    const k = Math.min(138, n);
    if (n - k > 0 && n - k < 3) {
      s.push([18, n - 3]);
      n = 3;
      continue;
    }
    s.push([18, k]);
    n -= k;
  }
  if (n >= 3) s.push([17, n]);
  else for (let i = 0; i < n; i++) s.push([0]);
  return s;
}
const PRE = { 0: 3, 1: 3, 2: 3, 3: 3, 4: 3, 16: 3, 17: 3, 18: 3 }; // complete: 8 codes of 3 bits

/** Lit/len lengths 'a'=la, 'b'=lb, EOB=le (others 0), one distance code of length 1. */
function dynLitHeader(w: BitWriter, la: number, lb: number, le: number): void {
  const seq: [number, number?][] = [...zeros(97), [la], [lb], ...zeros(256 - 99), [le], [1]];
  dynamicHeader(w, true, 257, 1, PRE, seq);
}

/** Expects node's zlib to reject the raw deflate body too (the test input really is invalid). */
function zlibRejectsRaw(raw: Uint8Array): void {
  expect(() => inflateRawSync(raw)).toThrow();
}

describe("hand-crafted streams: sanity of the crafting (valid variants decode)", () => {
  it("fixed block with a match at distance == bytes so far", () => {
    const raw = fixedBlock(new BitWriter(), true, (w) => {
      lits(w, "ab");
      match(w, 3, 2);
    }).finish();
    expect(u8(inflateRawSync(raw))).toEqual(new TextEncoder().encode("ababa"));
    const data = new TextEncoder().encode("ababa");
    expect(sameBytes(gunzip(wrap(raw, data)), data)).toBe("equal");
  });

  it("fixed block with 100 literals then distance 100 (the furthest allowed)", () => {
    const s = textLike(new Rng(3), 100);
    const raw = fixedBlock(new BitWriter(), true, (w) => {
      lits(w, new TextDecoder().decode(s));
      match(w, 10, 100);
    }).finish();
    const data = concat([s, s.subarray(0, 10)]);
    expect(sameBytes(u8(inflateRawSync(raw)), data)).toBe("equal");
    expect(sameBytes(gunzip(wrap(raw, data)), data)).toBe("equal");
  });

  it("dynamic block with a 2-symbol literal code", () => {
    const w = new BitWriter();
    dynLitHeader(w, 1, 0, 1);
    w.code(0, 1).code(0, 1).code(0, 1).code(1, 1); // "aaa" EOB
    const raw = w.finish();
    const data = new TextEncoder().encode("aaa");
    expect(sameBytes(u8(inflateRawSync(raw)), data)).toBe("equal");
    expect(sameBytes(gunzip(wrap(raw, data)), data)).toBe("equal");
  });
});

describe("each error class is an InflateError with its code", () => {
  const tiny = u8(gzipSync(new TextEncoder().encode("hello, hello, hello world\n")));
  const tinyData = new TextEncoder().encode("hello, hello, hello world\n");

  it("empty input", () => {
    expectAllReject(new Uint8Array(0));
  });

  it("bad magic: each magic byte, a zlib stream, a raw deflate stream, a tar file", () => {
    const m0 = tiny.slice();
    m0[0] = 0x1e;
    const m1 = tiny.slice();
    m1[1] = 0x8c;
    for (const x of [m0, m1]) expectAllReject(x, E.BAD_MAGIC);
    expectAllReject(u8(deflateRawSync(tinyData)));
    expectAllReject(new Uint8Array([0x78, 0x9c, ...deflateRawSync(tinyData)]), E.BAD_MAGIC);
    expectAllReject(vector("layer.tar"), E.BAD_MAGIC);
  });

  it("compression method other than 8", () => {
    for (const cm of [0, 7, 9, 15, 255]) {
      const m = tiny.slice();
      m[2] = cm;
      expectAllReject(m, E.BAD_METHOD);
    }
  });

  it("reserved flag bits", () => {
    for (const bit of [0x20, 0x40, 0x80, 0xe0]) {
      const m = tiny.slice();
      m[3] |= bit;
      expectAllReject(m, E.BAD_FLAGS);
    }
  });

  it("FHCRC mismatch", () => {
    const h = gzipHeader({ fhcrc: true, name: "x" });
    h[h.length - 1] ^= 1;
    const gz = gzipMember(h, u8(deflateRawSync(tinyData)), tinyData);
    expect(() => gunzipSync(gz)).toThrow();
    expectAllReject(gz, E.HEADER_CRC);
  });

  it("invalid block type 3, first block and after a valid block", () => {
    const first = new BitWriter().bits(1, 1).bits(3, 2).bits(0, 32).finish();
    zlibRejectsRaw(first);
    expectAllReject(wrap(first), E.BLOCK_TYPE);
    const w = fixedBlock(new BitWriter(), false, (x) => lits(x, "abc"));
    const later = w.bits(1, 1).bits(3, 2).bits(0, 32).finish();
    zlibRejectsRaw(later);
    expectAllReject(wrap(later), E.BLOCK_TYPE);
  });

  it("stored block LEN/NLEN mismatch", () => {
    for (const [len, nlen] of [
      [5, 0],
      [5, 0xfffb],
      [0, 0],
      [0xffff, 0xffff],
    ]) {
      const raw = new BitWriter()
        .bits(1, 1)
        .bits(0, 2)
        .raw([len! & 0xff, len! >> 8, nlen! & 0xff, nlen! >> 8])
        .raw(new TextEncoder().encode("hello"))
        .finish();
      zlibRejectsRaw(raw);
      expectAllReject(wrap(raw, new TextEncoder().encode("hello")), E.STORED_LEN);
    }
  });

  it("too many length or distance symbols (HLIT 287/288, HDIST 31/32)", () => {
    for (const [hlit, hdist] of [
      [30, 0],
      [31, 0],
      [0, 30],
      [0, 31],
    ]) {
      const raw = new BitWriter()
        .bits(1, 1)
        .bits(2, 2)
        .bits(hlit!, 5)
        .bits(hdist!, 5)
        .bits(15, 4)
        .bits(0, 19 * 3 + 64)
        .finish();
      zlibRejectsRaw(raw);
      expectAllReject(wrap(raw), E.TOO_MANY_CODES);
    }
  });

  it("invalid code lengths: over-subscribed and incomplete precode, incomplete literal/length code", () => {
    const over = new BitWriter();
    dynamicHeader(over, true, 257, 1, Object.fromEntries(ORDER.map((s) => [s, 1])), []);
    const overRaw = over.bits(0, 64).finish();
    zlibRejectsRaw(overRaw);
    expectAllReject(wrap(overRaw), E.BAD_CODE_LENGTHS);

    const inc = new BitWriter();
    dynamicHeader(inc, true, 257, 1, { 18: 1 }, []); // a single precode of length 1: incomplete
    const incRaw = inc.bits(0, 64).finish();
    zlibRejectsRaw(incRaw);
    expectAllReject(wrap(incRaw), E.BAD_CODE_LENGTHS);

    const lit = new BitWriter();
    dynLitHeader(lit, 2, 0, 2); // two codes of length 2: incomplete literal/length code
    const litRaw = lit.code(0, 2).code(1, 2).bits(0, 64).finish();
    zlibRejectsRaw(litRaw);
    expectAllReject(wrap(litRaw), E.BAD_CODE_LENGTHS);
  });

  it("missing end-of-block code", () => {
    const w = new BitWriter();
    dynLitHeader(w, 1, 1, 0);
    const raw = w.code(0, 1).code(1, 1).bits(0, 64).finish();
    zlibRejectsRaw(raw);
    expectAllReject(wrap(raw), E.NO_END_OF_BLOCK);
  });

  it("invalid bit length repeat: code 16 first, repeat past the end", () => {
    const first = new BitWriter();
    dynamicHeader(first, true, 257, 1, PRE, [[16, 3]]);
    const firstRaw = first.bits(0, 64).finish();
    zlibRejectsRaw(firstRaw);
    expectAllReject(wrap(firstRaw), E.BAD_REPEAT);

    const past = new BitWriter();
    dynamicHeader(past, true, 257, 1, PRE, [
      [18, 138],
      [18, 138],
    ]); // 276 > 258 lengths
    const pastRaw = past.bits(0, 64).finish();
    zlibRejectsRaw(pastRaw);
    expectAllReject(wrap(pastRaw), E.BAD_REPEAT);
  });

  it("invalid literal/length symbols 286 and 287 in a fixed block", () => {
    for (const sym of [286, 287]) {
      const raw = new BitWriter().bits(1, 1).bits(1, 2).fixedLit(0x61).fixedLit(sym).bits(0, 64).finish();
      zlibRejectsRaw(raw);
      expectAllReject(wrap(raw), E.BAD_LITLEN);
    }
  });

  it("invalid distance symbols 30 and 31 in a fixed block", () => {
    for (const sym of [30, 31]) {
      const raw = new BitWriter()
        .bits(1, 1)
        .bits(1, 2)
        .fixedLit(0x61)
        .fixedLit(257)
        .fixedDist(sym)
        .bits(0, 64)
        .finish();
      zlibRejectsRaw(raw);
      expectAllReject(wrap(raw), E.BAD_DISTANCE);
    }
  });

  it("distance too far back: at the start, beyond the output so far, into a previous member", () => {
    const start = fixedBlock(new BitWriter(), true, (w) => {
      lits(w, "a");
      match(w, 3, 2);
    }).finish();
    zlibRejectsRaw(start);
    expectAllReject(wrap(start, new TextEncoder().encode("aaaa")), E.DISTANCE_TOO_FAR);

    const s = textLike(new Rng(4), 100);
    const beyond = fixedBlock(new BitWriter(), true, (w) => {
      lits(w, new TextDecoder().decode(s));
      match(w, 10, 101);
    }).finish();
    zlibRejectsRaw(beyond);
    expectAllReject(wrap(beyond), E.DISTANCE_TOO_FAR);

    // the same in the middle of a long block (the decoder's fast path), and the valid limit case
    const pad = textLike(new Rng(5), 400);
    for (const [dist, ok] of [
      [100, true],
      [101, false],
      [1, true],
    ] as const) {
      const raw = fixedBlock(new BitWriter(), true, (w) => {
        lits(w, new TextDecoder().decode(s));
        match(w, 10, dist);
        lits(w, new TextDecoder().decode(pad));
        match(w, 258, 300);
        lits(w, new TextDecoder().decode(pad));
      }).finish();
      if (ok) {
        const data = u8(inflateRawSync(raw));
        expect(sameBytes(gunzip(wrap(raw, data)), data)).toBe("equal");
      } else {
        zlibRejectsRaw(raw);
        expectAllReject(wrap(raw), E.DISTANCE_TOO_FAR);
      }
    }

    // a second member may not refer to the first member's output
    const dist1 = fixedBlock(new BitWriter(), true, (w) => match(w, 3, 1)).finish();
    const twoMembers = concat([u8(gzipSync(s)), wrap(dist1, new Uint8Array(3))]);
    expect(() => gunzipSync(twoMembers)).toThrow();
    expectAllReject(twoMembers, E.DISTANCE_TOO_FAR);
  });

  it("a distance into the (zero-filled) history before the stream start is rejected", () => {
    const raw = fixedBlock(new BitWriter(), true, (w) => match(w, 5, 32768)).finish();
    expectAllReject(wrap(raw, new Uint8Array(5)), E.DISTANCE_TOO_FAR);
  });

  it("wrong CRC32 and wrong ISIZE (every byte of the trailer)", () => {
    for (let i = 0; i < 8; i++) {
      for (const bit of [0x01, 0x80]) {
        const m = tiny.slice();
        m[m.length - 8 + i] ^= bit;
        expectAllReject(m, i < 4 ? E.CRC : E.ISIZE);
      }
    }
  });

  it("verifyCrc: false skips the CRC check of buildCheckpoints (but gunzip still checks)", () => {
    const m = tiny.slice();
    m[m.length - 8] ^= 0xff;
    const res = buildCheckpointsSync(m, 0, { verifyCrc: false });
    expect(res.uncompressedSize).toBe(tinyData.length);
    expectInflateError(() => buildCheckpointsSync(m, 0, { verifyCrc: true }), E.CRC);
    expectInflateError(() => gunzip(m), E.CRC);
  });

  it("CRC of a later member is checked", () => {
    const m = concat([tiny, tiny, tiny]);
    m[m.length - 8] ^= 1;
    expectAllReject(m, E.CRC);
    const n = concat([tiny, tiny, tiny]);
    n[2 * tiny.length - 8] ^= 1;
    expectAllReject(n, E.CRC);
  });
});

describe("truncation and trailing data", () => {
  const data = textLike(new Rng(9), 1200);
  const small = u8(gzipSync(data, { level: 9 }));
  const withHeader = gzipMember(
    gzipHeader({ fhcrc: true, extra: new Uint8Array(40).fill(7), name: "n.txt", comment: "c" }),
    u8(deflateRawSync(data)),
    data,
  );
  const stored = u8(gzipSync(data, { level: 0 }));

  for (const [name, gz] of [
    ["dynamic", small],
    ["all header fields", withHeader],
    ["stored", stored],
  ] as const) {
    it(`${name}: truncated at every length 0..n-1 is an InflateError everywhere`, () => {
      for (let n = 0; n < gz.length; n++) {
        const t = gz.subarray(0, n);
        dog.step(`${name} truncated to ${n}`);
        for (const [what, f] of [
          ["gunzip", () => gunzip(t)],
          ["buildCheckpointsSync", () => buildCheckpointsSync(t, 0)],
          [
            "CheckpointBuilder",
            () => {
              const b = new CheckpointBuilder(100);
              b.push(t);
              return b.finish();
            },
          ],
        ] as const) {
          let e: unknown;
          try {
            f();
          } catch (x) {
            e = x;
          }
          if (!(e instanceof InflateError))
            expect.fail(`${what} of the first ${n} of ${gz.length} bytes: ${e ? String(e) : "no error"}`);
        }
      }
    });
  }

  it("truncated multi-member stream: only cuts at member ends decode (to those members' data)", () => {
    const parts = [data.subarray(0, 500), new Uint8Array(0), data.subarray(500)];
    const members = parts.map((p) => u8(gzipSync(p)));
    const gz = concat(members);
    const ends = new Map<number, number>();
    let at = 0,
      out = 0;
    members.forEach((m, i) => {
      at += m.length;
      out += parts[i]!.length;
      ends.set(at, out);
    });
    for (let n = 0; n < gz.length; n++) {
      const t = gz.subarray(0, n);
      if (ends.has(n)) {
        expect(sameBytes(gunzip(t), data.subarray(0, ends.get(n)!))).toBe("equal");
        expect(buildCheckpointsSync(t, 0).uncompressedSize).toBe(ends.get(n));
      } else {
        expectInflateError(() => gunzip(t));
        expectInflateError(() => buildCheckpointsSync(t, 0));
      }
    }
  });

  it("trailing garbage after the last member is an error", () => {
    const cases: [string, number[]][] = [
      ["one byte 'x'", [0x78]],
      ["'garbage'", Array.from(new TextEncoder().encode("garbage"))],
      ["0x1f", [0x1f]],
      ["0x1f 0x8b", [0x1f, 0x8b]],
      ["an incomplete header", [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0]],
      ["a complete header only", [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]],
      ["a header and half a block", [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0x4b]],
      ["100 random bytes", Array.from(new Rng(1).bytes(100))],
    ];
    for (const [what, tail] of cases) {
      for (const base of [small, concat([small, small])]) {
        const gz = concat([base, Uint8Array.from(tail)]);
        expect(() => refGunzip(gz), what).toThrow();
        const e = thrown(() => gunzip(gz));
        expect(e, `gunzip with ${what}`).toBeInstanceOf(InflateError);
        expect(
          thrown(() => buildCheckpointsSync(gz, 0)),
          `buildCheckpointsSync with ${what}`,
        ).toBeInstanceOf(InflateError);
      }
    }
    expectInflateError(() => gunzip(concat([small, new TextEncoder().encode("garbage")])), E.TRAILING_GARBAGE);
  });

  it("zero padding after the last member is an error", () => {
    for (const n of [1, 2, 8, 10, 512, 10240]) {
      const gz = concat([small, new Uint8Array(n)]);
      expectAllReject(gz);
      if (n >= 2) expectInflateError(() => gunzip(gz), E.TRAILING_GARBAGE);
    }
  });

  it("garbage between members is an error", () => {
    expectAllReject(concat([small, Uint8Array.of(0), small]), E.TRAILING_GARBAGE);
    expectAllReject(concat([small, Uint8Array.of(0x1f, 0x8b), small]));
  });
});

describe("options and argument validation", () => {
  const data = mixed(new Rng(11), 200000);
  const gz = u8(gzipSync(data));

  it("maxOutput: exceeded is a RangeError, equal is fine", () => {
    expect(sameBytes(gunzip(gz, { maxOutput: data.length }), data)).toBe("equal");
    expect(sameBytes(gunzip(gz, { maxOutput: data.length + 1 }), data)).toBe("equal");
    for (const max of [data.length - 1, 1000, 1, 0]) {
      expect(() => gunzip(gz, { maxOutput: max }), `maxOutput ${max}`).toThrow(RangeError);
    }
    expect(gunzip(u8(gzipSync(new Uint8Array(0))), { maxOutput: 0 }).length).toBe(0);
  });

  it("maxOutput stops a decompression bomb", () => {
    const bomb = u8(gzipSync(new Uint8Array(64 << 20), { level: 9 }));
    expect(bomb.length).toBeLessThan(100_000);
    expect(() => gunzip(bomb, { maxOutput: 1 << 20 })).toThrow(RangeError);
    // multi-member: the limit applies to the total
    const two = u8(gzipSync(new Uint8Array(600_000)));
    expect(() => gunzip(concat([two, two]), { maxOutput: 1_000_000 })).toThrow(RangeError);
    expect(gunzip(concat([two, two]), { maxOutput: 1_200_000 }).length).toBe(1_200_000);
  });

  it("maxOutput is enforced whatever the last member's ISIZE suggests", () => {
    // gunzip sizes its buffer from the last member's ISIZE: here that member is tiny
    const two = concat([gz, u8(gzipSync(Uint8Array.of(1)))]);
    expect(() => gunzip(two, { maxOutput: 5000 })).toThrow(RangeError);
    expect(() => gunzip(two, { maxOutput: data.length })).toThrow(RangeError);
    expect(gunzip(two, { maxOutput: data.length + 1 }).length).toBe(data.length + 1);
    // a corrupt ISIZE is an error, never a short or padded result
    const m = gz.slice();
    new DataView(m.buffer).setUint32(m.length - 4, 1, true);
    expectInflateError(() => gunzip(m), E.ISIZE);
    new DataView(m.buffer).setUint32(m.length - 4, 0xffffffff, true);
    expectInflateError(() => gunzip(m), E.ISIZE);
  });

  it("gunzip does not allocate what a corrupt ISIZE claims (4 GiB from a 31-byte input)", () => {
    const m = u8(gzipSync(new TextEncoder().encode("hello world")));
    new DataView(m.buffer, m.byteOffset).setUint32(m.length - 4, 0xfffffff0, true);
    let err: unknown;
    const largest = largestAllocation(() => {
      try {
        gunzip(m);
      } catch (e) {
        err = e;
      }
    });
    expect(err).toBeInstanceOf(InflateError);
    // DEFLATE expands at most ~1032:1, so nothing near 4 GiB is ever needed for 31 input bytes
    expect(largest, `largest allocation ${largest} bytes`).toBeLessThanOrEqual(4 << 20);
  });

  it("CheckpointBuilder: invalid span sizes, use after finish/close, closed after an error", () => {
    for (const bad of [-1, 1.5, NaN, Infinity]) expect(() => new CheckpointBuilder(bad)).toThrow(RangeError);
    expect(() => buildCheckpointsSync(gz, -1)).toThrow(RangeError);
    const b = new CheckpointBuilder(0);
    b.push(gz);
    b.finish();
    expect(() => b.push(gz)).toThrow();
    expect(() => b.finish()).toThrow();
    const c = new CheckpointBuilder(0);
    c.push(gz.subarray(0, 100));
    c.close();
    expect(() => c.push(gz.subarray(100))).toThrow();
    const d = new CheckpointBuilder(0);
    const bad = gz.slice();
    bad[3] = 0xff;
    expectInflateError(() => d.push(bad), E.BAD_FLAGS);
    expect(() => d.push(gz)).toThrow();
  });

  it("buildCheckpoints rejects with the iterable's own error and with InflateError", async () => {
    async function* failing() {
      yield gz.subarray(0, 1000);
      throw new Error("source failed");
    }
    await expect(buildCheckpoints(failing(), 0)).rejects.toThrow("source failed");
    const bad = gz.slice();
    bad[gz.length - 5] ^= 1;
    async function* chunks() {
      for (let i = 0; i < bad.length; i += 4096) yield bad.subarray(i, i + 4096);
    }
    await expect(buildCheckpoints(chunks(), 0)).rejects.toBeInstanceOf(InflateError);
    await expect(buildCheckpoints(gz.subarray(0, gz.length - 1), 0)).rejects.toBeInstanceOf(InflateError);
    // and the decoder pool still works afterwards
    expect(sameBytes(gunzip(gz), data)).toBe("equal");
  });

  it("extract: argument validation", () => {
    const res = buildCheckpointsSync(gz, 10000);
    const cp = res.checkpoints[1]!;
    const bytes = gz.subarray(cp.in - (cp.bits ? 1 : 0));
    expect(() => extract(bytes, cp, cp.out - 1, 10)).toThrow(RangeError);
    expect(() => extract(bytes, cp, cp.out, -1)).toThrow(RangeError);
    expect(() => extract(bytes, cp, cp.out + 0.5, 10)).toThrow(RangeError);
    expect(() => extract(bytes, cp, NaN, 10)).toThrow(RangeError);
    expect(() => extract(bytes, cp, cp.out, NaN)).toThrow(RangeError);
    expect(() => extract(bytes, { ...cp, window: new Uint8Array(100) }, cp.out, 10)).toThrow(RangeError);
    expect(extract(bytes, cp, cp.out, 0).length).toBe(0);
    expect(WINDOW_SIZE).toBe(32768);
  });

  it("extract: data ending early or a stream ending before the requested range is an InflateError", () => {
    const res = buildCheckpointsSync(gz, 10000);
    const cp = res.checkpoints[1]!;
    const bytes = gz.subarray(cp.in - (cp.bits ? 1 : 0));
    expectInflateError(() => extract(new Uint8Array(0), cp, cp.out, 1));
    expectInflateError(() => extract(bytes.subarray(0, 10), cp, cp.out, 50000));
    expectInflateError(() => extract(bytes, cp, cp.out, data.length - cp.out + 1)); // past the end of the data
    expectInflateError(() => extract(bytes, cp, data.length + 100, 1));
    expect(sameBytes(extract(bytes, cp, data.length - 1, 1), data.subarray(data.length - 1))).toBe("equal");
  });
});

// ---- the mutation fuzzer ----
interface Base {
  name: string;
  gz: Uint8Array;
  data: Uint8Array;
  ref: RefResult;
  cases: number;
}

function makeBases(): Base[] {
  const r = new Rng(0xfa11);
  const text = textLike(r, 2500);
  const mk = (name: string, gz: Uint8Array, cases: number): Base => {
    const ref = refGunzip(gz);
    return { name, gz, data: ref.output, ref, cases };
  };
  const p1 = textLike(r, 900),
    p3 = mixed(r, 700);
  return [
    mk("small text (dynamic)", u8(gzipSync(text, { level: 6 })), 900),
    mk("layer-a.tar.gz", vector("layer-a.tar.gz"), 500),
    mk("layer-b.tar.gz", vector("layer-b.tar.gz"), 500),
    mk(
      "multi-member with empty member and FHCRC header",
      concat([
        u8(gzipSync(p1)),
        u8(gzipSync(new Uint8Array(0))),
        gzipMember(gzipHeader({ fhcrc: true, name: "p3", extra: Uint8Array.of(1, 2, 3) }), u8(deflateRawSync(p3)), p3),
      ]),
      700,
    ),
    mk("stored blocks", u8(gzipSync(concat([text.subarray(0, 1200), r.bytes(400)]), { level: 0 })), 500),
    mk("fixed Huffman", u8(gzipSync(text.subarray(0, 1500), { strategy: constants.Z_FIXED })), 700),
  ];
}

type Mut = { bytes: Uint8Array; desc: string };

function mutate(r: Rng, src: Uint8Array): Mut {
  const n = src.length;
  const b = src.slice();
  switch (r.int(8)) {
    case 0: {
      const k = r.range(1, 4);
      const at: number[] = [];
      for (let i = 0; i < k; i++) {
        const p = r.int(n);
        b[p] = r.int(256);
        at.push(p);
      }
      return { bytes: b, desc: `bytes set at ${at}` };
    }
    case 1: {
      const k = r.range(1, 3);
      const at: number[] = [];
      for (let i = 0; i < k; i++) {
        const bit = r.int(n * 8);
        b[bit >> 3] ^= 1 << (bit & 7);
        at.push(bit);
      }
      return { bytes: b, desc: `bits flipped at ${at}` };
    }
    case 2: {
      const len = r.int(n);
      return { bytes: b.subarray(0, len), desc: `truncated to ${len}` };
    }
    case 3: {
      const p = r.int(n + 1);
      const ins = r.bytes(r.range(1, 8));
      return { bytes: concat([b.subarray(0, p), ins, b.subarray(p)]), desc: `inserted ${ins.length} at ${p}` };
    }
    case 4: {
      const p = r.int(n);
      const k = r.range(1, 8);
      return { bytes: concat([b.subarray(0, p), b.subarray(p + k)]), desc: `deleted ${k} at ${p}` };
    }
    case 5: {
      const g = r.int(3) === 0 ? new Uint8Array(r.range(1, 600)) : r.bytes(r.range(1, 40));
      return { bytes: concat([b, g]), desc: `appended ${g.length} bytes` };
    }
    case 6: {
      const p = r.int(n);
      const k = Math.min(n - p, r.range(1, 64));
      b.fill(r.int(2) ? 0 : 0xff, p, p + k);
      return { bytes: b, desc: `filled ${k} at ${p}` };
    }
    default: {
      // copy a piece of the stream over another place
      const from = r.int(n),
        to = r.int(n),
        k = r.range(2, 32);
      b.set(src.subarray(from, from + k).subarray(0, n - to), to);
      return { bytes: b, desc: `copied ${k} from ${from} to ${to}` };
    }
  }
}

type Outcome = { ok: true; out: Uint8Array; res?: CheckpointResult } | { ok: false; err: unknown };

function attempt<T>(f: () => T): { ok: true; v: T } | { ok: false; err: unknown } {
  try {
    return { ok: true, v: f() };
  } catch (err) {
    return { ok: false, err };
  }
}

describe("mutation fuzzing (seeded): the decoder agrees with the reference decoder", () => {
  const bases = makeBases();

  for (const base of bases) {
    it(`${base.name}: ${base.cases} mutations through gunzip, buildCheckpointsSync and the incremental builder`, () => {
      const r = new Rng(crc32(new TextEncoder().encode(base.name)));
      const problems: string[] = [];
      let accepted = 0;
      for (let i = 0; i < base.cases; i++) {
        const m = mutate(r, base.gz);
        const tag = `${base.name} #${i} (${m.desc})`;
        dog.step(tag);
        const ref = attempt(() => refGunzip(m.bytes));
        const want: Outcome = ref.ok ? { ok: true, out: ref.v.output } : { ok: false, err: ref.err };

        // gunzip
        const g = attempt(() => gunzip(m.bytes));
        if (!g.ok && !(g.err instanceof InflateError)) problems.push(`${tag}: gunzip threw ${String(g.err)}`);
        else if (g.ok !== want.ok)
          problems.push(
            `${tag}: gunzip ${g.ok ? "accepted" : `rejected (${(g as { err: Error }).err.message})`} but the reference ${want.ok ? "accepts" : `rejects (${String((want as { err: unknown }).err)})`}`,
          );
        else if (g.ok && want.ok && sameBytes(g.v, want.out) !== "equal")
          problems.push(`${tag}: gunzip output ${sameBytes(g.v, want.out)}`);
        if (g.ok) accepted++;

        // buildCheckpointsSync (with onData) at a random span
        const span = r.pick([0, 100, 1000, 4096]);
        const chunks: Uint8Array[] = [];
        const c = attempt(() => buildCheckpointsSync(m.bytes, span, { onData: (v) => chunks.push(v.slice()) }));
        if (!c.ok && !(c.err instanceof InflateError))
          problems.push(`${tag}: buildCheckpointsSync threw ${String(c.err)}`);
        else if (c.ok !== want.ok)
          problems.push(
            `${tag}: buildCheckpointsSync ${c.ok ? "accepted" : "rejected"} but the reference ${want.ok ? "accepts" : "rejects"}`,
          );
        else if (c.ok && ref.ok) {
          const all = concat(chunks);
          if (c.v.uncompressedSize !== ref.v.output.length || sameBytes(all, ref.v.output) !== "equal") {
            problems.push(
              `${tag}: buildCheckpointsSync data ${sameBytes(all, ref.v.output)} size ${c.v.uncompressedSize}`,
            );
          }
          const exp = zranCheckpoints(ref.v.boundaries, span).map(key);
          if (JSON.stringify(c.v.checkpoints.map(key)) !== JSON.stringify(exp))
            problems.push(`${tag}: checkpoints differ from the zran rule`);
        }

        // the incremental builder, in random pieces, on a third of the cases
        if (i % 3 === 0) {
          const cuts = [0, r.int(m.bytes.length + 1), r.int(m.bytes.length + 1), m.bytes.length].sort((a, b) => a - b);
          const s = attempt(() => {
            const b = new CheckpointBuilder(span);
            for (let k = 0; k < 3; k++) b.push(m.bytes.subarray(cuts[k]!, cuts[k + 1]!));
            return b.finish();
          });
          if (!s.ok && !(s.err instanceof InflateError))
            problems.push(`${tag}: CheckpointBuilder threw ${String(s.err)}`);
          else if (s.ok !== want.ok)
            problems.push(
              `${tag}: CheckpointBuilder (cuts ${cuts}) ${s.ok ? "accepted" : "rejected"} but the reference ${want.ok ? "accepts" : "rejects"}`,
            );
          else if (
            s.ok &&
            c.ok &&
            JSON.stringify(s.v.checkpoints.map(key)) !== JSON.stringify(c.v.checkpoints.map(key))
          ) {
            problems.push(`${tag}: CheckpointBuilder (cuts ${cuts}) checkpoints differ from one-shot`);
          }
        }
      }
      expect(problems.slice(0, 15), `${problems.length} problem(s) in ${base.cases} cases`).toEqual([]);
      // the fuzzer must exercise both outcomes
      expect(accepted).toBeLessThan(base.cases);
    });
  }

  for (const base of bases) {
    it(`${base.name}: extract on mutated span bytes, windows and bits`, () => {
      const r = new Rng(crc32(new TextEncoder().encode("extract " + base.name)));
      const span = base.gz.length > 2000 ? 1000 : 0;
      const res = buildCheckpointsSync(base.gz, span);
      const cps = res.checkpoints;
      const cr = spanCompressedRanges(cps, base.gz.length);
      const ur = spanUncompressedRanges(cps, base.data.length);
      const problems: string[] = [];
      const cases = 300;
      for (let t = 0; t < cases; t++) {
        const i = r.int(cps.length);
        const j = Math.min(cps.length - 1, i + r.int(3));
        const bytes = base.gz.subarray(cr[i]![0], cr[j]![1]);
        const [us] = ur[i]!;
        const ue = ur[j]![1];
        if (ue === us) continue;
        const off = r.range(us, ue - 1);
        const len = r.range(0, ue - off + (r.int(4) === 0 ? 50 : 0));
        const cp = { out: cps[i]!.out, bits: cps[i]!.bits, window: cps[i]!.window };
        let what: string;
        let input = bytes;
        switch (r.int(3)) {
          case 0: {
            const m = mutate(r, bytes);
            input = m.bytes;
            what = `span bytes ${m.desc}`;
            break;
          }
          case 1:
            cp.window = r.int(2) ? r.bytes(WINDOW_SIZE) : new Uint8Array(WINDOW_SIZE).fill(0xaa);
            what = "garbage window";
            break;
          default:
            cp.bits = (cp.bits + r.range(1, 7)) & 7;
            what = `bits ${cps[i]!.bits} -> ${cp.bits}`;
        }
        const tag = `${base.name} extract #${t} spans ${i}..${j} @${off}+${len} (${what})`;
        dog.step(tag);
        const x = attempt(() => extract(input, cp, off, len));
        if (!x.ok) {
          if (!(x.err instanceof InflateError)) problems.push(`${tag}: threw ${String(x.err)}`);
        } else if (!(x.v instanceof Uint8Array) || x.v.length !== len) {
          problems.push(`${tag}: returned ${x.v?.length} bytes`);
        } else if (len === 0 && x.v.length !== 0) problems.push(`${tag}: non-empty result for length 0`);
      }
      expect(problems.slice(0, 15), `${problems.length} problem(s)`).toEqual([]);
      // unmodified inputs still extract correctly after all that
      for (let i = 0; i < cps.length; i++) {
        const got = extract(base.gz.subarray(cr[i]![0], cr[i]![1]), cps[i]!, ur[i]![0], ur[i]![1] - ur[i]![0]);
        expect(sameBytes(got, base.data.subarray(ur[i]![0], ur[i]![1]))).toBe("equal");
      }
    });
  }
});

describe("random garbage", () => {
  it("random byte strings, and random bytes after a valid header, never crash the decoder", () => {
    const r = new Rng(0xbad);
    const problems: string[] = [];
    for (let i = 0; i < 600; i++) {
      const body = r.bytes(r.range(0, 300));
      const input = i % 2 ? body : concat([gzipHeader(), body, gzipTrailer(new Uint8Array(0))]);
      dog.step(`random garbage #${i}`);
      const ref = attempt(() => refGunzip(input));
      for (const [what, f] of [
        ["gunzip", () => gunzip(input)],
        ["buildCheckpointsSync", () => buildCheckpointsSync(input, 0)],
        [
          "extract",
          () => extract(body, { out: 0, bits: r.int(8), window: new Uint8Array(WINDOW_SIZE) }, 0, r.range(1, 2000)),
        ],
      ] as const) {
        const x = attempt(f as () => unknown);
        if (!x.ok && !(x.err instanceof InflateError)) problems.push(`#${i} ${what}: threw ${String(x.err)}`);
        if (what !== "extract" && x.ok !== ref.ok)
          problems.push(
            `#${i} ${what}: ${x.ok ? "accepted" : "rejected"}, reference ${ref.ok ? "accepts" : "rejects"}`,
          );
      }
    }
    expect(problems.slice(0, 15), `${problems.length} problem(s)`).toEqual([]);
  });
});
