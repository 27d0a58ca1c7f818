// Streaming gunzip on the WebAssembly decoder: compressed chunks in, fresh uncompressed buffers
// out, every member's CRC-32 and ISIZE checked — the counterpart of node:zlib's createGunzip().
// Output buffers are as large as the decoder's output area (1 MiB) except at the ends of input
// chunks; nothing but the decoder's 1 MiB window and 256 KiB input area is held between chunks.
import { Transform, type TransformCallback } from "node:stream";
import { InflateError } from "./codes.js";
import { Inflater, type InflateSink } from "./inflater.js";

export interface GunzipStreamOptions {
  /** Check each member's CRC-32 (default true; ISIZE is always checked when the CRC is). */
  verifyCrc?: boolean;
  /** Fail once more than this many bytes came out (a guard against decompression bombs). */
  maxOutput?: number;
}

/** Incremental gunzip: push() compressed chunks, end() at the end of the stream. */
export class GunzipDecoder {
  private inf: Inflater | undefined;
  private out = 0;
  private emit: (b: Buffer) => void = () => {};
  private readonly sink: InflateSink;

  constructor(opts: GunzipStreamOptions = {}) {
    const max = opts.maxOutput ?? Number.MAX_SAFE_INTEGER;
    this.inf = Inflater.gzip(null, opts.verifyCrc ?? true);
    this.sink = {
      data: (view) => {
        this.out += view.length;
        if (this.out > max) throw new RangeError(`gunzip: output exceeds ${max} bytes`);
        const b = Buffer.allocUnsafe(view.length);
        b.set(view);
        this.emit(b);
      },
    };
  }

  /** Uncompressed bytes produced so far. */
  get outputBytes(): number {
    return this.out;
  }

  /** Decodes `chunk`; each uncompressed buffer (the caller's to keep) goes to `onData` in order. */
  push(chunk: Uint8Array, onData: (b: Buffer) => void): void {
    this.feed(chunk, false, onData);
  }

  /** The compressed stream ended: delivers the last bytes, or throws if it was cut short. */
  end(onData: (b: Buffer) => void): void {
    this.feed(new Uint8Array(0), true, onData);
    this.release();
  }

  /** Frees the decoder (also after an error); further calls throw. */
  release(): void {
    this.inf?.release();
    this.inf = undefined;
  }

  private feed(chunk: Uint8Array, last: boolean, onData: (b: Buffer) => void): void {
    const inf = this.inf;
    if (!inf) throw new Error("gunzip: decoder already finished");
    this.emit = onData;
    try {
      const st = inf.feed(chunk, last, this.sink);
      if (last && st !== "done") throw new InflateError(-15);
    } catch (err) {
      this.release();
      throw err;
    }
  }
}

/** A Transform stream like node:zlib's createGunzip(), decoding on the calling thread. */
export function createGunzipStream(opts: GunzipStreamOptions = {}): Transform {
  const dec = new GunzipDecoder(opts);
  return new Transform({
    transform(chunk: Uint8Array, _enc: BufferEncoding, cb: TransformCallback) {
      try {
        dec.push(chunk, (b) => this.push(b));
        cb();
      } catch (err) {
        cb(err as Error);
      }
    },
    flush(cb: TransformCallback) {
      try {
        dec.end((b) => this.push(b));
        cb();
      } catch (err) {
        cb(err as Error);
      }
    },
    destroy(err, cb) {
      dec.release();
      cb(err);
    },
  });
}

// gunzipChunks feeds input in slices of this size, so at most ~1032 × this (DEFLATE's largest
// expansion) is produced between two yields.
const SLICE = 256 * 1024;

/** The uncompressed bytes of a gzip stream given as (async) chunks. */
export async function* gunzipChunks(
  source: Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
  opts: GunzipStreamOptions = {},
): AsyncGenerator<Buffer> {
  const dec = new GunzipDecoder(opts);
  let ready: Buffer[] = [];
  const take = (b: Buffer) => ready.push(b);
  try {
    for await (const chunk of source) {
      for (let pos = 0; pos < chunk.length; pos += SLICE) {
        dec.push(pos === 0 && chunk.length <= SLICE ? chunk : chunk.subarray(pos, pos + SLICE), take);
        const out = ready;
        ready = [];
        yield* out;
      }
    }
    dec.end(take);
    yield* ready;
  } finally {
    dec.release();
  }
}
