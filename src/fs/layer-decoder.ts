// A layer blob as it streams in: hashes the compressed bytes (the layer digest), gunzips them with
// the WASM inflater (multi-member, CRC and ISIZE checked), and hashes the tar that comes out (the
// diff ID). The uncompressed bytes go to the caller's callback as views into the decoder's memory,
// valid only during the call (nothing is copied here); input is fed in slices with an awaited
// `between()` after each, so a highly compressed chunk is never inflated whole before the caller
// has caught up.
import { createHash, type Hash } from "node:crypto";
import { Inflater } from "../wasm/inflater.js";
import { InflateError } from "../wasm/codes.js";

export type Compression = "gzip" | "uncompressed" | "auto";

// Input is fed in slices so that at most ~1032 × this (deflate's limit) is produced between two
// awaits of the caller's backpressure.
const FEED_SLICE = 64 * 1024;

export class LayerDecodeError extends Error {
  override name = "LayerDecodeError";
}

export class LayerDecoder {
  private readonly digestHash: Hash;
  private readonly diffHash: Hash;
  private mode: "gzip" | "uncompressed" | undefined;
  private inflater: Inflater | undefined;
  private head: Uint8Array[] = []; // "auto": bytes held until the magic number is known
  private compressedBytes = 0;
  private tarBytes = 0;

  constructor(
    compression: Compression,
    private readonly digestAlgorithm = "sha256",
    private readonly diffIdAlgorithm = "sha256",
  ) {
    this.digestHash = createHash(digestAlgorithm);
    this.diffHash = createHash(diffIdAlgorithm);
    if (compression !== "auto") this.start(compression);
  }

  get size(): number {
    return this.compressedBytes;
  }
  get uncompressedSize(): number {
    return this.tarBytes;
  }

  /** Feeds the next compressed bytes; `onTar` receives the uncompressed bytes they produce. */
  async push(chunk: Uint8Array, onTar: (view: Uint8Array) => void, between: () => Promise<void>): Promise<void> {
    this.compressedBytes += chunk.length;
    this.digestHash.update(chunk);
    if (!this.mode) {
      this.head.push(new Uint8Array(chunk)); // the caller may reuse its chunk
      const held = Buffer.concat(this.head);
      if (held.length < 4) return;
      this.head = [];
      this.start(sniff(held));
      await this.decode(held, false, onTar, between);
      return;
    }
    await this.decode(chunk, false, onTar, between);
  }

  /** The blob ended: delivers the last uncompressed bytes, or throws if the gzip stream is cut short. */
  async end(onTar: (view: Uint8Array) => void, between: () => Promise<void>): Promise<void> {
    if (!this.mode) {
      const held = Buffer.concat(this.head);
      this.head = [];
      this.start(held.length >= 2 ? sniff(held) : "uncompressed");
      await this.decode(held, true, onTar, between);
      return;
    }
    await this.decode(new Uint8Array(0), true, onTar, between);
  }

  /** "sha256:<hex>" of the compressed blob; call after end(). */
  digest(): string {
    return `${this.digestAlgorithm}:${this.digestHash.digest("hex")}`;
  }

  /** "sha256:<hex>" of the uncompressed tar; call after end(). */
  diffId(): string {
    return `${this.diffIdAlgorithm}:${this.diffHash.digest("hex")}`;
  }

  /** Returns the inflater's WebAssembly instance for reuse; safe to call more than once. */
  release(): void {
    this.inflater?.release();
    this.inflater = undefined;
  }

  private start(mode: "gzip" | "uncompressed"): void {
    this.mode = mode;
    if (mode === "gzip") this.inflater = Inflater.gzip(null, true);
  }

  private async decode(
    chunk: Uint8Array,
    last: boolean,
    onTar: (view: Uint8Array) => void,
    between: () => Promise<void>,
  ): Promise<void> {
    if (this.mode === "uncompressed") {
      if (chunk.length === 0) return;
      this.diffHash.update(chunk);
      this.tarBytes += chunk.length;
      onTar(chunk);
      return;
    }
    const inf = this.inflater;
    if (!inf) throw new LayerDecodeError("gzip stream continues after its end");
    const sink = {
      data: (view: Uint8Array) => {
        this.diffHash.update(view);
        this.tarBytes += view.length;
        onTar(view);
      },
    };
    let pos = 0;
    do {
      const end = Math.min(chunk.length, pos + FEED_SLICE);
      const isLast = last && end === chunk.length;
      try {
        // The inflater reports "done" only once it has the final input, so nothing can follow it.
        const st = inf.feed(chunk.subarray(pos, end), isLast, sink);
        if (st !== "done" && isLast)
          throw new LayerDecodeError("gzip stream is truncated: unexpected end of compressed data");
      } catch (e) {
        this.release();
        if (e instanceof InflateError) {
          throw new LayerDecodeError(
            e.code === -15
              ? "gzip stream is truncated: unexpected end of compressed data"
              : `corrupt gzip stream: ${e.message}`,
          );
        }
        throw e;
      }
      pos = end;
      await between();
    } while (pos < chunk.length);
    if (last) this.release();
  }
}

function sniff(head: Uint8Array): "gzip" | "uncompressed" {
  if (head[0] === 0x1f && head[1] === 0x8b) return "gzip";
  if (head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) {
    throw new LayerDecodeError("zstd-compressed layers are not supported");
  }
  return "uncompressed";
}
