// Decompress a byte range starting from a checkpoint (docs/formats.md §2.5).
import { Inflater } from "./inflater.js";
import { InflateError } from "./codes.js";

export interface CheckpointState {
  /** Uncompressed offset of the checkpoint. */
  out: number;
  /** Unused bits (0..7) of the first compressed byte that belong to the first block. */
  bits: number;
  /** The 32 KiB of output preceding `out`. */
  window: Uint8Array;
}

/**
 * Inflates `length` bytes starting at uncompressed `offset` (absolute, >= checkpoint.out) from the
 * compressed bytes of one or more consecutive spans, starting at the checkpoint's span.
 * Later gzip members are crossed transparently.
 */
export function extract(
  spanBytes: Uint8Array,
  checkpoint: CheckpointState,
  offset: number,
  length: number,
): Uint8Array {
  if (!Number.isInteger(offset) || !Number.isInteger(length) || length < 0) {
    throw new RangeError(`extract: invalid offset/length ${offset}/${length}`);
  }
  if (offset < checkpoint.out) throw new RangeError(`extract: offset ${offset} precedes checkpoint ${checkpoint.out}`);
  const result = new Uint8Array(length);
  if (length === 0) return result;
  if (spanBytes.length === 0) throw new InflateError(-15, "extract: empty compressed buffer");
  const end = offset + length;
  const inf = Inflater.fromCheckpoint(checkpoint.bits, checkpoint.out, checkpoint.window);
  let pos = checkpoint.out; // stream offset of the next byte delivered
  try {
    inf.setLimit(end);
    inf.feed(spanBytes, true, {
      data(view) {
        const from = Math.max(offset, pos);
        const to = Math.min(end, pos + view.length);
        if (to > from) result.set(view.subarray(from - pos, to - pos), from - offset);
        pos += view.length;
      },
    });
  } finally {
    inf.release();
  }
  if (pos < end) {
    throw new InflateError(-15, `extract: compressed data ended after ${Math.max(0, pos - offset)} of ${length} bytes`);
  }
  return result;
}
