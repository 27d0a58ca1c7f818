// The WebAssembly inflate core against the golden vectors produced by the reference implementation
// (test/vectors, docs/formats.md §2.1-2.5 and §7.2).
import { describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  buildCheckpoints,
  buildCheckpointsSync,
  CheckpointBuilder,
  extract,
  gunzip,
  InflateError,
  WINDOW_SIZE,
  type Checkpoint,
  type CheckpointResult,
} from "../src/index.js";
import { expectedWindow } from "./helpers/ref-inflate.js";
import {
  Rng,
  sameBytes,
  spanCompressedRanges,
  spanUncompressedRanges,
  vector,
  VECTORS_DIR,
} from "./helpers/inflate-util.js";

interface GoldenJson {
  span_size: number;
  compressed_archive_size: number;
  uncompressed_archive_size: number;
  max_span_id: number;
  checkpoints: { in: number; out: number; bits: number }[];
  span_compressed_ranges: [number, number][];
  span_digests: string[];
  zinfo_blob_file: string;
}

const golden = (name: string): GoldenJson => JSON.parse(readFileSync(join(VECTORS_DIR, name), "utf8")) as GoldenJson;

const sha256 = (b: Uint8Array) => "sha256:" + createHash("sha256").update(b).digest("hex");

/** Checkpoints of a v2 gzip zinfo blob (docs/formats.md §2.2). */
function parseBlob(blob: Uint8Array): {
  span: number;
  cps: { in: number; out: number; bits: number; window: Uint8Array }[];
} {
  const dv = new DataView(blob.buffer, blob.byteOffset, blob.length);
  const have = dv.getInt32(0, true);
  const span = Number(dv.getBigInt64(4, true));
  expect(blob.length).toBe(12 + 32785 * have); // all vectors are v2 blobs
  const cps = [];
  for (let i = 0, p = 12; i < have; i++, p += 32785) {
    cps.push({
      in: Number(dv.getBigInt64(p, true)),
      out: Number(dv.getBigInt64(p + 8, true)),
      bits: blob[p + 16]!,
      window: blob.subarray(p + 17, p + 17 + 32768),
    });
  }
  return { span, cps };
}

const tar = vector("layer.tar");
const layerA = vector("layer-a.tar.gz");
const layerB = vector("layer-b.tar.gz");

const CASES = [
  { name: "layer-a.tar.gz @ 4096 (V1)", gz: layerA, span: 4096, json: "a4096.json", members: 1 },
  { name: "layer-a.tar.gz @ 4194304 (V2)", gz: layerA, span: 4194304, json: "adef.json", members: 1 },
  { name: "layer-b.tar.gz @ 4096 (V3)", gz: layerB, span: 4096, json: "b4096.json", members: 2 },
] as const;

describe("golden vector files", () => {
  it("have the sizes and digests stated in the spec", () => {
    expect(tar.length).toBe(25600);
    expect(sha256(tar)).toBe("sha256:eb63df6a7fe9c461bc634fb9767c256bbc230caa9d22362ad4c7eb3b05cf0842");
    expect(layerA.length).toBe(962);
    expect(sha256(layerA)).toBe("sha256:6c2c6c487e30cf19f4a01ff221076074a9c7ddade2ed727b7e7dfbcaad1cc067");
    expect(layerB.length).toBe(1108);
    expect(sha256(layerB)).toBe("sha256:2fea2dc97536bbdff8b0a4f751d1221ce4dd291a00a9b63dc79693bd826252c3");
    expect(WINDOW_SIZE).toBe(32768);
  });
});

describe("gunzip of the vectors", () => {
  it("layer-a.tar.gz (one member, FNAME header) gives layer.tar", () => {
    const out = gunzip(layerA);
    expect(out).toBeInstanceOf(Uint8Array);
    expect(sameBytes(out, tar)).toBe("equal");
  });

  it("layer-b.tar.gz (two members) gives layer.tar", () => {
    expect(sameBytes(gunzip(layerB), tar)).toBe("equal");
  });

  it("accepts a subarray view with a non-zero byteOffset", () => {
    const padded = new Uint8Array(layerB.length + 13);
    padded.set(layerB, 7);
    expect(sameBytes(gunzip(padded.subarray(7, 7 + layerB.length)), tar)).toBe("equal");
  });

  it("maxOutput equal to the size is enough", () => {
    expect(sameBytes(gunzip(layerA, { maxOutput: tar.length }), tar)).toBe("equal");
    expect(sameBytes(gunzip(layerB, { maxOutput: tar.length }), tar)).toBe("equal");
  });
});

for (const c of CASES) {
  describe(`checkpoints of ${c.name}`, () => {
    const g = golden(c.json);
    const blob = parseBlob(vector(g.zinfo_blob_file));
    let res: CheckpointResult;
    const seen: Checkpoint[] = [];
    const data: Uint8Array[] = [];

    it("buildCheckpointsSync matches the golden in/out/bits", () => {
      res = buildCheckpointsSync(c.gz, c.span, {
        onCheckpoint: (cp) => seen.push(cp),
        onData: (v) => data.push(v.slice()),
      });
      expect(g.span_size).toBe(c.span);
      expect(res.checkpoints.length).toBe(g.max_span_id + 1);
      expect(res.checkpoints.map((x) => ({ in: x.in, out: x.out, bits: x.bits }))).toEqual(g.checkpoints);
      expect(res.compressedSize).toBe(g.compressed_archive_size);
      expect(res.uncompressedSize).toBe(g.uncompressed_archive_size);
      expect(res.members).toBe(c.members);
    });

    it("reports every checkpoint to onCheckpoint in order and all data to onData", () => {
      expect(seen.length).toBe(res.checkpoints.length);
      seen.forEach((cp, i) => {
        expect(cp.in).toBe(res.checkpoints[i]!.in);
        expect(cp.out).toBe(res.checkpoints[i]!.out);
        expect(cp.bits).toBe(res.checkpoints[i]!.bits);
        expect(sameBytes(cp.window, res.checkpoints[i]!.window)).toBe("equal");
      });
      expect(sameBytes(Buffer.concat(data), tar)).toBe("equal");
    });

    it("windows are (32 KiB zeros ++ output[0:out])[-32 KiB:] and equal the reference blob's", () => {
      expect(blob.span).toBe(c.span);
      expect(blob.cps.length).toBe(res.checkpoints.length);
      res.checkpoints.forEach((cp, i) => {
        expect(cp.window).toBeInstanceOf(Uint8Array);
        expect(cp.window.length).toBe(WINDOW_SIZE);
        expect(sameBytes(cp.window, expectedWindow(tar, cp.out)), `window ${i}`).toBe("equal");
        const b = blob.cps[i]!;
        expect({ in: cp.in, out: cp.out, bits: cp.bits }).toEqual({ in: b.in, out: b.out, bits: b.bits });
        expect(sameBytes(cp.window, b.window), `blob window ${i}`).toBe("equal");
      });
    });

    it("windows are independent copies (not views into decoder memory)", () => {
      // more decoding (reusing the pooled WebAssembly instances) must not change earlier results
      buildCheckpointsSync(layerB, 0);
      gunzip(layerA);
      res.checkpoints.forEach((cp, i) => {
        expect(sameBytes(cp.window, expectedWindow(tar, cp.out)), `window ${i}`).toBe("equal");
      });
    });

    it("span compressed ranges and their sha256 digests match", () => {
      const ranges = spanCompressedRanges(res.checkpoints, c.gz.length);
      expect(ranges).toEqual(g.span_compressed_ranges);
      expect(ranges.map(([s, e]) => sha256(c.gz.subarray(s, e)))).toEqual(g.span_digests);
    });

    it("the async and incremental builders give the same result", async () => {
      const strip = (r: CheckpointResult) => ({
        ...r,
        checkpoints: r.checkpoints.map((x) => ({ in: x.in, out: x.out, bits: x.bits, w: sha256(x.window) })),
      });
      const want = strip(res);
      expect(strip(await buildCheckpoints(c.gz, c.span))).toEqual(want);
      const pieces = [c.gz.subarray(0, 5), c.gz.subarray(5, 300), c.gz.subarray(300, 301), c.gz.subarray(301)];
      expect(strip(await buildCheckpoints(pieces, c.span))).toEqual(want);
      async function* gen() {
        for (let i = 0; i < c.gz.length; i += 3) yield c.gz.subarray(i, i + 3);
      }
      expect(strip(await buildCheckpoints(gen(), c.span))).toEqual(want);
      const b = new CheckpointBuilder(c.span);
      for (let i = 0; i < c.gz.length; i++) b.push(c.gz.subarray(i, i + 1));
      expect(strip(b.finish())).toEqual(want);
    });

    it("every span extracts to the right bytes of layer.tar", () => {
      const cr = spanCompressedRanges(res.checkpoints, c.gz.length);
      const ur = spanUncompressedRanges(res.checkpoints, res.uncompressedSize);
      res.checkpoints.forEach((cp, i) => {
        const [s, e] = cr[i]!;
        const [us, ue] = ur[i]!;
        const got = extract(c.gz.subarray(s, e), cp, cp.out, ue - us);
        expect(sameBytes(got, tar.subarray(us, ue)), `span ${i}`).toBe("equal");
        // the checkpoint as stored (a plain object, a copied window) works the same
        const plain = { out: cp.out, bits: cp.bits, window: Uint8Array.from(cp.window) };
        expect(sameBytes(extract(c.gz.slice(s, e), plain, us, ue - us), tar.subarray(us, ue))).toBe("equal");
      });
    });

    it("a span extracts from the reference blob's checkpoint too", () => {
      const cr = spanCompressedRanges(blob.cps, c.gz.length);
      const ur = spanUncompressedRanges(blob.cps, tar.length);
      blob.cps.forEach((cp, i) => {
        const got = extract(c.gz.subarray(cr[i]![0], cr[i]![1]), cp, cp.out, ur[i]![1] - ur[i]![0]);
        expect(sameBytes(got, tar.subarray(ur[i]![0], ur[i]![1]))).toBe("equal");
      });
    });

    it("extracts sub-ranges: inside a span, crossing into the next span, to the end of the file", () => {
      const cps = res.checkpoints;
      const cr = spanCompressedRanges(cps, c.gz.length);
      const ur = spanUncompressedRanges(cps, tar.length);
      const rng = new Rng(0x5eed + c.span);
      let n = 0;
      for (let i = 0; i < cps.length; i++) {
        const cp = cps[i]!;
        const [us, ue] = ur[i]!;
        const one = c.gz.subarray(cr[i]![0], cr[i]![1]);
        // within the span: first byte, last byte, random windows
        const within: [number, number][] = [
          [us, 1],
          [ue - 1, 1],
          [us, ue - us],
          [us + 1, ue - us - 1],
        ];
        for (let k = 0; k < 20; k++) {
          const off = rng.range(us, ue - 1);
          within.push([off, rng.range(1, ue - off)]);
        }
        for (const [off, len] of within) {
          expect(sameBytes(extract(one, cp, off, len), tar.subarray(off, off + len)), `span ${i} @${off}+${len}`).toBe(
            "equal",
          );
          n++;
        }
        // crossing into the next span with the bytes of two consecutive spans
        if (i + 1 < cps.length) {
          const two = c.gz.subarray(cr[i]![0], cr[i + 1]![1]);
          const [, ue2] = ur[i + 1]!;
          const crossing: [number, number][] = [
            [ue - 1, 2],
            [us, ue2 - us],
            [ue - 1, ue2 - ue + 1],
          ];
          for (let k = 0; k < 20; k++) {
            const off = rng.range(us, ue - 1);
            crossing.push([off, rng.range(ue - off + 1, ue2 - off)]);
          }
          for (const [off, len] of crossing) {
            expect(
              sameBytes(extract(two, cp, off, len), tar.subarray(off, off + len)),
              `spans ${i}-${i + 1} @${off}+${len}`,
            ).toBe("equal");
            n++;
          }
        }
        // from this checkpoint to the end of the file with all remaining bytes (crosses members in V3)
        const rest = c.gz.subarray(cr[i]![0]);
        expect(sameBytes(extract(rest, cp, us, tar.length - us), tar.subarray(us))).toBe("equal");
        const off = rng.range(us, tar.length - 1);
        expect(sameBytes(extract(rest, cp, off, tar.length - off), tar.subarray(off))).toBe("equal");
      }
      expect(n).toBeGreaterThan(0);
    });

    it("1-byte reads at every offset of every span", () => {
      const cps = res.checkpoints;
      const cr = spanCompressedRanges(cps, c.gz.length);
      const ur = spanUncompressedRanges(cps, tar.length);
      const step = c.span === 4096 ? 1 : 3; // the single-span case: every third offset (same code path)
      for (let i = 0; i < cps.length; i++) {
        const one = c.gz.subarray(cr[i]![0], cr[i]![1]);
        for (let off = ur[i]![0]; off < ur[i]![1]; off += step) {
          const got = extract(one, cps[i]!, off, 1);
          if (got.length !== 1 || got[0] !== tar[off]) {
            expect.fail(`span ${i}: extract(offset ${off}, 1) = [${Array.from(got)}], want [${tar[off]}]`);
          }
        }
      }
    });

    it("zero length returns an empty array without decoding", () => {
      for (const cp of res.checkpoints) {
        const z = extract(c.gz.subarray(cp.in), cp, cp.out, 0);
        expect(z).toBeInstanceOf(Uint8Array);
        expect(z.length).toBe(0);
        expect(extract(new Uint8Array(0), cp, cp.out + 5, 0).length).toBe(0);
      }
    });

    it("asking for bytes past the end of the span's data is an InflateError", () => {
      const cps = res.checkpoints;
      const cr = spanCompressedRanges(cps, c.gz.length);
      const ur = spanUncompressedRanges(cps, tar.length);
      for (let i = 0; i < cps.length; i++) {
        const one = c.gz.subarray(cr[i]![0], cr[i]![1]);
        const isLast = i === cps.length - 1;
        // one byte more than the span holds: the last span ends with the stream, others run out of input
        const len = ur[i]![1] - ur[i]![0] + (isLast ? 1 : 64);
        expect(() => extract(one, cps[i]!, ur[i]![0], len)).toThrow(InflateError);
      }
    });
  });
}

describe("incremental input split at every offset", () => {
  for (const [name, gz] of [
    ["layer-a.tar.gz", layerA],
    ["layer-b.tar.gz", layerB],
  ] as const) {
    it(`${name}: two pieces, cut anywhere, give the golden checkpoints and all the data`, () => {
      const want = buildCheckpointsSync(gz, 4096).checkpoints.map(
        (c) => `${c.in}/${c.out}/${c.bits}/${sha256(c.window)}`,
      );
      const bad: string[] = [];
      for (let k = 0; k <= gz.length; k++) {
        const data: Uint8Array[] = [];
        try {
          const b = new CheckpointBuilder(4096, { onData: (v) => data.push(v.slice()) });
          b.push(gz.subarray(0, k));
          b.push(gz.subarray(k));
          const r = b.finish();
          const got = r.checkpoints.map((c) => `${c.in}/${c.out}/${c.bits}/${sha256(c.window)}`);
          if (JSON.stringify(got) !== JSON.stringify(want)) bad.push(`cut at ${k}: checkpoints differ`);
          else if (sameBytes(Buffer.concat(data), tar) !== "equal")
            bad.push(`cut at ${k}: data ${sameBytes(Buffer.concat(data), tar)}`);
        } catch (e) {
          bad.push(`cut at ${k}: ${(e as Error).message}`);
        }
      }
      expect(bad.slice(0, 10), `${bad.length} of ${gz.length + 1} cuts fail`).toEqual([]);
    });
  }
});

describe("layer-b specifics", () => {
  it("has a checkpoint right after the second member's header (bits 0)", () => {
    const r = buildCheckpointsSync(layerB, 4096);
    const cp = r.checkpoints.find((x) => x.out === 9000)!;
    expect(cp).toBeDefined();
    expect(cp.in).toBe(417);
    expect(cp.bits).toBe(0);
    // the span starting there begins with a block, not with a gzip header
    expect(Array.from(layerB.subarray(407, 410))).toEqual([0x1f, 0x8b, 8]);
  });

  it("extraction from checkpoint 0 crosses the member boundary transparently", () => {
    const r = buildCheckpointsSync(layerB, 1 << 30);
    expect(r.checkpoints.length).toBe(1);
    const cp = r.checkpoints[0]!;
    for (const [off, len] of [
      [0, 25600],
      [8990, 20],
      [9000, 1],
      [8999, 1],
      [8999, 2],
      [25599, 1],
    ] as const) {
      expect(
        sameBytes(extract(layerB.subarray(cp.in), cp, off, len), tar.subarray(off, off + len)),
        `${off}+${len}`,
      ).toBe("equal");
    }
  });
});
