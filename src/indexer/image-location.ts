// Where an image is: a registry reference, an OCI layout directory (`oci:<dir>[:tag]`) or an OCI
// layout archive (`oci-archive:<file>[:tag]`). `soci convert` and `soci create` read from any of
// them and `soci convert` writes to any of them, so images move between disk and registry:
// the source is opened as a BlobReader (layers stream straight into the index builder), the new
// artifacts land in a temporary layout, and the destination receives the whole converted image
// (a registry gets what it lacks; a layout gets every blob of the image's graph). A layout
// destination is written beside it and moved in only once the conversion succeeded, so a failed
// convert leaves it as it was: a new layout is never created, an existing one is not touched.
import { FailedPreconditionError, InvalidArgumentError, NotFoundError } from "../errors/errors.js";
import { randomBytes } from "node:crypto";
import { copyFile, mkdir, mkdtemp, readdir, rename, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { isIndexType, isManifestType, parseIndex, parseManifest, type Descriptor } from "../formats/oci.js";
import type { BuiltSociIndex } from "../formats/soci-index.js";
import { ContentStore } from "../store/content-store.js";
import { ArtifactsDb } from "../store/artifacts-db.js";
import type { RegistryClient } from "../registry/client.js";
import { parseReference } from "../registry/reference.js";
import { BuildPool } from "./pool.js";
import { buildIndexForManifest, convertImage } from "./index-builder.js";
import { platformsFor } from "../store/image-manifests.js";
import { manifestForPlatform } from "../store/image-manifests.js";
import type { BlobReader } from "../store/blobs.js";
import { BLOBS_DIR } from "../store/oci-layout.js";
import { stageLayout, writeLayout } from "./oci-archive.js";
import { convertRemote, imageBlobs, pushImage, TeeingReader, type RemoteConvertOptions } from "./remote.js";
import { RegistrySource } from "../registry/blob-source.js";
import { layoutRootDescriptor } from "./standalone.js";

export type ImageLocation =
  | { kind: "registry"; ref: string }
  | { kind: "oci"; path: string; tag?: string }
  | { kind: "oci-archive"; path: string; tag?: string };

/**
 * Parses `oci:<path>[:tag]`, `oci-archive:<path>[:tag]` (skopeo's transports; the tag is what follows
 * the last ":" when it holds no "/"), else a registry reference. With `pathsAreLayouts`, a bare path
 * (starting with "/" or ".") is an OCI layout directory, as `soci create` has always accepted.
 */
export function parseImageLocation(spec: string, opts: { pathsAreLayouts?: boolean } = {}): ImageLocation {
  for (const kind of ["oci", "oci-archive"] as const) {
    const prefix = `${kind}:`;
    if (!spec.startsWith(prefix)) continue;
    const { path, tag } = splitTag(spec.slice(prefix.length));
    if (!path) throw new InvalidArgumentError(`${spec}: missing path after "${prefix}"`);
    return { kind, path, ...(tag !== undefined ? { tag } : {}) };
  }
  if (opts.pathsAreLayouts && (spec.startsWith("/") || spec.startsWith("."))) {
    const { path, tag } = splitTag(spec);
    return { kind: "oci", path, ...(tag !== undefined ? { tag } : {}) };
  }
  return { kind: "registry", ref: spec };
}

function splitTag(s: string): { path: string; tag?: string } {
  const colon = s.lastIndexOf(":");
  if (colon > 0 && !s.slice(colon).includes("/")) {
    const tag = s.slice(colon + 1);
    if (!tag) throw new InvalidArgumentError(`${s}: empty tag`);
    return { path: s.slice(0, colon), tag };
  }
  return { path: s };
}

export function formatImageLocation(loc: ImageLocation): string {
  if (loc.kind === "registry") return loc.ref;
  return `${loc.kind}:${loc.path}${loc.tag !== undefined ? `:${loc.tag}` : ""}`;
}

/** An image opened for reading; `registry` is set when its blobs live in a registry repository. */
export interface OpenedImage {
  source: BlobReader;
  root: Descriptor;
  registry?: { client: RegistryClient; source: RegistrySource };
  close(): Promise<void>;
}

/** The descriptor a layout names by tag, or its only image; ref-name annotation dropped. */
function layoutImage(store: ContentStore, name: string, tag: string | undefined): Descriptor | undefined {
  if (tag !== undefined) {
    const d = store.resolve(tag);
    if (!d) throw new NotFoundError(`${name}: no image tagged ${tag}`);
    return stripRefName(d);
  }
  const all = store.manifests();
  return all.length === 1 ? stripRefName(all[0]!) : undefined;
}

function stripRefName(d: Descriptor): Descriptor {
  if (!d.annotations?.["org.opencontainers.image.ref.name"]) return d;
  const { "org.opencontainers.image.ref.name": _drop, ...rest } = d.annotations;
  const out: Descriptor = { mediaType: d.mediaType, digest: d.digest, size: d.size };
  if (Object.keys(rest).length) out.annotations = rest;
  if (d.platform) out.platform = d.platform;
  if (d.artifactType) out.artifactType = d.artifactType;
  return out;
}

/** Opens an image for reading. `client` is only asked for when the location is a registry. */
export async function openImage(loc: ImageLocation, client: () => RegistryClient): Promise<OpenedImage> {
  const name = formatImageLocation(loc);
  if (loc.kind === "registry") {
    const c = client();
    const ref = parseReference(loc.ref);
    const source = new RegistrySource(c, ref);
    const root = await c.resolve(ref);
    return { source, root, registry: { client: c, source }, close: async () => {} };
  }
  if (loc.kind === "oci") {
    // a source layout is only read: never opened (which would create one) unless it is there
    const isDir = await stat(join(loc.path, "oci-layout")).then(
      (s) => s.isFile(),
      () => false,
    );
    if (!isDir) throw new NotFoundError(`${name}: no OCI layout at ${loc.path}`);
    const store = await ContentStore.openReadOnly(loc.path);
    const root = layoutImage(store, name, loc.tag);
    if (!root)
      throw new InvalidArgumentError(
        `${name}: the layout holds ${store.manifests().length} images; name one as oci:<dir>:<tag>`,
      );
    return { source: store, root, close: async () => {} };
  }
  const dir = await stageLayout(loc.path);
  try {
    const store = await ContentStore.open(dir);
    // untagged archives follow `convert --standalone` (§4.2): several entries ⇒ index.json is the list
    const root = layoutImage(store, name, loc.tag) ?? (await layoutRootDescriptor(store, dir));
    return { source: store, root, close: () => rm(dir, { recursive: true, force: true }) };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/** Every descriptor of the graph under `root` that `from` has (children not pulled are skipped). */
async function* graph(root: Descriptor, from: BlobReader[]): AsyncGenerator<{ desc: Descriptor; source: BlobReader }> {
  const holder = async (d: Descriptor) => {
    for (const s of from) if (await s.exists(d.digest, d.mediaType)) return s;
    return undefined;
  };
  const seen = new Set<string>();
  const stack: Descriptor[] = [root];
  while (stack.length) {
    const d = stack.pop()!;
    if (seen.has(d.digest)) continue;
    seen.add(d.digest);
    const s = await holder(d);
    if (!s) {
      if (isManifestType(d.mediaType) || isIndexType(d.mediaType)) continue; // a platform not pulled
      throw new NotFoundError(`blob ${d.digest} of the image is neither in the source nor among the new artifacts`);
    }
    yield { desc: d, source: s };
    if (isIndexType(d.mediaType)) stack.push(...(parseIndex(await s.get(d.digest, d.mediaType)).manifests ?? []));
    else if (isManifestType(d.mediaType)) {
      const m = parseManifest(await s.get(d.digest, d.mediaType));
      stack.push(m.config, ...(m.layers ?? []));
    }
  }
}

/**
 * Copies the graph under `root` into the layout store `out`. Blobs that `out` or `have` (the
 * destination's existing layout) already hold are neither looked up elsewhere nor copied.
 */
async function copyGraph(out: ContentStore, have: BlobReader[], root: Descriptor, from: BlobReader[]): Promise<void> {
  const copies: Promise<unknown>[] = [];
  const present = [out, ...have];
  let walk: { error: unknown } | undefined;
  try {
    for await (const { desc, source } of graph(root, [...present, ...from])) {
      if (present.includes(source)) continue;
      const expected = { digest: desc.digest, size: desc.size };
      const small = isManifestType(desc.mediaType) || isIndexType(desc.mediaType);
      copies.push(
        small
          ? source.get(desc.digest, desc.mediaType).then((b) => out.put(b, expected))
          : source.createReadStream(desc.digest).then((s) => out.put(s, expected)),
      );
    }
  } catch (error) {
    walk = { error };
  }
  // every write has ended before this returns or throws (the caller may remove `out` next)
  const failed = (await Promise.allSettled(copies)).find((r) => r.status === "rejected");
  if (walk) throw walk.error;
  if (failed) throw failed.reason;
}

/**
 * A layout being written. Until `commit`, blobs go to a staging layout (beside an `oci:`
 * destination, so they move in by rename; in the temp dir for an archive) and the destination is
 * not touched; `discard` removes the staging layout and any parent directory made for it.
 */
interface OutputLayout {
  staging: ContentStore;
  /** The destination's own layout when it already has one (read-only until commit). */
  existing?: ContentStore;
  commit(converted: Descriptor): Promise<void>;
  discard(): Promise<void>;
}

async function openOutputLayout(dst: LayoutLocation): Promise<OutputLayout> {
  if (dst.kind === "oci-archive") {
    const dir = await mkdtemp(join(tmpdir(), "soci-out-"));
    const staging = await ContentStore.open(dir).catch(async (err: unknown) => {
      await rm(dir, { recursive: true, force: true });
      throw err;
    });
    return {
      staging,
      async commit(converted) {
        await staging.tag(converted, dst.tag ?? converted.digest);
        await rm(join(dir, "ingest"), { recursive: true, force: true });
        await writeLayout(dir, dst.path, "oci-archive"); // removes a half-written archive itself
        await rm(dir, { recursive: true, force: true });
      },
      discard: () => rm(dir, { recursive: true, force: true }),
    };
  }
  const target = resolve(dst.path);
  const existing = await existingLayout(target);
  // staged beside the destination (same filesystem), with the modes a new directory gets there
  const madeParent = await mkdir(dirname(target), { recursive: true });
  const dir = join(dirname(target), `.${basename(target)}.soci-${randomBytes(6).toString("hex")}`);
  let staging: ContentStore;
  try {
    await mkdir(dir);
    staging = await ContentStore.open(dir);
  } catch (err) {
    await rm(madeParent ?? dir, { recursive: true, force: true });
    throw err;
  }
  return {
    staging,
    ...(existing ? { existing } : {}),
    async commit(converted) {
      const tag = dst.tag ?? converted.digest;
      await rm(join(dir, "ingest"), { recursive: true, force: true });
      if (!existing) {
        await staging.tag(converted, tag);
        // the whole layout appears at once (an empty directory there is replaced)
        const moved = await rename(dir, target).then(
          () => true,
          (err: NodeJS.ErrnoException) => {
            // `target` is a mount point: move blob by blob
            if (err.code === "EXDEV" || err.code === "EBUSY") return false;
            throw err;
          },
        );
        if (moved) return;
      }
      // blobs first, then one atomic index.json write names the image
      await moveBlobs(dir, target);
      await (await ContentStore.open(target)).tag(converted, tag);
      await rm(dir, { recursive: true, force: true });
    },
    async discard() {
      await rm(madeParent ?? dir, { recursive: true, force: true });
    },
  };
}

/** The layout at `dir` opened read-only, or undefined when `dir` is missing or an empty directory. */
async function existingLayout(dir: string): Promise<ContentStore | undefined> {
  const st = await stat(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return undefined;
    throw err;
  });
  if (!st) return undefined;
  if (!st.isDirectory()) throw new FailedPreconditionError(`${dir}: not a directory`);
  if ((await readdir(dir)).length === 0) return undefined;
  return ContentStore.openReadOnly(dir);
}

/** Moves every blob of layout `from` into layout `to` (blobs `to` has are kept as they are). */
async function moveBlobs(from: string, to: string): Promise<void> {
  for (const alg of await readdir(join(from, BLOBS_DIR))) {
    const src = join(from, BLOBS_DIR, alg);
    const dst = join(to, BLOBS_DIR, alg);
    await mkdir(dst, { recursive: true });
    for (const name of await readdir(src)) {
      const there = await stat(join(dst, name)).then(
        () => true,
        () => false,
      );
      if (there) continue;
      await rename(join(src, name), join(dst, name)).catch(async (err: NodeJS.ErrnoException) => {
        if (err.code !== "EXDEV") throw err;
        // another filesystem: copy under a temporary name, then rename, so no partial blob shows
        const tmp = join(dst, `.${name}.tmp`);
        await copyFile(join(src, name), tmp);
        await rename(tmp, join(dst, name));
      });
    }
  }
}

type LayoutLocation = Extract<ImageLocation, { kind: "oci" | "oci-archive" }>;

/**
 * `soci convert <src> <dst>` for any pair of locations. Registry to registry keeps its own path
 * (./remote.ts: blobs mounted within a registry, teed to another one).
 */
export async function convertLocations(
  src: string,
  dst: string,
  client: () => RegistryClient,
  opts: RemoteConvertOptions,
): Promise<Descriptor> {
  const from = parseImageLocation(src);
  const to = parseImageLocation(dst);
  if (from.kind === "registry" && to.kind === "registry") return convertRemote(client(), src, dst, opts);
  if (to.kind === "registry") {
    const r = parseReference(to.ref);
    if (!r.tag || r.digest)
      throw new InvalidArgumentError(
        'the destination image must be a tagged ref of the form "registry/repository:tag"',
      );
  }
  const image = await openImage(from, client);
  const work = await mkdtemp(join(tmpdir(), "soci-convert-"));
  const pool = new BuildPool();
  const db = ArtifactsDb.open(join(work, "artifacts.db"));
  let output: OutputLayout | undefined;
  let teeing: TeeingReader | undefined;
  try {
    if (to.kind !== "registry") output = await openOutputLayout(to);
    const target = await ContentStore.open(join(work, "layout"));
    let source: BlobReader = image.source;
    if (image.registry && output) {
      // registry → layout: each layer the builder downloads is staged for the layout as it streams
      teeing = new TeeingReader(image.source, await imageBlobs(image.source, image.root), output.staging);
      source = teeing;
    }
    const converted = await convertImage(
      { source, target, db, pool, log: opts.log, progress: opts.progress },
      image.root,
      opts,
      opts,
    );
    if (to.kind === "registry") {
      await pushImage(client(), target, converted, parseReference(to.ref), {
        from: image.source,
        ...(image.registry ? { fromRef: image.registry.source.ref } : {}),
      });
    } else {
      await teeing?.delivered();
      const out = output!;
      await copyGraph(out.staging, out.existing ? [out.existing] : [], converted, [target, image.source]);
      await out.commit(converted);
    }
    return converted;
  } catch (err) {
    // nothing may still be writing when the staged output is removed
    await teeing?.abort();
    await output?.discard();
    throw err;
  } finally {
    db.close();
    await pool.destroy();
    await rm(work, { recursive: true, force: true });
    await image.close();
  }
}

/** `soci create <src>`: SOCI index v1 per platform of an opened image, into the local store. */
export async function createIndexes(
  image: OpenedImage,
  target: ContentStore,
  db: ArtifactsDb,
  opts: RemoteConvertOptions,
): Promise<BuiltSociIndex[]> {
  const pool = new BuildPool();
  try {
    const { platforms, target: chosen } = await platformsFor(image.source, image.root, opts);
    const built: BuiltSociIndex[] = [];
    for (const platform of platforms) {
      const manifest = await manifestForPlatform(image.source, chosen, platform);
      built.push(
        await buildIndexForManifest(
          { source: image.source, target, db, pool, log: opts.log, progress: opts.progress },
          manifest,
          1,
          platform,
          opts,
          image.root.digest,
        ),
      );
    }
    return built;
  } finally {
    await pool.destroy();
  }
}
