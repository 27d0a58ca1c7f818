// Choosing an image's platform manifests through a BlobReader (docs/formats.md §3.4).
import { InvalidArgumentError, NotFoundError } from "../errors/errors.js";
import { imageIndexFromBytes } from "../formats/convert-docs.js";
import { type Descriptor, isIndexType, isManifestType, parseManifest, type Platform } from "../formats/oci.js";
import {
  dedupePlatforms,
  defaultPlatform,
  formatPlatform,
  matchPlatformStrict,
  platformFromImageConfig,
} from "../formats/platform.js";
import { SociIndexArtifactTypeV2 } from "../formats/soci-index.js";
import type { BlobReader } from "./blobs.js";

/** The platform manifest of an image for `platform` (§3.4 manifest selection). */
export async function manifestForPlatform(
  source: BlobReader,
  root: Descriptor,
  platform: Platform,
): Promise<Descriptor> {
  if (!isIndexType(root.mediaType)) {
    if (root.platform && !matchPlatformStrict(platform, root.platform)) {
      throw new NotFoundError(`image ${root.digest} does not match platform ${formatPlatform(platform)}`);
    }
    return root;
  }
  const index = imageIndexFromBytes(await source.get(root.digest, root.mediaType));
  for (const m of index.manifests ?? []) {
    if (m.artifactType === SociIndexArtifactTypeV2) continue;
    if (!m.platform) throw new InvalidArgumentError(`manifest ${m.digest} in image index has no platform`);
    if (matchPlatformStrict(platform, m.platform)) return m;
  }
  throw new NotFoundError(`no manifest for platform ${formatPlatform(platform)} in image ${root.digest}`);
}

export interface PlatformChoice {
  platforms?: Platform[];
  allPlatforms?: boolean;
}

/** Platforms to index: explicit ones, all of the image's, or the image's / host's default. */
export async function platformsFor(
  source: BlobReader,
  root: Descriptor,
  choice: PlatformChoice,
): Promise<{ platforms: Platform[]; target: Descriptor }> {
  let target = root;
  let fallback = defaultPlatform();
  if (isManifestType(root.mediaType)) {
    const m = parseManifest(await source.get(root.digest, root.mediaType));
    const p = platformFromImageConfig(await source.get(m.config.digest, m.config.mediaType));
    target = { ...root, platform: p };
    fallback = p;
  }
  if (choice.allPlatforms) {
    if (!isIndexType(root.mediaType)) return { platforms: [fallback], target };
    const index = imageIndexFromBytes(await source.get(root.digest, root.mediaType));
    const all = (index.manifests ?? [])
      .filter(
        (m) =>
          m.artifactType !== SociIndexArtifactTypeV2 &&
          m.platform &&
          m.platform.os !== "unknown" &&
          m.platform.architecture !== "unknown",
      )
      .map((m) => m.platform!);
    return { platforms: dedupePlatforms(all), target };
  }
  return { platforms: dedupePlatforms(choice.platforms?.length ? choice.platforms : [fallback]), target };
}
