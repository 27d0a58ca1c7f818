import { afterAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import zlib from "node:zlib";
import { buildCheckpointsSync, InflateError, InflatePool } from "../src/index.js";

const V = new URL("./vectors/", import.meta.url);
const vec = (name: string) => readFileSync(new URL(name, V));

describe("InflatePool (piscina workers)", () => {
  const pool = new InflatePool({ threads: 2 });
  afterAll(() => pool.destroy());

  // ~6 MB that compresses to several 1 MiB spans: text with some random runs
  const plain = Buffer.concat(
    Array.from({ length: 48 }, (_, i) =>
      i % 4 === 3 ? randomBytes(32 * 1024) : Buffer.from(`line ${i} `.repeat(12000)),
    ),
  );
  const gz = zlib.gzipSync(plain, { level: 6 });

  it("gunzips on a worker", async () => {
    expect(Buffer.from(await pool.gunzip(vec("layer-b.tar.gz"))).equals(vec("layer.tar"))).toBe(true);
    expect(Buffer.from(await pool.gunzip(gz)).equals(plain)).toBe(true);
  });

  it("streams a layer to a worker and returns the same checkpoints as the in-thread builder", async () => {
    async function* chunks() {
      for (let i = 0; i < gz.length; i += 100_000) yield gz.subarray(i, i + 100_000);
    }
    const seen: number[] = [];
    const r = await pool.buildCheckpoints(chunks(), 1 << 20, { onCheckpoint: (cp) => seen.push(cp.out), inFlight: 2 });
    const local = buildCheckpointsSync(gz, 1 << 20);
    expect(r.uncompressedSize).toBe(plain.length);
    expect(r.compressedSize).toBe(gz.length);
    expect(r.checkpoints.length).toBeGreaterThan(3);
    expect(r.checkpoints.map((c) => [c.in, c.out, c.bits])).toEqual(
      local.checkpoints.map((c) => [c.in, c.out, c.bits]),
    );
    expect(r.checkpoints.every((c, i) => Buffer.from(c.window).equals(Buffer.from(local.checkpoints[i]!.window)))).toBe(
      true,
    );
    expect(seen).toEqual(local.checkpoints.map((c) => c.out));
  });

  it("extracts every span on workers in parallel", async () => {
    const { checkpoints: cps } = buildCheckpointsSync(gz, 1 << 20);
    const parts = await Promise.all(
      cps.map((cp, i) => {
        const start = cp.in - (cp.bits ? 1 : 0);
        const end = i + 1 < cps.length ? cps[i + 1]!.in : gz.length;
        const len = (i + 1 < cps.length ? cps[i + 1]!.out : plain.length) - cp.out;
        return pool.extract(gz.subarray(start, end), cp, cp.out, len);
      }),
    );
    expect(Buffer.concat(parts.map((p) => Buffer.from(p))).equals(plain)).toBe(true);
  });

  it("builds several layers at once", async () => {
    const results = await Promise.all([0, 1, 2].map(() => pool.buildCheckpoints(gz, 1 << 20)));
    for (const r of results) expect(r.uncompressedSize).toBe(plain.length);
  });

  it("reports decoder errors as InflateError with their code", async () => {
    await expect(pool.gunzip(gz.subarray(0, gz.length - 3))).rejects.toMatchObject({ name: "InflateError", code: -15 });
    const bad = Buffer.from(gz);
    bad[bad.length - 8] ^= 0xff; // CRC32 of the trailer
    const err = await pool.buildCheckpoints(bad, 1 << 20).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InflateError);
    expect((err as InflateError).code).toBe(-13);
    await expect(
      pool.extract(new Uint8Array(0), { out: 0, bits: 0, window: new Uint8Array(32768) }, 0, 10),
    ).rejects.toBeInstanceOf(InflateError);
    // the pool keeps working after errors
    expect(Buffer.from(await pool.gunzip(vec("layer-a.tar.gz"))).equals(vec("layer.tar"))).toBe(true);
  });

  it("stops feeding a failed build (bad magic) without hanging", async () => {
    async function* garbage() {
      for (let i = 0; i < 100; i++) yield randomBytes(64 * 1024);
    }
    await expect(pool.buildCheckpoints(garbage(), 1 << 20)).rejects.toMatchObject({ code: -1 });
  });
});
