// `soci image rpull`: a lazy pull into containerd without nerdctl. The image's documents (index,
// platform manifest, config) are copied from the registry into containerd's content store, the
// image record is created, and its layers are unpacked through the snapshotter with the `cri.*`
// labels containerd's CRI plugin would attach — so a SOCI snapshotter mounts indexed layers
// lazily and answers AlreadyExists. Only layers the snapshotter does not provide are downloaded.
import type { Descriptor, Platform } from "../formats/oci.js";
import type { RegistryClient } from "../registry/client.js";
import type { ContainerdClient } from "../containerd/client.js";
import { gcLabelsFor } from "../containerd/gc-labels.js";
import { withLease } from "../containerd/leases.js";
import type { Labels } from "../containerd/types.js";
import { imageLayers, type UnpackLayer, type UnpackResult, unpackImageLayers } from "./unpack.js";
import { resolvePull, type ResolvedPull } from "./resolve-pull.js";

// docs/snapshotter.md §2.1
export const LABEL_CRI_IMAGE_REF = "containerd.io/snapshot/cri.image-ref";
export const LABEL_CRI_MANIFEST_DIGEST = "containerd.io/snapshot/cri.manifest-digest";
export const LABEL_CRI_LAYER_DIGEST = "containerd.io/snapshot/cri.layer-digest";
export const LABEL_CRI_IMAGE_LAYERS = "containerd.io/snapshot/cri.image-layers";
export const LABEL_SOCI_INDEX_DIGEST = "containerd.io/snapshot/remote/soci.index.digest";
export const LABEL_SOCI_SIZE = "containerd.io/snapshot/remote/soci.size";
/** containerd limits a label's key + value to 4096 bytes. */
const MAX_LABEL = 4096;

export interface PullOptions {
  snapshotter: string;
  platform?: Platform;
  /** An explicit SOCI index (nerdctl's `--soci-index-digest`). */
  sociIndexDigest?: string;
  log?(line: string): void;
}

export interface PullResult {
  name: string;
  target: Descriptor;
  manifest: Descriptor;
  unpack: UnpackResult;
}

/** This layer and every following one, comma-separated, cut to fit containerd's label limit. */
export function imageLayersLabel(layers: Descriptor[], from: number): string {
  let out = "";
  for (const l of layers.slice(from)) {
    const next = out ? `${out},${l.digest}` : l.digest;
    if (LABEL_CRI_IMAGE_LAYERS.length + next.length > MAX_LABEL) break;
    out = next;
  }
  return out;
}

export async function pullImage(
  ctd: ContainerdClient,
  registry: RegistryClient,
  image: string | ResolvedPull,
  opts: PullOptions,
): Promise<PullResult> {
  const log = opts.log ?? (() => undefined);
  const { ref, name, target, manifestDesc, manifestBytes, manifest, configBytes, source } =
    typeof image === "string" ? await resolvePull(registry, image, opts.platform) : image;
  const layers = manifest.layers ?? [];

  // one lease holds the documents and the snapshots until the image and its GC labels do
  const unpack = await withLease(ctd, async (leased) => {
    // written side by side: under the lease nothing is collected before what references it exists
    const put = async (desc: Descriptor, bytes: Uint8Array) => {
      await leased.content.write(bytes, { digest: desc.digest, size: desc.size }, { labels: gcLabelsFor(bytes) });
    };
    await Promise.all([
      put(manifest.config, configBytes),
      put(manifestDesc, manifestBytes),
      target.digest !== manifestDesc.digest
        ? source.get(target.digest, target.mediaType).then((bytes) => put(target, bytes))
        : undefined,
    ]);
    await leased.images.put({
      name,
      target: { mediaType: target.mediaType, digest: target.digest, size: target.size },
    });
    log(`${name}: resolved ${target.digest}, manifest ${manifestDesc.digest}, ${layers.length} layers`);
    // the documents just written are not read back: their layers and diff IDs are known here
    return unpackImageLayers(
      leased,
      opts.snapshotter,
      manifest.config.digest,
      imageLayers(name, manifest, configBytes),
      {
        labels: (layer: UnpackLayer, i: number): Labels => {
          const labels: Labels = {
            [LABEL_CRI_IMAGE_REF]: name,
            [LABEL_CRI_MANIFEST_DIGEST]: manifestDesc.digest,
            [LABEL_CRI_LAYER_DIGEST]: layer.blob.digest,
            [LABEL_CRI_IMAGE_LAYERS]: imageLayersLabel(layers, i),
            [LABEL_SOCI_SIZE]: String(layer.blob.size),
          };
          if (opts.sociIndexDigest) labels[LABEL_SOCI_INDEX_DIGEST] = opts.sociIndexDigest;
          return labels;
        },
        // only layers the snapshotter did not provide come here: download them into containerd
        fetchBlob: async (layer, client) => {
          log(`${layer.blob.digest}: downloading (not provided by the snapshotter)`);
          await client.content.write(registry.blobStream(ref, layer.blob.digest, { size: layer.blob.size }), {
            digest: layer.blob.digest,
            size: layer.blob.size,
          });
        },
      },
    );
  });
  for (const [i, l] of unpack.layers.entries()) log(`${layers[i]?.digest ?? l.chainId}: ${l.outcome}`);
  return { name, target, manifest: manifestDesc, unpack };
}
