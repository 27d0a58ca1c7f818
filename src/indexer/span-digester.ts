// Span digests over compressed bytes as they stream past (docs/formats.md §2.4), holding only the
// bytes whose span is not decided yet.
//
// Span i covers [start_i, end_i) of the layer file, where start_i = in_i − (bits_i ? 1 : 0) and
// end_i = in_{i+1} (the file end for the last span). A span's end is known only when the decoder
// finds the next checkpoint, so bytes are kept until then — except those that are certainly
// inside the current span, which are hashed as soon as the decoder has gone past them.
import { createHash, type Hash } from "node:crypto";

export class SpanDigester {
  readonly digests: string[] = [];
  private hash: Hash | undefined; // the open span's hash
  private hashedTo = 0; // file offset up to which the open span has been hashed
  private chunks: Uint8Array[] = []; // bytes from `keptFrom` on
  private keptFrom = 0;
  private total = 0; // bytes received

  /** Bytes of the layer file, in order. */
  add(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.total += chunk.length;
  }

  /** A span starts at `start` (the previous one, if any, ends at `prevEnd`). */
  startSpan(start: number, prevEnd?: number): void {
    if (this.hash) this.closeSpan(prevEnd ?? start);
    this.hash = createHash("sha256");
    this.hashedTo = start;
    this.release(start);
  }

  /** No future span boundary lies before `safe`: hash the open span up to there. */
  advance(safe: number): void {
    if (!this.hash || safe <= this.hashedTo) return;
    this.feed(this.hashedTo, Math.min(safe, this.total));
    this.release(Math.max(0, this.hashedTo - 1)); // keep one byte: the next span may start there
  }

  /** The file ended: closes the last span at `end`. */
  finish(end = this.total): string[] {
    if (this.hash) this.closeSpan(end);
    this.chunks = [];
    return this.digests;
  }

  private closeSpan(end: number): void {
    this.feed(this.hashedTo, end);
    this.digests.push(`sha256:${this.hash!.digest("hex")}`);
    this.hash = undefined;
  }

  // Hashes [from, to) from the kept chunks into the open span.
  private feed(from: number, to: number): void {
    if (to > this.total) throw new Error(`span digest: bytes up to ${to} not received (have ${this.total})`);
    let pos = this.keptFrom;
    for (const c of this.chunks) {
      const a = Math.max(from, pos);
      const b = Math.min(to, pos + c.length);
      if (b > a) this.hash!.update(c.subarray(a - pos, b - pos));
      pos += c.length;
      if (pos >= to) break;
    }
    this.hashedTo = to;
  }

  /** Replaces the kept bytes by copies, so the caller may reuse the buffers it passed to add(). */
  detach(): void {
    if (this.chunks.length === 0) return;
    const n = this.total - this.keptFrom;
    const copy = new Uint8Array(n);
    let at = 0;
    for (const c of this.chunks) {
      copy.set(c, at);
      at += c.length;
    }
    this.chunks = [copy];
  }

  // Drops the bytes before `offset`.
  private release(offset: number): void {
    while (this.chunks.length > 0 && this.keptFrom + this.chunks[0]!.length <= offset) {
      this.keptFrom += this.chunks.shift()!.length;
    }
    const first = this.chunks[0];
    if (first && offset > this.keptFrom) {
      this.chunks[0] = first.subarray(offset - this.keptFrom);
      this.keptFrom = offset;
    }
  }
}
