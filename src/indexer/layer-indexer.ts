// One pass over a layer blob → its ztoc (docs/formats.md §1.2): inflate with checkpoint capture, walk
// the tar as the bytes come out, and digest each span's compressed bytes, all while streaming.
// Only the current span's undecided bytes and the checkpoints are held, never the layer.
import { createHash, type Hash } from "node:crypto";
import { CheckpointBuilder } from "../wasm/checkpoints.js";
import { GzipZinfo } from "../formats/gzip-zinfo.js";
import { TarZinfo } from "../formats/tar-zinfo.js";
import { TarError, TarReader, type TarEntry } from "../formats/tar.js";
import { encodeZtoc, BUILD_TOOL_IDENTIFIER, ZTOC_VERSION, type Ztoc } from "../formats/ztoc.js";
import { formatUtcTime } from "../formats/go-time.js";
import type { FileMetadata } from "../formats/toc.js";
import type { Zinfo } from "../formats/zinfo.js";
import { SpanDigester } from "./span-digester.js";
import { ChunkDigester } from "./chunk-digester.js";
import type { LayerChunks } from "../formats/layer-verification.js";

/** How the layer blob is compressed ("unknown" layers are read as plain tar, like the reference). */
export type LayerCompression = "gzip" | "uncompressed";

export interface LayerIndexOptions {
  spanSize: number;
  compression: LayerCompression;
  buildToolIdentifier?: string;
  /**
   * The layer's descriptor: the blob's sha256 and size must match it, or finish() throws (a
   * tampered or mislabelled blob fails the build instead of being indexed).
   */
  expect?: { digest: string; size: number };
  /** Also digest the compressed layer in chunks of this size (the layer verification artifact). */
  chunkSize?: number;
}

export interface IndexedLayer {
  ztoc: Ztoc;
  /** The serialized ztoc (its sha256 is the ztoc digest). */
  bytes: Uint8Array;
  digest: string;
  zinfo: Zinfo;
  /** With `chunkSize`: the chunk digests and output ends. */
  chunks?: LayerChunks;
}

// Consecutive entries often share their mtime (files of one package): the last rendering is kept.
let lastSec = Number.NaN;
let lastNsec = 0;
let lastText = "";
function utcText(sec: number, nsec: number): string {
  if (sec !== lastSec || nsec !== lastNsec) {
    lastText = formatUtcTime(sec, nsec);
    lastSec = sec;
    lastNsec = nsec;
  }
  return lastText;
}

export function toFileMetadata(e: TarEntry): FileMetadata {
  return {
    name: e.name,
    type: e.type,
    uncompressedOffset: e.dataOffset,
    uncompressedSize: e.size,
    linkname: e.linkname,
    mode: e.mode,
    uid: e.uid,
    gid: e.gid,
    uname: e.uname,
    gname: e.gname,
    // UTC whatever the host's zone: the reference renders local time, which makes ztoc digests
    // depend on TZ; UTC gives the bytes the reference produces in its usual (UTC) containers.
    modTime: utcText(e.mtimeSec, e.mtimeNsec),
    devmajor: e.devmajor,
    devminor: e.devminor,
    xattrs: e.pax,
    tarHeaderOffset: e.headerOffset,
  };
}

// The reference reports tar reader failures as `error while reading tar header: <err>`.
function asBuildError(err: unknown): unknown {
  if (err instanceof TarError && err.kind === "header") {
    return new TarError(`error while reading tar header: ${err.message}`, err.kind);
  }
  return err;
}

export class LayerIndexer {
  private readonly toc: FileMetadata[] = [];
  private readonly tar = new TarReader((e) => this.toc.push(toFileMetadata(e)));
  private readonly digester = new SpanDigester();
  private readonly gzip: CheckpointBuilder | undefined;
  private readonly layerHash: Hash | undefined;
  private size = 0;
  private readonly chunker: ChunkDigester | undefined;
  /** Uncompressed bytes produced so far (for the chunk output ends). */
  private produced = 0;

  constructor(private readonly opts: LayerIndexOptions) {
    if (!Number.isInteger(opts.spanSize) || opts.spanSize < 0)
      throw new RangeError(`invalid span size ${opts.spanSize}`);
    if (opts.compression === "gzip") {
      this.gzip = new CheckpointBuilder(opts.spanSize, {
        // the tar reader copies what it keeps (header blocks), so the decoder's view is enough
        onData: (view) => {
          this.produced += view.length;
          this.tar.push(view);
        },
        onCheckpoint: (cp) => this.digester.startSpan(cp.in - (cp.bits !== 0 ? 1 : 0), cp.in),
      });
    } else if (opts.spanSize === 0) {
      throw new RangeError("span size must be positive for an uncompressed layer");
    }
    if (opts.expect) this.layerHash = createHash("sha256");
    if (opts.chunkSize !== undefined) this.chunker = new ChunkDigester(opts.chunkSize);
  }

  /** The next bytes of the layer blob (the view may be reused by the caller once this returns). */
  push(chunk: Uint8Array): void {
    try {
      if (this.chunker) this.chunker.feed(chunk, (piece) => this.pushChunk(piece), this.outSoFar);
      else this.pushChunk(chunk);
    } catch (err) {
      throw asBuildError(err);
    }
  }

  private readonly outSoFar = () => (this.gzip ? this.produced : this.size);

  private pushChunk(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    const start = this.size;
    this.size += chunk.length;
    this.layerHash?.update(chunk);
    this.digester.add(chunk);
    if (this.gzip) {
      this.gzip.push(chunk);
      this.digester.advance(this.gzip.consumed);
    } else {
      // uncompressed: spans are fixed slices of the file
      const span = this.opts.spanSize;
      for (let s = Math.ceil(start / span) * span; s < this.size; s += span) this.digester.startSpan(s, s);
      this.digester.advance(this.size);
      this.tar.push(chunk);
    }
    this.digester.detach(); // the few bytes it still needs, copied: the caller reuses `chunk`
  }

  finish(): IndexedLayer {
    try {
      return this.finishBuild();
    } catch (err) {
      throw asBuildError(err);
    }
  }

  private finishBuild(): IndexedLayer {
    const expect = this.opts.expect;
    if (expect && this.layerHash) {
      const digest = `sha256:${this.layerHash.digest("hex")}`;
      if (digest !== expect.digest || this.size !== expect.size) {
        throw new Error(
          `layer ${expect.digest}: content does not match its descriptor (got ${digest}, ${this.size} bytes; want ${expect.size} bytes)`,
        );
      }
    }
    let zinfo: Zinfo;
    let algorithm: string;
    if (this.gzip) {
      const r = this.gzip.finish();
      zinfo = new GzipZinfo(r.checkpoints, this.opts.spanSize);
      algorithm = "gzip";
    } else {
      zinfo = new TarZinfo(this.opts.spanSize, this.size);
      algorithm = "uncompressed";
    }
    const uncompressedArchiveSize = this.tar.end();
    const spanDigests = this.digester.finish(this.size);
    const ztoc: Ztoc = {
      version: ZTOC_VERSION,
      buildToolIdentifier: this.opts.buildToolIdentifier ?? BUILD_TOOL_IDENTIFIER,
      compressedArchiveSize: this.size,
      uncompressedArchiveSize,
      toc: this.toc,
      compressionAlgorithm: algorithm,
      maxSpanId: zinfo.maxSpanId,
      spanDigests,
      checkpoints: zinfo.toBlob(),
    };
    const bytes = encodeZtoc(ztoc);
    const chunks = this.chunker?.finish(this.outSoFar());
    return {
      ztoc,
      bytes,
      digest: `sha256:${createHash("sha256").update(bytes).digest("hex")}`,
      zinfo,
      ...(chunks ? { chunks } : {}),
    };
  }

  /** Abandons the build. */
  close(): void {
    this.gzip?.close();
  }
}
