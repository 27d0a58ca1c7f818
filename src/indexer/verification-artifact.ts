// The layer verification artifact of a freshly built ztoc (docs/formats.md §9): its bytes and its
// descriptor for the SOCI index.
import { digestOf, type Descriptor } from "../formats/oci.js";
import {
  buildLayerVerification,
  encodeLayerVerification,
  layerVerificationDescriptor,
  type LayerChunks,
} from "../formats/layer-verification.js";

export function verificationArtifact(
  ztoc: Uint8Array,
  gzip: boolean,
  layer: Descriptor,
  chunks: LayerChunks,
): { bytes: Uint8Array; descriptor: Descriptor } {
  const bytes = encodeLayerVerification(
    buildLayerVerification({
      ztoc,
      zinfoKind: gzip ? "gzip" : "tar",
      layerDigest: layer.digest,
      layerSize: layer.size,
      chunks,
    }),
  );
  return { bytes, descriptor: layerVerificationDescriptor(digestOf(bytes), bytes.length, layer.digest) };
}
