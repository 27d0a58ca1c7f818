// Builds SOCI indexes for an image read through a BlobReader, written through a BlobWriter: ztocs per layer (§3.3), the index
// document (v1 `create` §3.4, v2 `convert` §3.5), prefetch artifacts (§3.7), and the artifacts DB
// records (§4.3). Layers are indexed in parallel on the build pool, each streamed once.
import { errorCodeOf, messageOf, NotFoundError, SociError, withContext } from "../errors/errors.js";
import { decodeZtoc, type Ztoc } from "../formats/ztoc.js";
import { selectLayer } from "../formats/layers.js";
import {
  buildSociIndex,
  EmptyConfigBytes,
  EmptyConfigDigest,
  EmptyIndexError,
  shouldDisableXattrs,
  SociIndexArtifactTypeV2,
  SociLayerMediaType,
  type BuiltSociIndex,
  type PrefetchEntry,
  type SociIndexVersion,
  type ZtocEntry,
} from "../formats/soci-index.js";
import {
  cleanPrefetchPath,
  fileSpanRange,
  marshalPrefetchArtifact,
  newPrefetchArtifact,
  normalizePrefetchSpans,
  PrefetchArtifactMediaType,
  type PrefetchSpan,
} from "../formats/prefetch.js";
import {
  isIndexType,
  isManifestType,
  MediaTypeImageManifest,
  parseManifest,
  type Descriptor,
  type Index,
  type Manifest,
  type Platform,
} from "../formats/oci.js";
import {
  addSociIndexDescriptor,
  imageIndexFromBytes,
  newImageIndex,
  reencodeManifest,
  serializeImageIndex,
  setManifestEntry,
  sociIndexV2Descriptor,
} from "../formats/convert-docs.js";
import { formatPlatform } from "../formats/platform.js";
import type { ArtifactsDb } from "../store/artifacts-db.js";
import { zinfoOf } from "../formats/zinfo.js";
import type { BlobReader, BlobWriter } from "../store/blobs.js";
import { manifestForPlatform, type PlatformChoice, platformsFor } from "../store/image-manifests.js";
import type { BuildPool } from "./pool.js";
import { verificationArtifact } from "./verification-artifact.js";

export interface BuildContext {
  /** Where the image's manifests, configs and layers are read from. */
  source: BlobReader;
  /** Where ztocs, prefetch artifacts, indexes (and converted manifests) are written (and reused from). */
  target: BlobReader & BlobWriter;
  db: ArtifactsDb;
  pool: BuildPool;
  /** Progress lines, as the reference prints them. */
  log(line: string): void;
  /** Live progress of layer builds (compressed bytes processed of the layer's size). */
  progress?: LayerProgress;
}

export interface LayerProgress {
  update(layerDigest: string, done: number, total: number): void;
  finish(layerDigest: string): void;
}

export interface BuildOptions {
  spanSize: number;
  minLayerSize: number;
  buildTool?: string;
  /** `--optimizations xattr` */
  xattrOptimization?: boolean;
  prefetchFiles?: string[];
  /** Rebuild ztocs even when the DB has one for the layer and span size. */
  force?: boolean;
  /**
   * `--chunk-verification`: also write each indexed layer's verification artifact (docs/formats.md
   * §9) with chunks of this size, listed in the index after the ztocs and prefetch artifacts.
   */
  verificationChunkSize?: number;
}

interface LayerResult {
  layer: Descriptor;
  ztoc?: { digest: string; size: number; toc: Ztoc };
  /** The layer's verification artifact (with `verificationChunkSize`). */
  verification?: Descriptor;
}

const text = (b: Uint8Array) => Buffer.from(b).toString("utf8");

/** The ztocs of one platform manifest's layers, in manifest order (built or reused). */
async function ztocsFor(ctx: BuildContext, manifest: Manifest, opts: BuildOptions): Promise<LayerResult[]> {
  const layers = manifest.layers ?? [];
  const results = await Promise.allSettled(layers.map((layer) => ztocForLayer(ctx, layer, opts)));
  const errors = results.flatMap((r) => (r.status === "rejected" ? [r.reason as Error] : []));
  if (errors.length > 0) throw layerFailures(errors);
  return results.map((r) => (r as PromiseFulfilledResult<LayerResult>).value);
}

/** The one failed layer's error, or every failed layer's message one a line (their class when they agree). */
function layerFailures(errors: Error[]): Error {
  if (errors.length === 1) return errors[0]!;
  const codes = new Set(errors.map((e) => errorCodeOf(e) ?? "Unknown"));
  const code = codes.size === 1 ? [...codes][0]! : "Unknown";
  return new SociError(code, errors.map((e) => e.message).join("\n"), { cause: errors[0] });
}

async function ztocForLayer(ctx: BuildContext, layer: Descriptor, opts: BuildOptions): Promise<LayerResult> {
  const sel = selectLayer(layer, opts.minLayerSize);
  if (!sel.build) {
    if (sel.message) ctx.log(sel.message);
    return { layer };
  }
  // the artifact needs the layer's chunk digests, i.e. a pass over the layer: no reuse then
  if (!opts.force && opts.verificationChunkSize === undefined) {
    const known = ctx.db.findZtoc(layer.digest, opts.spanSize);
    if (known && (await ctx.target.exists(known.digest))) {
      const toc = decodeZtoc(await ctx.target.get(known.digest));
      ctx.log(`layer ${layer.digest} -> ztoc ${known.digest} (already exists)`);
      return { layer, ztoc: { digest: known.digest, size: known.size, toc } };
    }
  }
  const built = await ctx.pool
    .buildZtoc(
      await ctx.source.createReadStream(layer.digest),
      {
        spanSize: opts.spanSize,
        compression: sel.compression === "gzip" ? "gzip" : "uncompressed",
        buildToolIdentifier: opts.buildTool,
        // the worker hashes the blob as it indexes it: a tampered or mislabelled blob fails the build
        expect: { digest: layer.digest, size: layer.size },
        ...(opts.verificationChunkSize !== undefined ? { chunkSize: opts.verificationChunkSize } : {}),
      },
      { onProgress: (done) => ctx.progress?.update(layer.digest, done, layer.size) },
    )
    .catch((err: unknown) => {
      // a truncated or corrupt layer: say which one
      throw messageOf(err).includes(layer.digest) ? err : withContext(err, `layer ${layer.digest}`);
    });
  ctx.progress?.finish(layer.digest);
  await ctx.target.put(built.bytes, { digest: built.digest, size: built.bytes.length });
  ctx.db.put({
    digest: built.digest,
    size: built.bytes.length,
    ociDigest: layer.digest,
    location: layer.digest,
    type: "soci_layer",
    mediaType: SociLayerMediaType,
    spanSize: opts.spanSize,
  });
  ctx.log(`layer ${layer.digest} -> ztoc ${built.digest}`);
  const result: LayerResult = {
    layer,
    ztoc: { digest: built.digest, size: built.bytes.length, toc: decodeZtoc(built.bytes) },
  };
  if (built.chunks) {
    const artifact = verificationArtifact(built.bytes, sel.compression === "gzip", layer, built.chunks);
    await ctx.target.put(artifact.bytes, { digest: artifact.descriptor.digest, size: artifact.descriptor.size });
    ctx.log(`layer ${layer.digest} -> verification artifact ${artifact.descriptor.digest}`);
    result.verification = artifact.descriptor;
  }
  return result;
}

/** Prefetch artifacts for the requested files (§3.7): top layer first, first matching name wins. */
async function prefetchArtifacts(ctx: BuildContext, layers: LayerResult[], files: string[]): Promise<PrefetchEntry[]> {
  const spans = new Map<number, PrefetchSpan[]>();
  for (const raw of files) {
    const path = cleanPrefetchPath(raw);
    let found = false;
    for (let i = layers.length - 1; i >= 0 && !found; i--) {
      const z = layers[i]!.ztoc;
      if (!z) continue;
      const entry = z.toc.toc.find((e) => text(e.name) === path);
      if (!entry) continue;
      const zinfo = zinfoOf(z.toc);
      const range = fileSpanRange(entry.uncompressedOffset, entry.uncompressedSize, (off) => zinfo.spanForOffset(off));
      spans.set(i, [...(spans.get(i) ?? []), range]);
      found = true;
    }
    if (!found) ctx.log(`[WARN] prefetch file ${raw} not found in any layer`);
  }
  const out: PrefetchEntry[] = [];
  for (let i = 0; i < layers.length; i++) {
    const s = spans.get(i);
    if (!s) continue;
    const { bytes, digest, size } = marshalPrefetchArtifact(newPrefetchArtifact(normalizePrefetchSpans(s)));
    await ctx.target.put(bytes, { digest, size });
    const layerDigest = layers[i]!.layer.digest;
    ctx.db.put({ digest, size, ociDigest: layerDigest, type: "soci_prefetch", mediaType: PrefetchArtifactMediaType });
    ctx.log(`Created prefetch artifact for layer ${layerDigest}: ${digest}`);
    out.push({ digest, size, layerDigest });
  }
  return out;
}

/** Builds (and stores) a SOCI index for one platform manifest. */
export async function buildIndexForManifest(
  ctx: BuildContext,
  manifestDesc: Descriptor,
  version: SociIndexVersion,
  platform: Platform,
  opts: BuildOptions,
  imageDigest = manifestDesc.digest,
): Promise<BuiltSociIndex> {
  const manifest = parseManifest(await ctx.source.get(manifestDesc.digest, manifestDesc.mediaType));
  const layers = await ztocsFor(ctx, manifest, opts);
  const ztocs: ZtocEntry[] = layers.flatMap(({ layer, ztoc }) =>
    ztoc
      ? [
          {
            ztocDigest: ztoc.digest,
            ztocSize: ztoc.size,
            layerDigest: layer.digest,
            layerMediaType: layer.mediaType,
            spanSize: opts.spanSize,
            disableXattrs: opts.xattrOptimization ? shouldDisableXattrs(ztoc.toc.toc) : false,
          },
        ]
      : [],
  );
  const prefetches = opts.prefetchFiles?.length ? await prefetchArtifacts(ctx, layers, opts.prefetchFiles) : [];
  const built = buildSociIndex({
    version,
    ztocs,
    prefetches,
    subject:
      version === 1
        ? { mediaType: manifestDesc.mediaType, digest: manifestDesc.digest, size: manifestDesc.size }
        : null,
    buildTool: opts.buildTool,
    extraBlobs: layers.flatMap((l) => (l.verification ? [l.verification] : [])),
  });
  await ctx.target.put(EmptyConfigBytes, { digest: EmptyConfigDigest, size: EmptyConfigBytes.length });
  await ctx.target.putDescriptor(built.descriptor, built.bytes);
  ctx.db.put({
    digest: built.digest,
    size: built.size,
    location: manifestDesc.digest,
    ociDigest: manifestDesc.digest,
    imageDigest,
    platform: formatPlatform(platform),
    type: "soci_index",
    mediaType: MediaTypeImageManifest,
    artifactType: built.descriptor.artifactType!,
  });
  return built;
}

/**
 * `soci convert` (§3.5): SOCI index v2 per platform, re-encoded manifests annotated with their
 * index digest, and a new OCI image index listing manifests and SOCI indexes. Returns its descriptor.
 */
export async function convertImage(
  ctx: BuildContext,
  root: Descriptor,
  choice: PlatformChoice,
  opts: BuildOptions,
): Promise<Descriptor> {
  const { platforms, target } = await platformsFor(ctx.source, root, choice);
  let index: Index = isIndexType(root.mediaType)
    ? imageIndexFromBytes(await ctx.source.get(root.digest, root.mediaType), root.mediaType)
    : newImageIndex(target);

  // one entry per platform (two platforms may even get byte-identical SOCI indexes)
  const built: { platform: Platform; manifest: Descriptor; sociIndex: BuiltSociIndex; newManifest?: string }[] = [];
  for (const platform of platforms) {
    const manifest = await manifestForPlatform(ctx.source, target, platform);
    try {
      built.push({
        platform,
        manifest,
        sociIndex: await buildIndexForManifest(ctx, manifest, 2, platform, opts, root.digest),
      });
    } catch (err) {
      if (!(err instanceof EmptyIndexError)) throw err;
      ctx.log(`no ztocs created for platform ${formatPlatform(platform)}: skipping`);
    }
  }
  if (built.length === 0) throw new EmptyIndexError();

  // annotateImages: every locally present image manifest is re-encoded as an OCI manifest.
  const manifests = index.manifests ?? [];
  for (let i = 0; i < manifests.length; i++) {
    const entry = manifests[i]!;
    if (entry.artifactType === SociIndexArtifactTypeV2 || !isManifestType(entry.mediaType)) continue;
    const forIt = built.find((b) => b.manifest.digest === entry.digest && b.newManifest === undefined);
    if (!(await ctx.source.exists(entry.digest, entry.mediaType))) {
      if (forIt) throw new NotFoundError(`manifest ${entry.digest} is indexed but not present`);
      continue;
    }
    const re = reencodeManifest(
      await ctx.source.get(entry.digest, entry.mediaType),
      forIt?.sociIndex.digest,
      entry.mediaType,
    );
    await ctx.target.put(re.bytes, { digest: re.digest, size: re.size });
    index = setManifestEntry(index, i, re);
    if (forIt) forIt.newManifest = re.digest;
  }
  for (const b of built) {
    const desc = sociIndexV2Descriptor(b.sociIndex, b.platform, b.newManifest);
    index = addSociIndexDescriptor(index, desc, b.platform);
  }
  const out = serializeImageIndex(index);
  await ctx.target.putDescriptor(out.descriptor, out.bytes);
  for (const b of built) {
    if (b.newManifest)
      ctx.db.updateIndexDigests(b.sociIndex.digest, { ociDigest: b.newManifest, imageDigest: out.descriptor.digest });
  }
  return out.descriptor;
}
