// Chunk digests for the layer verification artifact (docs/formats.md §9), computed in the same
// streaming pass as the ztoc: the compressed bytes are cut at every multiple of the chunk size, each
// chunk is hashed, and after each chunk the indexer's decoder output so far is recorded — how far
// the layer decompresses with the bytes up to that chunk's end.
import { createHash, type Hash } from "node:crypto";
import type { LayerChunks } from "../formats/layer-verification.js";

export class ChunkDigester {
  private digests: Uint8Array;
  private readonly outEnds: number[] = [];
  private hash: Hash = createHash("sha256");
  /** Bytes of the current chunk seen so far. */
  private filled = 0;

  constructor(readonly chunkSize: number) {
    if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0) throw new RangeError(`invalid chunk size ${chunkSize}`);
    this.digests = new Uint8Array(32 * 64);
  }

  /**
   * Passes `bytes` on to `push` in pieces that end at chunk boundaries; after a piece that completes
   * a chunk, records `produced()` (the decoder's output so far) as that chunk's output end.
   */
  feed(bytes: Uint8Array, push: (piece: Uint8Array) => void, produced: () => number): void {
    let p = 0;
    while (p < bytes.length) {
      const n = Math.min(this.chunkSize - this.filled, bytes.length - p);
      const piece = bytes.subarray(p, p + n);
      this.hash.update(piece);
      push(piece);
      this.filled += n;
      p += n;
      if (this.filled === this.chunkSize) this.close(produced());
    }
  }

  /** The stream ended; `produced` is the decoder's final output (it may flush more at the end). */
  finish(produced: number): LayerChunks {
    if (this.filled > 0) this.close(produced);
    // a stream that ended on a chunk boundary: the last chunk's end is the final output too
    if (this.outEnds.length > 0) this.outEnds[this.outEnds.length - 1] = produced;
    return {
      chunkSize: this.chunkSize,
      digests: this.digests.slice(0, 32 * this.outEnds.length),
      outEnds: this.outEnds,
    };
  }

  private close(produced: number): void {
    const j = this.outEnds.length;
    if (32 * (j + 1) > this.digests.length) {
      const grown = new Uint8Array(this.digests.length * 2);
      grown.set(this.digests);
      this.digests = grown;
    }
    this.digests.set(this.hash.digest(), 32 * j);
    this.outEnds.push(produced);
    this.hash = createHash("sha256");
    this.filled = 0;
  }
}
