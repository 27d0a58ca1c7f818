// The gzip checkpoint blob ("zinfo", docs/formats.md §2.2) and span arithmetic over it (§2.3).
//
// Layout, little-endian, no padding:
//   int32 have | int64 span_size | have × { int64 in, int64 out, uint8 bits, byte[32768] window }
// v2 stores every checkpoint; legacy v1 omits checkpoint 0, which readers synthesise as
// { in: 10, out: 0, bits: 0, window: zeros }. The version is told apart by length alone.
import { InvalidArgumentError } from "../errors/errors.js";
import type { Checkpoint } from "../wasm/checkpoints.js";
import { WINDOW_SIZE } from "../wasm/inflater.js";
import type { Zinfo } from "./zinfo.js";

export const ZINFO_HEADER_SIZE = 12;
export const PACKED_CHECKPOINT_SIZE = 8 + 8 + 1 + WINDOW_SIZE; // 32785
export const GZIP_ZINFO_VERSION = 2;
export const GZIP_ZINFO_LEGACY_VERSION = 1;

export class ZinfoError extends InvalidArgumentError {
  override name = "ZinfoError";
}

export class GzipZinfo implements Zinfo {
  readonly algorithm = "gzip";

  constructor(
    readonly checkpoints: readonly Checkpoint[],
    readonly spanSize: number,
    /** Blob layout this came from / will be written as. */
    readonly version: 1 | 2 = GZIP_ZINFO_VERSION,
  ) {}

  /** Index of the last span (checkpoints − 1). */
  get maxSpanId(): number {
    return this.checkpoints.length - 1;
  }

  /** Span containing uncompressed offset `off`: the last checkpoint with out <= off (0 if none). */
  spanForOffset(off: number): number {
    const cps = this.checkpoints;
    // checkpoints are sorted by `out`; binary search for the last one <= off
    let lo = 0;
    let hi = cps.length - 1;
    let found = 0;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (cps[mid]!.out <= off) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return found;
  }

  /** First compressed byte of span i (the byte holding its first bits). */
  startCompressedOffset(i: number): number {
    const cp = this.at(i);
    return cp.in - (cp.bits !== 0 ? 1 : 0);
  }

  /** End (exclusive) of span i's compressed bytes: the next checkpoint's raw `in`, or the file size. */
  endCompressedOffset(i: number, fileSize: number): number {
    return i + 1 < this.checkpoints.length ? this.at(i + 1).in : fileSize;
  }

  startUncompressedOffset(i: number): number {
    return this.at(i).out;
  }

  endUncompressedOffset(i: number, uncompressedSize: number): number {
    return i + 1 < this.checkpoints.length ? this.at(i + 1).out : uncompressedSize;
  }

  /** The state `extract` resumes from for span i. */
  checkpoint(i: number): Checkpoint {
    return this.at(i);
  }

  private at(i: number): Checkpoint {
    const cp = this.checkpoints[i];
    if (!cp) throw new RangeError(`span ${i} out of range (max span id ${this.maxSpanId})`);
    return cp;
  }

  /** Serialises as the reference's blob (v2: all checkpoints; v1: without checkpoint 0). */
  toBlob(): Uint8Array {
    const stored = this.version === 1 ? this.checkpoints.slice(1) : this.checkpoints;
    const blob = new Uint8Array(ZINFO_HEADER_SIZE + PACKED_CHECKPOINT_SIZE * stored.length);
    const dv = new DataView(blob.buffer);
    dv.setInt32(0, this.checkpoints.length, true);
    dv.setBigInt64(4, BigInt(this.spanSize), true);
    let p = ZINFO_HEADER_SIZE;
    for (const cp of stored) {
      dv.setBigInt64(p, BigInt(cp.in), true);
      dv.setBigInt64(p + 8, BigInt(cp.out), true);
      blob[p + 16] = cp.bits;
      if (cp.window.length !== WINDOW_SIZE) throw new ZinfoError(`checkpoint window must be ${WINDOW_SIZE} bytes`);
      blob.set(cp.window, p + 17);
      p += PACKED_CHECKPOINT_SIZE;
    }
    return blob;
  }

  /** Parses a blob; windows are views into `blob` (no copy). */
  static fromBlob(blob: Uint8Array): GzipZinfo {
    if (blob.length === 0) throw new ZinfoError("empty checkpoints");
    if (blob.length < ZINFO_HEADER_SIZE) throw new ZinfoError(`checkpoints blob too short (${blob.length} bytes)`);
    const dv = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
    const have = dv.getInt32(0, true);
    const spanSize = Number(dv.getBigInt64(4, true));
    if (have < 0) throw new ZinfoError(`invalid checkpoint count ${have}`);
    const body = blob.length - ZINFO_HEADER_SIZE;
    let version: 1 | 2;
    if (body === PACKED_CHECKPOINT_SIZE * have) version = 2;
    else if (have > 0 && body === PACKED_CHECKPOINT_SIZE * (have - 1)) version = 1;
    else throw new ZinfoError(`checkpoints blob of ${blob.length} bytes does not hold ${have} checkpoints`);
    const cps: Checkpoint[] = [];
    if (version === 1) cps.push({ in: 10, out: 0, bits: 0, window: new Uint8Array(WINDOW_SIZE) });
    for (let p = ZINFO_HEADER_SIZE; p < blob.length; p += PACKED_CHECKPOINT_SIZE) {
      const inOff = Number(dv.getBigInt64(p, true));
      const outOff = Number(dv.getBigInt64(p + 8, true));
      const bits = blob[p + 16]!;
      cps.push({ in: inOff, out: outOff, bits, window: blob.subarray(p + 17, p + 17 + WINDOW_SIZE) });
    }
    return new GzipZinfo(cps, spanSize, version);
  }
}
