// The CLI's local state (FORMATS.md §4.1): `<root>/artifacts.db` and the SOCI content store at
// `<root>/content`, chosen by the global `--root` / `--content-store` flags, plus the containerd
// lookups the reference's inspection commands make, answered from the content store instead.
//
// There is no containerd integration yet:
// * `--content-store containerd` fails with NotImplementedError wherever a command needs content;
// * an image reference (`index list --ref`, `index rm --ref`, `ztoc list --image-ref`) resolves
//   only to content already in the SOCI content store: a digest (`sha256:…`, or `name@sha256:…`)
//   of a manifest or index blob there, or a name recorded in its `index.json`
//   (`org.opencontainers.image.ref.name`). Anything else is `image "<ref>": not found`, the error
//   containerd's image service gives for an unknown image.
import { mkdir } from "node:fs/promises";
import type { Command } from "commander";
import { NotImplementedError } from "./errors.js";
import { ArtifactsDb, type ArtifactEntry } from "../store/artifacts-db.js";
import { ContentStore } from "../store/content-store.js";
import { ArtifactNotFoundError, BlobNotFoundError } from "../store/errors.js";
import { artifactsDbPath, contentStorePath, DEFAULT_SOCI_ROOT } from "../store/paths.js";
import { isValidDigest } from "../store/digest.js";
import { parseGoJson, JsonObject } from "../formats/go-json.js";
import {
  isConfigType, isIndexType, isManifestType, MediaTypeImageIndex, MediaTypeImageManifest, parseIndex, parseManifest,
  type Descriptor, type Platform,
} from "../formats/oci.js";
import { matchPlatformStrict, platformFromImageConfig } from "../formats/platform.js";

export const CONTENT_STORE_SOCI = "soci";
export const CONTENT_STORE_CONTAINERD = "containerd";

/** The global flags every inspection command reads. */
export interface GlobalFlags {
  root: string;
  contentStore: string;
}

/** `--root` and `--content-store` as given to `soci` (commander's `optsWithGlobals`). */
export function globalFlags(cmd: Command): GlobalFlags {
  const o = cmd.optsWithGlobals() as { root?: string; contentStore?: string };
  return { root: o.root || DEFAULT_SOCI_ROOT, contentStore: o.contentStore ?? CONTENT_STORE_CONTAINERD };
}

/** A failure that containerd would report as `errdefs.ErrNotFound` (message `… not found`). */
export class NotFoundError extends Error {
  override name = "NotFoundError";
}

// ------------------------------------------------------------------------------------------------
// go-digest

const DIGEST_FORMAT_RE = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;
const ALGORITHM_HEX: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128 };

/** `digest.Parse`: the digest, or the go-digest error messages. */
export function parseGoDigest(s: string): string {
  const i = s.indexOf(":");
  if (i <= 0 || i + 1 === s.length) throw new Error("invalid checksum digest format");
  const alg = s.slice(0, i);
  const encoded = s.slice(i + 1);
  const hexLen = ALGORITHM_HEX[alg];
  if (hexLen === undefined) {
    if (!DIGEST_FORMAT_RE.test(s)) throw new Error("invalid checksum digest format");
    throw new Error("unsupported digest algorithm");
  }
  if (encoded.length !== hexLen) throw new Error("invalid checksum digest length");
  if (!/^[a-f0-9]+$/.test(encoded)) throw new Error("invalid checksum digest format");
  return s;
}

// ------------------------------------------------------------------------------------------------
// The store

export class LocalStore {
  private dbHandle: ArtifactsDb | undefined;
  private content: ContentStore | undefined;

  private constructor(readonly flags: GlobalFlags) {}

  /** Creates the root directory (mode 0700) if it is missing, as the reference CLI's Before hook does. */
  static async open(cmd: Command): Promise<LocalStore> {
    const flags = globalFlags(cmd);
    await mkdir(flags.root, { recursive: true, mode: 0o700 });
    return new LocalStore(flags);
  }

  get root(): string {
    return this.flags.root;
  }

  /** The artifacts database (opened, and created 0600 if needed, on first use). */
  get db(): ArtifactsDb {
    this.dbHandle ??= ArtifactsDb.open(artifactsDbPath(this.flags.root));
    return this.dbHandle;
  }

  /** Path of the content store's top directory (`<root>/content`). */
  contentStorePath(): string {
    this.checkContentStoreType();
    return contentStorePath(this.flags.root);
  }

  /** The content store selected by `--content-store` (`store.NewContentStore`). */
  async contentStore(): Promise<ContentStore> {
    if (!this.content) this.content = await ContentStore.open(this.contentStorePath());
    return this.content;
  }

  close(): void {
    this.dbHandle?.close();
  }

  private checkContentStoreType(): void {
    const t = this.flags.contentStore === "" ? CONTENT_STORE_CONTAINERD : this.flags.contentStore;
    if (t === CONTENT_STORE_CONTAINERD) throw new NotImplementedError("the containerd content store (use --content-store soci)");
    if (t !== CONTENT_STORE_SOCI) {
      throw new Error(`unknown content store type: ${t}; must be one of [${CONTENT_STORE_SOCI} ${CONTENT_STORE_CONTAINERD}]`);
    }
  }
}

/** Runs `f` with the local store, closing the database afterwards. */
export async function withLocalStore<T>(cmd: Command, f: (s: LocalStore) => Promise<T>): Promise<T> {
  const s = await LocalStore.open(cmd);
  try {
    return await f(s);
  } finally {
    s.close();
  }
}

// ------------------------------------------------------------------------------------------------
// Artifacts DB lookups with the reference's messages

/** `GetArtifactEntry`: an empty database has no `soci_artifacts` bucket yet, as in bbolt. */
export function getArtifactEntry(db: ArtifactsDb, digest: string): ArtifactEntry {
  const e = db.find(digest);
  if (e) return e;
  if (db.all().length === 0) throw new NotFoundError("soci_artifacts not found");
  throw new ArtifactNotFoundError(digest);
}

/** Every entry in the order bbolt walks its buckets: by digest, bytewise. */
export function walkArtifacts(db: ArtifactsDb): ArtifactEntry[] {
  return db.all().sort((a, b) => Buffer.compare(Buffer.from(a.digest), Buffer.from(b.digest)));
}

// ------------------------------------------------------------------------------------------------
// Content

/** oras-go `oci.Store.Fetch`: the blob, or `<digest>: <mediaType>: not found`. */
export async function fetchBlob(cs: ContentStore, digest: string, mediaType = ""): Promise<Uint8Array> {
  try {
    return await cs.get(digest);
  } catch (err) {
    if (err instanceof BlobNotFoundError) throw new NotFoundError(`${digest}: ${mediaType}: not found`);
    throw err;
  }
}

/** What a blob claims to be: its `mediaType`, else (OCI documents may omit it) its shape. */
function sniffMediaType(bytes: Uint8Array): string {
  let v;
  try {
    v = parseGoJson(bytes);
  } catch {
    return "";
  }
  if (!(v instanceof JsonObject)) return "";
  const mt = v.get("mediaType");
  if (typeof mt === "string" && mt !== "") return mt;
  if (v.get("manifests") !== undefined) return MediaTypeImageIndex;
  if (v.get("config") !== undefined && v.get("layers") !== undefined) return MediaTypeImageManifest;
  return "";
}

/**
 * The image target for `ref` (what `ImageService().Get(ref).Target` gives in the reference), from
 * the content store: a digest of a manifest/index blob there (bare or after `name@`), or a name in
 * its index.json.
 */
export async function resolveImage(cs: ContentStore, ref: string): Promise<Descriptor> {
  const notFound = () => new NotFoundError(`image ${JSON.stringify(ref)}: not found`);
  let desc = cs.resolve(ref);
  if (!desc) {
    const at = ref.lastIndexOf("@");
    const digest = at >= 0 ? ref.slice(at + 1) : ref;
    if (!isValidDigest(digest) || !(await cs.exists(digest))) throw notFound();
    desc = cs.resolve(digest) ?? { mediaType: "", digest, size: await cs.size(digest) };
  }
  let mediaType = desc.mediaType;
  if (!isManifestType(mediaType) && !isIndexType(mediaType)) {
    if (!(await cs.exists(desc.digest))) throw notFound();
    mediaType = sniffMediaType(await cs.get(desc.digest));
    if (!isManifestType(mediaType) && !isIndexType(mediaType)) throw notFound();
  }
  // containerd image targets carry no platform
  return { mediaType, digest: desc.digest, size: desc.size };
}

/** containerd content errors for a missing blob. */
async function readContent(cs: ContentStore, digest: string): Promise<Uint8Array> {
  try {
    return await cs.get(digest);
  } catch (err) {
    if (err instanceof BlobNotFoundError) throw new NotFoundError(`content digest ${digest}: not found`);
    throw err;
  }
}

/**
 * containerd `images.Platforms`: the platforms of an index's children (as written in their
 * descriptors, `unknown` OS/architecture skipped; children without one are walked), or of a
 * manifest's config.
 */
export async function imagePlatforms(cs: ContentStore, target: Descriptor): Promise<Platform[]> {
  const out: Platform[] = [];
  const walk = async (desc: Descriptor): Promise<void> => {
    if (desc.platform) {
      if (desc.platform.os !== "unknown" && desc.platform.architecture !== "unknown") out.push(desc.platform);
      return;
    }
    if (isIndexType(desc.mediaType)) {
      for (const child of parseIndex(await readContent(cs, desc.digest)).manifests ?? []) await walk(child);
    } else if (isManifestType(desc.mediaType)) {
      const m = parseManifest(await readContent(cs, desc.digest));
      await walk(m.config);
    } else if (isConfigType(desc.mediaType)) {
      out.push(platformFromImageConfig(await readContent(cs, desc.digest)));
    }
  };
  await walk(target);
  return out;
}

/**
 * SOCI `GetImageManifestDescriptor(target, platforms.OnlyStrict(platform))`: the first child of an
 * index whose platform matches (every child must have one), or the manifest itself.
 */
export async function imageManifestFor(cs: ContentStore, target: Descriptor, platform: Platform): Promise<Descriptor | undefined> {
  if (isIndexType(target.mediaType)) {
    for (const m of parseIndex(await readContent(cs, target.digest)).manifests ?? []) {
      if (!m.platform) throw new Error("manifest should have proper platform");
      if (matchPlatformStrict(platform, m.platform)) return m;
    }
    throw new NotFoundError("not found");
  }
  if (isManifestType(target.mediaType)) {
    if (target.platform && !matchPlatformStrict(platform, target.platform)) throw new NotFoundError("not found");
    return target;
  }
  return undefined;
}
