// The streaming gunzip API (GunzipDecoder, createGunzipStream, gunzipChunks) against node:zlib:
// same bytes for any chunking, multi-member streams, and the same failures on corrupt input.
import { describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip, gunzipSync, gzipSync } from "node:zlib";
import { createGunzipStream, GunzipDecoder, gunzipChunks, InflateError } from "../src/index.js";
import { mixed, Rng, textLike } from "./helpers/inflate-util.js";

const concat = (parts: Uint8Array[]) => Buffer.concat(parts);

function pieces(b: Uint8Array, r: Rng, max: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < b.length; ) {
    const n = 1 + r.int(max);
    out.push(b.subarray(i, i + n));
    i += n;
  }
  return out;
}

async function collect(it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of it) parts.push(c);
  return concat(parts);
}

async function viaTransform(chunks: Uint8Array[], make = () => createGunzipStream()): Promise<Buffer> {
  const parts: Buffer[] = [];
  await pipeline(Readable.from(chunks), make(), async (src: AsyncIterable<Buffer>) => {
    for await (const b of src) parts.push(b);
  });
  return concat(parts);
}

describe("streaming gunzip", () => {
  const r = new Rng(42);
  const inputs: [string, Uint8Array][] = [
    ["empty", new Uint8Array(0)],
    ["text 150 KB", textLike(r, 150_000)],
    ["text 3 MB", textLike(r, 3 << 20)],
    ["random 1.5 MB", randomBytes(1_500_000)],
    ["mixed 5 MB", mixed(r, 5 << 20)],
  ];

  for (const [name, data] of inputs) {
    it(`${name}: the same bytes as node:zlib, whatever the chunking`, async () => {
      const gz = gzipSync(data, { level: 6 });
      const want = gunzipSync(gz);
      for (const max of [1, 7, 4096, 1 << 20, gz.length + 1]) {
        if (max < 4096 && gz.length > 200_000) continue; // tiny pieces: only for the small inputs
        const chunks = pieces(gz, r, max);
        expect(Buffer.compare(await collect(gunzipChunks(chunks)), want)).toBe(0);
        expect(Buffer.compare(await viaTransform(chunks), want)).toBe(0);
      }
    });
  }

  it("decodes multi-member streams as node:zlib does", async () => {
    const a = textLike(r, 100_000);
    const b = mixed(r, 300_000);
    const gz = concat([gzipSync(a), gzipSync(new Uint8Array(0)), gzipSync(b, { level: 1 })]);
    const want = gunzipSync(gz);
    expect(Buffer.compare(await collect(gunzipChunks(pieces(gz, r, 5000))), want)).toBe(0);
    // node:zlib's stream agrees
    const parts: Buffer[] = [];
    await pipeline(Readable.from([gz]), createGunzip(), async (src: AsyncIterable<Buffer>) => {
      for await (const c of src) parts.push(c);
    });
    expect(Buffer.compare(concat(parts), want)).toBe(0);
  });

  it("hands out buffers the caller keeps (not views of the decoder's memory)", () => {
    const data = mixed(r, 3 << 20);
    const dec = new GunzipDecoder();
    const out: Buffer[] = [];
    dec.push(gzipSync(data), (b) => out.push(b));
    dec.end((b) => out.push(b));
    expect(out.length).toBeGreaterThan(2);
    for (const b of out) expect(b.buffer.byteLength).toBeLessThan(8 << 20); // not the WASM memory
    expect(Buffer.compare(concat(out), Buffer.from(data))).toBe(0);
    expect(dec.outputBytes).toBe(data.length);
  });

  it("fails like node:zlib on a bad CRC, a bad size and a truncated stream", async () => {
    const gz = gzipSync(textLike(r, 200_000));
    const badCrc = Buffer.from(gz);
    badCrc[gz.length - 8] ^= 1;
    const badSize = Buffer.from(gz);
    badSize[gz.length - 1] ^= 1;
    const truncated = gz.subarray(0, gz.length - 3);
    for (const [bad, code] of [
      [badCrc, -13],
      [badSize, -14],
      [truncated, -15],
    ] as const) {
      expect(() => gunzipSync(bad)).toThrow();
      const err = await collect(gunzipChunks([bad])).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InflateError);
      expect((err as InflateError).code).toBe(code);
      await expect(viaTransform([bad])).rejects.toBeInstanceOf(InflateError);
    }
    // without CRC checks a wrong CRC passes
    expect((await collect(gunzipChunks([badCrc], { verifyCrc: false }))).length).toBe(200_000);
  });

  it("stops at maxOutput", async () => {
    const gz = gzipSync(new Uint8Array(10 << 20));
    await expect(collect(gunzipChunks([gz], { maxOutput: 1 << 20 }))).rejects.toThrow(/exceeds/);
  });
});
