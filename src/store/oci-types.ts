// What oras-go's oci.Store (v2.6) needs beyond the image-spec documents of formats/oci.ts: the
// ref-name annotation of index.json entries, the layout version, and which pushes get tracked.
import {
  MediaTypeDockerSchema2Manifest,
  MediaTypeDockerSchema2ManifestList,
  MediaTypeImageIndex,
  MediaTypeImageManifest,
} from "../formats/oci.js";

export const ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name";
export const IMAGE_LAYOUT_VERSION = "1.0.0";
const MEDIA_TYPE_ORAS_ARTIFACT_MANIFEST = "application/vnd.oci.artifact.manifest.v1+json";

// oras-go internal/descriptor.IsManifest: pushes of these media types are tagged by digest in index.json
const TRACKED_MEDIA_TYPES = new Set([
  MediaTypeDockerSchema2Manifest,
  MediaTypeDockerSchema2ManifestList,
  MediaTypeImageManifest,
  MediaTypeImageIndex,
  MEDIA_TYPE_ORAS_ARTIFACT_MANIFEST,
]);

export function isManifestMediaType(mediaType: string | undefined): boolean {
  return mediaType !== undefined && TRACKED_MEDIA_TYPES.has(mediaType);
}
