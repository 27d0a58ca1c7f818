// Images between a registry and a local OCI layout, and `soci convert <src-ref> <dst-ref>`
// without containerd: pull the image (the selected platforms), convert it like the standalone
// path, push what the destination lacks (blobs first, manifests children-first, the index last).
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isIndexType, MediaTypeImageManifest, parseIndex, parseManifest, type Descriptor, type Platform } from "../formats/oci.js";
import { matchPlatformStrict } from "../formats/platform.js";
import { SociIndexArtifactTypeV1, SociIndexArtifactTypeV2, type BuiltSociIndex } from "../formats/soci-index.js";
import { ContentStore } from "../store/content-store.js";
import { ArtifactsDb } from "../store/artifacts-db.js";
import { referrerDescriptor, type RegistryClient } from "../registry/client.js";
import { parseReference } from "../registry/reference.js";
import type { ImageRef } from "../registry/types.js";
import { BuildPool } from "./pool.js";
import {
  buildIndexForManifest, convertImage, manifestForPlatform, platformsFor, type BuildOptions, type LayerProgress, type PlatformChoice,
} from "./index-builder.js";

/** Copies a manifest's config and layers into the store (streamed, digest-verified). */
async function pullManifest(client: RegistryClient, ref: ImageRef, store: ContentStore, desc: Descriptor): Promise<void> {
  const { bytes } = await client.getManifest(ref, desc);
  const m = parseManifest(bytes);
  for (const blob of [m.config, ...(m.layers ?? [])]) {
    if (await store.exists(blob.digest)) continue;
    await store.put(client.blobStream(ref, blob.digest, { size: blob.size }), { digest: blob.digest, size: blob.size });
  }
  await store.putDescriptor(desc, bytes);
}

/**
 * Pulls `ref` into `store`: a single manifest whole, or an index with the children that match
 * `platforms` (all when empty). Children left out stay listed but absent, as in a partial pull.
 */
export async function pullImage(client: RegistryClient, ref: ImageRef, store: ContentStore, platforms: Platform[] = []): Promise<Descriptor> {
  const root = await client.resolve(ref);
  if (!isIndexType(root.mediaType)) {
    await pullManifest(client, ref, store, root);
    return root;
  }
  const { bytes } = await client.getManifest(ref, root);
  const index = parseIndex(bytes);
  for (const child of index.manifests ?? []) {
    if (isIndexType(child.mediaType) || child.artifactType === SociIndexArtifactTypeV2) continue;
    if (platforms.length > 0 && !(child.platform && platforms.some((p) => matchPlatformStrict(p, child.platform!)))) continue;
    await pullManifest(client, ref, store, child);
  }
  await store.putDescriptor(root, bytes);
  return root;
}

/** Pushes the graph under `root` from `store` to `ref` (tagged), skipping blobs already there. */
export async function pushImage(
  client: RegistryClient,
  store: ContentStore,
  root: Descriptor,
  ref: ImageRef,
  opts: { mountFrom?: ImageRef; log?: (line: string) => void } = {},
): Promise<void> {
  const mountFrom = opts.mountFrom && opts.mountFrom.host === ref.host && opts.mountFrom.repository !== ref.repository ? opts.mountFrom.repository : undefined;
  const pushManifestTree = async (desc: Descriptor, tag?: string): Promise<void> => {
    if (!(await store.exists(desc.digest))) return; // a platform that was not pulled
    const bytes = await store.get(desc.digest);
    if (isIndexType(desc.mediaType)) {
      for (const child of parseIndex(bytes).manifests ?? []) await pushManifestTree(child);
    } else {
      const m = parseManifest(bytes);
      for (const blob of [m.config, ...(m.layers ?? [])]) {
        const size = await store.size(blob.digest);
        const pushed = await client.pushBlob(ref, await store.createReadStream(blob.digest), { digest: blob.digest, size, mediaType: blob.mediaType }, { mountFrom });
        opts.log?.(`${pushed.existed ? "skipped" : pushed.mounted ? "mounted" : "pushed"} blob ${blob.digest}`);
      }
    }
    await client.pushManifest(ref, bytes, desc.mediaType, tag ?? desc.digest);
  };
  await pushManifestTree(root, ref.tag ?? root.digest);
}

export interface RemoteConvertOptions extends BuildOptions, PlatformChoice {
  log(line: string): void;
  progress?: LayerProgress;
}

/** `soci convert <src-ref> <dst-ref>`: registry to registry through a temporary layout. */
export async function convertRemote(client: RegistryClient, src: string, dst: string, opts: RemoteConvertOptions): Promise<Descriptor> {
  const srcRef = parseReference(src);
  const dstRef = parseReference(dst);
  if (!dstRef.tag || dstRef.digest) throw new Error('the destination image must be a tagged ref of the form "registry/repository:tag"');
  const work = await mkdtemp(join(tmpdir(), "soci-convert-"));
  const pool = new BuildPool();
  const db = ArtifactsDb.open(join(work, "artifacts.db"));
  try {
    const store = await ContentStore.open(join(work, "layout"));
    const root = await pullImage(client, srcRef, store, opts.allPlatforms ? [] : opts.platforms ?? []);
    const converted = await convertImage({ source: store, target: store, db, pool, log: opts.log, progress: opts.progress }, root, opts, opts);
    await pushImage(client, store, converted, dstRef, { mountFrom: srcRef });
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
  const work = await mkdtemp(join(tmpdir(), "soci-create-"));
  const pool = new BuildPool();
  try {
    const source = await ContentStore.open(join(work, "layout"));
    // all platforms are pulled unless some were named; the builder then picks the default one
    const root = await pullImage(client, ref, source, opts.allPlatforms ? [] : opts.platforms ?? []);
    const { platforms, target: image } = await platformsFor(source, root, opts);
    const built: BuiltSociIndex[] = [];
    for (const platform of platforms) {
      const manifest = await manifestForPlatform(source, image, platform);
      built.push(await buildIndexForManifest({ source, target, db, pool, log: opts.log, progress: opts.progress }, manifest, 1, platform, opts, root.digest));
    }
    return built;
  } finally {
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
      if (opts.platforms.length && !(m.platform && opts.platforms.some((p) => matchPlatformStrict(p, m.platform!)))) continue;
      manifests.push(m);
    }
  } else {
    manifests.push(root);
  }
  let pushed = 0;
  for (const m of manifests) {
    const entries = db.indexesForManifest(m.digest);
    if (entries.some((e) => e.artifactType === SociIndexArtifactTypeV2)) {
      opts.log("[WARN] Skippping SOCI index manifest v2. You should push the whole image with higher level tools like finch or nerdctl.");
    }
    const entry = entries.find((e) => e.artifactType === SociIndexArtifactTypeV1);
    if (!entry) {
      if (manifests.length === 1 || opts.platforms.length) throw new Error(`could not find any soci index manifest v1 to push for manifest ${m.digest}`);
      continue;
    }
    if (opts.existingIndex !== "allow") {
      const existing = await client.referrers(ref, m.digest, SociIndexArtifactTypeV1);
      if (existing.length > 0) {
        const msg = existing.length === 1 ? `soci index found in remote repository with digest: ${existing[0]!.digest}` : "multiple soci indices found in remote repository";
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
      const r = await client.pushBlob(ref, await store.createReadStream(blob.digest), { digest: blob.digest, size: blob.size, mediaType: blob.mediaType });
      if (!opts.quiet) opts.log(r.existed ? `skipped artifact with digest: ${blob.digest}` : `successfully pushed artifact with digest: ${blob.digest}`);
    }
    const res = await client.pushManifest(ref, indexBytes, MediaTypeImageManifest, entry.digest);
    if (!res.ociSubject) await client.addToReferrersFallback(ref, m.digest, referrerDescriptor(indexBytes, MediaTypeImageManifest));
    pushed++;
  }
  return pushed;
}
