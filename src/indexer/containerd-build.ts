// SOCI builds over images in containerd's store (docs/formats.md §3.4–3.5, the reference CLI with
// `--content-store containerd`): the image is read through containerd's content service, and
// ztocs, prefetch artifacts and indexes are committed to it with their GC reference labels, all
// under a lease until the image that keeps them alive is labelled (`create`) or created (`convert`).
// The artifacts DB records them as with the SOCI store.
import { InvalidArgumentError } from "../errors/errors.js";
import type { Descriptor } from "../formats/oci.js";
import type { BuiltSociIndex } from "../formats/soci-index.js";
import type { ArtifactsDb } from "../store/artifacts-db.js";
import type { BuildPool } from "./pool.js";
import { parseReference } from "../registry/reference.js";
import { normalizePlatform } from "../formats/platform.js";
import {
  buildIndexForManifest,
  convertImage,
  type BuildContext,
  type BuildOptions,
  type LayerProgress,
} from "./index-builder.js";
import type { PlatformChoice } from "../store/image-manifests.js";
import { platformsFor } from "../store/image-manifests.js";
import { manifestForPlatform } from "../store/image-manifests.js";
import type { ContainerdClient } from "../containerd/client.js";
import { ContainerdContentStore } from "../containerd/content-source.js";
import { SOCI_INDEX_IMAGE_LABEL, sociIndexPlatformLabel } from "../containerd/gc-labels.js";
import { withLease } from "../containerd/leases.js";

export interface ContainerdBuildOptions extends BuildOptions, PlatformChoice {
  db: ArtifactsDb;
  pool: BuildPool;
  log(line: string): void;
  progress?: LayerProgress;
}

function buildContext(leased: ContainerdClient, opts: ContainerdBuildOptions): BuildContext {
  return {
    source: new ContainerdContentStore(leased),
    target: new ContainerdContentStore(leased),
    db: opts.db,
    pool: opts.pool,
    log: opts.log,
    progress: opts.progress,
  };
}

/**
 * `soci create` for containerd image `name`: a v1 SOCI index per platform. The image is labelled
 * `containerd.io/gc.ref.content.soci-index=<index>` (one key, so the last platform's index wins,
 * as in the reference) and `….soci-index.<os>.<arch>[.<variant>]=<index>` per platform, so every
 * platform's index lives as long as the image. Returns the indexes built.
 */
export async function createInContainerd(
  client: ContainerdClient,
  name: string,
  opts: ContainerdBuildOptions,
): Promise<BuiltSociIndex[]> {
  const root = await new ContainerdContentStore(client).resolveImage(name);
  return withLease(client, async (leased) => {
    const ctx = buildContext(leased, opts);
    const { platforms, target } = await platformsFor(ctx.source, root, opts);
    const built: BuiltSociIndex[] = [];
    for (const platform of platforms) {
      const manifest = await manifestForPlatform(ctx.source, target, platform);
      const index = await buildIndexForManifest(ctx, manifest, 1, platform, opts, root.digest);
      await client.images.setLabels(name, {
        [SOCI_INDEX_IMAGE_LABEL]: index.digest,
        [sociIndexPlatformLabel(normalizePlatform(platform))]: index.digest,
      });
      built.push(index);
    }
    return built;
  });
}

/** `soci convert`'s destination rule: a tagged reference without a digest. */
export function checkConvertDestination(dst: string): void {
  // an explicit tag (parseReference would default it to `latest`) and no digest
  const lastPart = dst.slice(dst.lastIndexOf("/") + 1);
  let ok = !dst.includes("@") && lastPart.includes(":");
  if (ok) {
    try {
      parseReference(dst);
    } catch {
      ok = false;
    }
  }
  if (!ok)
    throw new InvalidArgumentError(`the destination image must be a tagged ref of the form "registry/repository:tag"`);
}

/**
 * `soci convert <src> <dst>` inside containerd: SOCI index v2 per platform, re-encoded manifests
 * and a new OCI image index committed to containerd, and image `dst` created (or repointed) at
 * that index. Returns the index's descriptor.
 */
export async function convertInContainerd(
  client: ContainerdClient,
  src: string,
  dst: string,
  opts: ContainerdBuildOptions,
): Promise<Descriptor> {
  checkConvertDestination(dst);
  const root = await new ContainerdContentStore(client).resolveImage(src);
  return withLease(client, async (leased) => {
    const desc = await convertImage(buildContext(leased, opts), root, opts, opts);
    await client.images.put({ name: dst, target: { mediaType: desc.mediaType, digest: desc.digest, size: desc.size } });
    return desc;
  });
}
