// Inflate a gzip stream once, recording zran checkpoints as the reference does (docs/formats.md §2.1).
import { Inflater, WINDOW_SIZE } from "./inflater.js";

export interface Checkpoint {
  /** Compressed offset: the first byte not fully consumed (counted from the start of the file). */
  in: number;
  /** Uncompressed offset. */
  out: number;
  /** Unused bits (0..7) of byte in-1 that belong to the next block. */
  bits: number;
  /** The 32 KiB of uncompressed output before `out`, zero-filled at the front when shorter. */
  window: Uint8Array;
}

export interface CheckpointResult {
  checkpoints: Checkpoint[];
  compressedSize: number;
  uncompressedSize: number;
  members: number;
}

export interface CheckpointOptions {
  /** Receives every uncompressed byte in order (views are valid only during the call). */
  onData?(view: Uint8Array): void;
  /** Called for each checkpoint as it is found. */
  onCheckpoint?(cp: Checkpoint): void;
  /** Verify each member's CRC32 (default true). */
  verifyCrc?: boolean;
}

/** Incremental builder: push compressed chunks, then finish(). */
export class CheckpointBuilder {
  private readonly inf: Inflater;
  private readonly checkpoints: Checkpoint[] = [];
  private compressed = 0;
  private ended = false;

  constructor(
    readonly spanSize: number,
    private readonly opts: CheckpointOptions = {},
  ) {
    if (!Number.isInteger(spanSize) || spanSize < 0) throw new RangeError(`invalid span size ${spanSize}`);
    this.inf = Inflater.gzip(spanSize, opts.verifyCrc ?? true);
  }

  private sink = {
    data: (view: Uint8Array) => this.opts.onData?.(view),
    checkpoint: (inOff: number, outOff: number, bits: number, window: Uint8Array) => {
      const cp: Checkpoint = { in: inOff, out: outOff, bits, window: window.slice() };
      this.checkpoints.push(cp);
      this.opts.onCheckpoint?.(cp);
    },
  };

  /** Compressed bytes fully decoded so far: no later checkpoint can have a smaller `in`. */
  get consumed(): number {
    return this.inf.totalIn;
  }

  push(chunk: Uint8Array): void {
    if (this.ended) throw new Error("CheckpointBuilder: push after finish");
    this.compressed += chunk.length;
    try {
      this.inf.feed(chunk, false, this.sink);
    } catch (err) {
      this.close();
      throw err;
    }
  }

  finish(): CheckpointResult {
    if (this.ended) throw new Error("CheckpointBuilder: finish called twice");
    try {
      this.inf.feed(new Uint8Array(0), true, this.sink);
      return {
        checkpoints: this.checkpoints,
        compressedSize: this.compressed,
        uncompressedSize: this.inf.totalOut,
        members: this.inf.members,
      };
    } finally {
      this.close();
    }
  }

  /** Abandons the build and frees the decoder. */
  close(): void {
    this.ended = true;
    this.inf.release();
  }
}

/** Builds checkpoints for a whole gzip stream given as bytes or as an (async) iterable of chunks. */
export async function buildCheckpoints(
  stream: Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
  spanSize: number,
  opts: CheckpointOptions = {},
): Promise<CheckpointResult> {
  const b = new CheckpointBuilder(spanSize, opts);
  try {
    if (stream instanceof Uint8Array) {
      b.push(stream);
    } else {
      for await (const chunk of stream as AsyncIterable<Uint8Array>) b.push(chunk);
    }
  } catch (err) {
    b.close();
    throw err;
  }
  return b.finish();
}

/** Synchronous variant for bytes already in memory. */
export function buildCheckpointsSync(
  bytes: Uint8Array,
  spanSize: number,
  opts: CheckpointOptions = {},
): CheckpointResult {
  const b = new CheckpointBuilder(spanSize, opts);
  b.push(bytes);
  return b.finish();
}

export { WINDOW_SIZE };
