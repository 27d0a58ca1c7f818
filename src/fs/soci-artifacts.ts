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
import type { RegistryClient } from "../registry/client.js";
import { NotFoundError } from "../registry/errors.js";
import type { ImageRef } from "../registry/types.js";
import { DigestMismatchError, FailedPreconditionError, InvalidArgumentError } from "../errors/errors.js";
import { digestOf, isValidDigest, parseDigest } from "../store/digest.js";
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
  return decodeLayerZtoc(desc, await fetchArtifactBlob(client, ref, store, desc), layer);
}

/** A blob artifact's bytes (a ztoc, a prefetch list): from the store, else fetched into it. */
export function fetchArtifactBlob(
  client: RegistryClient,
  ref: ImageRef,
  store: ArtifactStore,
  desc: Descriptor,
): Promise<Uint8Array> {
  return fetchArtifact(client, ref, store, desc, false);
}

/**
 * A ztoc's bytes, checked against its descriptor's digest (they may have crossed a process
 * boundary), decoded, and checked against the layer it claims to index.
 */
export function decodeLayerZtoc(desc: Descriptor, bytes: Uint8Array, layer: Descriptor): LayerZtoc {
  const { algorithm } = parseDigest(desc.digest);
  const actual = digestOf(bytes, algorithm);
  if (actual !== desc.digest) throw new DigestMismatchError(desc.digest, actual, { what: "ztoc" });
  const ztoc = decodeZtoc(bytes);
  if (layer.size > 0 && ztoc.compressedArchiveSize !== layer.size) {
    throw new InvalidArgumentError(
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
 * A layer verification artifact's bytes (docs/formats.md §9), checked against its descriptor's
 * digest (they may have crossed a process boundary), decoded, and checked to describe this layer
 * and the ztoc the index lists for it.
 */
export function decodeLayerArtifact(
  desc: Descriptor,
  bytes: Uint8Array,
  layer: Descriptor,
  ztocDesc: Descriptor,
): LayerVerification {
  const actual = digestOf(bytes, parseDigest(desc.digest).algorithm);
  if (actual !== desc.digest)
    throw new DigestMismatchError(desc.digest, actual, { what: "layer verification artifact" });
  const v = decodeLayerVerification(bytes);
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

/** A ztoc's TOC part (the ztoc without its checkpoint windows), checked against the artifact and decoded. */
export function decodeZtocTocPart(
  ztocDesc: Descriptor,
  layer: Descriptor,
  v: LayerVerification,
  head: Uint8Array,
  tail: Uint8Array,
): LayerZtoc {
  const [[a0, a1], [b0, b1]] = tocPartRanges(v);
  if (head.length !== a1 - a0 || tail.length !== b1 - b0)
    throw new DigestMismatchError(`${v.ztocSize} bytes`, "a short ztoc", { what: `ztoc ${ztocDesc.digest} TOC part` });
  verifyTocPart(v, head, tail);
  // the TOC part's buffer is ours: the entries' names can be views of it (its zero-filled zinfo
  // range is never touched, so it costs no memory)
  const ztoc = decodeZtoc(tocPartZtoc(v, head, tail), { owned: true });
  if (layer.size > 0 && ztoc.compressedArchiveSize !== layer.size) {
    throw new FailedPreconditionError(
      `ztoc ${ztocDesc.digest} describes ${ztoc.compressedArchiveSize} compressed bytes but layer ${layer.digest} has ${layer.size}`,
    );
  }
  return { ...ztocAnnotations(ztocDesc), ztoc };
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
 * The bytes mounting an indexed layer lazily needs, as fetched (and handed to whoever serves the
 * layer, maybe across a process boundary, where `resolveLayerArtifacts` checks them again): the
 * whole ztoc, or — when the index lists a verification artifact for the layer, `chunkVerification`
 * is on and the ztoc is not in the store — the artifact and the ztoc's TOC part alone (its windows
 * come per span).
 */
export interface LayerArtifactBytes {
  ztoc: Descriptor;
  /** The whole ztoc. */
  ztocBlob?: Uint8Array;
  /** The ztoc's TOC part: the two byte ranges `tocPartRanges` names. */
  ztocTocPart?: { head: Uint8Array; tail: Uint8Array };
  verification?: { descriptor: Descriptor; blob: Uint8Array };
}

export async function fetchLayerArtifactBytes(
  client: RegistryClient,
  ref: ImageRef,
  store: ArtifactStore,
  layer: Descriptor,
  index: Pick<ResolvedIndex, "ztocs" | "verifications">,
  opts: { chunkVerification?: boolean } = {},
): Promise<LayerArtifactBytes> {
  const ztocDesc = index.ztocs.get(layer.digest);
  if (!ztocDesc) throw new FailedPreconditionError(`layer ${layer.digest} has no ztoc`);
  const desc = opts.chunkVerification === false ? undefined : index.verifications.get(layer.digest);
  if (!desc || (await store.exists(ztocDesc.digest))) {
    const ztocBlob = await fetchArtifactBlob(client, ref, store, ztocDesc);
    if (!desc) return { ztoc: ztocDesc, ztocBlob };
    return {
      ztoc: ztocDesc,
      ztocBlob,
      verification: { descriptor: desc, blob: await fetchArtifactBlob(client, ref, store, desc) },
    };
  }
  const blob = await fetchArtifactBlob(client, ref, store, desc);
  // checked here too: a bad artifact fails the Prepare before anything is handed over
  const v = decodeLayerArtifact(desc, blob, layer, ztocDesc);
  const [[a0, a1], [b0, b1]] = tocPartRanges(v);
  const [head, tail] = (await client.fetchRanges(ref, ztocDesc.digest, [
    { start: a0, end: a1 },
    { start: b0, end: b1 },
  ])) as [Uint8Array, Uint8Array];
  return { ztoc: ztocDesc, ztocTocPart: { head, tail }, verification: { descriptor: desc, blob } };
}

/** A layer's ztoc and, with a verification artifact, the artifact and how to fetch the ztoc's windows. */
export interface LayerArtifacts {
  ztoc: LayerZtoc;
  verification?: { artifact: LayerVerification; ztocFetcher?: BlobFetcher };
}

/**
 * Checks and decodes what `fetchLayerArtifactBytes` fetched. `ztocFetcher` makes the fetcher of the
 * ztoc's windows when only its TOC part came.
 */
export function resolveLayerArtifacts(
  got: LayerArtifactBytes,
  layer: Descriptor,
  ztocFetcher: (ztoc: Descriptor) => BlobFetcher,
): LayerArtifacts {
  const v =
    got.verification && decodeLayerArtifact(got.verification.descriptor, got.verification.blob, layer, got.ztoc);
  if (got.ztocBlob) {
    const ztoc = decodeLayerZtoc(got.ztoc, got.ztocBlob, layer);
    return v ? { ztoc, verification: { artifact: v } } : { ztoc };
  }
  if (!v || !got.ztocTocPart)
    throw new InvalidArgumentError(
      `layer ${layer.digest}: neither its ztoc nor its TOC part and verification artifact`,
    );
  const ztoc = decodeZtocTocPart(got.ztoc, layer, v, got.ztocTocPart.head, got.ztocTocPart.tail);
  return { ztoc, verification: { artifact: v, ztocFetcher: ztocFetcher(got.ztoc) } };
}

/** Fetches and resolves a layer's artifacts in one process (`soci mount`). */
export async function fetchLayerArtifacts(
  client: RegistryClient,
  ref: ImageRef,
  store: ArtifactStore,
  layer: Descriptor,
  index: Pick<ResolvedIndex, "ztocs" | "verifications">,
  opts: { chunkVerification?: boolean } = {},
): Promise<LayerArtifacts> {
  const got = await fetchLayerArtifactBytes(client, ref, store, layer, index, opts);
  return resolveLayerArtifacts(got, layer, (z) => new RegistryBlobFetcher(client, ref, z.digest, z.size));
}

function safeBool(s: string): boolean {
  try {
    return goParseBool(s);
  } catch {
    return false;
  }
}
