import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import {
  buildCheckpointsSync,
  GzipZinfo,
  PACKED_CHECKPOINT_SIZE,
  spanRanges,
  TarZinfo,
  ZinfoError,
  ZINFO_HEADER_SIZE,
} from "../src/index.js";

const V = new URL("./vectors/", import.meta.url);
const vec = (name: string) => readFileSync(new URL(name, V));
const sha = (b: Uint8Array) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

describe("gzip checkpoint blob", () => {
  for (const [gz, span, blob, json] of [
    ["layer-a.tar.gz", 4096, "a4096.blob", "a4096.json"],
    ["layer-a.tar.gz", 4194304, "adef.blob", "adef.json"],
    ["layer-b.tar.gz", 4096, "b4096.blob", "b4096.json"],
  ] as const) {
    it(`reproduces ${blob} and its span ranges/digests`, () => {
      const bytes = vec(gz);
      const want = JSON.parse(vec(json).toString()) as {
        span_compressed_ranges: number[][];
        span_digests: string[];
        zinfo_blob_sha256: string;
      };
      const r = buildCheckpointsSync(bytes, span);
      const z = new GzipZinfo(r.checkpoints, span);
      const out = z.toBlob();
      expect(Buffer.from(out).equals(vec(blob))).toBe(true);
      expect(sha(out)).toBe(want.zinfo_blob_sha256);
      const ranges = spanRanges(z, bytes.length, r.uncompressedSize);
      expect(ranges.map((s) => [s.compressedStart, s.compressedEnd])).toEqual(want.span_compressed_ranges);
      expect(ranges.map((s) => sha(bytes.subarray(s.compressedStart, s.compressedEnd)))).toEqual(want.span_digests);
      // decode → encode is the identity
      const back = GzipZinfo.fromBlob(vec(blob));
      expect(back.version).toBe(2);
      expect(Buffer.from(back.toBlob()).equals(vec(blob))).toBe(true);
    });
  }

  it("accepts and rejects blobs as the reference does (gzip_zinfo_test.go)", () => {
    expect(() => GzipZinfo.fromBlob(new Uint8Array(0))).toThrow(/empty checkpoints/);
    expect(() => GzipZinfo.fromBlob(new Uint8Array(1))).toThrow(ZinfoError);
    const have255 = new Uint8Array(12);
    have255[0] = 0xff;
    expect(() => GzipZinfo.fromBlob(have255)).toThrow(ZinfoError);
    const empty = GzipZinfo.fromBlob(new Uint8Array(12));
    expect(empty.version).toBe(2);
    expect(empty.checkpoints).toHaveLength(0);
    const one = new Uint8Array(12);
    one[0] = 1;
    const v1 = GzipZinfo.fromBlob(one);
    expect(v1.version).toBe(1);
    expect(v1.checkpoints).toHaveLength(1);
    expect(v1.checkpoints[0]).toMatchObject({ in: 10, out: 0, bits: 0 });
    expect(v1.checkpoints[0]!.window.every((b) => b === 0)).toBe(true);
    // one byte short of a whole record
    const short = new Uint8Array(ZINFO_HEADER_SIZE + PACKED_CHECKPOINT_SIZE - 1);
    short[0] = 1;
    const s2 = short.slice();
    s2[0] = 2;
    expect(() => GzipZinfo.fromBlob(s2)).toThrow(ZinfoError);
  });

  it("round-trips legacy v1 blobs byte for byte (checkpoint 0 omitted, synthesised on read)", () => {
    const r = buildCheckpointsSync(vec("layer-b.tar.gz"), 4096); // first checkpoint in=10: what v1 assumed
    const v1 = new GzipZinfo(r.checkpoints, 4096, 1).toBlob();
    expect(v1.length).toBe(ZINFO_HEADER_SIZE + PACKED_CHECKPOINT_SIZE * (r.checkpoints.length - 1));
    const back = GzipZinfo.fromBlob(v1);
    expect(back.version).toBe(1);
    expect(back.checkpoints.map((c) => [c.in, c.out, c.bits])).toEqual(r.checkpoints.map((c) => [c.in, c.out, c.bits]));
    expect(Buffer.from(back.toBlob()).equals(Buffer.from(v1))).toBe(true);
  });

  it("keeps 64-bit offsets beyond 2^32 exact in blobs and span arithmetic", () => {
    const w = new Uint8Array(32768);
    const G = 2 ** 32;
    const cps = [
      { in: 10, out: 0, bits: 0, window: w },
      { in: G + 17, out: 3 * G + 5, bits: 3, window: w },
      { in: 2 * G + 1, out: 5 * G + 123456, bits: 0, window: w },
    ];
    const z = GzipZinfo.fromBlob(new GzipZinfo(cps, 4 << 20).toBlob());
    expect(z.spanSize).toBe(4 << 20);
    expect(z.checkpoints.map((c) => [c.in, c.out, c.bits])).toEqual(cps.map((c) => [c.in, c.out, c.bits]));
    expect(z.spanForOffset(3 * G + 4)).toBe(0);
    expect(z.spanForOffset(3 * G + 5)).toBe(1); // an offset equal to a checkpoint's out belongs to the later span
    expect(z.spanForOffset(6 * G)).toBe(2);
    expect(z.startCompressedOffset(1)).toBe(G + 16);
    expect(z.endCompressedOffset(1, 3 * G)).toBe(2 * G + 1);
    expect(z.endCompressedOffset(2, 3 * G)).toBe(3 * G);
    expect(z.endUncompressedOffset(2, 7 * G)).toBe(7 * G);
    expect(() => z.startCompressedOffset(3)).toThrow(RangeError);
  });
});

describe("TarZinfo", () => {
  it("encodes the reference's 48-byte flatbuffer", () => {
    expect(Buffer.from(new TarZinfo(4096, 25600).toBlob()).toString("hex")).toBe(
      "140000000000000000000a001c0018000c0004000a000000006400000000000000100000000000000000000002000000",
    );
    expect(Buffer.from(new TarZinfo(4194304, 25600).toBlob()).toString("hex")).toBe(
      "140000000000000000000a001c0018000c0004000a000000006400000000000000004000000000000000000002000000",
    );
  });

  it("matches the V4 span ranges and digests, and round-trips", () => {
    const tar = vec("layer.tar");
    const want = JSON.parse(vec("t4096.json").toString()) as {
      span_compressed_ranges: number[][];
      span_digests: string[];
      max_span_id: number;
    };
    const z = TarZinfo.fromBlob(new TarZinfo(4096, tar.length).toBlob());
    expect(z).toMatchObject({ spanSize: 4096, size: 25600, version: 2 });
    expect(z.maxSpanId).toBe(want.max_span_id);
    const ranges = spanRanges(z, tar.length, tar.length);
    expect(ranges.map((s) => [s.compressedStart, s.compressedEnd])).toEqual(want.span_compressed_ranges);
    expect(ranges.map((s) => sha(tar.subarray(s.compressedStart, s.compressedEnd)))).toEqual(want.span_digests);
    expect(z.spanForOffset(4095)).toBe(0);
    expect(z.spanForOffset(4096)).toBe(1);
  });

  it("computes max span id like tar_zinfo.go (exact multiple, empty layer)", () => {
    expect(new TarZinfo(4096, 8192).maxSpanId).toBe(1);
    expect(new TarZinfo(4096, 8193).maxSpanId).toBe(2);
    expect(new TarZinfo(4096, 0).maxSpanId).toBe(-1);
    expect(() => new TarZinfo(0, 10)).toThrow(ZinfoError);
    expect(() => TarZinfo.fromBlob(new Uint8Array([1, 2, 3]))).toThrow(ZinfoError);
  });
});
