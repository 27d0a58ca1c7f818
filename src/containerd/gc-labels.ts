// containerd garbage-collection references for the JSON documents SOCI writes into containerd's
// content store (docs/formats.md §3.4–3.5): a blob labelled `containerd.io/gc.ref.content.<x>=<digest>`
// keeps `<digest>` alive while the blob itself is alive.
//   SOCI index  → config, ztoc.<i> (every layers[] entry, prefetch artifacts included)
//   manifest    → config, l.<i>
//   image index → m.<i>
import { SociIndexArtifactTypeV1, SociIndexArtifactTypeV2 } from "../formats/soci-index.js";
import type { Labels } from "./types.js";

export const GC_REF_CONTENT = "containerd.io/gc.ref.content";
export const GC_ROOT = "containerd.io/gc.root";
/** The label `soci create` puts on the containerd image: its SOCI index stays with the image. */
export const SOCI_INDEX_IMAGE_LABEL = `${GC_REF_CONTENT}.soci-index`;

/**
 * The per-platform twin of SOCI_INDEX_IMAGE_LABEL, keyed by the normalized platform
 * (`….soci-index.linux.amd64`, `….soci-index.linux.arm.v7`). The reference sets only the one key,
 * overwritten per platform, so with several platforms the earlier indexes are left to the garbage
 * collector; these labels keep each platform's index (a deliberate difference that only adds labels).
 */
export function sociIndexPlatformLabel(platform: { os: string; architecture: string; variant?: string }): string {
  const parts = [platform.os, platform.architecture, ...(platform.variant ? [platform.variant] : [])];
  return `${SOCI_INDEX_IMAGE_LABEL}.${parts.map((p) => p.replace(/[^A-Za-z0-9_-]/g, "_")).join(".")}`;
}

interface DocShape {
  mediaType?: unknown;
  config?: { digest?: unknown; mediaType?: unknown };
  layers?: { digest?: unknown }[];
  manifests?: { digest?: unknown }[];
}

// JSON documents we write are small; anything big or not starting with `{` is a ztoc or a layer
const MAX_SNIFF = 4 << 20;

function parseDoc(bytes: Uint8Array): DocShape | undefined {
  if (bytes.length < 2 || bytes.length > MAX_SNIFF || bytes[0] !== 0x7b) return undefined;
  try {
    const v: unknown = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8"));
    return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as DocShape) : undefined;
  } catch {
    return undefined;
  }
}

const digestOf = (x: { digest?: unknown } | undefined): string | undefined =>
  typeof x?.digest === "string" ? x.digest : undefined;

/** The GC reference labels for a blob's content (empty for anything that references nothing). */
export function gcLabelsFor(bytes: Uint8Array): Labels {
  const doc = parseDoc(bytes);
  if (!doc) return {};
  const labels: Labels = {};
  if (Array.isArray(doc.manifests)) {
    doc.manifests.forEach((m, i) => {
      const d = digestOf(m);
      if (d) labels[`${GC_REF_CONTENT}.m.${i}`] = d;
    });
    return labels;
  }
  if (doc.config && Array.isArray(doc.layers)) {
    const config = digestOf(doc.config);
    if (config) labels[`${GC_REF_CONTENT}.config`] = config;
    const soci = doc.config.mediaType === SociIndexArtifactTypeV1 || doc.config.mediaType === SociIndexArtifactTypeV2;
    doc.layers.forEach((l, i) => {
      const d = digestOf(l);
      if (d) labels[`${GC_REF_CONTENT}.${soci ? "ztoc" : "l"}.${i}`] = d;
    });
  }
  return labels;
}
