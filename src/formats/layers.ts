// Which image layers get a ztoc (docs/formats.md §3.3; pitfall 17): containerd's `images.IsLayerType`
// and `images.DiffCompression`, SOCI's uncompressed mapping, the min-layer-size threshold and the
// reference's exact skip messages.

import { InvalidArgumentError, UnimplementedError } from "../errors/errors.js";
import {
  MediaTypeDockerSchema2Layer,
  MediaTypeDockerSchema2LayerForeign,
  MediaTypeDockerSchema2LayerForeignGzip,
  MediaTypeDockerSchema2LayerGzip,
  MediaTypeDockerSchema2LayerZstd,
  MediaTypeImageLayer,
  MediaTypeImageLayerNonDistributable,
} from "./oci.js";
import { PrefetchArtifactMediaType } from "./prefetch.js";
import { splitN } from "./platform.js";
/** containerd's (pre-standard) EROFS layer media type, accepted by `IsLayerType` (optional `+zstd`). */
export const MediaTypeErofsLayer = "application/vnd.erofs.layer.v1";

/** Compression names of the ztoc (ztoc/compression/types.go). */
export type CompressionAlgorithm = "gzip" | "zstd" | "uncompressed" | "unknown";

/** The algorithms SOCI builds ztocs for (`ztoc.Builder.CheckCompressionAlgorithm`). */
export const SupportedCompressions: readonly string[] = ["gzip", "uncompressed", "unknown"];

/** containerd returns this (wrapping `errdefs.ErrNotImplemented`) for non-layer media types. */
export class UnrecognisedMediaTypeError extends UnimplementedError {
  override name = "UnrecognisedMediaTypeError";
  constructor(readonly mediaType: string) {
    super(`unrecognised mediatype ${mediaType}: not implemented`);
  }
}

/** `errNotLayerType` of soci_index.go: the media type is not a layer (fails the whole build). */
export class NotLayerTypeError extends InvalidArgumentError {
  override name = "NotLayerTypeError";
  constructor(readonly mediaType: string) {
    super("not a layer mediaType");
  }
}

/** Layer whose compression containerd cannot determine (fails the whole build). */
export class LayerCompressionError extends UnimplementedError {
  override name = "LayerCompressionError";
  constructor(
    readonly mediaType: string,
    cause: Error,
  ) {
    super(`could not determine layer compression: ${cause.message}`, { cause });
  }
}

/**
 * containerd `parseMediaTypes`: the part before the first `+` and the `+`-separated suffixes,
 * sorted (Go `sort.Strings`, bytewise).
 */
export function parseMediaType(mt: string): { base: string; suffixes: string[] } {
  if (mt === "") return { base: "", suffixes: [] };
  const i = mt.indexOf("+");
  if (i < 0) return { base: mt, suffixes: [] };
  const parts = splitN(mt.slice(i + 1), "+", 50);
  parts.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  return { base: mt.slice(0, i), suffixes: parts };
}

/**
 * containerd `images.IsLayerType`: any `application/vnd.oci.image.layer.` prefix, or (suffixes
 * after `+` stripped) a Docker rootfs diff/foreign diff tar[.gzip|.zstd], or the EROFS layer type.
 */
export function isLayerMediaType(mt: string): boolean {
  if (mt.startsWith("application/vnd.oci.image.layer.")) return true;
  switch (parseMediaType(mt).base) {
    case MediaTypeDockerSchema2Layer:
    case MediaTypeDockerSchema2LayerGzip:
    case MediaTypeDockerSchema2LayerForeign:
    case MediaTypeDockerSchema2LayerForeignGzip:
    case MediaTypeDockerSchema2LayerZstd:
    case MediaTypeErofsLayer:
      return true;
  }
  return false;
}

/** containerd `images.IsNonDistributable`. */
export function isNonDistributable(mt: string): boolean {
  return (
    mt.startsWith("application/vnd.oci.image.layer.nondistributable.") ||
    mt.startsWith("application/vnd.docker.image.rootfs.foreign.")
  );
}

/**
 * containerd `images.DiffCompression`: Docker `diff.tar` → `unknown`, `diff.tar.gzip` → `gzip`,
 * `diff.tar.zstd` → `zstd` (any `+suffix` on a Docker type → ""); OCI (and non-distributable)
 * `v1.tar` → the LAST sorted suffix if it is gzip/zstd, else "". Anything else throws
 * UnrecognisedMediaTypeError.
 */
export function diffCompression(mt: string): string {
  const { base, suffixes } = parseMediaType(mt);
  switch (base) {
    case MediaTypeDockerSchema2Layer:
    case MediaTypeDockerSchema2LayerForeign:
      return suffixes.length > 0 ? "" : "unknown";
    case MediaTypeDockerSchema2LayerGzip:
    case MediaTypeDockerSchema2LayerForeignGzip:
      return suffixes.length > 0 ? "" : "gzip";
    case MediaTypeDockerSchema2LayerZstd:
      return suffixes.length > 0 ? "" : "zstd";
    case MediaTypeImageLayer:
    case MediaTypeImageLayerNonDistributable: {
      const last = suffixes[suffixes.length - 1];
      return last === "gzip" || last === "zstd" ? last : "";
    }
  }
  throw new UnrecognisedMediaTypeError(mt);
}

/**
 * The compression SOCI assigns a layer: `diffCompression`, with "" mapped to `uncompressed` only for
 * exactly `application/vnd.oci.image.layer.v1.tar`. May return "" (wrapped/encrypted types) or `zstd`
 * (both unsupported). Throws UnrecognisedMediaTypeError for non-diff media types.
 */
export function layerCompression(mt: string): CompressionAlgorithm | "" {
  const c = diffCompression(mt);
  if (c === "" && mt === MediaTypeImageLayer) return "uncompressed";
  return c as CompressionAlgorithm | "";
}

/** A layer descriptor as layer selection needs it. */
export interface LayerDescriptorLike {
  mediaType: string;
  digest: string;
  size: number;
}

export type LayerSelection =
  | { build: true; compression: "gzip" | "uncompressed" | "unknown" }
  | {
      build: false;
      /** `prefetch`: a prefetch artifact, silently ignored; `too-small`/`unsupported`: skip lines. */
      reason: "prefetch" | "too-small" | "unsupported";
      /** The line the reference prints (without newline); absent for prefetch descriptors. */
      message?: string;
      /** For `unsupported`: the compression containerd reported ("" / "zstd"). */
      compression?: string;
    };

/**
 * Layer selection of `buildSociLayer` (§3.3 steps 1–4), in the reference's order:
 * prefetch type ⇒ ignored; not a layer ⇒ throws NotLayerTypeError (`not a layer mediaType`);
 * `size < minLayerSize` ⇒ skipped (`ztoc skipped - layer <d> (<mt>) size <n> is less than
 * min-layer-size <m>`); unrecognised compression ⇒ throws LayerCompressionError; a compression other
 * than gzip/uncompressed/unknown ⇒ skipped (`ztoc skipped - layer <d> (<mt>) is compressed in an
 * unsupported format. expect: [tar, gzip, unknown] but got "<alg>"`).
 */
export function selectLayer(desc: LayerDescriptorLike, minLayerSize: number): LayerSelection {
  if (desc.mediaType === PrefetchArtifactMediaType) return { build: false, reason: "prefetch" };
  if (!isLayerMediaType(desc.mediaType)) throw new NotLayerTypeError(desc.mediaType);
  if (desc.size < minLayerSize) {
    return {
      build: false,
      reason: "too-small",
      message: `ztoc skipped - layer ${desc.digest} (${desc.mediaType}) size ${desc.size} is less than min-layer-size ${minLayerSize}`,
    };
  }
  let c: string;
  try {
    c = layerCompression(desc.mediaType);
  } catch (e) {
    throw new LayerCompressionError(desc.mediaType, e as Error);
  }
  if (c === "gzip" || c === "uncompressed" || c === "unknown") return { build: true, compression: c };
  return {
    build: false,
    reason: "unsupported",
    compression: c,
    message: `ztoc skipped - layer ${desc.digest} (${desc.mediaType}) is compressed in an unsupported format. expect: [tar, gzip, unknown] but got ${goQuote(c)}`,
  };
}

/** Go `%q` of a string (enough for media-type suffixes: printable ASCII and common escapes). */
export function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"' || ch === "\\") out += "\\" + ch;
    else if (c === 0x07) out += "\\a";
    else if (c === 0x08) out += "\\b";
    else if (c === 0x0c) out += "\\f";
    else if (c === 0x0a) out += "\\n";
    else if (c === 0x0d) out += "\\r";
    else if (c === 0x09) out += "\\t";
    else if (c === 0x0b) out += "\\v";
    else if (c < 0x20 || c === 0x7f) out += "\\x" + c.toString(16).padStart(2, "0");
    else out += ch;
  }
  return out + '"';
}
