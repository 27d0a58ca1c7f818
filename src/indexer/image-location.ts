// Where an image is: a registry reference, an OCI layout directory (`oci:<dir>[:tag]`) or an OCI
// layout archive (`oci-archive:<file>[:tag]`). `soci convert` and `soci create` read from any of
// them and `soci convert` writes to any of them, so images move between disk and registry:
// the source is opened as a BlobSource (layers stream straight into the index builder), the new
// artifacts land in a temporary layout, and the destination receives the whole converted image
// (a registry gets what it lacks; a layout gets every blob of the image's graph).
import { InvalidArgumentError, NotFoundError } from "../errors/errors.js";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
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
import type { BlobSource } from "../store/blob-source.js";
import { stageLayout, writeLayout } from "./oci-archive.js";
import { convertRemote, imageBlobs, pushImage, TeeingSource, type RemoteConvertOptions } from "./remote.js";
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
  source: BlobSource;
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
    const store = await ContentStore.open(loc.path);
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
async function* graph(root: Descriptor, from: BlobSource[]): AsyncGenerator<{ desc: Descriptor; source: BlobSource }> {
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

/** Copies the graph under `root` into the layout store `out` (present blobs are not read again). */
async function copyGraph(out: ContentStore, root: Descriptor, from: BlobSource[]): Promise<void> {
  const copies: Promise<unknown>[] = [];
  // `out` first: what it already holds (teed layers, earlier images) is neither looked up nor copied
  for await (const { desc, source } of graph(root, [out, ...from])) {
    if (source === out) continue;
    const small = isManifestType(desc.mediaType) || isIndexType(desc.mediaType);
    copies.push(
      small
        ? out.put(await source.get(desc.digest, desc.mediaType), { digest: desc.digest, size: desc.size })
        : source.createReadStream(desc.digest).then((s) => out.put(s, { digest: desc.digest, size: desc.size })),
    );
  }
  await Promise.all(copies);
}

/** A layout being written: the destination directory itself, or a temp dir for an archive. */
async function openOutputLayout(
  dst: LayoutLocation,
): Promise<{ out: ContentStore; finish(converted: Descriptor): Promise<void>; close(): Promise<void> }> {
  const dir = dst.kind === "oci" ? dst.path : await mkdtemp(join(tmpdir(), "soci-out-"));
  const out = await ContentStore.open(dir);
  return {
    out,
    async finish(converted) {
      await out.tag(converted, dst.tag ?? converted.digest);
      await rm(join(dir, "ingest"), { recursive: true, force: true });
      if (dst.kind === "oci-archive") await writeLayout(dir, dst.path, "oci-archive");
    },
    async close() {
      if (dst.kind === "oci-archive") await rm(dir, { recursive: true, force: true });
    },
  };
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
  let output: Awaited<ReturnType<typeof openOutputLayout>> | undefined;
  try {
    if (to.kind !== "registry") output = await openOutputLayout(to);
    const target = await ContentStore.open(join(work, "layout"));
    let source: BlobSource = image.source;
    let teeing: TeeingSource | undefined;
    if (image.registry && output) {
      // registry → layout: each layer the builder downloads is written to the layout as it streams
      const out = output.out;
      teeing = new TeeingSource(image.source, await imageBlobs(image.source, image.root), (d, data) =>
        out.put(data, { digest: d.digest, size: d.size }),
      );
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
      await copyGraph(output!.out, converted, [target, image.source]);
      await output!.finish(converted);
    }
    return converted;
  } finally {
    db.close();
    await pool.destroy();
    await rm(work, { recursive: true, force: true });
    await output?.close();
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
