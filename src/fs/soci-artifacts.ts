// Finding an image's SOCI index and fetching its ztocs (docs/snapshotter.md §3.2–3.3): an explicit
// index digest first, then the v2 link (manifest annotation), then — when enabled — v1 referrers
// (referrers API or the `sha256-<hex>` fallback tag). Artifacts land in the artifact store (the
// local content store, or containerd's: artifact-store.ts), digest-verified on the way in, so later
// mounts of the same image need no network.
import type { Descriptor } from "../formats/oci.js";
import { parseManifest } from "../formats/oci.js";
import {
  ImageAnnotationSociIndexDigest,
  IndexAnnotationDisableXAttrs,
  IndexAnnotationSpanSize,
  goParseBool,
  parseSociIndex,
  prefetchesByLayer,
  SociIndexArtifactTypeV1,
  ztocsByLayer,
  type SociIndex,
} from "../formats/soci-index.js";
import { decodeZtoc, type Ztoc } from "../formats/ztoc.js";
import { parsePrefetchArtifact, type PrefetchArtifact } from "../formats/prefetch.js";
import {
  decodeLayerVerification,
  layerVerificationsByLayer,
  tocPartRanges,
  tocPartZtoc,
  verifyTocPart,
  type LayerVerification,
} from "../formats/layer-verification.js";
import { DigestMismatchError, FailedPreconditionError } from "../errors/errors.js";
import type { RegistryClient } from "../registry/client.js";
import { NotFoundError } from "../registry/errors.js";
import type { ImageRef } from "../registry/types.js";
import { isValidDigest } from "../store/digest.js";
import type { ArtifactStore, PutOptions } from "./artifact-store.js";
import { RegistryBlobFetcher, type BlobFetcher } from "./blob-fetcher.js";

/** The image has no usable SOCI index: the snapshotter defers it to containerd (§2.4). */
export class NoIndexError extends Error {
  override name = "NoIndexError";
}

export interface DiscoveryOptions {
  /** `soci.index.digest` label / `--index-digest`: use this index, skip discovery. */
  indexDigest?: string;
  /** `pull_modes.soci_v1.enable` (default false). */
  v1?: boolean;
  /** `pull_modes.soci_v2.enable` (default true). */
  v2?: boolean;
}

/** An index together with its ztoc/prefetch descriptors keyed by layer digest. */
export interface ResolvedIndex {
  descriptor: Descriptor;
  index: SociIndex;
  ztocs: Map<string, Descriptor>;
  prefetches: Map<string, Descriptor>;
  /** Layer verification artifacts (docs/formats.md §9) by layer digest. */
  verifications: Map<string, Descriptor>;
}

/** §3.2: which SOCI index serves `manifest` (descriptor of the image manifest, bytes if already fetched). */
export async function findSociIndex(
  client: RegistryClient,
  ref: ImageRef,
  manifest: Descriptor,
  opts: DiscoveryOptions = {},
  manifestBytes?: Uint8Array,
): Promise<Descriptor> {
  if (opts.indexDigest) {
    if (!isValidDigest(opts.indexDigest))
      throw new NoIndexError(`invalid SOCI index digest ${JSON.stringify(opts.indexDigest)}`);
    return { mediaType: "", digest: opts.indexDigest, size: 0 };
  }
  const v1 = opts.v1 ?? false;
  const v2 = opts.v2 ?? true;
  if (!v1 && !v2) throw new NoIndexError("all lazy pull modes are disabled");
  if (v2) {
    const bytes = manifestBytes ?? (await client.getManifest(ref, manifest)).bytes;
    const digest = parseManifest(bytes).annotations?.[ImageAnnotationSociIndexDigest];
    if (digest !== undefined) {
      if (!isValidDigest(digest))
        throw new NoIndexError(
          `image manifest ${manifest.digest} names an invalid SOCI index digest ${JSON.stringify(digest)}`,
        );
      return { mediaType: "", digest, size: 0 };
    }
  }
  if (v1) {
    const found = await client.referrers(ref, manifest.digest, SociIndexArtifactTypeV1);
    if (found[0]) return found[0];
  }
  throw new NoIndexError(`no SOCI index found for image manifest ${manifest.digest}`);
}

/**
 * Local copy first (trusted as is, its labels left alone), else from the registry into the store
 * (verified). The SOCI index is fetched as a manifest and put with `index` set.
 */
async function fetchArtifact(
  client: RegistryClient,
  ref: ImageRef,
  store: ArtifactStore,
  desc: Descriptor,
  manifest: boolean,
): Promise<Uint8Array> {
  if (await store.exists(desc.digest)) return store.get(desc.digest);
  const bytes = manifest
    ? (await client.getManifest({ ...ref, tag: undefined, digest: desc.digest }, desc.size > 0 ? desc : undefined))
        .bytes
    : await client.getBlob(ref, desc.digest, { size: desc.size > 0 ? desc.size : undefined, verify: true });
  const opts: PutOptions = manifest ? { index: true } : {};
  await store.put(bytes, { digest: desc.digest, size: bytes.length }, opts);
  return bytes;
}

/** Fetches a blob artifact (a ztoc, a prefetch list) into the store unless it is there. */
export async function storeArtifact(
  client: RegistryClient,
  ref: ImageRef,
  store: ArtifactStore,
  desc: Descriptor,
): Promise<void> {
  await fetchArtifact(client, ref, store, desc, false);
}

/** §3.3: the SOCI index document (stored in `store`), with its ztocs keyed by layer. */
export async function fetchSociIndex(
  client: RegistryClient,
  ref: ImageRef,
  store: ArtifactStore,
  desc: Descriptor,
): Promise<ResolvedIndex> {
  let bytes: Uint8Array;
  try {
    bytes = await fetchArtifact(client, ref, store, desc, true);
  } catch (e) {
    if (e instanceof NotFoundError)
      throw new NoIndexError(`SOCI index ${desc.digest} not found in ${ref.host}/${ref.repository}`, { cause: e });
    throw e;
  }
  const index = parseSociIndex(bytes);
  return {
    descriptor: { ...desc, size: bytes.length },
    index,
    ztocs: ztocsByLayer(index),
    prefetches: prefetchesByLayer(index),
    verifications: layerVerificationsByLayer(index),
  };
}

/** A layer's ztoc, decoded and checked against the layer it claims to index. */
export interface LayerZtoc {
  descriptor: Descriptor;
  ztoc: Ztoc;
  disableXattrs: boolean;
  spanSize?: number;
}

export async function fetchZtoc(
  client: RegistryClient,
  ref: ImageRef,
  store: ArtifactStore,
  desc: Descriptor,
  layer: Descriptor,
): Promise<LayerZtoc> {
  const ztoc = decodeZtoc(await fetchArtifact(client, ref, store, desc, false));
  if (layer.size > 0 && ztoc.compressedArchiveSize !== layer.size) {
    throw new Error(
      `ztoc ${desc.digest} describes ${ztoc.compressedArchiveSize} compressed bytes but layer ${layer.digest} has ${layer.size}`,
    );
  }
  return { ...ztocAnnotations(desc), ztoc };
}

export async function fetchPrefetch(
  client: RegistryClient,
  ref: ImageRef,
  store: ArtifactStore,
  desc: Descriptor,
): Promise<PrefetchArtifact> {
  return parsePrefetchArtifact(await fetchArtifact(client, ref, store, desc, false));
}

/**
 * A layer's verification artifact (docs/formats.md §9), digest-checked on the way in and checked
 * to describe this layer and the ztoc the index lists for it.
 */
export async function fetchLayerVerification(
  client: RegistryClient,
  ref: ImageRef,
  store: ArtifactStore,
  desc: Descriptor,
  layer: Descriptor,
  ztocDesc: Descriptor,
): Promise<LayerVerification> {
  const v = decodeLayerVerification(await fetchArtifact(client, ref, store, desc, false));
  if (v.layerDigest !== layer.digest || (layer.size > 0 && v.layerSize !== layer.size))
    throw new FailedPreconditionError(
      `layer verification artifact ${desc.digest} describes layer ${v.layerDigest} (${v.layerSize} bytes), not ${layer.digest}`,
    );
  if (v.ztocDigest !== ztocDesc.digest || (ztocDesc.size > 0 && v.ztocSize !== ztocDesc.size))
    throw new FailedPreconditionError(
      `layer verification artifact ${desc.digest} belongs to ztoc ${v.ztocDigest}, not ${ztocDesc.digest}`,
    );
  return v;
}

/**
 * The ztoc of a layer read with chunk verification: the whole ztoc when the store has it, else
 * only its TOC part (the ztoc without its checkpoints: two ranges in one request), checked against
 * the artifact. `complete` says whether the checkpoint windows came with it.
 */
export async function fetchZtocTocPart(
  client: RegistryClient,
  ref: ImageRef,
  store: ArtifactStore,
  ztocDesc: Descriptor,
  layer: Descriptor,
  v: LayerVerification,
): Promise<LayerZtoc & { complete: boolean }> {
  if (await store.exists(ztocDesc.digest))
    return { ...(await fetchZtoc(client, ref, store, ztocDesc, layer)), complete: true };
  const [[a0, a1], [b0, b1]] = tocPartRanges(v);
  const [head, tail] = (await client.fetchRanges(ref, ztocDesc.digest, [
    { start: a0, end: a1 },
    { start: b0, end: b1 },
  ])) as [Uint8Array, Uint8Array];
  if (head.length !== a1 - a0 || tail.length !== b1 - b0)
    throw new DigestMismatchError(`${v.ztocSize} bytes`, "a short ztoc", { what: `ztoc ${ztocDesc.digest} TOC part` });
  verifyTocPart(v, head, tail);
  const ztoc = decodeZtoc(tocPartZtoc(v, head, tail));
  if (layer.size > 0 && ztoc.compressedArchiveSize !== layer.size) {
    throw new FailedPreconditionError(
      `ztoc ${ztocDesc.digest} describes ${ztoc.compressedArchiveSize} compressed bytes but layer ${layer.digest} has ${layer.size}`,
    );
  }
  return { ...ztocAnnotations(ztocDesc), ztoc, complete: false };
}

/** What a ztoc descriptor's annotations say about its layer. */
function ztocAnnotations(desc: Descriptor): Omit<LayerZtoc, "ztoc"> {
  const flag = desc.annotations?.[IndexAnnotationDisableXAttrs];
  const span = desc.annotations?.[IndexAnnotationSpanSize];
  const out: Omit<LayerZtoc, "ztoc"> = { descriptor: desc, disableXattrs: flag !== undefined && safeBool(flag) };
  if (span !== undefined && /^\d+$/.test(span)) out.spanSize = Number(span);
  return out;
}

/**
 * What mounting an indexed layer lazily needs: its ztoc and — when the index lists a verification
 * artifact for the layer and `chunkVerification` is on — the artifact, with the ztoc then fetched
 * as its TOC part alone (its windows come per span, from `ztocFetcher`).
 */
export interface LayerArtifacts {
  ztoc: LayerZtoc;
  verification?: { artifact: LayerVerification; ztocFetcher?: BlobFetcher };
}

export async function fetchLayerArtifacts(
  client: RegistryClient,
  ref: ImageRef,
  store: ArtifactStore,
  layer: Descriptor,
  index: Pick<ResolvedIndex, "ztocs" | "verifications">,
  opts: { chunkVerification?: boolean } = {},
): Promise<LayerArtifacts> {
  const ztocDesc = index.ztocs.get(layer.digest);
  if (!ztocDesc) throw new FailedPreconditionError(`layer ${layer.digest} has no ztoc`);
  const desc = opts.chunkVerification === false ? undefined : index.verifications.get(layer.digest);
  if (!desc) return { ztoc: await fetchZtoc(client, ref, store, ztocDesc, layer) };
  const artifact = await fetchLayerVerification(client, ref, store, desc, layer, ztocDesc);
  const ztoc = await fetchZtocTocPart(client, ref, store, ztocDesc, layer, artifact);
  return {
    ztoc,
    verification: {
      artifact,
      ...(ztoc.complete ? {} : { ztocFetcher: new RegistryBlobFetcher(client, ref, ztocDesc.digest, ztocDesc.size) }),
    },
  };
}

function safeBool(s: string): boolean {
  try {
    return goParseBool(s);
  } catch {
    return false;
  }
}
