// The layer verification artifact (docs/formats.md §9): built in the ztoc's streaming pass, encoded
// deterministically (a golden digest of our own over the reference's vector layers), decoded back,
// and sufficient to rebuild the ztoc exactly from its TOC part and windows. The chunk output ends
// are checked against the decoder: the bytes up to a chunk's end decompress at least that far from
// every earlier checkpoint, and never a byte further.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { LayerIndexer, type LayerCompression } from "../src/indexer/layer-indexer.js";
import {
  buildLayerVerification,
  chunkRange,
  decodeLayerVerification,
  encodeLayerVerification,
  joinZinfo,
  locateZinfo,
  skeletonCheckpoints,
  splitZinfo,
  tocPartRanges,
  tocPartZtoc,
  verifyChunk,
  verifyTocPart,
  verifyWindow,
  windowRange,
  type LayerVerification,
} from "../src/formats/layer-verification.js";
import { decodeZtoc } from "../src/formats/ztoc.js";
import { GzipZinfo } from "../src/formats/gzip-zinfo.js";
import { extract } from "../src/wasm/extract.js";
import { buildTestLayers, type TestLayers } from "./helpers/span-layers.js";

const V = new URL("./vectors/", import.meta.url);
const vec = (name: string) => readFileSync(new URL(name, V));
const sha = (b: Uint8Array) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

function build(blob: Uint8Array, compression: LayerCompression, spanSize: number, chunkSize: number, pushSize = 1000) {
  const ix = new LayerIndexer({ spanSize, compression, chunkSize });
  for (let i = 0; i < blob.length; i += pushSize) ix.push(blob.subarray(i, i + pushSize));
  const built = ix.finish();
  const v = buildLayerVerification({
    ztoc: built.bytes,
    zinfoKind: compression === "gzip" ? "gzip" : "tar",
    layerDigest: sha(blob),
    layerSize: blob.length,
    chunks: built.chunks!,
  });
  return { built, v };
}

describe("encoding", () => {
  it("is deterministic and matches our golden digests (the reference's vector layers)", () => {
    const golden: [string, LayerCompression, number, number, string][] = [
      ["layer-b.tar.gz", "gzip", 4096, 512, "sha256:4000f46a27d93b673ddba6dcf4f21aaf4a032a214942e5bac3823087a8be77cc"],
      [
        "layer-a.tar.gz",
        "gzip",
        4194304,
        512,
        "sha256:c415fd24a74fe5f2604a53186550ae3643b40fcf41e9e8c7c76244bb070061d0",
      ],
      [
        "layer.tar",
        "uncompressed",
        4096,
        4096,
        "sha256:7041e06d7b3f90c5b84f09ddc248f384506b5c6c4f6dcce6899af4a8afd58e11",
      ],
    ];
    for (const [name, compression, span, chunk, want] of golden) {
      const blob = vec(name);
      const bytes = [1, 7, 1000, 1 << 20].map((push) =>
        encodeLayerVerification(build(blob, compression, span, chunk, push).v),
      );
      for (const b of bytes) expect(sha(b)).toBe(sha(bytes[0]!));
      expect(`${name}: ${sha(bytes[0]!)}`).toBe(`${name}: ${want}`);
    }
  });

  it("round-trips, and records the reference's ztoc (V3) and its layout", () => {
    const blob = vec("layer-b.tar.gz");
    const { v } = build(blob, "gzip", 4096, 512);
    const back = decodeLayerVerification(encodeLayerVerification(v));
    expect({ ...back, skeleton: sha(back.skeleton), windowDigests: sha(back.windowDigests) }).toEqual({
      ...v,
      skeleton: sha(v.skeleton),
      windowDigests: sha(v.windowDigests),
    });
    const ztoc = vec("zb4096.ztoc");
    expect(v.ztocDigest).toBe(sha(ztoc));
    expect(v.ztocSize).toBe(ztoc.length);
    // the zinfo inside the ztoc is exactly the reference's checkpoint blob (b4096.blob)
    expect(sha(ztoc.subarray(v.zinfoOffset, v.zinfoOffset + v.zinfoLength))).toBe(sha(vec("b4096.blob")));
    expect(v.windowDigests.length / 32).toBe(6);
    // member 1 ends at 9000 (its trailer in chunk 1); the rest decodes with chunk 2
    expect(v.chunkOutEnds).toEqual([12817, 23040, 25600]);
    expect(v.chunkOutEnds.at(-1)).toBe(gunzipSync(blob).length);
    const { checkpoints, version } = skeletonCheckpoints(v.skeleton);
    expect(version).toBe(2);
    expect(checkpoints.map((c) => [c.in, c.out, c.bits])).toEqual([
      [10, 0, 0],
      [182, 4608, 3],
      [417, 9000, 0],
      [576, 13608, 7],
      [827, 18216, 6],
      [1020, 22824, 4],
    ]);
  });

  it("refuses malformed artifacts", () => {
    const good = encodeLayerVerification(build(vec("layer-a.tar.gz"), "gzip", 4096, 512).v);
    const bad = (mutate: (b: Buffer) => Buffer) => () => decodeLayerVerification(mutate(Buffer.from(good)));
    expect(bad((b) => b.subarray(0, b.length - 1))).toThrow(/invalid layer verification artifact/);
    expect(bad((b) => Buffer.concat([b, Buffer.alloc(1)]))).toThrow(/after the end/);
    expect(
      bad((b) => {
        b[0] = 0x41;
        return b;
      }),
    ).toThrow(/magic/);
    expect(
      bad((b) => {
        b.writeUInt32LE(100, 8 + 32 + 8 + 32 + 8 + 8 + 8 + 32 + 1); // chunk size too small
        return b;
      }),
    ).toThrow(/chunk size/);
  });
});

describe("the ztoc rebuilt from its parts", () => {
  for (const [name, compression, span] of [
    ["layer-a.tar.gz", "gzip", 4096],
    ["layer-b.tar.gz", "gzip", 4096],
    ["layer.tar", "uncompressed", 4096],
  ] as const) {
    it(`${name}: TOC part + skeleton + windows = the ztoc`, () => {
      const { built, v } = build(vec(name), compression, span, 4096);
      const ztoc = built.bytes;
      const loc = locateZinfo(ztoc);
      expect([loc.offset, loc.length]).toEqual([v.zinfoOffset, v.zinfoLength]);
      const [[a0, a1], [b0, b1]] = tocPartRanges(v);
      const head = ztoc.subarray(a0, a1);
      const tail = ztoc.subarray(b0, b1);
      verifyTocPart(v, head, tail);
      const windows: Uint8Array[] = [];
      for (let k = 0; k < v.windowDigests.length / 32; k++) {
        const [s, e] = windowRange(v, k);
        verifyWindow(v, k, ztoc.subarray(s, e));
        windows.push(ztoc.subarray(s, e));
      }
      const rebuilt = Buffer.concat([head, joinZinfo(v.skeleton, windows), tail]);
      expect(sha(rebuilt)).toBe(built.digest);
      // what the daemon decodes from the TOC part alone: the same TOC, no checkpoints
      const full = decodeZtoc(ztoc);
      const partial = decodeZtoc(tocPartZtoc(v, head, tail));
      expect(partial.checkpoints.length).toBe(0);
      expect(partial.toc).toEqual(full.toc);
      expect({ ...partial, toc: [], checkpoints: [] }).toEqual({ ...full, toc: [], checkpoints: [] });
      // a changed byte anywhere is caught by the part it lands in
      const flipped = Buffer.from(tail);
      flipped[3]! ^= 1;
      expect(() => verifyTocPart(v, head, flipped)).toThrow(/TOC part digest mismatch/);
      if (windows.length) {
        const w = Buffer.from(windows[0]!);
        w[100]! ^= 1;
        expect(() => verifyWindow(v, 0, w)).toThrow(/window 0 digest mismatch/);
      }
    });
  }

  it("a v1 zinfo (checkpoint 0 implied) splits and joins too", () => {
    const blob = vec("a4096.blob");
    const v2 = GzipZinfo.fromBlob(blob);
    const v1 = new GzipZinfo(v2.checkpoints, v2.spanSize, 1).toBlob();
    const { skeleton, windows } = splitZinfo(v1, "gzip");
    expect(windows.length).toBe(v2.checkpoints.length - 1);
    expect(sha(joinZinfo(skeleton, windows))).toBe(sha(v1));
    const cps = skeletonCheckpoints(skeleton);
    expect(cps.version).toBe(1);
    expect(cps.checkpoints[0]).toEqual({ in: 10, out: 0, bits: 0, window: -1 });
    expect(cps.checkpoints[1]!.window).toBe(0);
  });
});

describe("chunk digests and output ends", () => {
  let dir = "";
  let fx: TestLayers;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "soci-verification-"));
    fx = await buildTestLayers(dir);
  }, 120_000);
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  function check(v: LayerVerification, blob: Uint8Array, tar: Uint8Array, chunkSize: number) {
    for (let j = 0; j < v.chunkOutEnds.length; j++) {
      const [s, e] = chunkRange(v, j);
      verifyChunk(v, j, blob.subarray(s, e));
      expect(() => verifyChunk(v, j, blob.subarray(s, e - 1))).toThrow(/digest mismatch/);
    }
    if (v.zinfoKind !== "gzip") {
      expect(v.chunkOutEnds).toEqual(v.chunkOutEnds.map((_, j) => chunkRange(v, j)[1]));
      return;
    }
    const cps = skeletonCheckpoints(v.skeleton).checkpoints;
    // from a few checkpoints, every chunk end after the checkpoint: decodable exactly to outEnd
    for (const i of [0, 1, Math.floor(cps.length / 2), cps.length - 1]) {
      const cp = cps[i]!;
      const start = cp.in - (cp.bits ? 1 : 0);
      const window = tar.subarray(Math.max(0, cp.out - 32768), cp.out);
      const full = new Uint8Array(32768);
      full.set(window, 32768 - window.length);
      for (let j = Math.floor(start / chunkSize); j < v.chunkOutEnds.length; j += 7) {
        const end = chunkRange(v, j)[1];
        if (end <= start) continue;
        const outEnd = v.chunkOutEnds[j]!;
        if (outEnd <= cp.out) continue;
        const got = extract(
          blob.subarray(start, end),
          { out: cp.out, bits: cp.bits, window: full },
          cp.out,
          outEnd - cp.out,
        );
        expect(Buffer.from(got).equals(Buffer.from(tar.subarray(cp.out, outEnd)))).toBe(true);
        if (end < blob.length)
          expect(() =>
            extract(
              blob.subarray(start, end),
              { out: cp.out, bits: cp.bits, window: full },
              cp.out,
              outEnd - cp.out + 1,
            ),
          ).toThrow();
      }
    }
  }

  for (const name of ["gzip", "pigz", "tar"] as const) {
    it(`${name} layer, 64 KiB spans, 16 KiB chunks`, async () => {
      const l = fx.layers.find((x) => x.name === name)!;
      const tar = name === "tar" ? l.blob : gunzipSync(l.blob);
      const { v } = build(l.blob, name === "tar" ? "uncompressed" : "gzip", 64 << 10, 16 << 10, 100_000);
      check(v, l.blob, tar, 16 << 10);
    });
  }
});
