// A decoder session over one WebAssembly instance: feeds input, drains output, reports
// checkpoint candidates. Instances are reused through a small per-thread free list.
import { instantiate, type InflateExports } from "./module.js";
import { E_HEADER_TOO_LARGE, InflateError, Status } from "./codes.js";

export const WINDOW_SIZE = 32768;
const IN_CAPACITY = 256 * 1024;
const OUT_CAPACITY = 1024 * 1024;
const MAX_HEADER_CAPACITY = 64 * 1024 * 1024;

/** Receives decoder events. Views point into WebAssembly memory and are valid only during the call. */
export interface InflateSink {
  /** New uncompressed bytes, in order. */
  data?(view: Uint8Array): void;
  /** A checkpoint candidate accepted by the zran rule; `window` is the preceding 32 KiB. */
  checkpoint?(inOffset: number, outOffset: number, bits: number, window: Uint8Array): void;
}

const free: InflateExports[] = [];

function acquire(): InflateExports {
  const ex = free.pop() ?? instantiate();
  if (ex.configure(IN_CAPACITY, OUT_CAPACITY) === 0) throw new Error("inflate: out of WebAssembly memory");
  return ex;
}

export class Inflater {
  private ex: InflateExports | undefined;
  private finished = false;

  private constructor(ex: InflateExports) {
    this.ex = ex;
  }

  /** A gzip stream decoder; `spanSize` >= 0 captures checkpoints, null does not. */
  static gzip(spanSize: number | null, verifyCrc = true): Inflater {
    const inf = new Inflater(acquire());
    inf.exports.startGzip(spanSize ?? -1, verifyCrc ? 1 : 0);
    return inf;
  }

  /** A raw decoder resuming at a checkpoint (window = the 32 KiB before `outAt`). */
  static fromCheckpoint(bits: number, outAt: number, window: Uint8Array): Inflater {
    if (window.length !== WINDOW_SIZE) throw new RangeError(`checkpoint window must be ${WINDOW_SIZE} bytes`);
    const inf = new Inflater(acquire());
    const ex = inf.exports;
    ex.startRaw(bits, outAt);
    new Uint8Array(ex.memory.buffer, ex.windowPtr(), WINDOW_SIZE).set(window);
    return inf;
  }

  private get exports(): InflateExports {
    if (!this.ex) throw new Error("inflater already released");
    return this.ex;
  }

  /** Stop once this many bytes of total output exist (absolute stream offset). */
  setLimit(totalOut: number): void {
    this.exports.setLimit(totalOut);
  }

  get totalOut(): number {
    return this.exports.totalOut();
  }

  get totalIn(): number {
    return this.exports.totalIn();
  }

  get members(): number {
    return this.exports.memberCount();
  }

  get done(): boolean {
    return this.finished;
  }

  /**
   * Decodes `chunk` (all of it is consumed unless the output limit is reached).
   * `last` marks the end of the compressed stream. Returns "done" when the stream ended,
   * "limit" when the output limit was reached, "more" when it wants more input.
   */
  feed(chunk: Uint8Array, last: boolean, sink: InflateSink): "done" | "limit" | "more" {
    const ex = this.exports;
    let pos = 0;
    for (;;) {
      if (pos < chunk.length || (last && pos === chunk.length)) {
        const room = ex.compact();
        const n = Math.min(room, chunk.length - pos);
        if (n > 0) new Uint8Array(ex.memory.buffer, ex.inputEnd(), n).set(chunk.subarray(pos, pos + n));
        pos += n;
        ex.pushed(n, last && pos === chunk.length ? 1 : 0);
      }
      const st = this.drain(sink);
      if (st === Status.NEED_INPUT) {
        if (pos >= chunk.length && !last) return "more";
        if (pos >= chunk.length && last) throw new InflateError(-15); // defensive: final input still short
        continue;
      }
      if (st === Status.DONE) {
        this.finished = true;
        return "done";
      }
      return "limit";
    }
  }

  // Runs the decoder until it needs input, ends, or hits the limit; delivers output and checkpoints.
  private drain(sink: InflateSink): number {
    const ex = this.exports;
    for (;;) {
      const st = ex.run();
      switch (st) {
        case Status.OUTPUT_FULL:
          this.emit(sink);
          ex.slide();
          continue;
        case Status.CHECKPOINT: {
          this.emit(sink);
          const op = ex.outPtr();
          sink.checkpoint?.(
            ex.checkpointIn(),
            ex.checkpointOut(),
            ex.checkpointBits(),
            new Uint8Array(ex.memory.buffer, op - WINDOW_SIZE, WINDOW_SIZE),
          );
          continue;
        }
        case Status.NEED_INPUT:
        case Status.DONE:
        case Status.LIMIT:
          this.emit(sink);
          return st;
        case E_HEADER_TOO_LARGE: {
          if (!this.growInput()) throw new InflateError(E_HEADER_TOO_LARGE);
          return Status.NEED_INPUT;
        }
        default:
          throw new InflateError(st);
      }
    }
  }

  private inCap = IN_CAPACITY;

  private growInput(): boolean {
    const next = this.inCap * 2;
    if (next > MAX_HEADER_CAPACITY || !this.exports.growInput(next)) return false;
    this.inCap = next;
    return true;
  }

  private emit(sink: InflateSink): void {
    const ex = this.exports;
    const len = ex.pendingLen();
    if (len > 0) {
      if (sink.data) sink.data(new Uint8Array(ex.memory.buffer, ex.pendingPtr(), len));
      ex.takePending();
    }
  }

  /** Returns the instance to the per-thread free list. */
  release(): void {
    if (this.ex) {
      if (free.length < 4) free.push(this.ex);
      this.ex = undefined;
    }
  }
}
