// What span math needs from either zinfo kind (gzip checkpoints or fixed tar spans).
import { GzipZinfo } from "./gzip-zinfo.js";
import { TarZinfo } from "./tar-zinfo.js";
import type { Ztoc } from "./ztoc.js";
export interface Zinfo {
  readonly algorithm: "gzip" | "uncompressed";
  readonly spanSize: number;
  readonly maxSpanId: number;
  spanForOffset(uncompressedOffset: number): number;
  startCompressedOffset(span: number): number;
  endCompressedOffset(span: number, fileSize: number): number;
  startUncompressedOffset(span: number): number;
  endUncompressedOffset(span: number, uncompressedSize: number): number;
  toBlob(): Uint8Array;
}

export interface SpanRange {
  span: number;
  compressedStart: number;
  compressedEnd: number;
  uncompressedStart: number;
  uncompressedEnd: number;
}

/** Every span's byte ranges (the compressed ranges of consecutive gzip spans overlap by a byte). */
export function spanRanges(z: Zinfo, fileSize: number, uncompressedSize: number): SpanRange[] {
  const out: SpanRange[] = [];
  for (let i = 0; i <= z.maxSpanId; i++) {
    out.push({
      span: i,
      compressedStart: z.startCompressedOffset(i),
      compressedEnd: z.endCompressedOffset(i, fileSize),
      uncompressedStart: z.startUncompressedOffset(i),
      uncompressedEnd: z.endUncompressedOffset(i, uncompressedSize),
    });
  }
  return out;
}

/** The zinfo a ztoc's checkpoint blob describes, by its compression algorithm. */
export function zinfoOf(ztoc: Ztoc): Zinfo {
  return ztoc.compressionAlgorithm === "gzip"
    ? GzipZinfo.fromBlob(ztoc.checkpoints)
    : TarZinfo.fromBlob(ztoc.checkpoints);
}
