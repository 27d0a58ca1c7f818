// Every span extracts from exactly its own compressed range (docs/formats.md §2.3), whatever kind of
// block ends it. Regression: a span ending with a stored block at a bits=0 boundary.
import { describe, expect, it } from "vitest";
import zlib from "node:zlib";
import { randomBytes } from "node:crypto";
import { buildCheckpointsSync, extract, GzipZinfo } from "../src/index.js";

function checkAllSpans(gz: Uint8Array, plain: Uint8Array, span: number): number {
  const r = buildCheckpointsSync(gz, span);
  expect(r.uncompressedSize).toBe(plain.length);
  const z = new GzipZinfo(r.checkpoints, span);
  for (let i = 0; i <= z.maxSpanId; i++) {
    const bytes = gz.subarray(z.startCompressedOffset(i), z.endCompressedOffset(i, gz.length));
    const from = z.startUncompressedOffset(i);
    const to = z.endUncompressedOffset(i, plain.length);
    const got = extract(bytes, z.checkpoint(i), from, to - from);
    expect(Buffer.from(got).equals(Buffer.from(plain.subarray(from, to))), `span ${i}`).toBe(true);
  }
  return z.maxSpanId + 1;
}

describe("span extraction within exact span bounds", () => {
  it("stored blocks (level 0)", () => {
    const plain = randomBytes(400_000);
    expect(checkAllSpans(zlib.gzipSync(plain, { level: 0 }), plain, 0)).toBeGreaterThan(5);
  });

  it("text with incompressible runs (stored blocks between dynamic ones)", () => {
    const parts: Buffer[] = [];
    for (let i = 0; i < 40; i++)
      parts.push(i % 3 === 2 ? randomBytes(70_000) : Buffer.from(`row ${i} of the table `.repeat(4000)));
    const plain = Buffer.concat(parts);
    for (const level of [1, 6, 9]) {
      const gz = zlib.gzipSync(plain, { level });
      expect(checkAllSpans(gz, plain, 0)).toBeGreaterThan(10);
      checkAllSpans(gz, plain, 100_000);
    }
  });

  it("multi-member streams with stored and empty members", () => {
    const a = randomBytes(50_000);
    const b = Buffer.from("b".repeat(90_000));
    const plain = Buffer.concat([a, b, a]);
    const gz = Buffer.concat([
      zlib.gzipSync(a, { level: 0 }),
      zlib.gzipSync(Buffer.alloc(0)),
      zlib.gzipSync(b),
      zlib.gzipSync(a, { level: 0 }),
    ]);
    checkAllSpans(gz, plain, 0);
    checkAllSpans(gz, plain, 30_000);
  });
});
