// The SOCI index document (docs/formats.md §0, §3.1–§3.5): an OCI image manifest whose config media type
// carries the index version, whose layers are the ztoc (and prefetch) descriptors, and whose bytes
// must be exactly Go's `json.Marshal(ocispec.Manifest)` output.

import { FailedPreconditionError, InvalidArgumentError } from "../errors/errors.js";
import {
  decodeGoSlice,
  decodeGoString,
  decodeGoStringMap,
  decodeStruct,
  parseGoJson,
  topContext,
  type FieldSpec,
  type JsonValue,
} from "./go-json.js";
import {
  decodeDescriptor,
  decodeDescriptorPtr,
  decodeManifest,
  digestOf,
  marshalManifest,
  MediaTypeImageManifest,
  type Descriptor,
  type Manifest,
} from "./oci.js";
import { PrefetchArtifactMediaType } from "./prefetch.js";
import type { FileMetadata } from "./toc.js";

export { PrefetchArtifactMediaType } from "./prefetch.js";

// ------------------------------------------------------------------------------------------------
// Constants (§0)

export const SociIndexArtifactTypeV1 = "application/vnd.amazon.soci.index.v1+json";
export const SociIndexArtifactTypeV2 = "application/vnd.amazon.soci.index.v2+json";
/** Media type of a ztoc descriptor in a SOCI index. */
export const SociLayerMediaType = "application/octet-stream";

export const IndexAnnotationImageLayerMediaType = "com.amazon.soci.image-layer-mediaType";
export const IndexAnnotationImageLayerDigest = "com.amazon.soci.image-layer-digest";
export const IndexAnnotationSpanSize = "com.amazon.soci.span-size";
export const IndexAnnotationBuildToolIdentifier = "com.amazon.soci.build-tool-identifier";
export const IndexAnnotationDisableXAttrs = "com.amazon.soci.disable-xattrs";
/** On a v2 SOCI index descriptor inside the OCI image index: the image manifest it belongs to. */
export const IndexAnnotationImageManifestDigest = "com.amazon.soci.image-manifest-digest";
/** On an image manifest (and its descriptor): the digest of its v2 SOCI index. */
export const ImageAnnotationSociIndexDigest = "com.amazon.soci.index-digest";

export const DisableXAttrsTrue = "true";
export const DefaultSpanSize = 4194304; // 1 << 22
export const DefaultMinLayerSize = 10485760; // 10 << 20
export const DefaultBuildToolIdentifier = "AWS SOCI CLI v0.2";
export const WhiteoutOpaqueDir = ".wh..wh..opq";

/** The config blob of every SOCI index: the two bytes `{}`. */
export const EmptyConfigBytes: Uint8Array = new Uint8Array([0x7b, 0x7d]);
export const EmptyConfigDigest = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
export const EmptyConfigSize = 2;

/** `ErrEmptyIndex`. */
export const ErrEmptyIndexMessage = "no ztocs created, all layers either skipped or produced errors";

export class EmptyIndexError extends FailedPreconditionError {
  override name = "EmptyIndexError";
  constructor() {
    super(ErrEmptyIndexMessage);
  }
}

export class SociIndexError extends InvalidArgumentError {
  override name = "SociIndexError";
}

export type SociIndexVersion = 1 | 2;

export function artifactTypeOf(version: SociIndexVersion): string {
  return version === 1 ? SociIndexArtifactTypeV1 : SociIndexArtifactTypeV2;
}

/** The config descriptor of a SOCI index of this version (media type = artifact type). */
export function sociConfigDescriptor(version: SociIndexVersion): Descriptor {
  return { mediaType: artifactTypeOf(version), digest: EmptyConfigDigest, size: EmptyConfigSize };
}

// ------------------------------------------------------------------------------------------------
// The in-memory index (soci.Index)

export interface SociIndex {
  version: SociIndexVersion;
  /** Media type of the serialized document (the manifest's `mediaType` as read; OCI manifest when built). */
  mediaType: string;
  /** v1 or v2 artifact type (= config media type). */
  artifactType: string;
  config: Descriptor;
  /** The manifest's `layers`: ztoc descriptors then prefetch descriptors. */
  blobs: Descriptor[] | null;
  /** v1 only. */
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

/** `MarshalIndex`: Go-JSON of `ocispec.Manifest{schemaVersion 2, OCI manifest, config, layers, subject, annotations}`. */
export function marshalSociIndex(index: SociIndex): Uint8Array {
  const m: Manifest = {
    schemaVersion: 2,
    mediaType: MediaTypeImageManifest,
    config: index.config,
    layers: index.blobs,
  };
  if (index.subject) m.subject = index.subject;
  if (index.annotations) m.annotations = index.annotations;
  return marshalManifest(m);
}

// The first of the two decodes `UnmarshalIndex` does: into soci.Index (only its type errors matter).
interface IndexShape {
  mediaType?: string;
  artifactType?: string;
  blobs?: Descriptor[] | null;
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

const indexShapeFields: FieldSpec<IndexShape>[] = [
  {
    name: "mediaType",
    decode: (v, t, c) => {
      t.mediaType = decodeGoString(v, t.mediaType, c);
    },
  },
  {
    name: "artifactType",
    decode: (v, t, c) => {
      t.artifactType = decodeGoString(v, t.artifactType, c);
    },
  },
  {
    name: "blobs",
    decode: (v, t, c) => {
      t.blobs = decodeGoSlice(v, t.blobs, c, "[]v1.Descriptor", (e, cur, cc) => decodeDescriptor(e, cur, cc));
    },
  },
  {
    name: "subject",
    decode: (v, t, c) => {
      t.subject = decodeDescriptorPtr(v, t.subject, c);
    },
  },
  {
    name: "annotations",
    decode: (v, t, c) => {
      t.annotations = decodeGoStringMap(v, t.annotations, c);
    },
  },
];

/**
 * `UnmarshalIndex`: decodes the manifest (Go semantics, unknown fields dropped); the version comes
 * from `config.mediaType` only (v1/v2 artifact type, else `unknown index version: <mt>`).
 */
export function parseSociIndex(bytes: Uint8Array | string): SociIndex {
  let tree: JsonValue;
  let m: Manifest;
  try {
    tree = parseGoJson(bytes);
    decodeStruct(tree, {} as IndexShape, topContext("soci.Index"), "Index", "soci.Index", indexShapeFields);
    m = decodeManifest(tree);
  } catch (e) {
    throw new SociIndexError((e as Error).message, { cause: e });
  }
  let version: SociIndexVersion;
  if (m.config.mediaType === SociIndexArtifactTypeV1) version = 1;
  else if (m.config.mediaType === SociIndexArtifactTypeV2) version = 2;
  else throw new SociIndexError(`unknown index version: ${m.config.mediaType}`);
  const index: SociIndex = {
    version,
    mediaType: m.mediaType ?? "",
    artifactType: m.config.mediaType,
    config: m.config,
    blobs: m.layers,
  };
  if (m.subject) index.subject = m.subject;
  if (m.annotations) index.annotations = m.annotations;
  return index;
}

// ------------------------------------------------------------------------------------------------
// Building

export interface ZtocEntry {
  ztocDigest: string;
  ztocSize: number;
  /** Digest of the image layer the ztoc indexes. */
  layerDigest: string;
  /** The layer's media type as written in the image manifest. */
  layerMediaType: string;
  /** Span size of THIS build (annotation value). */
  spanSize: number;
  /** Add `com.amazon.soci.disable-xattrs: "true"` (the xattr optimization decided so). */
  disableXattrs?: boolean;
}

export interface PrefetchEntry {
  digest: string;
  size: number;
  layerDigest: string;
}

/** A ztoc descriptor of §3.1. */
export function ztocDescriptor(z: ZtocEntry): Descriptor {
  const annotations: Record<string, string> = {};
  if (z.disableXattrs) annotations[IndexAnnotationDisableXAttrs] = DisableXAttrsTrue;
  annotations[IndexAnnotationImageLayerDigest] = z.layerDigest;
  annotations[IndexAnnotationImageLayerMediaType] = z.layerMediaType;
  annotations[IndexAnnotationSpanSize] = String(z.spanSize);
  return { mediaType: SociLayerMediaType, digest: z.ztocDigest, size: z.ztocSize, annotations };
}

/** A prefetch descriptor of §3.1. */
export function prefetchDescriptor(p: PrefetchEntry): Descriptor {
  return {
    mediaType: PrefetchArtifactMediaType,
    digest: p.digest,
    size: p.size,
    annotations: { [IndexAnnotationImageLayerDigest]: p.layerDigest },
  };
}

export interface BuildSociIndexInput {
  version: SociIndexVersion;
  /** In image-layer order. */
  ztocs: readonly ZtocEntry[];
  /** In image-layer order; written after all ztocs. */
  prefetches?: readonly PrefetchEntry[];
  /** v1: the platform image manifest as stored locally (only mediaType/digest/size are kept). Ignored for v2. */
  subject?: Pick<Descriptor, "mediaType" | "digest" | "size"> | null;
  /** Default `AWS SOCI CLI v0.2`. */
  buildTool?: string;
  /** Written after the prefetch descriptors (our own artifacts, e.g. docs/formats.md §9). */
  extraBlobs?: readonly Descriptor[];
}

export interface BuiltSociIndex {
  index: SociIndex;
  bytes: Uint8Array;
  digest: string;
  size: number;
  /** `{mediaType: OCI manifest, artifactType, digest, size}` (what the builder returns/stores). */
  descriptor: Descriptor;
}

/**
 * Builds and serializes a SOCI index (`NewIndex` + `MarshalIndex`). Throws EmptyIndexError when there
 * is neither a ztoc nor a prefetch descriptor, and for v1 without a subject
 * (`cannot write soci index: the Refers field is nil`).
 */
export function buildSociIndex(input: BuildSociIndexInput): BuiltSociIndex {
  const blobs = [
    ...input.ztocs.map(ztocDescriptor),
    ...(input.prefetches ?? []).map(prefetchDescriptor),
    ...(input.extraBlobs ?? []),
  ];
  if (blobs.length === 0) throw new EmptyIndexError();
  const artifactType = artifactTypeOf(input.version);
  const index: SociIndex = {
    version: input.version,
    mediaType: MediaTypeImageManifest,
    artifactType,
    config: sociConfigDescriptor(input.version),
    blobs,
    annotations: { [IndexAnnotationBuildToolIdentifier]: input.buildTool ?? DefaultBuildToolIdentifier },
  };
  if (input.version === 1) {
    if (!input.subject) throw new SociIndexError("cannot write soci index: the Refers field is nil");
    index.subject = { mediaType: input.subject.mediaType, digest: input.subject.digest, size: input.subject.size };
  }
  const bytes = marshalSociIndex(index);
  const digest = digestOf(bytes);
  return {
    index,
    bytes,
    digest,
    size: bytes.length,
    descriptor: { mediaType: MediaTypeImageManifest, digest, size: bytes.length, artifactType },
  };
}

// ------------------------------------------------------------------------------------------------
// Reading helpers (snapshotter side, §3.6)

/** ztoc descriptors (`application/octet-stream`) keyed by their image-layer-digest annotation. */
export function ztocsByLayer(index: SociIndex): Map<string, Descriptor> {
  const out = new Map<string, Descriptor>();
  for (const d of index.blobs ?? []) {
    const layer = d.annotations?.[IndexAnnotationImageLayerDigest];
    if (d.mediaType === SociLayerMediaType && layer !== undefined) out.set(layer, d);
  }
  return out;
}

/** Prefetch descriptors keyed by their image-layer-digest annotation. */
export function prefetchesByLayer(index: SociIndex): Map<string, Descriptor> {
  const out = new Map<string, Descriptor>();
  for (const d of index.blobs ?? []) {
    const layer = d.annotations?.[IndexAnnotationImageLayerDigest];
    if (d.mediaType === PrefetchArtifactMediaType && layer !== undefined) out.set(layer, d);
  }
  return out;
}

/** Go `strconv.ParseBool` (how the snapshotter reads the disable-xattrs annotation). */
export function goParseBool(s: string): boolean {
  switch (s) {
    case "1":
    case "t":
    case "T":
    case "TRUE":
    case "true":
    case "True":
      return true;
    case "0":
    case "f":
    case "F":
    case "FALSE":
    case "false":
    case "False":
      return false;
  }
  throw new InvalidArgumentError(`strconv.ParseBool: parsing ${JSON.stringify(s)}: invalid syntax`);
}

// ------------------------------------------------------------------------------------------------
// disable-xattrs (§3.2)

/** A TOC entry as the xattr rule needs it (FileMetadata fits). */
export type XattrRuleEntry =
  | Pick<FileMetadata, "name" | "xattrs">
  | {
      name: string | Uint8Array;
      xattrs: ReadonlyArray<{ key: string | Uint8Array }>;
    };

const SCHILY_XATTR = new TextEncoder().encode("SCHILY.xattr.");
const OPAQUE = new TextEncoder().encode(WhiteoutOpaqueDir);

function asBytes(s: string | Uint8Array): Uint8Array {
  return typeof s === "string" ? new TextEncoder().encode(s) : s;
}

function startsWith(b: Uint8Array, p: Uint8Array): boolean {
  if (b.length < p.length) return false;
  for (let i = 0; i < p.length; i++) if (b[i] !== p[i]) return false;
  return true;
}

function endsWith(b: Uint8Array, s: Uint8Array): boolean {
  if (b.length < s.length) return false;
  const off = b.length - s.length;
  for (let i = 0; i < s.length; i++) if (b[off + i] !== s[i]) return false;
  return true;
}

/**
 * `shouldDisableXattrs`: true iff no entry has a `SCHILY.xattr.*` PAX record and no entry name ends
 * with `.wh..wh..opq`. (Only applied when the `xattr` optimization is enabled.)
 */
export function shouldDisableXattrs(entries: Iterable<XattrRuleEntry>): boolean {
  for (const e of entries) {
    if (endsWith(asBytes(e.name), OPAQUE)) return false;
    for (const x of e.xattrs) if (startsWith(asBytes(x.key), SCHILY_XATTR)) return false;
  }
  return true;
}
