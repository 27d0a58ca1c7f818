// Differential tests of the WebAssembly inflate core against node:zlib, pigz, pako and fflate output,
// and of its checkpoints against the zran rule applied to an independent reference decoder.
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { constants, deflateRawSync, gunzipSync, gzipSync, inflateRawSync, type ZlibOptions } from "node:zlib";
import * as pako from "pako";
import * as fflate from "fflate";
import {
  buildCheckpoints,
  buildCheckpointsSync,
  CheckpointBuilder,
  extract,
  gunzip,
  type CheckpointResult,
} from "../src/index.js";
import { BitWriter, crc32, refGunzip, zranCheckpoints, type RefResult } from "./helpers/ref-inflate.js";
import {
  chunked,
  concat,
  gzipHeader,
  gzipMember,
  mixed,
  pigz,
  repeating,
  Rng,
  sameBytes,
  spanCompressedRanges,
  spanUncompressedRanges,
  textLike,
  u8,
} from "./helpers/inflate-util.js";
import { key, verifyAllSpans, verifyCheckpoints } from "./helpers/verify-checkpoints.js";
import { Watchdog } from "./helpers/watchdog.js";
import { fixedMatch, randomDeflate } from "./helpers/deflate-gen.js";

// a decoder stuck in a loop would block this thread forever: fail loudly instead
const dog = new Watchdog("inflate-differential.test.ts", 90_000);
beforeEach((ctx) => dog.step(ctx.task.name));
afterAll(() => dog.stop());

const rng = new Rng(20240601);

// ---- inputs ----
const INPUTS: { name: string; data: Uint8Array }[] = [
  { name: "empty", data: new Uint8Array(0) },
  { name: "1 byte", data: Uint8Array.of(0x61) },
  { name: "2 bytes", data: Uint8Array.of(0, 0xff) },
  { name: "random 300 KiB (crypto.randomBytes)", data: u8(randomBytes(300 * 1024)) },
  { name: "random 70 KiB (seeded)", data: rng.bytes(70 * 1024) },
  { name: "zeros 400 KiB", data: new Uint8Array(400 * 1024) },
  { name: "periods 1..20", data: concat(Array.from({ length: 20 }, (_, i) => repeating(rng, i + 1, 3000 + 37 * i))) },
  { name: "text 300 KiB", data: textLike(rng, 300 * 1024) },
  { name: "mixed 3 MiB", data: mixed(rng, 3 * 1024 * 1024) },
];
const byName = (n: string) => INPUTS.find((x) => x.name === n)!.data;
const TEXT = byName("text 300 KiB");
const MIXED = byName("mixed 3 MiB");

/** node:zlib's gzip of `data`, compressed once per input and options: several suites read the same streams. */
const gzipped = new Map<Uint8Array, Map<string, Uint8Array>>();
function gzipOnce(data: Uint8Array, opts: ZlibOptions): Uint8Array {
  const byOpts = gzipped.get(data) ?? new Map<string, Uint8Array>();
  gzipped.set(data, byOpts);
  const key = JSON.stringify(opts);
  const gz = byOpts.get(key) ?? u8(gzipSync(data, opts));
  byOpts.set(key, gz);
  return gz;
}

function expectGunzip(gz: Uint8Array, data: Uint8Array): void {
  const out = gunzip(gz);
  const why = sameBytes(out, data);
  if (why !== "equal") expect.fail(`gunzip: ${why}`);
}

/** One-shot checkpoints at `span` compared with the reference (no extraction: cheap). */
function expectRefCheckpoints(
  gz: Uint8Array,
  data: Uint8Array,
  span: number,
  ref: RefResult = refGunzip(gz),
): CheckpointResult {
  const res = buildCheckpointsSync(gz, span);
  expect(res.uncompressedSize).toBe(data.length);
  expect(res.compressedSize).toBe(gz.length);
  expect(res.members).toBe(ref.members);
  expect(res.checkpoints.map(key)).toEqual(zranCheckpoints(ref.boundaries, span).map(key));
  return res;
}

/** Like verifySpans, but reports which span fails and how. */
function verifySpansOneByOne(gz: Uint8Array, data: Uint8Array, res: CheckpointResult): void {
  const cps = res.checkpoints;
  const cr = spanCompressedRanges(cps, gz.length);
  const ur = spanUncompressedRanges(cps, data.length);
  const failures: string[] = [];
  for (let i = 0; i < cps.length; i++) {
    try {
      const got = extract(gz.subarray(cr[i]![0], cr[i]![1]), cps[i]!, ur[i]![0], ur[i]![1] - ur[i]![0]);
      const why = sameBytes(got, data.subarray(ur[i]![0], ur[i]![1]));
      if (why !== "equal") failures.push(`span ${i}: ${why}`);
    } catch (e) {
      failures.push(`span ${i} (compressed [${cr[i]}], uncompressed [${ur[i]}]): ${(e as Error).message}`);
    }
  }
  expect(failures).toEqual([]);
}

const blockTypes = (ref: RefResult) => new Set(ref.boundaries.filter((b) => b.kind === "block").map((b) => b.btype));

describe("node:zlib gzip at every level", () => {
  for (const { name, data } of INPUTS) {
    it(`${name}: levels 0-9`, () => {
      for (let level = 0; level <= 9; level++) {
        const gz = gzipOnce(data, { level });
        expectGunzip(gz, data);
        const ref = refGunzip(gz);
        expect(sameBytes(ref.output, data)).toBe("equal");
        if (level === 0 && data.length > 0) expect([...blockTypes(ref)]).toEqual([0]); // stored blocks only
        expectRefCheckpoints(gz, data, 65536, ref);
        if (data.length <= 400 * 1024) expectRefCheckpoints(gz, data, 0, ref);
      }
    });
  }
});

describe("node:zlib strategies", () => {
  const strategies: [string, number][] = [
    ["Z_FIXED", constants.Z_FIXED],
    ["Z_HUFFMAN_ONLY", constants.Z_HUFFMAN_ONLY],
    ["Z_RLE", constants.Z_RLE],
    ["Z_FILTERED", constants.Z_FILTERED],
  ];
  const inputs = [
    ["text", TEXT.subarray(0, 200 * 1024)],
    ["periods", byName("periods 1..20")],
    ["mixed 1 MiB", MIXED.subarray(0, 1 << 20)],
    ["random", byName("random 70 KiB (seeded)")],
  ] as const;
  for (const [sname, strategy] of strategies) {
    for (const [iname, data] of inputs) {
      it(`${sname} on ${iname}`, () => {
        for (const level of [1, 6, 9]) {
          const gz = u8(gzipSync(data, { level, strategy, memLevel: 9 }));
          expectGunzip(gz, data);
          const ref = refGunzip(gz);
          if (strategy === constants.Z_FIXED) expect(blockTypes(ref).has(1)).toBe(true);
          expectRefCheckpoints(gz, data, 1000, ref);
        }
      });
    }
  }

  it("Z_FIXED streams use fixed-Huffman blocks and verify fully at all spans", () => {
    const data = TEXT.subarray(0, 150 * 1024);
    const gz = u8(gzipSync(data, { level: 6, strategy: constants.Z_FIXED }));
    expect([...blockTypes(refGunzip(gz))]).toEqual([1]);
    verifyAllSpans(gz, data);
  });

  it("stored blocks (level 0) verify fully at all spans", () => {
    const data = MIXED.subarray(0, 600 * 1024);
    const gz = u8(gzipSync(data, { level: 0 }));
    verifyAllSpans(gz, data);
  });
});

describe("overlapping copies (distance 1..20, long matches, across output buffer refills)", () => {
  for (let period = 1; period <= 20; period++) {
    it(`period ${period}`, () => {
      const r = new Rng(1000 + period);
      // a random lead-in, a long repeat (matches of length 258 at distance `period`),
      // then short repeats separated by literals (short matches, odd lengths)
      const parts: Uint8Array[] = [r.bytes(r.range(0, 40)), repeating(r, period, 20000 + r.int(300))];
      for (let k = 0; k < 200; k++)
        parts.push(r.bytes(r.range(1, 3)), repeating(r, period, r.range(3, 3 * period + 40)));
      const data = concat(parts);
      for (const opts of [
        { level: 9 },
        { level: 1 },
        { level: 6, strategy: constants.Z_RLE },
        { level: 6, strategy: constants.Z_FIXED },
      ] as ZlibOptions[]) {
        const gz = u8(gzipSync(data, opts));
        expectGunzip(gz, data);
        expectRefCheckpoints(gz, data, 0);
      }
      // long enough to cross the 1 MiB output buffer several times
      const big = repeating(r, period, 2_500_000 + period);
      expectGunzip(u8(gzipSync(big, { level: 6 })), big);
    });
  }

  it("all-zero 8 MiB (distance-1 runs, high compression ratio)", () => {
    const data = new Uint8Array(8 << 20);
    const gz = u8(gzipSync(data, { level: 9 }));
    expectGunzip(gz, data);
    verifyCheckpoints(gz, data, 1 << 20, buildCheckpointsSync(gz, 1 << 20));
  });
});

describe("generated streams: every length and distance code, distance 32768, blocks of every type", () => {
  for (const [seed, size, opts] of [
    [1, 150_000, {}],
    [2, 400_000, { farMatches: 0.3 }],
    [3, 50_000, { longMatches: 1 }],
  ] as const) {
    it(`seed ${seed}, ${size} bytes`, () => {
      const { raw, data } = randomDeflate(new Rng(seed), size, opts);
      expect(sameBytes(u8(inflateRawSync(raw)), data)).toBe("equal"); // zlib agrees
      const gz = gzipMember(gzipHeader(), raw, data);
      expectGunzip(gz, data);
      verifyAllSpans(gz, data, [0, 10000, 1 << 20]);
    });
  }

  it("3 MiB of far (up to 32768) and long matches across output buffer refills", () => {
    const { raw, data } = randomDeflate(new Rng(4), 3 << 20, { farMatches: 0.6, longMatches: 0.5 });
    const gz = gzipMember(gzipHeader(), raw, data);
    expectGunzip(gz, data);
    verifyCheckpoints(gz, data, 1 << 18, buildCheckpointsSync(gz, 1 << 18));
  });

  it("a 32 KiB block repeated at distance exactly 32768 for 3 MiB", () => {
    const r = new Rng(5);
    const block = r.bytes(32768);
    const w = new BitWriter().bits(0, 1).bits(0, 2).raw([0, 0x80, 0xff, 0x7f]).raw(block); // stored, LEN 32768
    const total = 3 << 20;
    let n = 32768;
    w.bits(1, 1).bits(1, 2);
    while (n < total) {
      const len = Math.min(258, Math.max(3, total - n));
      fixedMatch(w, len, 32768);
      n += len;
    }
    w.fixedLit(256);
    const raw = w.finish();
    const data = new Uint8Array(n);
    for (let i = 0; i < n; i++) data[i] = block[i % 32768]!;
    expect(sameBytes(u8(inflateRawSync(raw)), data)).toBe("equal");
    const gz = gzipMember(gzipHeader(), raw, data);
    expectGunzip(gz, data);
    const res = buildCheckpointsSync(gz, 0);
    verifyCheckpoints(gz, data, 0, res);
    // extraction from the checkpoint after the stored block runs through the whole far-copy block
    const cp = res.checkpoints[1]!;
    expect(cp.out).toBe(32768);
    const off = 2_000_000;
    expect(
      sameBytes(extract(gz.subarray(cp.in - (cp.bits ? 1 : 0)), cp, off, 100_000), data.subarray(off, off + 100_000)),
    ).toBe("equal");
  });
});

describe("full checkpoint verification (invariants, zran rule, windows, every span) at spans 0, 1000, 64 KiB, 1 MiB", () => {
  it("text, level 6", () => {
    verifyAllSpans(gzipOnce(TEXT, { level: 6 }), TEXT);
  });

  it("mixed 3 MiB, levels 1 and 9", () => {
    for (const level of [1, 9]) verifyAllSpans(gzipOnce(MIXED, { level }), MIXED);
  });

  it("text and periods, level 9 with memLevel 1 (many small blocks)", () => {
    const data = concat([TEXT.subarray(0, 100000), byName("periods 1..20")]);
    const gz = u8(gzipSync(data, { level: 9, memLevel: 1 }));
    expect(refGunzip(gz).boundaries.length).toBeGreaterThan(100);
    verifyAllSpans(gz, data);
  });

  it("spans that are exactly one stored block (extraction must stop at the requested length)", () => {
    const data = TEXT.subarray(0, 200000);
    for (const gz of [u8(gzipSync(data, { level: 0 })), fflate.gzipSync(data, { level: 0 })]) {
      const res = buildCheckpointsSync(gz, 0);
      expect(res.checkpoints.length).toBeGreaterThanOrEqual(3);
      verifySpansOneByOne(gz, data, res);
    }
  });

  it("span sizes equal to a checkpoint distance (strictly greater rule)", () => {
    const gz = u8(gzipSync(TEXT, { level: 6, memLevel: 1 }));
    const all = buildCheckpointsSync(gz, 0).checkpoints;
    expect(all.length).toBeGreaterThan(4);
    // with span == the exact distance between two boundaries, the second one must NOT be taken
    const d = all[2]!.out - all[1]!.out;
    for (const span of [d - 1, d, d + 1, all[1]!.out - 1, all[1]!.out, all[1]!.out + 1]) {
      verifyCheckpoints(gz, TEXT, span, buildCheckpointsSync(gz, span));
    }
  });

  it("extracts arbitrary ranges crossing several spans", () => {
    const gz = gzipOnce(MIXED, { level: 6 });
    const res = buildCheckpointsSync(gz, 1000);
    const cps = res.checkpoints;
    const cr = spanCompressedRanges(cps, gz.length);
    const ur = spanUncompressedRanges(cps, MIXED.length);
    const r = new Rng(77);
    for (let k = 0; k < 60; k++) {
      const i = r.int(cps.length);
      const j = Math.min(cps.length - 1, i + r.int(4));
      const off = r.range(ur[i]![0], ur[i]![1] - 1);
      const end = r.range(off + 1, ur[j]![1]);
      const got = extract(gz.subarray(cr[i]![0], cr[j]![1]), cps[i]!, off, end - off);
      const why = sameBytes(got, MIXED.subarray(off, end));
      if (why !== "equal") expect.fail(`spans ${i}..${j} [${off},${end}): ${why}`);
    }
  });
});

describe("multi-member streams", () => {
  const a = TEXT.subarray(0, 50000),
    b = byName("periods 1..20"),
    c = MIXED.subarray(0, 200000);
  const empty = new Uint8Array(0);
  const cases: [string, Uint8Array[]][] = [
    ["three members", [a, b, c]],
    ["empty first member", [empty, a, b]],
    ["empty members between and at the end", [a, empty, empty, b, empty]],
    ["only empty members", [empty, empty, empty]],
    ["many tiny members", Array.from({ length: 50 }, (_, i) => TEXT.subarray(i * 10, i * 10 + (i % 7)))],
  ];
  for (const [name, parts] of cases) {
    it(name, () => {
      const gz = concat(parts.map((p, i) => u8(gzipSync(p, { level: i % 10 }))));
      const data = concat(parts);
      expect(sameBytes(u8(gunzipSync(gz)), data)).toBe("equal"); // node agrees on the input
      expectGunzip(gz, data);
      const all = verifyAllSpans(gz, data, [0, 1000, 1 << 20]);
      expect(all.get(0)!.members).toBe(parts.length);
      if (parts[0]!.length === 0) {
        // docs/formats.md §2.1: the zran rule fires again at later boundaries still at totout 0
        const zeros = all.get(1 << 20)!.checkpoints.filter((x) => x.out === 0);
        expect(zeros.length).toBeGreaterThan(1);
      }
    });
  }

  it("a checkpoint exists right after each later member header when the span allows it", () => {
    const parts = [TEXT.subarray(0, 5000), TEXT.subarray(5000, 12000), TEXT.subarray(12000, 20000)];
    const gz = concat(parts.map((p) => u8(gzipSync(p))));
    const res = buildCheckpointsSync(gz, 4000);
    const m2 = u8(gzipSync(parts[0]!)).length;
    const m3 = m2 + u8(gzipSync(parts[1]!)).length;
    expect(res.checkpoints.map(key)).toContain(`${m2 + 10}/5000/0`);
    expect(res.checkpoints.map(key)).toContain(`${m3 + 10}/12000/0`);
  });

  it("extraction starting in one member continues through later members", () => {
    const parts = [TEXT.subarray(0, 40000), new Uint8Array(0), byName("periods 1..20"), TEXT.subarray(40000, 90000)];
    const gz = concat(parts.map((p) => u8(gzipSync(p, { level: 9 }))));
    const data = concat(parts);
    const res = buildCheckpointsSync(gz, 0);
    const r = new Rng(5);
    for (const cp of res.checkpoints) {
      const off = r.range(cp.out, data.length - 1);
      const got = extract(gz.subarray(cp.in - (cp.bits ? 1 : 0)), cp, off, data.length - off);
      expect(sameBytes(got, data.subarray(off))).toBe("equal");
    }
  });
});

describe("pigz output", () => {
  const data = MIXED.subarray(0, 1536 * 1024);
  const variants: [string, string[], Uint8Array][] = [
    ["default", ["-c"], data],
    ["-b 128 (128 KiB blocks, sync markers between them)", ["-c", "-b", "128"], data],
    ["-b 32 (smallest blocks)", ["-c", "-b", "32"], data],
    ["-i (independent blocks)", ["-c", "-i"], data],
    ["-i -b 32", ["-c", "-i", "-b", "32"], data],
    ["-1 -p 1", ["-c", "-1", "-p", "1"], data],
    ["-9 --rsyncable", ["-c", "-9", "--rsyncable"], data],
    ["-0 (stored)", ["-c", "-0"], data.subarray(0, 300000)],
    ["-11 (zopfli) on text", ["-c", "-11", "-b", "32"], TEXT.subarray(0, 40000)],
    ["empty input", ["-c"], new Uint8Array(0)],
    ["-n -T (no name, no time)", ["-c", "-n", "-T"], TEXT.subarray(0, 1000)],
  ];
  for (const [name, args, input] of variants) {
    it(name, async () => {
      const gz = await pigz(args, input);
      expect(sameBytes(u8(gunzipSync(gz)), input)).toBe("equal");
      expectGunzip(gz, input);
      verifyAllSpans(gz, input, input.length > 0 ? [0, 65536, 1 << 20] : [0]);
    });
  }

  it("multi-member: concatenated pigz outputs", async () => {
    const p1 = TEXT.subarray(0, 100000),
      p2 = MIXED.subarray(0, 300000);
    const gz = concat([
      await pigz(["-c", "-b", "32"], p1),
      await pigz(["-c", "-i"], p2),
      await pigz(["-c"], new Uint8Array(0)),
    ]);
    const data = concat([p1, p2]);
    expectGunzip(gz, data);
    verifyAllSpans(gz, data, [0, 65536]);
  });
});

describe("other compressors", () => {
  it("pako gzip at several levels", () => {
    for (const level of [0, 1, 5, 9] as const) {
      const data = MIXED.subarray(0, 400000);
      const gz = pako.gzip(data, { level });
      expectGunzip(gz, data);
      expectRefCheckpoints(gz, data, 0);
    }
  });

  it("fflate gzip at several levels, with a filename and mtime", () => {
    for (const level of [0, 1, 6, 9] as const) {
      const data = TEXT.subarray(0, 200000);
      const gz = fflate.gzipSync(data, { level, filename: "file.txt", mtime: 1700000000000 });
      expectGunzip(gz, data);
      verifyCheckpoints(gz, data, 1000, buildCheckpointsSync(gz, 1000));
    }
  });
});

describe("gzip headers with optional fields around a raw deflate body", () => {
  const data = TEXT.subarray(0, 70000);
  const body = u8(deflateRawSync(data, { level: 6 }));
  const big = (n: number, seed: number) => {
    const r = new Rng(seed);
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = r.range(1, 255); // no NUL inside names/comments
    return b;
  };
  const headers: [string, Parameters<typeof gzipHeader>[0]][] = [
    ["minimal", {}],
    ["FTEXT", { ftext: true }],
    ["FHCRC", { fhcrc: true }],
    ["FEXTRA (small)", { extra: Uint8Array.of(0x41, 0x70, 2, 0, 1, 2) }],
    ["FEXTRA (empty)", { extra: new Uint8Array(0) }],
    ["FEXTRA 60 KB", { extra: big(60000, 1) }],
    ["FEXTRA 65535 (max)", { extra: big(65535, 2) }],
    ["FNAME", { name: "layer.tar" }],
    ["FNAME empty", { name: "" }],
    ["FCOMMENT", { comment: "a comment" }],
    [
      "all fields",
      {
        ftext: true,
        fhcrc: true,
        extra: big(1000, 3),
        name: "name",
        comment: "comment",
        mtime: 0x12345678,
        xfl: 2,
        os: 255,
      },
    ],
    [
      "header > 256 KiB (FEXTRA 65535 + 150 KB name + 100 KB comment, FHCRC)",
      { fhcrc: true, extra: big(65535, 4), name: big(150000, 5), comment: big(100000, 6) },
    ],
    ["header > 1 MiB (1.1 MB name)", { name: big(1_100_000, 7), comment: "c" }],
  ];
  for (const [name, fields] of headers) {
    it(name, async () => {
      const h = gzipHeader(fields);
      const gz = gzipMember(h, body, data);
      // the test stream is valid for node:zlib and the reference decoder
      expect(sameBytes(u8(gunzipSync(gz)), data)).toBe("equal");
      expectGunzip(gz, data);
      const res = buildCheckpointsSync(gz, 8192);
      expect(res.checkpoints[0]!.in).toBe(h.length);
      verifyCheckpoints(gz, data, 8192, res);
      // the same through the incremental builder, with chunk sizes that split the header
      for (const size of [64 * 1024, 4093]) {
        const got = await buildCheckpoints(
          chunked(gz, () => size),
          8192,
        );
        expect(got.checkpoints.map(key)).toEqual(res.checkpoints.map(key));
        expect(got.uncompressedSize).toBe(data.length);
      }
      // a second member with the same header
      const two = concat([gz, gz]);
      expectGunzip(two, concat([data, data]));
    });
  }

  it("a 60 KB FEXTRA fed one byte at a time", () => {
    const h = gzipHeader({ extra: big(60000, 8), name: "n", fhcrc: true });
    const gz = gzipMember(h, body, data);
    const b = new CheckpointBuilder(4096);
    for (let i = 0; i < gz.length; i++) b.push(gz.subarray(i, i + 1));
    const res = b.finish();
    expect(res.checkpoints.map(key)).toEqual(buildCheckpointsSync(gz, 4096).checkpoints.map(key));
    expect(res.checkpoints[0]!.in).toBe(h.length);
  });
});

describe("chunked input gives the same checkpoints and data as one-shot", () => {
  const streams: [string, () => Promise<{ gz: Uint8Array; data: Uint8Array }>][] = [
    [
      "text level 9",
      async () => ({ gz: u8(gzipSync(TEXT.subarray(0, 120000), { level: 9 })), data: TEXT.subarray(0, 120000) }),
    ],
    [
      "periods Z_RLE",
      async () => ({
        gz: u8(gzipSync(byName("periods 1..20"), { strategy: constants.Z_RLE })),
        data: byName("periods 1..20"),
      }),
    ],
    [
      "stored + fixed + dynamic members",
      async () => {
        const p = [MIXED.subarray(0, 70000), TEXT.subarray(0, 30000), MIXED.subarray(70000, 150000)];
        return {
          gz: concat([
            u8(gzipSync(p[0]!, { level: 0 })),
            u8(gzipSync(p[1]!, { strategy: constants.Z_FIXED })),
            u8(gzipSync(p[2]!, { level: 4 })),
          ]),
          data: concat(p),
        };
      },
    ],
    [
      "pigz -b 32 -i",
      async () => ({
        gz: await pigz(["-c", "-b", "32", "-i"], MIXED.subarray(0, 300000)),
        data: MIXED.subarray(0, 300000),
      }),
    ],
    ["mixed 3 MiB level 6", async () => ({ gz: gzipOnce(MIXED, { level: 6 }), data: MIXED })],
  ];

  const run = (gz: Uint8Array, span: number, chunks: Iterable<Uint8Array> | null) => {
    const data: Uint8Array[] = [];
    const opts = { onData: (v: Uint8Array) => data.push(v.slice()) };
    let res: CheckpointResult;
    if (chunks) {
      const b = new CheckpointBuilder(span, opts);
      for (const c of chunks) b.push(c);
      res = b.finish();
    } else res = buildCheckpointsSync(gz, span, opts);
    return { res, data: concat(data) };
  };
  const summary = (r: CheckpointResult) => ({
    cps: r.checkpoints.map((c) => `${key(c)}:${c.window.length}:${crc32(c.window)}`),
    in: r.compressedSize,
    out: r.uncompressedSize,
    members: r.members,
  });

  for (const [name, make] of streams) {
    it(name, async () => {
      const { gz, data } = await make();
      const small = gz.length <= 200_000;
      const span = 4096;
      const one = run(gz, span, null);
      expect(sameBytes(one.data, data)).toBe("equal");
      verifyCheckpoints(gz, data, span, one.res);
      const want = summary(one.res);
      const r = new Rng(gz.length);
      const chunkings: [string, () => number][] = [
        ["64 KiB", () => 65536],
        ["random 1..70000", () => r.range(1, 70000)],
        ["random 1..300", () => r.range(1, 300)],
        ["7 bytes", () => 7],
      ];
      if (small) chunkings.push(["1 byte", () => 1]);
      for (const [cname, next] of chunkings) {
        const got = run(gz, span, chunked(gz, next));
        expect(summary(got.res), cname).toEqual(want);
        const why = sameBytes(got.data, data);
        if (why !== "equal") expect.fail(`${cname}: onData ${why}`);
      }
      // empty chunks in between are harmless
      const withEmpty = chunked(gz, () => r.range(1, 5000)).flatMap((c) => [new Uint8Array(0), c]);
      expect(summary(run(gz, span, withEmpty).res)).toEqual(want);
      // async iterable
      async function* gen() {
        for (const c of chunked(gz, () => 10007)) {
          await Promise.resolve();
          yield c;
        }
      }
      expect(summary(await buildCheckpoints(gen(), span))).toEqual(want);
    });
  }

  it("interleaved builders and decoders do not share state", () => {
    const a = u8(gzipSync(TEXT.subarray(0, 200000), { level: 9 }));
    const b = concat([u8(gzipSync(MIXED.subarray(0, 150000), { level: 1 })), u8(gzipSync(TEXT.subarray(0, 1000)))]);
    const wantA = summary(buildCheckpointsSync(a, 5000));
    const wantB = summary(buildCheckpointsSync(b, 5000));
    const builders = [
      new CheckpointBuilder(5000),
      new CheckpointBuilder(5000),
      new CheckpointBuilder(5000),
      new CheckpointBuilder(5000),
      new CheckpointBuilder(5000),
      new CheckpointBuilder(5000),
    ];
    const inputs = [a, b, a, b, a, b];
    const step = 3001;
    for (let p = 0; p < Math.max(a.length, b.length); p += step) {
      builders.forEach((bl, i) => {
        if (p < inputs[i]!.length) bl.push(inputs[i]!.subarray(p, p + step));
      });
      // other work on the same thread in between
      if ((p / step) % 5 === 0) expect(gunzip(a).length).toBe(200000);
    }
    builders.forEach((bl, i) => {
      expect(summary(bl.finish())).toEqual(i % 2 ? wantB : wantA);
    });
  });

  it("splitting a small stream in two at every offset", () => {
    const parts = [TEXT.subarray(0, 3000), TEXT.subarray(3000, 3500)];
    const gz = concat([
      u8(gzipSync(parts[0]!, { level: 9 })),
      gzipMember(gzipHeader({ name: "x", fhcrc: true }), u8(deflateRawSync(parts[1]!)), parts[1]!),
    ]);
    const want = summary(buildCheckpointsSync(gz, 0));
    for (let k = 0; k <= gz.length; k++) {
      const got = summary(run(gz, 0, [gz.subarray(0, k), gz.subarray(k)]).res);
      if (JSON.stringify(got) !== JSON.stringify(want)) expect(got, `split at ${k}`).toEqual(want);
    }
  });
});
