// The registry half of `soci image rpull`: the image's root document, its platform manifest and
// config, fetched before containerd is involved (and before gRPC is even loaded).
import type { Descriptor, Manifest, Platform } from "../formats/oci.js";
import { isIndexType, parseManifest } from "../formats/oci.js";
import { defaultPlatform } from "../formats/platform.js";
import { manifestForPlatform } from "../store/image-manifests.js";
import { RegistrySource } from "../registry/blob-source.js";
import type { RegistryClient } from "../registry/client.js";
import { formatReference, parseReference } from "../registry/reference.js";
import type { ImageRef } from "../registry/types.js";

/** What a pull needs from the registry before containerd is involved. */
export interface ResolvedPull {
  ref: ImageRef;
  name: string;
  target: Descriptor;
  platform: Platform;
  manifestDesc: Descriptor;
  manifestBytes: Uint8Array;
  manifest: Manifest;
  configBytes: Uint8Array;
  source: RegistrySource;
}

/** Resolves `refText` to the platform manifest and config a pull will copy into containerd. */
export async function resolvePull(
  registry: RegistryClient,
  refText: string,
  platform: Platform = defaultPlatform(),
): Promise<ResolvedPull> {
  const ref = parseReference(refText);
  const source = new RegistrySource(registry, ref);
  // one GET instead of containerd's HEAD then GET: the bytes are needed anyway
  const { descriptor: target, bytes: targetBytes } = await registry.getManifest(ref);
  source.remember(target.digest, targetBytes);
  const manifestDesc = isIndexType(target.mediaType) ? await manifestForPlatform(source, target, platform) : target;
  const manifestBytes = await source.get(manifestDesc.digest, manifestDesc.mediaType);
  const manifest = parseManifest(manifestBytes);
  const configBytes = await source.get(manifest.config.digest, manifest.config.mediaType);
  return {
    ref,
    name: formatReference(ref),
    target,
    platform,
    manifestDesc,
    manifestBytes,
    manifest,
    configBytes,
    source,
  };
}
