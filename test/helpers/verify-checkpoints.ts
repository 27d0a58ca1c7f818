// Checks a checkpoint build against the spec's rules (docs/formats.md §2.1-2.5) and the reference decoder.
import { expect } from "vitest";
import { buildCheckpointsSync, extract, WINDOW_SIZE, type CheckpointResult } from "../../src/index.js";
import { expectedWindow, refGunzip, zranCheckpoints, type RefResult } from "./ref-inflate.js";
import { sameBytes, spanCompressedRanges, spanUncompressedRanges } from "./inflate-util.js";

export const key = (c: { in: number; out: number; bits: number }) => `${c.in}/${c.out}/${c.bits}`;

/**
 * Verifies `res` (checkpoints of `gz` at `span`) against `data` (the expected uncompressed bytes):
 * sizes, the structural invariants, equality with the zran rule applied to the reference decoder's
 * block boundaries, windows, and that every span extracts to the right bytes.
 */
export function verifyCheckpoints(
  gz: Uint8Array,
  data: Uint8Array,
  span: number,
  res: CheckpointResult,
  ref?: RefResult,
): void {
  const cps = res.checkpoints;
  expect(res.compressedSize).toBe(gz.length);
  expect(res.uncompressedSize).toBe(data.length);
  ref ??= refGunzip(gz);
  expect(res.members).toBe(ref.members);

  // structural invariants
  expect(cps.length).toBeGreaterThan(0);
  expect(cps[0]!.out).toBe(0);
  expect(cps[0]!.bits).toBe(0);
  expect(cps[0]!.in).toBe(ref.boundaries[0]!.bit / 8); // right after the first member header
  for (let i = 0; i < cps.length; i++) {
    const c = cps[i]!;
    expect(Number.isInteger(c.in) && Number.isInteger(c.out) && Number.isInteger(c.bits)).toBe(true);
    expect(c.bits).toBeGreaterThanOrEqual(0);
    expect(c.bits).toBeLessThanOrEqual(7);
    expect(c.in).toBeLessThanOrEqual(gz.length);
    expect(c.out).toBeLessThanOrEqual(data.length);
    if (i > 0) {
      const p = cps[i - 1]!;
      expect(c.in * 8 - c.bits, `bit position of checkpoint ${i}`).toBeGreaterThan(p.in * 8 - p.bits);
      if (c.out !== 0) expect(c.out - p.out, `distance between checkpoints ${i - 1} and ${i}`).toBeGreaterThan(span);
      else expect(p.out).toBe(0); // a repeat is only possible at out 0
    }
  }

  // the zran rule on the reference decoder's boundaries
  expect(cps.map(key)).toEqual(zranCheckpoints(ref.boundaries, span).map(key));

  // windows
  for (let i = 0; i < cps.length; i++) {
    const w = cps[i]!.window;
    expect(w.length).toBe(WINDOW_SIZE);
    const why = sameBytes(w, expectedWindow(data, cps[i]!.out));
    if (why !== "equal") expect.fail(`window of checkpoint ${i} (out ${cps[i]!.out}): ${why}`);
  }

  verifySpans(gz, data, res);
}

/** Every span, extracted from its own compressed range, gives the right bytes. */
export function verifySpans(gz: Uint8Array, data: Uint8Array, res: CheckpointResult): void {
  const cps = res.checkpoints;
  const cr = spanCompressedRanges(cps, gz.length);
  const ur = spanUncompressedRanges(cps, res.uncompressedSize);
  for (let i = 0; i < cps.length; i++) {
    const [s, e] = cr[i]!;
    const [us, ue] = ur[i]!;
    expect(s).toBeLessThanOrEqual(e);
    const got = extract(gz.subarray(s, e), cps[i]!, us, ue - us);
    const why = sameBytes(got, data.subarray(us, ue));
    if (why !== "equal") expect.fail(`span ${i} [${s},${e}) -> [${us},${ue}): ${why}`);
  }
}

export const SPANS = [0, 1000, 65536, 1 << 20] as const;

/** Builds and verifies at every span of SPANS; checks span-0 checkpoints are a superset. */
export function verifyAllSpans(
  gz: Uint8Array,
  data: Uint8Array,
  spans: readonly number[] = SPANS,
): Map<number, CheckpointResult> {
  const ref = refGunzip(gz);
  expect(sameBytes(ref.output, data)).toBe("equal"); // sanity of the test input itself
  const results = new Map<number, CheckpointResult>();
  for (const span of spans) {
    const res = buildCheckpointsSync(gz, span);
    verifyCheckpoints(gz, data, span, res, ref);
    results.set(span, res);
  }
  const all = results.get(0);
  if (all) {
    const set = new Set(all.checkpoints.map(key));
    for (const [span, r] of results) {
      for (const c of r.checkpoints)
        expect(set.has(key(c)), `span ${span} checkpoint ${key(c)} is a block boundary`).toBe(true);
      expect(r.checkpoints.length).toBeLessThanOrEqual(all.checkpoints.length);
    }
  }
  return results;
}
