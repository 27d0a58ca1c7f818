// Whole-buffer gzip decompression (multi-member, CRC32 and ISIZE checked).
import { Inflater } from "./inflater.js";

export interface GunzipOptions {
  /** Refuse to produce more than this many bytes (guards against decompression bombs). */
  maxOutput?: number;
}

export function gunzip(bytes: Uint8Array, opts: GunzipOptions = {}): Uint8Array {
  const max = opts.maxOutput ?? Number.MAX_SAFE_INTEGER;
  // ISIZE of the last member sizes the result exactly for the common single-member case. It is
  // untrusted: DEFLATE cannot expand more than 1032:1, so a larger claim is not believed.
  const isize =
    bytes.length >= 18 ? new DataView(bytes.buffer, bytes.byteOffset + bytes.length - 4, 4).getUint32(0, true) : 0;
  const hint = Math.min(isize, bytes.length * 1032);
  let out: Uint8Array = Buffer.allocUnsafeSlow(Math.min(hint, max));
  let used = 0;
  const inf = Inflater.gzip(null);
  try {
    inf.feed(bytes, true, {
      data(view) {
        if (used + view.length > out.length) {
          if (used + view.length > max) throw new RangeError(`gunzip: output exceeds ${max} bytes`);
          const grown = new Uint8Array(Math.min(max, Math.max(out.length * 2, used + view.length, 1 << 16)));
          grown.set(out.subarray(0, used));
          out = grown;
        }
        out.set(view, used);
        used += view.length;
      },
    });
  } finally {
    inf.release();
  }
  return used === out.length ? out : out.slice(0, used);
}
