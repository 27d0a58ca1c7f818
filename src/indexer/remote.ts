// Images between registries without containerd: `soci convert <src-ref> <dst-ref>` streams each
// layer from the source registry into the index builder once (and, for another registry, uploads
// it from that same download), keeps only the new artifacts in a temporary layout, and pushes what
// the destination lacks (blobs first, manifests children-first, the index last; blobs of the same
// registry are mounted, not copied). `create`/`push` for v1.
import { InvalidArgumentError, NotFoundError } from "../errors/errors.js";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  isIndexType,
  isManifestType,
  MediaTypeImageManifest,
  parseIndex,
  parseManifest,
  type Descriptor,
  type Platform,
} from "../formats/oci.js";
import { matchPlatformStrict } from "../formats/platform.js";
import { SociIndexArtifactTypeV1, SociIndexArtifactTypeV2, type BuiltSociIndex } from "../formats/soci-index.js";
import { ContentStore } from "../store/content-store.js";
import { ArtifactsDb } from "../store/artifacts-db.js";
import { referrerDescriptor, type RegistryClient } from "../registry/client.js";
import { parseReference } from "../registry/reference.js";
import { teeStream } from "../registry/tee-stream.js";
import type { ImageRef } from "../registry/types.js";
import { BuildPool } from "./pool.js";
import { RegistrySource } from "../registry/blob-source.js";
import { buildIndexForManifest, convertImage, type BuildOptions, type LayerProgress } from "./index-builder.js";
import type { PlatformChoice } from "../store/image-manifests.js";
import { platformsFor } from "../store/image-manifests.js";
import { manifestForPlatform } from "../store/image-manifests.js";
import type { BlobSource } from "../store/blob-source.js";

/**
 * Pushes the graph under `root` from `store` to `ref` (tagged), skipping blobs already there. What
 * `store` lacks comes from `from` (the original image); blobs are mounted when `fromRef` is another
 * repository of the same registry.
 */
export async function pushImage(
  client: RegistryClient,
  store: ContentStore,
  root: Descriptor,
  ref: ImageRef,
  opts: { from?: BlobSource; fromRef?: ImageRef; log?: (line: string) => void } = {},
): Promise<void> {
  const src = opts.fromRef;
  const mountFrom = src && src.host === ref.host && src.repository !== ref.repository ? src.repository : undefined;
  const pushManifestTree = async (desc: Descriptor, tag?: string): Promise<void> => {
    let bytes: Uint8Array;
    if (await store.exists(desc.digest)) bytes = await store.get(desc.digest);
    else if (opts.from && (await opts.from.exists(desc.digest, desc.mediaType)))
      bytes = await opts.from.get(desc.digest, desc.mediaType);
    else return; // a platform that was not pulled
    if (isIndexType(desc.mediaType)) {
      for (const child of parseIndex(bytes).manifests ?? []) await pushManifestTree(child);
    } else {
      const m = parseManifest(bytes);
      // blobs in parallel (the client bounds concurrency); those the conversion did not write are
      // still in the source: mount or stream them across
      await Promise.all(
        [m.config, ...(m.layers ?? [])].map(async (blob) => {
          const local = await store.exists(blob.digest);
          if (!local && !opts.from)
            throw new NotFoundError(`blob ${blob.digest} is neither local nor in a source image`);
          const data = local
            ? await store.createReadStream(blob.digest)
            : await opts.from!.createReadStream(blob.digest);
          const pushed = await client.pushBlob(
            ref,
            data,
            { digest: blob.digest, size: blob.size, mediaType: blob.mediaType },
            { mountFrom },
          );
          opts.log?.(`${pushed.existed ? "skipped" : pushed.mounted ? "mounted" : "pushed"} blob ${blob.digest}`);
        }),
      );
    }
    await client.pushManifest(ref, bytes, desc.mediaType, tag ?? desc.digest);
  };
  await pushManifestTree(root, ref.tag ?? root.digest);
}

/** Every config and layer of the image's manifests (all platforms), by digest. */
export async function imageBlobs(source: BlobSource, root: Descriptor): Promise<Map<string, Descriptor>> {
  const manifests = isIndexType(root.mediaType)
    ? (parseIndex(await source.get(root.digest, root.mediaType)).manifests ?? []).filter((m) =>
        isManifestType(m.mediaType),
      )
    : [root];
  const blobs = new Map<string, Descriptor>();
  for (const m of manifests) {
    const body = parseManifest(await source.get(m.digest, m.mediaType));
    for (const b of [body.config, ...(body.layers ?? [])]) blobs.set(b.digest, b);
  }
  return blobs;
}

/** Pushes blobs of the image at `src` to `dst` (mounted on the same registry, else streamed). */
async function copyBlobs(client: RegistryClient, blobs: Descriptor[], src: ImageRef, dst: ImageRef): Promise<void> {
  const mountFrom = src.host === dst.host && src.repository !== dst.repository ? src.repository : undefined;
  await Promise.all(
    blobs.map((b) =>
      client.pushBlob(
        dst,
        client.blobStream(src, b.digest, { size: b.size }),
        { digest: b.digest, size: b.size, mediaType: b.mediaType },
        { mountFrom },
      ),
    ),
  );
}

/** Where a teed blob goes; resolves true once it is stored there. */
export type BlobSink = (desc: Descriptor, data: AsyncIterable<Uint8Array>) => Promise<unknown>;

/**
 * The source image for the builder, where every layer it reads is also written to the destination
 * (a registry upload, a layout) from the same download (a tee), so each layer is fetched once.
 */
export class TeeingSource implements BlobSource {
  private readonly sent = new Map<string, Promise<boolean>>();

  constructor(
    private readonly source: BlobSource,
    private readonly blobs: Map<string, Descriptor>,
    private readonly sink: BlobSink,
  ) {}

  get(digest: string, mediaType?: string): Promise<Uint8Array> {
    return this.source.get(digest, mediaType);
  }

  exists(digest: string, mediaType?: string): Promise<boolean> {
    return this.source.exists(digest, mediaType);
  }

  async createReadStream(digest: string): Promise<AsyncIterable<Uint8Array>> {
    const stream = await this.source.createReadStream(digest);
    const desc = this.blobs.get(digest);
    if (!desc || this.sent.has(digest)) return stream;
    const tee = teeStream(stream);
    // a copy that fails here is simply done again afterwards, from its own download
    this.sent.set(
      digest,
      this.sink(desc, tee.side)
        .then(
          () => true,
          () => false,
        )
        .finally(() => tee.cancelSide()),
    );
    return tee.main;
  }

  /** Digests stored at the destination while the builder read them. */
  async delivered(): Promise<Set<string>> {
    const done = new Set<string>();
    await Promise.all(
      [...this.sent].map(async ([d, p]) => {
        if (await p) done.add(d);
      }),
    );
    return done;
  }
}

export interface RemoteConvertOptions extends BuildOptions, PlatformChoice {
  log(line: string): void;
  progress?: LayerProgress;
}

/** `soci convert <src-ref> <dst-ref>`: registry to registry through a temporary layout. */
export async function convertRemote(
  client: RegistryClient,
  src: string,
  dst: string,
  opts: RemoteConvertOptions,
): Promise<Descriptor> {
  const srcRef = parseReference(src);
  const dstRef = parseReference(dst);
  if (!dstRef.tag || dstRef.digest)
    throw new InvalidArgumentError('the destination image must be a tagged ref of the form "registry/repository:tag"');
  const work = await mkdtemp(join(tmpdir(), "soci-convert-"));
  const pool = new BuildPool();
  const db = ArtifactsDb.open(join(work, "artifacts.db"));
  try {
    // layers stream from the source registry into the builder; only new artifacts land on disk
    const store = await ContentStore.open(join(work, "layout"));
    const source = new RegistrySource(client, srcRef);
    const root = await client.resolve(srcRef);
    const blobs = await imageBlobs(source, root);
    const ctx = { target: store, db, pool, log: opts.log, progress: opts.progress };
    let converted: Descriptor;
    if (srcRef.host === dstRef.host) {
      // same registry: the image's blobs are mounted while the builder works (no bytes move)
      const copying = copyBlobs(client, [...blobs.values()], srcRef, dstRef);
      copying.catch(() => {}); // awaited below
      converted = await convertImage({ ...ctx, source }, root, opts, opts);
      await copying;
    } else {
      // another registry: each layer the builder reads is uploaded from the same download; the
      // rest (configs, layers too small to index, other platforms) is copied afterwards
      const teeing = new TeeingSource(source, blobs, (desc, data) =>
        client.pushBlob(dstRef, data, { digest: desc.digest, size: desc.size, mediaType: desc.mediaType }),
      );
      converted = await convertImage({ ...ctx, source: teeing }, root, opts, opts);
      const sent = await teeing.delivered();
      await copyBlobs(
        client,
        [...blobs.values()].filter((b) => !sent.has(b.digest)),
        srcRef,
        dstRef,
      );
    }
    await pushImage(client, store, converted, dstRef, { from: source, fromRef: srcRef });
    return converted;
  } finally {
    db.close();
    await pool.destroy();
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * `soci create <ref>` for an image in a registry: pulls the platform manifests' blobs into a temp
 * layout, builds SOCI index v1 per platform into the local store (`target`, `db`).
 */
export async function createRemote(
  client: RegistryClient,
  src: string,
  target: ContentStore,
  db: ArtifactsDb,
  opts: RemoteConvertOptions,
): Promise<BuiltSociIndex[]> {
  const ref = parseReference(src);
  const pool = new BuildPool();
  try {
    const source = new RegistrySource(client, ref);
    const root = await client.resolve(ref);
    const { platforms, target: image } = await platformsFor(source, root, opts);
    const built: BuiltSociIndex[] = [];
    for (const platform of platforms) {
      const manifest = await manifestForPlatform(source, image, platform);
      built.push(
        await buildIndexForManifest(
          { source, target, db, pool, log: opts.log, progress: opts.progress },
          manifest,
          1,
          platform,
          opts,
          root.digest,
        ),
      );
    }
    return built;
  } finally {
    await pool.destroy();
  }
}

export type ExistingIndexPolicy = "warn" | "skip" | "allow";

/**
 * `soci push <ref>` (v1 only): for each platform manifest of the image, the newest v1 SOCI index
 * built for it is pushed with its blobs, and listed as a referrer of the manifest (the referrers
 * fallback tag when the registry does not track subjects itself).
 */
export async function pushSociIndexes(
  client: RegistryClient,
  dst: string,
  store: ContentStore,
  db: ArtifactsDb,
  opts: { existingIndex: ExistingIndexPolicy; platforms: Platform[]; log(line: string): void; quiet?: boolean },
): Promise<number> {
  const ref = parseReference(dst);
  const root = await client.resolve(ref);
  const manifests: Descriptor[] = [];
  if (isIndexType(root.mediaType)) {
    const index = parseIndex((await client.getManifest(ref, root)).bytes);
    for (const m of index.manifests ?? []) {
      if (isIndexType(m.mediaType) || m.artifactType) continue;
      if (opts.platforms.length && !(m.platform && opts.platforms.some((p) => matchPlatformStrict(p, m.platform!))))
        continue;
      manifests.push(m);
    }
  } else {
    manifests.push(root);
  }
  let pushed = 0;
  for (const m of manifests) {
    const entries = db.indexesForManifest(m.digest);
    if (entries.some((e) => e.artifactType === SociIndexArtifactTypeV2)) {
      opts.log(
        "[WARN] Skippping SOCI index manifest v2. You should push the whole image with higher level tools like finch or nerdctl.",
      );
    }
    const entry = entries.find((e) => e.artifactType === SociIndexArtifactTypeV1);
    if (!entry) {
      if (manifests.length === 1 || opts.platforms.length)
        throw new NotFoundError(`could not find any soci index manifest v1 to push for manifest ${m.digest}`);
      continue;
    }
    if (opts.existingIndex !== "allow") {
      const existing = await client.referrers(ref, m.digest, SociIndexArtifactTypeV1);
      if (existing.length > 0) {
        const msg =
          existing.length === 1
            ? `soci index found in remote repository with digest: ${existing[0]!.digest}`
            : "multiple soci indices found in remote repository";
        if (opts.existingIndex === "skip") {
          opts.log(`${msg}: skipping pushing artifacts for image manifest: ${m.digest}`);
          continue;
        }
        opts.log(`[WARN] ${msg}: pushing index anyway`);
      }
    }
    const indexBytes = await store.get(entry.digest);
    const index = parseManifest(indexBytes);
    opts.log(opts.quiet ? entry.digest : `pushing soci index with digest: ${entry.digest}`);
    for (const blob of [index.config, ...(index.layers ?? [])]) {
      const r = await client.pushBlob(ref, await store.createReadStream(blob.digest), {
        digest: blob.digest,
        size: blob.size,
        mediaType: blob.mediaType,
      });
      if (!opts.quiet)
        opts.log(
          r.existed
            ? `skipped artifact with digest: ${blob.digest}`
            : `successfully pushed artifact with digest: ${blob.digest}`,
        );
    }
    const res = await client.pushManifest(ref, indexBytes, MediaTypeImageManifest, entry.digest);
    if (!res.ociSubject)
      await client.addToReferrersFallback(ref, m.digest, referrerDescriptor(indexBytes, MediaTypeImageManifest));
    pushed++;
  }
  return pushed;
}
