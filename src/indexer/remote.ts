// Images between registries without containerd: `soci convert <src-ref> <dst-ref>` streams each
// layer from the source registry into the index builder once (and, for another registry, uploads
// it from that same download), keeps only the new artifacts in a temporary layout, and pushes what
// the destination lacks (blobs first, manifests children-first, the index last; blobs of the same
// registry are mounted, not copied). `soci push` of v1 indexes.
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
import { SociIndexArtifactTypeV1, SociIndexArtifactTypeV2 } from "../formats/soci-index.js";
import { ContentStore } from "../store/content-store.js";
import { ArtifactsDb } from "../store/artifacts-db.js";
import { referrerDescriptor, type RegistryClient } from "../registry/client.js";
import { parseReference } from "../registry/reference.js";
import { teeStream } from "../registry/tee-stream.js";
import type { ImageRef } from "../registry/types.js";
import { BuildPool } from "./pool.js";
import { RegistrySource } from "../registry/blob-source.js";
import { convertImage, type BuildOptions, type LayerProgress } from "./index-builder.js";
import type { PlatformChoice } from "../store/image-manifests.js";
import type { BlobReader, BlobWriter } from "../store/blobs.js";

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
  opts: { from?: BlobReader; fromRef?: ImageRef; log?: (line: string) => void } = {},
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
export async function imageBlobs(source: BlobReader, root: Descriptor): Promise<Map<string, Descriptor>> {
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

/** Blob uploads to repository `ref`, as a BlobWriter's `put` (the tee's destination). */
export function registryBlobWriter(client: RegistryClient, ref: ImageRef): Pick<BlobWriter, "put"> {
  return {
    async put(content, expected) {
      if (expected.size === undefined) throw new InvalidArgumentError(`blob ${expected.digest}: upload needs its size`);
      const data = content instanceof Uint8Array || Symbol.asyncIterator in content ? content : asAsync(content);
      const r = await client.pushBlob(ref, data, { ...expected, size: expected.size });
      return { digest: r.digest, size: r.size };
    },
  };
}

async function* asAsync(chunks: Iterable<Uint8Array>): AsyncIterable<Uint8Array> {
  yield* chunks;
}

/**
 * The source image for the builder, where every layer it reads is also written to a destination
 * (a registry upload, a layout) from the same download (a tee), so each layer is fetched once.
 */
export class TeeingReader implements BlobReader {
  private readonly copies = new Map<string, { stored: Promise<boolean>; cancel(): void }>();

  constructor(
    private readonly source: BlobReader,
    private readonly blobs: Map<string, Descriptor>,
    private readonly sink: Pick<BlobWriter, "put">,
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
    if (!desc || this.copies.has(digest)) return stream;
    const tee = teeStream(stream);
    // a copy that fails here is simply done again afterwards, from its own download
    const stored = this.sink.put(tee.side, desc).then(
      () => true,
      () => false,
    );
    this.copies.set(digest, { stored: stored.finally(() => tee.cancelSide()), cancel: () => tee.cancelSide() });
    return tee.main;
  }

  /** Digests stored at the destination while the builder read them. */
  async delivered(): Promise<Set<string>> {
    const done = new Set<string>();
    await Promise.all(
      [...this.copies].map(async ([d, c]) => {
        if (await c.stored) done.add(d);
      }),
    );
    return done;
  }

  /**
   * Ends every copy still running (its writer sees the stream cut short and stores nothing) and
   * waits for all of them: after a failed build, nothing is left writing to the destination.
   */
  async abort(): Promise<void> {
    for (const c of this.copies.values()) c.cancel();
    await Promise.all([...this.copies.values()].map((c) => c.stored));
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
      const teeing = new TeeingReader(source, blobs, registryBlobWriter(client, dstRef));
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
