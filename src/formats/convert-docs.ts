// The documents `soci convert` writes besides the SOCI index (docs/formats.md §3.5 steps 2, 4, 5, 6;
// pitfall 14): re-encoded image manifests, the OCI image index, and the SOCI v2 index descriptors
// in it. Pure functions: inputs are never mutated, new objects are returned.

import { JsonObject, parseGoJson, type JsonValue } from "./go-json.js";
import {
  blobOf,
  cloneDescriptor,
  clonePlatform,
  decodeIndex,
  decodeManifest,
  isIndexType,
  isManifestType,
  marshalIndex,
  marshalManifest,
  MediaTypeImageConfig,
  MediaTypeImageIndex,
  MediaTypeImageManifest,
  OciFormatError,
  type Blob,
  type Descriptor,
  type Index,
  type Manifest,
  type Platform,
} from "./oci.js";
import { normalizePlatform, platformMatcher } from "./platform.js";
import {
  ImageAnnotationSociIndexDigest,
  IndexAnnotationImageManifestDigest,
  SociIndexArtifactTypeV2,
} from "./soci-index.js";

// ------------------------------------------------------------------------------------------------
// Media-type validation (util/ociutil ValidateMediaType, copied from containerd)

/**
 * `ociutil.ValidateMediaType(b, mt)`: the bytes must be JSON; schema 1 (`fsLayers`) is rejected; a
 * manifest type must not contain `manifests` or declare an index media type; an index type must not
 * contain `config`/`layers` or declare a manifest media type.
 */
export function validateMediaType(bytes: Uint8Array | string, mt: string): void {
  let v: JsonValue;
  try {
    v = parseGoJson(bytes);
  } catch (e) {
    throw new OciFormatError((e as Error).message, { cause: e });
  }
  // UnknownDocument: mediaType string, config/layers/manifests/fsLayers json.RawMessage (omitempty)
  const doc = { mediaType: "", config: 0, layers: 0, manifests: 0, fsLayers: 0 };
  if (v instanceof JsonObject) {
    const fold = (s: string) => s.toLowerCase();
    for (const [k, val] of v.entries) {
      const f = fold(k);
      if (f === "mediatype") {
        if (val !== null && typeof val !== "string") {
          throw new OciFormatError(
            "json: cannot unmarshal " + kind(val) + " into Go struct field UnknownDocument.mediaType of type string",
          );
        }
        if (typeof val === "string") doc.mediaType = val;
      } else if (f === "config" || f === "layers" || f === "manifests" || f === "fslayers") {
        // RawMessage keeps the raw text; `null` is the 4 bytes "null" (length ≠ 0).
        const key = f === "fslayers" ? "fsLayers" : (f as "config" | "layers" | "manifests");
        doc[key] = 1;
      }
    }
  } else if (v !== null) {
    throw new OciFormatError(`json: cannot unmarshal ${kind(v)} into Go value of type ociutil.UnknownDocument`);
  }
  if (doc.fsLayers) throw new OciFormatError("media-type: schema 1 not supported");
  if (isManifestType(mt) && (doc.manifests || isIndexType(doc.mediaType))) {
    throw new OciFormatError(`media-type: expected manifest but found index (${mt})`);
  } else if (isIndexType(mt) && (doc.config || doc.layers || isManifestType(doc.mediaType))) {
    throw new OciFormatError(`media-type: expected index but found manifest (${mt})`);
  }
}

function kind(v: JsonValue): string {
  if (typeof v === "boolean") return "bool";
  if (typeof v === "string") return "string";
  if (Array.isArray(v)) return "array";
  if (v instanceof JsonObject) return "object";
  return "number";
}

// ------------------------------------------------------------------------------------------------
// Image manifests (§3.5 step 4)

export interface ReencodedManifest extends Blob {
  manifest: Manifest;
}

/**
 * Re-serializes an image manifest as `ocispec.Manifest` Go-JSON with `mediaType` forced to the OCI
 * manifest type and `config.mediaType` to the OCI config type (layers untouched, unknown fields
 * dropped); with `sociIndexDigest`, adds the manifest annotation `com.amazon.soci.index-digest`.
 * With `descriptorMediaType`, the bytes are first validated like containerd's `images.Manifest`.
 */
export function reencodeManifest(
  original: Uint8Array | string | Manifest,
  sociIndexDigest?: string,
  descriptorMediaType?: string,
): ReencodedManifest {
  let m: Manifest;
  if (typeof original === "string" || original instanceof Uint8Array) {
    if (descriptorMediaType !== undefined) validateMediaType(original, descriptorMediaType);
    try {
      m = decodeManifest(parseGoJson(original));
    } catch (e) {
      throw new OciFormatError(`invalid manifest: ${(e as Error).message}`, { cause: e });
    }
  } else {
    m = {
      ...original,
      config: cloneDescriptor(original.config),
      layers: original.layers ? original.layers.map(cloneDescriptor) : null,
    };
    if (original.subject) m.subject = cloneDescriptor(original.subject);
    if (original.annotations) m.annotations = { ...original.annotations };
  }
  m.mediaType = MediaTypeImageManifest;
  m.config = { ...m.config, mediaType: MediaTypeImageConfig };
  if (sociIndexDigest !== undefined) {
    m.annotations = { ...(m.annotations ?? {}), [ImageAnnotationSociIndexDigest]: sociIndexDigest };
  }
  const bytes = marshalManifest(m);
  return { ...blobOf(bytes), manifest: m };
}

// ------------------------------------------------------------------------------------------------
// The OCI image index (§3.5 steps 2, 4, 5, 6)

/** A new `{schemaVersion 2, OCI index, manifests: [target]}` for a single-manifest image. */
export function newImageIndex(target: Descriptor): Index {
  return { schemaVersion: 2, mediaType: MediaTypeImageIndex, manifests: [cloneDescriptor(target)] };
}

/**
 * Loads an existing index / manifest list as `ocispec.Index` (unknown fields dropped) with
 * `mediaType` forced to the OCI index type. With `descriptorMediaType`, validated first
 * (`ValidateMediaType`).
 */
export function imageIndexFromBytes(bytes: Uint8Array | string, descriptorMediaType?: string): Index {
  if (descriptorMediaType !== undefined) validateMediaType(bytes, descriptorMediaType);
  let x: Index;
  try {
    x = decodeIndex(parseGoJson(bytes));
  } catch (e) {
    throw new OciFormatError(`invalid image index: ${(e as Error).message}`, { cause: e });
  }
  x.mediaType = MediaTypeImageIndex;
  return x;
}

/** What replaces an index entry once its manifest has been re-encoded. */
export interface ManifestEntryUpdate {
  digest: string;
  size: number;
  /** The re-encoded manifest BODY's annotations (replace the descriptor's; none → removed). */
  annotations?: Record<string, string> | null;
}

/**
 * Rewrites `manifests[i]` after re-encoding (annotateImages): new digest and size, media type = OCI
 * manifest, annotations = the manifest body's annotations (previous descriptor annotations are
 * dropped); platform and other fields kept. Accepts a ReencodedManifest directly.
 */
export function setManifestEntry(index: Index, i: number, update: ManifestEntryUpdate | ReencodedManifest): Index {
  const manifests = index.manifests ?? [];
  if (i < 0 || i >= manifests.length) throw new RangeError(`manifest entry ${i} out of range (${manifests.length})`);
  const annotations = "manifest" in update ? update.manifest.annotations : update.annotations;
  const d = cloneDescriptor(manifests[i]!);
  d.digest = update.digest;
  d.size = update.size;
  d.mediaType = MediaTypeImageManifest;
  if (annotations) d.annotations = { ...annotations };
  else delete d.annotations;
  const out = [...manifests];
  out[i] = d;
  return { ...index, manifests: out };
}

/**
 * The descriptor of a v2 SOCI index in the image index (§3.5 step 5): `{mediaType: OCI manifest,
 * digest, size, annotations: {image-manifest-digest}, platform, artifactType: v2}`. Without
 * `manifestDigest` (no manifest was re-encoded for it) the annotation is absent.
 */
export function sociIndexV2Descriptor(
  sociIndex: Pick<Descriptor, "digest" | "size">,
  platform: Platform,
  manifestDigest?: string,
): Descriptor {
  const d: Descriptor = { mediaType: MediaTypeImageManifest, digest: sociIndex.digest, size: sociIndex.size };
  if (manifestDigest !== undefined) d.annotations = { [IndexAnnotationImageManifestDigest]: manifestDigest };
  d.platform = clonePlatform(platform);
  d.artifactType = SociIndexArtifactTypeV2;
  return d;
}

/**
 * `addSociIndexes` for one SOCI index: its descriptor gets `platform` (the build platform); it
 * REPLACES the first entry whose artifactType is v2 and whose platform strictly matches the
 * normalized build platform, else it is APPENDED after all entries.
 */
export function addSociIndexDescriptor(index: Index, desc: Descriptor, platform?: Platform | null): Index {
  const p = platform ?? desc.platform;
  if (!p) throw new OciFormatError("index does not have a valid platform");
  const d = cloneDescriptor(desc);
  d.platform = clonePlatform(p);
  const matcher = platformMatcher(normalizePlatform(p));
  const manifests = [...(index.manifests ?? [])];
  const i = manifests.findIndex(
    (m) => m.artifactType === SociIndexArtifactTypeV2 && m.platform != null && matcher.match(m.platform),
  );
  if (i >= 0) manifests[i] = d;
  else manifests.push(d);
  return { ...index, manifests };
}

/** Go-JSON bytes, digest and size of the final image index (mediaType of its descriptor: OCI index). */
export function serializeImageIndex(index: Index): Blob & { descriptor: Descriptor } {
  const b = blobOf(marshalIndex(index));
  return { ...b, descriptor: { mediaType: MediaTypeImageIndex, digest: b.digest, size: b.size } };
}

/** GC labels of the converted image index: `containerd.io/gc.ref.content.m.<i>` = manifests[i].digest. */
export function imageIndexGcLabels(index: Index): Record<string, string> {
  const out: Record<string, string> = {};
  (index.manifests ?? []).forEach((m, i) => {
    out[`containerd.io/gc.ref.content.m.${i}`] = m.digest;
  });
  return out;
}

/** GC labels of a re-encoded manifest: `...config` and `...l.<i>` per layer. */
export function manifestGcLabels(m: Manifest): Record<string, string> {
  const out: Record<string, string> = { "containerd.io/gc.ref.content.config": m.config.digest };
  (m.layers ?? []).forEach((l, i) => {
    out[`containerd.io/gc.ref.content.l.${i}`] = l.digest;
  });
  return out;
}
