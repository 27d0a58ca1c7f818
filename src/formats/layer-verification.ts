// The layer verification artifact (docs/formats.md §9): per layer, the digests that let a reader
// verify what it fetches in small pieces instead of whole spans and whole ztocs — the ztoc without
// its checkpoint windows (the "TOC part"), each window, and each fixed-size chunk of the compressed
// layer — plus, per chunk, how far the layer decompresses with the bytes up to the chunk's end.
// Written by `soci convert`/`create --chunk-verification` and listed in the SOCI index as a blob of
// its own media type; readers that do not know the media type ignore it.
//
// Encoding (little-endian, no padding, deterministic):
//   magic "SOCIVRF1" | layer sha256 (32) | layer size u64 | ztoc sha256 (32) | ztoc size u64
//   | zinfo offset u64 | zinfo length u64 | TOC-part sha256 (32) | zinfo kind u8 | chunk size u32
//   | chunk count u32 | window count u32 | skeleton length u32 | skeleton
//   | window sha256 × window count | chunk sha256 × chunk count | chunk output end u64 × chunk count
import { createHash } from "node:crypto";
import { DigestMismatchError, InvalidArgumentError } from "../errors/errors.js";
import { PACKED_CHECKPOINT_SIZE, ZINFO_HEADER_SIZE } from "./gzip-zinfo.js";
import type { Descriptor } from "./oci.js";
import { IndexAnnotationImageLayerDigest, type SociIndex } from "./soci-index.js";

export const LayerVerificationMediaType = "application/vnd.soci-ts.layer-verification.v1";
/** Chunk size `--chunk-verification` uses unless `--chunk-size` says otherwise. */
export const DefaultVerificationChunkSize = 64 << 10;
/** Span size `--chunk-verification` uses unless `--span-size` says otherwise (small spans are cheap with it). */
export const DefaultVerificationSpanSize = 1 << 20;
const MAGIC = new TextEncoder().encode("SOCIVRF1");
const HEADER_SIZE = 8 + 32 + 8 + 32 + 8 + 8 + 8 + 32 + 1 + 4 + 4 + 4 + 4; // 153
const WINDOW_SIZE = 32768;
/** Offset of the window inside a packed checkpoint record (after in, out, bits). */
const WINDOW_IN_RECORD = 8 + 8 + 1;
/** What readers accept: chunks from 512 bytes to 16 MiB. */
const MIN_CHUNK = 512;
const MAX_CHUNK = 16 << 20;

/** How the ztoc's zinfo is laid out, hence where its windows are. */
export type ZinfoKind = "gzip" | "tar";

export interface LayerVerification {
  layerDigest: string;
  layerSize: number;
  ztocDigest: string;
  ztocSize: number;
  /** Where the content of the ztoc's `checkpoints` vector (the zinfo blob) lies in the ztoc. */
  zinfoOffset: number;
  zinfoLength: number;
  /** sha256 of ztoc[0, zinfoOffset) ‖ ztoc[zinfoOffset + zinfoLength, ztocSize), "sha256:<hex>". */
  tocPartDigest: string;
  zinfoKind: ZinfoKind;
  /** The zinfo blob with every checkpoint window cut out (gzip), or the whole blob (tar). */
  skeleton: Uint8Array;
  /** 32-byte sha256 per window stored in the zinfo blob, in blob order. */
  windowDigests: Uint8Array;
  chunkSize: number;
  /** 32-byte sha256 per chunk [j·chunkSize, min((j+1)·chunkSize, layerSize)). */
  chunkDigests: Uint8Array;
  /**
   * Per chunk: the uncompressed layer offset up to which the bytes before the chunk's end are
   * enough to decompress (what a decoder fed exactly those bytes has produced).
   */
  chunkOutEnds: number[];
}

export class LayerVerificationError extends InvalidArgumentError {
  override name = "LayerVerificationError";
}

const sha256 = (...parts: Uint8Array[]) => {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return h.digest();
};

function digestBytes(d: string, what: string): Uint8Array {
  const m = /^sha256:([0-9a-f]{64})$/.exec(d);
  if (!m) throw new LayerVerificationError(`${what}: not a sha256 digest: ${JSON.stringify(d)}`);
  return Buffer.from(m[1]!, "hex");
}

const hexDigest = (b: Uint8Array) => `sha256:${Buffer.from(b).toString("hex")}`;

export function chunkCount(layerSize: number, chunkSize: number): number {
  return Math.ceil(layerSize / chunkSize);
}

/** Byte range [start, end) of chunk j. */
export function chunkRange(v: Pick<LayerVerification, "layerSize" | "chunkSize">, j: number): [number, number] {
  return [j * v.chunkSize, Math.min((j + 1) * v.chunkSize, v.layerSize)];
}

// ------------------------------------------------------------------------------------------------
// Where the zinfo sits in a ztoc, and how a zinfo splits into skeleton and windows

/**
 * The content range of the ztoc's `compression_info.checkpoints` vector (docs/formats.md §1.1),
 * found by walking the FlatBuffer (bounds-checked).
 */
export function locateZinfo(ztoc: Uint8Array): { offset: number; length: number } {
  const dv = new DataView(ztoc.buffer, ztoc.byteOffset, ztoc.byteLength);
  const fail = (why: string): never => {
    throw new LayerVerificationError(`cannot locate the checkpoints in the ztoc: ${why}`);
  };
  const u32 = (at: number) => (at >= 0 && at + 4 <= ztoc.length ? dv.getUint32(at, true) : fail(`offset ${at}`));
  const u16 = (at: number) => (at >= 0 && at + 2 <= ztoc.length ? dv.getUint16(at, true) : fail(`offset ${at}`));
  const field = (table: number, slot: number): number => {
    const vtable = table - dv.getInt32(table, true);
    const vo = 4 + 2 * slot;
    return vo < u16(vtable) ? u16(vtable + vo) : 0;
  };
  const root = u32(0);
  u32(root);
  const ciField = field(root, 5);
  if (!ciField) fail("no compression info");
  const ci = root + ciField + u32(root + ciField);
  u32(ci);
  const cpField = field(ci, 3);
  if (!cpField) fail("no checkpoints");
  const vec = ci + cpField + u32(ci + cpField);
  const length = u32(vec);
  const offset = vec + 4;
  if (offset + length > ztoc.length) fail("vector past the end");
  return { offset, length };
}

/** Offsets in a gzip zinfo blob of the windows of its `stored` checkpoint records. */
function gzipWindowOffsets(stored: number): number[] {
  const out: number[] = [];
  for (let k = 0; k < stored; k++) out.push(ZINFO_HEADER_SIZE + k * PACKED_CHECKPOINT_SIZE + WINDOW_IN_RECORD);
  return out;
}

/** Number of checkpoint records a gzip zinfo blob of `length` bytes stores. */
function storedRecords(length: number): number {
  const n = (length - ZINFO_HEADER_SIZE) / PACKED_CHECKPOINT_SIZE;
  if (!Number.isInteger(n) || n < 0) throw new LayerVerificationError(`a gzip zinfo of ${length} bytes`);
  return n;
}

/** The zinfo without its windows, and the windows (views into `zinfo`). */
export function splitZinfo(zinfo: Uint8Array, kind: ZinfoKind): { skeleton: Uint8Array; windows: Uint8Array[] } {
  if (kind === "tar") return { skeleton: zinfo.slice(), windows: [] };
  const offsets = gzipWindowOffsets(storedRecords(zinfo.length));
  const skeleton = new Uint8Array(zinfo.length - offsets.length * WINDOW_SIZE);
  const windows: Uint8Array[] = [];
  let from = 0;
  let to = 0;
  for (const w of offsets) {
    skeleton.set(zinfo.subarray(from, w), to);
    to += w - from;
    windows.push(zinfo.subarray(w, w + WINDOW_SIZE));
    from = w + WINDOW_SIZE;
  }
  skeleton.set(zinfo.subarray(from), to);
  return { skeleton, windows };
}

/** The zinfo blob again, from its skeleton and windows. */
export function joinZinfo(skeleton: Uint8Array, windows: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(skeleton.length + windows.length * WINDOW_SIZE);
  if (windows.length === 0) {
    out.set(skeleton);
    return out;
  }
  const skeletonRecord = PACKED_CHECKPOINT_SIZE - WINDOW_SIZE;
  out.set(skeleton.subarray(0, ZINFO_HEADER_SIZE));
  let s = ZINFO_HEADER_SIZE;
  let o = ZINFO_HEADER_SIZE;
  for (const w of windows) {
    if (w.length !== WINDOW_SIZE) throw new LayerVerificationError(`a window of ${w.length} bytes`);
    out.set(skeleton.subarray(s, s + WINDOW_IN_RECORD), o);
    out.set(w, o + WINDOW_IN_RECORD);
    s += skeletonRecord;
    o += PACKED_CHECKPOINT_SIZE;
  }
  return out;
}

/** One checkpoint as the skeleton records it (its window is fetched separately). */
export interface SkeletonCheckpoint {
  in: number;
  out: number;
  bits: number;
  /** Index of its window among the stored windows; -1 for v1's implied checkpoint 0 (zero window). */
  window: number;
}

/** The checkpoints of a gzip skeleton, with the span size and blob version (docs/formats.md §2.2). */
export function skeletonCheckpoints(skeleton: Uint8Array): {
  spanSize: number;
  version: 1 | 2;
  checkpoints: SkeletonCheckpoint[];
} {
  if (skeleton.length < ZINFO_HEADER_SIZE) throw new LayerVerificationError("zinfo skeleton too short");
  const dv = new DataView(skeleton.buffer, skeleton.byteOffset, skeleton.byteLength);
  const have = dv.getInt32(0, true);
  const spanSize = Number(dv.getBigInt64(4, true));
  const record = PACKED_CHECKPOINT_SIZE - WINDOW_SIZE;
  const stored = (skeleton.length - ZINFO_HEADER_SIZE) / record;
  let version: 1 | 2;
  if (stored === have) version = 2;
  else if (have > 0 && stored === have - 1) version = 1;
  else throw new LayerVerificationError(`zinfo skeleton of ${skeleton.length} bytes for ${have} checkpoints`);
  const checkpoints: SkeletonCheckpoint[] = [];
  if (version === 1) checkpoints.push({ in: 10, out: 0, bits: 0, window: -1 });
  for (let k = 0; k < stored; k++) {
    const p = ZINFO_HEADER_SIZE + k * record;
    checkpoints.push({
      in: Number(dv.getBigInt64(p, true)),
      out: Number(dv.getBigInt64(p + 8, true)),
      bits: skeleton[p + 16]!,
      window: k,
    });
  }
  return { spanSize, version, checkpoints };
}

/** Byte range [start, end) in the ztoc of stored window k. */
export function windowRange(v: Pick<LayerVerification, "zinfoOffset">, k: number): [number, number] {
  const start = v.zinfoOffset + ZINFO_HEADER_SIZE + k * PACKED_CHECKPOINT_SIZE + WINDOW_IN_RECORD;
  return [start, start + WINDOW_SIZE];
}

/** The two ranges of the ztoc that make its TOC part. */
export function tocPartRanges(
  v: Pick<LayerVerification, "zinfoOffset" | "zinfoLength" | "ztocSize">,
): [number, number][] {
  return [
    [0, v.zinfoOffset],
    [v.zinfoOffset + v.zinfoLength, v.ztocSize],
  ];
}

// ------------------------------------------------------------------------------------------------
// In the SOCI index

/** The artifact's descriptor in a SOCI index: its media type and the layer-digest annotation. */
export function layerVerificationDescriptor(digest: string, size: number, layerDigest: string): Descriptor {
  return {
    mediaType: LayerVerificationMediaType,
    digest,
    size,
    annotations: { [IndexAnnotationImageLayerDigest]: layerDigest },
  };
}

/** The artifacts of an index keyed by the layer they describe. */
export function layerVerificationsByLayer(index: SociIndex): Map<string, Descriptor> {
  const out = new Map<string, Descriptor>();
  for (const d of index.blobs ?? []) {
    const layer = d.annotations?.[IndexAnnotationImageLayerDigest];
    if (d.mediaType === LayerVerificationMediaType && layer !== undefined) out.set(layer, d);
  }
  return out;
}

// ------------------------------------------------------------------------------------------------
// Building

export interface LayerChunks {
  chunkSize: number;
  /** 32 bytes per chunk. */
  digests: Uint8Array;
  outEnds: readonly number[];
}

/** The artifact for a layer whose ztoc is `ztoc` (its serialized bytes). */
export function buildLayerVerification(opts: {
  ztoc: Uint8Array;
  zinfoKind: ZinfoKind;
  layerDigest: string;
  layerSize: number;
  chunks: LayerChunks;
}): LayerVerification {
  const { ztoc, chunks } = opts;
  const { offset, length } = locateZinfo(ztoc);
  const zinfo = ztoc.subarray(offset, offset + length);
  const { skeleton, windows } = splitZinfo(zinfo, opts.zinfoKind);
  const windowDigests = new Uint8Array(32 * windows.length);
  for (const [k, w] of windows.entries()) windowDigests.set(sha256(w), 32 * k);
  return {
    layerDigest: opts.layerDigest,
    layerSize: opts.layerSize,
    ztocDigest: hexDigest(sha256(ztoc)),
    ztocSize: ztoc.length,
    zinfoOffset: offset,
    zinfoLength: length,
    tocPartDigest: hexDigest(sha256(ztoc.subarray(0, offset), ztoc.subarray(offset + length))),
    zinfoKind: opts.zinfoKind,
    skeleton,
    windowDigests,
    chunkSize: chunks.chunkSize,
    chunkDigests: chunks.digests.slice(),
    chunkOutEnds: [...chunks.outEnds],
  };
}

// ------------------------------------------------------------------------------------------------
// Encoding

export function encodeLayerVerification(v: LayerVerification): Uint8Array {
  checkShape(v);
  const n = v.chunkOutEnds.length;
  const windows = v.windowDigests.length / 32;
  const out = new Uint8Array(HEADER_SIZE + v.skeleton.length + v.windowDigests.length + 32 * n + 8 * n);
  const dv = new DataView(out.buffer);
  let p = 0;
  const bytes = (b: Uint8Array) => {
    out.set(b, p);
    p += b.length;
  };
  const u64 = (x: number) => {
    dv.setBigUint64(p, BigInt(x), true);
    p += 8;
  };
  const u32 = (x: number) => {
    dv.setUint32(p, x, true);
    p += 4;
  };
  bytes(MAGIC);
  bytes(digestBytes(v.layerDigest, "layer digest"));
  u64(v.layerSize);
  bytes(digestBytes(v.ztocDigest, "ztoc digest"));
  u64(v.ztocSize);
  u64(v.zinfoOffset);
  u64(v.zinfoLength);
  bytes(digestBytes(v.tocPartDigest, "TOC part digest"));
  out[p++] = v.zinfoKind === "gzip" ? 1 : 2;
  u32(v.chunkSize);
  u32(n);
  u32(windows);
  u32(v.skeleton.length);
  bytes(v.skeleton);
  bytes(v.windowDigests);
  bytes(v.chunkDigests);
  for (const e of v.chunkOutEnds) u64(e);
  return out;
}

export function decodeLayerVerification(bytes: Uint8Array): LayerVerification {
  const fail = (why: string): never => {
    throw new LayerVerificationError(`invalid layer verification artifact: ${why}`);
  };
  if (bytes.length < HEADER_SIZE) fail(`${bytes.length} bytes`);
  if (!Buffer.from(bytes.subarray(0, 8)).equals(MAGIC)) fail("bad magic");
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let p = 8;
  const take = (n: number) => {
    if (p + n > bytes.length) fail("truncated");
    const b = bytes.subarray(p, p + n);
    p += n;
    return b;
  };
  const u64 = () => {
    const x = dv.getBigUint64(take(8).byteOffset - bytes.byteOffset, true);
    if (x > BigInt(Number.MAX_SAFE_INTEGER)) fail("integer out of range");
    return Number(x);
  };
  const u32 = () => dv.getUint32(take(4).byteOffset - bytes.byteOffset, true);
  const layerDigest = hexDigest(take(32));
  const layerSize = u64();
  const ztocDigest = hexDigest(take(32));
  const ztocSize = u64();
  const zinfoOffset = u64();
  const zinfoLength = u64();
  const tocPartDigest = hexDigest(take(32));
  const kindByte = take(1)[0];
  if (kindByte !== 1 && kindByte !== 2) fail(`unknown zinfo kind ${kindByte}`);
  const chunkSize = u32();
  const n = u32();
  const windows = u32();
  const skeletonLength = u32();
  const skeleton = take(skeletonLength).slice();
  const windowDigests = take(32 * windows).slice();
  const chunkDigests = take(32 * n).slice();
  const chunkOutEnds: number[] = [];
  for (let j = 0; j < n; j++) chunkOutEnds.push(u64());
  if (p !== bytes.length) fail(`${bytes.length - p} bytes after the end`);
  const v: LayerVerification = {
    layerDigest,
    layerSize,
    ztocDigest,
    ztocSize,
    zinfoOffset,
    zinfoLength,
    tocPartDigest,
    zinfoKind: kindByte === 1 ? "gzip" : "tar",
    skeleton,
    windowDigests,
    chunkSize,
    chunkDigests,
    chunkOutEnds,
  };
  checkShape(v);
  return v;
}

/** The structural rules every artifact obeys (what a reader relies on before fetching anything). */
function checkShape(v: LayerVerification): void {
  const fail = (why: string): never => {
    throw new LayerVerificationError(`invalid layer verification artifact: ${why}`);
  };
  if (!Number.isSafeInteger(v.chunkSize) || v.chunkSize < MIN_CHUNK || v.chunkSize > MAX_CHUNK)
    fail(`chunk size ${v.chunkSize}`);
  const n = chunkCount(v.layerSize, v.chunkSize);
  if (v.chunkOutEnds.length !== n || v.chunkDigests.length !== 32 * n)
    fail(`${v.chunkOutEnds.length} chunks for a layer of ${v.layerSize} bytes in chunks of ${v.chunkSize}`);
  for (let j = 1; j < n; j++) if (v.chunkOutEnds[j]! < v.chunkOutEnds[j - 1]!) fail("chunk output ends decrease");
  if (v.zinfoOffset < 4 || v.zinfoOffset + v.zinfoLength > v.ztocSize) fail("zinfo outside the ztoc");
  if (v.windowDigests.length % 32 !== 0) fail("window digests");
  const windows = v.windowDigests.length / 32;
  if (v.skeleton.length + windows * WINDOW_SIZE !== v.zinfoLength) fail("skeleton and windows do not make the zinfo");
  if (v.zinfoKind === "tar" && windows !== 0) fail("windows in a tar zinfo");
  if (v.zinfoKind === "gzip") {
    const { checkpoints } = skeletonCheckpoints(v.skeleton);
    if (checkpoints.filter((c) => c.window >= 0).length !== windows) fail("window count");
  }
}

// ------------------------------------------------------------------------------------------------
// Checking what was fetched

/** Checks the TOC part (the ztoc's two ranges outside the zinfo) against the artifact. */
export function verifyTocPart(v: LayerVerification, head: Uint8Array, tail: Uint8Array): void {
  const got = hexDigest(sha256(head, tail));
  if (got !== v.tocPartDigest) throw new DigestMismatchError(v.tocPartDigest, got, { what: "ztoc TOC part" });
}

/**
 * The ztoc bytes a ztoc decoder can read from the TOC part alone: the full size, the zinfo range
 * zero-filled and its vector length set to 0 (so the decoder sees no checkpoints and copies none).
 */
export function tocPartZtoc(v: LayerVerification, head: Uint8Array, tail: Uint8Array): Uint8Array {
  // the zero pages of the zinfo range are never touched
  const out = new Uint8Array(v.ztocSize);
  out.set(head, 0);
  out.set(tail, v.zinfoOffset + v.zinfoLength);
  new DataView(out.buffer).setUint32(v.zinfoOffset - 4, 0, true);
  return out;
}

/** Checks stored window k. */
export function verifyWindow(v: LayerVerification, k: number, window: Uint8Array): void {
  const want = v.windowDigests.subarray(32 * k, 32 * k + 32);
  const got = sha256(window);
  if (window.length !== WINDOW_SIZE || !Buffer.from(want).equals(got))
    throw new DigestMismatchError(hexDigest(want), hexDigest(got), { what: `checkpoint window ${k}` });
}

/** Checks chunk j's bytes. */
export function verifyChunk(v: LayerVerification, j: number, bytes: Uint8Array): void {
  const want = v.chunkDigests.subarray(32 * j, 32 * j + 32);
  const got = sha256(bytes);
  const [start, end] = chunkRange(v, j);
  if (bytes.length !== end - start || !Buffer.from(want).equals(got))
    throw new DigestMismatchError(hexDigest(want), hexDigest(got), { what: `layer chunk ${j}` });
}
