// Span arithmetic for uncompressed (tar) layers: fixed-size spans, no checkpoints (docs/formats.md §2.6).
// The ztoc stores it as a tiny FlatBuffer: table TarZinfo { version:int32; span_size:int64; size:int64 }.
import * as flatbuffers from "flatbuffers";
import type { Zinfo } from "./zinfo.js";
import { ZinfoError } from "./gzip-zinfo.js";

export const TAR_ZINFO_VERSION = 2;

export class TarZinfo implements Zinfo {
  readonly algorithm = "uncompressed";

  constructor(
    readonly spanSize: number,
    /** Size of the layer file. */
    readonly size: number,
    readonly version = TAR_ZINFO_VERSION,
  ) {
    if (spanSize <= 0) throw new ZinfoError(`invalid span size ${spanSize} for an uncompressed layer`);
  }

  /** size / span, minus one when it divides exactly (−1 for an empty layer). */
  get maxSpanId(): number {
    const n = Math.floor(this.size / this.spanSize);
    return this.size % this.spanSize === 0 ? n - 1 : n;
  }

  spanForOffset(off: number): number {
    return Math.floor(off / this.spanSize);
  }

  startCompressedOffset(i: number): number {
    return this.spanSize * i;
  }

  endCompressedOffset(i: number, fileSize: number): number {
    return i === this.maxSpanId ? fileSize : this.spanSize * (i + 1);
  }

  startUncompressedOffset(i: number): number {
    return this.spanSize * i;
  }

  endUncompressedOffset(i: number, uncompressedSize: number): number {
    return i === this.maxSpanId ? uncompressedSize : this.spanSize * (i + 1);
  }

  /** Built as the reference does: StartObject(3); AddInt32(0); AddInt64(1); AddInt64(2); Finish. */
  toBlob(): Uint8Array {
    const b = new flatbuffers.Builder(0);
    b.startObject(3);
    b.addFieldInt32(0, this.version, 0);
    b.addFieldInt64(1, BigInt(this.spanSize), 0n);
    b.addFieldInt64(2, BigInt(this.size), 0n);
    b.finish(b.endObject());
    return b.asUint8Array().slice();
  }

  static fromBlob(blob: Uint8Array): TarZinfo {
    try {
      const bb = new flatbuffers.ByteBuffer(blob);
      const root = bb.readInt32(bb.position()) + bb.position();
      const field = (slot: number) => {
        const vt = root - bb.readInt32(root);
        const vtLen = bb.readInt16(vt);
        const o = 4 + slot * 2 < vtLen ? bb.readInt16(vt + 4 + slot * 2) : 0;
        return o ? root + o : 0;
      };
      const v = field(0);
      const s = field(1);
      const z = field(2);
      const version = v ? bb.readInt32(v) : 0;
      const spanSize = s ? Number(bb.readInt64(s)) : 0;
      const size = z ? Number(bb.readInt64(z)) : 0;
      return new TarZinfo(spanSize, size, version);
    } catch (err) {
      if (err instanceof ZinfoError) throw err;
      throw new ZinfoError(`cannot unmarshal tar zinfo: ${(err as Error).message}`);
    }
  }
}
