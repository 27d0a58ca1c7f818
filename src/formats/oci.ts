// OCI image-spec v1.1.1 documents (descriptor, platform, manifest, index) with Go-JSON encoding
// (docs/formats.md §3.8) and tolerant decoding with `json.Unmarshal` semantics.

import { InvalidArgumentError } from "../errors/errors.js";
import { createHash } from "node:crypto";
import {
  decodeGoBytes,
  decodeGoSlice,
  decodeGoString,
  decodeGoStringMap,
  decodeInt64,
  decodeStruct,
  encodeUtf8,
  goArray,
  goInt,
  goString,
  goStruct,
  omitEmpty,
  parseGoJson,
  topContext,
  type DecodeContext,
  type FieldSpec,
  type JsonValue,
} from "./go-json.js";

// ------------------------------------------------------------------------------------------------
// Media types

export const MediaTypeImageManifest = "application/vnd.oci.image.manifest.v1+json";
export const MediaTypeImageIndex = "application/vnd.oci.image.index.v1+json";
export const MediaTypeImageConfig = "application/vnd.oci.image.config.v1+json";
export const MediaTypeImageLayer = "application/vnd.oci.image.layer.v1.tar";
export const MediaTypeImageLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip";
export const MediaTypeImageLayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd";
export const MediaTypeImageLayerNonDistributable = "application/vnd.oci.image.layer.nondistributable.v1.tar";
export const MediaTypeImageLayerNonDistributableGzip = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
export const MediaTypeImageLayerNonDistributableZstd = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
export const MediaTypeEmptyJSON = "application/vnd.oci.empty.v1+json";
export const MediaTypeLayoutHeader = "application/vnd.oci.layout.header.v1+json";

export const MediaTypeDockerSchema2Layer = "application/vnd.docker.image.rootfs.diff.tar";
export const MediaTypeDockerSchema2LayerForeign = "application/vnd.docker.image.rootfs.foreign.diff.tar";
export const MediaTypeDockerSchema2LayerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip";
export const MediaTypeDockerSchema2LayerForeignGzip = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
export const MediaTypeDockerSchema2LayerZstd = "application/vnd.docker.image.rootfs.diff.tar.zstd";
export const MediaTypeDockerSchema2Config = "application/vnd.docker.container.image.v1+json";
export const MediaTypeDockerSchema2Manifest = "application/vnd.docker.distribution.manifest.v2+json";
export const MediaTypeDockerSchema2ManifestList = "application/vnd.docker.distribution.manifest.list.v2+json";
export const MediaTypeDockerSchema1Manifest = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/** containerd `images.IsManifestType`: OCI manifest or Docker schema 2 manifest. */
export function isManifestType(mt: string): boolean {
  return mt === MediaTypeImageManifest || mt === MediaTypeDockerSchema2Manifest;
}

/** containerd `images.IsIndexType`: OCI index or Docker manifest list. */
export function isIndexType(mt: string): boolean {
  return mt === MediaTypeImageIndex || mt === MediaTypeDockerSchema2ManifestList;
}

/** containerd `images.IsConfigType`. */
export function isConfigType(mt: string): boolean {
  return mt === MediaTypeImageConfig || mt === MediaTypeDockerSchema2Config;
}

// ------------------------------------------------------------------------------------------------
// Types (image-spec v1.1.1; field order below = Go struct order = JSON key order)

/** `ocispec.Platform`. */
export interface Platform {
  architecture: string;
  os: string;
  /** JSON `os.version` (omitempty). */
  osVersion?: string;
  /** JSON `os.features` (omitempty). */
  osFeatures?: string[] | null;
  /** omitempty */
  variant?: string;
}

/** `ocispec.Descriptor`. `mediaType`, `digest` and `size` are always written. */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  urls?: string[] | null;
  annotations?: Record<string, string> | null;
  /** JSON `data`: base64 in JSON, raw bytes here. */
  data?: Uint8Array | null;
  platform?: Platform | null;
  artifactType?: string;
}

/** `ocispec.Manifest`. `layers` is never omitted: `null` is written as JSON null. */
export interface Manifest {
  schemaVersion: number;
  mediaType?: string;
  artifactType?: string;
  config: Descriptor;
  layers: Descriptor[] | null;
  subject?: Descriptor | null;
  annotations?: Record<string, string> | null;
}

/** `ocispec.Index`. `manifests` is never omitted: `null` is written as JSON null. */
export interface Index {
  schemaVersion: number;
  mediaType?: string;
  artifactType?: string;
  manifests: Descriptor[] | null;
  subject?: Descriptor | null;
  annotations?: Record<string, string> | null;
}

// ------------------------------------------------------------------------------------------------
// Digests

/** `sha256:<hex>` of the bytes (go-digest `FromBytes`). */
export function digestOf(bytes: Uint8Array | string): string {
  return "sha256:" + createHash("sha256").update(bytes).digest("hex");
}

/** A serialized document with its digest and size. */
export interface Blob {
  bytes: Uint8Array;
  digest: string;
  size: number;
}

export function blobOf(bytes: Uint8Array): Blob {
  return { bytes, digest: digestOf(bytes), size: bytes.length };
}

// ------------------------------------------------------------------------------------------------
// Encoding (JSON text; `marshal*` return the UTF-8 bytes)

export function platformJson(p: Platform): string {
  return goStruct([
    ["architecture", goString(p.architecture ?? "")],
    ["os", goString(p.os ?? "")],
    ["os.version", omitEmpty.string(p.osVersion)],
    ["os.features", omitEmpty.array(p.osFeatures, goString)],
    ["variant", omitEmpty.string(p.variant)],
  ]);
}

export function descriptorJson(d: Descriptor): string {
  return goStruct([
    ["mediaType", goString(d.mediaType ?? "")],
    ["digest", goString(d.digest ?? "")],
    ["size", goInt(d.size ?? 0)],
    ["urls", omitEmpty.array(d.urls, goString)],
    ["annotations", omitEmpty.map(d.annotations)],
    ["data", omitEmpty.bytes(d.data)],
    ["platform", omitEmpty.ptr(d.platform, platformJson)],
    ["artifactType", omitEmpty.string(d.artifactType)],
  ]);
}

export function manifestJson(m: Manifest): string {
  return goStruct([
    ["schemaVersion", goInt(m.schemaVersion ?? 0)],
    ["mediaType", omitEmpty.string(m.mediaType)],
    ["artifactType", omitEmpty.string(m.artifactType)],
    ["config", descriptorJson(m.config ?? emptyDescriptor())],
    ["layers", goArray(m.layers ?? null, descriptorJson)],
    ["subject", omitEmpty.ptr(m.subject, descriptorJson)],
    ["annotations", omitEmpty.map(m.annotations)],
  ]);
}

export function indexJson(x: Index): string {
  return goStruct([
    ["schemaVersion", goInt(x.schemaVersion ?? 0)],
    ["mediaType", omitEmpty.string(x.mediaType)],
    ["artifactType", omitEmpty.string(x.artifactType)],
    ["manifests", goArray(x.manifests ?? null, descriptorJson)],
    ["subject", omitEmpty.ptr(x.subject, descriptorJson)],
    ["annotations", omitEmpty.map(x.annotations)],
  ]);
}

/** Go-JSON bytes of a descriptor. */
export function marshalDescriptor(d: Descriptor): Uint8Array {
  return encodeUtf8(descriptorJson(d));
}

/** Go-JSON bytes of a platform. */
export function marshalPlatform(p: Platform): Uint8Array {
  return encodeUtf8(platformJson(p));
}

/** Go-JSON bytes of a manifest (`json.Marshal(ocispec.Manifest)`). */
export function marshalManifest(m: Manifest): Uint8Array {
  return encodeUtf8(manifestJson(m));
}

/** Go-JSON bytes of an index (`json.Marshal(ocispec.Index)`). */
export function marshalIndex(x: Index): Uint8Array {
  return encodeUtf8(indexJson(x));
}

export function emptyDescriptor(): Descriptor {
  return { mediaType: "", digest: "", size: 0 };
}

// ------------------------------------------------------------------------------------------------
// Decoding (json.Unmarshal into the Go types: unknown fields dropped, Go's type errors)

/** Thrown for documents that are not valid JSON or do not fit the OCI types. */
export class OciFormatError extends InvalidArgumentError {
  override name = "OciFormatError";
}

const platformFields: FieldSpec<Platform>[] = [
  {
    name: "architecture",
    decode: (v, t, c) => {
      t.architecture = decodeGoString(v, t.architecture, c) ?? "";
    },
  },
  {
    name: "os",
    decode: (v, t, c) => {
      t.os = decodeGoString(v, t.os, c) ?? "";
    },
  },
  {
    name: "os.version",
    decode: (v, t, c) => {
      setOpt(t, "osVersion", decodeGoString(v, t.osVersion, c));
    },
  },
  {
    name: "os.features",
    decode: (v, t, c) => {
      const s = decodeGoSlice(v, t.osFeatures, c, "[]string", (e, cur, cc) => decodeGoString(e, cur, cc) ?? "");
      setOpt(t, "osFeatures", s ?? undefined);
    },
  },
  {
    name: "variant",
    decode: (v, t, c) => {
      setOpt(t, "variant", decodeGoString(v, t.variant, c));
    },
  },
];

function setOpt<T, K extends keyof T>(t: T, k: K, v: T[K] | undefined): void {
  if (v === undefined || v === null) delete t[k];
  else t[k] = v;
}

/** Decodes into an existing *Platform (Go reuses a non-nil pointer) or a new one; null → nil. */
export function decodePlatform(
  v: JsonValue,
  cur: Platform | null | undefined,
  ctx: DecodeContext,
): Platform | undefined {
  if (v === null) return undefined;
  const t: Platform = cur ? { ...cur } : { architecture: "", os: "" };
  decodeStruct(v, t, ctx, "Platform", "v1.Platform", platformFields);
  return t;
}

const descriptorFields: FieldSpec<Descriptor>[] = [
  {
    name: "mediaType",
    decode: (v, t, c) => {
      t.mediaType = decodeGoString(v, t.mediaType, c) ?? "";
    },
  },
  {
    name: "digest",
    decode: (v, t, c) => {
      t.digest = decodeGoString(v, t.digest, c) ?? "";
    },
  },
  {
    name: "size",
    decode: (v, t, c) => {
      t.size = decodeInt64(v, t.size, c) ?? 0;
    },
  },
  {
    name: "urls",
    decode: (v, t, c) => {
      const s = decodeGoSlice(v, t.urls, c, "[]string", (e, cur, cc) => decodeGoString(e, cur, cc) ?? "");
      setOpt(t, "urls", s ?? undefined);
    },
  },
  {
    name: "annotations",
    decode: (v, t, c) => {
      setOpt(t, "annotations", decodeGoStringMap(v, t.annotations ?? undefined, c));
    },
  },
  {
    name: "data",
    decode: (v, t, c) => {
      setOpt(t, "data", decodeGoBytes(v, t.data ?? undefined, c));
    },
  },
  {
    name: "platform",
    decode: (v, t, c) => {
      setOpt(t, "platform", decodePlatform(v, t.platform, c));
    },
  },
  {
    name: "artifactType",
    decode: (v, t, c) => {
      setOpt(t, "artifactType", decodeGoString(v, t.artifactType, c));
    },
  },
];

/** Decodes a descriptor value (struct semantics: null keeps `cur`). */
export function decodeDescriptor(v: JsonValue, cur: Descriptor | undefined, ctx: DecodeContext): Descriptor {
  const t: Descriptor = cur ? { ...cur } : emptyDescriptor();
  decodeStruct(v, t, ctx, "Descriptor", "v1.Descriptor", descriptorFields);
  return t;
}

/** Decodes a *Descriptor (null → nil). */
export function decodeDescriptorPtr(
  v: JsonValue,
  cur: Descriptor | null | undefined,
  ctx: DecodeContext,
): Descriptor | undefined {
  if (v === null) return undefined;
  return decodeDescriptor(v, cur ?? undefined, ctx);
}

function decodeDescriptorSlice(
  v: JsonValue,
  cur: Descriptor[] | null | undefined,
  ctx: DecodeContext,
): Descriptor[] | null {
  return decodeGoSlice(v, cur, ctx, "[]v1.Descriptor", (e, c, cc) => decodeDescriptor(e, c, cc));
}

const manifestFields: FieldSpec<Manifest>[] = [
  {
    name: "schemaVersion",
    decode: (v, t, c) => {
      t.schemaVersion = decodeInt64(v, t.schemaVersion, c, "int") ?? 0;
    },
  },
  {
    name: "mediaType",
    decode: (v, t, c) => {
      setOpt(t, "mediaType", decodeGoString(v, t.mediaType, c));
    },
  },
  {
    name: "artifactType",
    decode: (v, t, c) => {
      setOpt(t, "artifactType", decodeGoString(v, t.artifactType, c));
    },
  },
  {
    name: "config",
    decode: (v, t, c) => {
      t.config = decodeDescriptor(v, t.config, c);
    },
  },
  {
    name: "layers",
    decode: (v, t, c) => {
      t.layers = decodeDescriptorSlice(v, t.layers, c);
    },
  },
  {
    name: "subject",
    decode: (v, t, c) => {
      setOpt(t, "subject", decodeDescriptorPtr(v, t.subject, c));
    },
  },
  {
    name: "annotations",
    decode: (v, t, c) => {
      setOpt(t, "annotations", decodeGoStringMap(v, t.annotations ?? undefined, c));
    },
  },
];

const indexFields: FieldSpec<Index>[] = [
  {
    name: "schemaVersion",
    decode: (v, t, c) => {
      t.schemaVersion = decodeInt64(v, t.schemaVersion, c, "int") ?? 0;
    },
  },
  {
    name: "mediaType",
    decode: (v, t, c) => {
      setOpt(t, "mediaType", decodeGoString(v, t.mediaType, c));
    },
  },
  {
    name: "artifactType",
    decode: (v, t, c) => {
      setOpt(t, "artifactType", decodeGoString(v, t.artifactType, c));
    },
  },
  {
    name: "manifests",
    decode: (v, t, c) => {
      t.manifests = decodeDescriptorSlice(v, t.manifests, c);
    },
  },
  {
    name: "subject",
    decode: (v, t, c) => {
      setOpt(t, "subject", decodeDescriptorPtr(v, t.subject, c));
    },
  },
  {
    name: "annotations",
    decode: (v, t, c) => {
      setOpt(t, "annotations", decodeGoStringMap(v, t.annotations ?? undefined, c));
    },
  },
];

function wrap<T>(what: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    throw new OciFormatError(`invalid ${what}: ${msg}`, { cause: e });
  }
}

/** Decodes an already parsed manifest value. */
export function decodeManifest(v: JsonValue): Manifest {
  const m: Manifest = { schemaVersion: 0, config: emptyDescriptor(), layers: null };
  decodeStruct(v, m, topContext("v1.Manifest"), "Manifest", "v1.Manifest", manifestFields);
  return m;
}

/** Decodes an already parsed index value. */
export function decodeIndex(v: JsonValue): Index {
  const x: Index = { schemaVersion: 0, manifests: null };
  decodeStruct(v, x, topContext("v1.Index"), "Index", "v1.Index", indexFields);
  return x;
}

/**
 * `json.Unmarshal(b, &ocispec.Manifest{})`: unknown fields dropped, absent `layers` → null.
 * Throws OciFormatError (message `invalid manifest: <Go-style reason>`).
 */
export function parseManifest(bytes: Uint8Array | string): Manifest {
  return wrap("manifest", () => decodeManifest(parseGoJson(bytes)));
}

/** `json.Unmarshal(b, &ocispec.Index{})`: unknown fields dropped, absent `manifests` → null. */
export function parseIndex(bytes: Uint8Array | string): Index {
  return wrap("image index", () => decodeIndex(parseGoJson(bytes)));
}

/** `json.Unmarshal(b, &ocispec.Descriptor{})`. */
export function parseDescriptor(bytes: Uint8Array | string): Descriptor {
  return wrap("descriptor", () => decodeDescriptor(parseGoJson(bytes), undefined, topContext("v1.Descriptor")));
}

/** `json.Unmarshal(b, &ocispec.Platform{})`. */
export function parsePlatformJson(bytes: Uint8Array | string): Platform {
  return wrap("platform", () => {
    const v = parseGoJson(bytes);
    return decodePlatform(v, undefined, topContext("v1.Platform")) ?? { architecture: "", os: "" };
  });
}

// ------------------------------------------------------------------------------------------------
// Copies

export function clonePlatform(p: Platform): Platform {
  const out: Platform = { architecture: p.architecture, os: p.os };
  if (p.osVersion) out.osVersion = p.osVersion;
  if (p.osFeatures) out.osFeatures = [...p.osFeatures];
  if (p.variant) out.variant = p.variant;
  return out;
}

/** A deep copy of a descriptor (annotations, urls, data, platform copied). */
export function cloneDescriptor(d: Descriptor): Descriptor {
  const out: Descriptor = { ...d };
  if (d.urls) out.urls = [...d.urls];
  if (d.annotations) out.annotations = { ...d.annotations };
  if (d.data) out.data = new Uint8Array(d.data);
  if (d.platform) out.platform = clonePlatform(d.platform);
  return out;
}
