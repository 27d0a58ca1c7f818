// The CLI's local state (docs/formats.md §4.1): `<root>/artifacts.db` and the content store chosen by
// the global `--content-store` flag — the SOCI content store at `<root>/content`, or containerd's
// (reached at `--address`, in `--namespace`) — plus the containerd lookups the reference's
// inspection commands make.
//
// An image reference (`index list --ref`, `index rm --ref`, `ztoc list --image-ref`) resolves
// * with the containerd store, through containerd's image service (`image "<ref>": not found` for
//   an unknown name), and content is read from containerd's content service;
// * with the SOCI store, only to content already there: a digest (`sha256:…`, or `name@sha256:…`)
//   of a manifest or index blob, or a name recorded in its `index.json`
//   (`org.opencontainers.image.ref.name`). Anything else is `image "<ref>": not found`, the error
//   containerd's image service gives for an unknown image.
import { existsSync } from "node:fs";
import { mkdir, stat } from "node:fs/promises";
import type { Command } from "commander";
import { ContainerdClient } from "../containerd/client.js";
import { ContainerdContentStore } from "../containerd/content-source.js";
import { ArtifactsDb, type ArtifactEntry } from "../store/artifacts-db.js";
import { ContentStore } from "../store/content-store.js";
import { FailedPreconditionError, hasCode, InvalidArgumentError, NotFoundError } from "../errors/errors.js";
import { ArtifactNotFoundError, BlobNotFoundError } from "../store/errors.js";
import { artifactsDbPath, contentStorePath, DEFAULT_SOCI_ROOT } from "../store/paths.js";
import { isValidDigest } from "../store/digest.js";
import { parseGoJson, JsonObject, type JsonValue } from "../formats/go-json.js";
import {
  isConfigType,
  isIndexType,
  isManifestType,
  MediaTypeImageIndex,
  MediaTypeImageManifest,
  parseIndex,
  parseManifest,
  type Descriptor,
  type Platform,
} from "../formats/oci.js";
import { matchPlatformStrict, platformFromImageConfig } from "../formats/platform.js";
import { BuildPool } from "../indexer/pool.js";
import type { BuildOptions, LayerProgress } from "../indexer/index-builder.js";
import type { PlatformChoice } from "../store/image-manifests.js";
import { convertInContainerd, createInContainerd } from "../indexer/containerd-build.js";

export const CONTENT_STORE_SOCI = "soci";
export const CONTENT_STORE_CONTAINERD = "containerd";

/** The global flags every inspection command reads. */
export interface GlobalFlags {
  root: string;
  contentStore: string;
  /** containerd socket (`--address`, `unix://` optional). */
  address: string;
  /** containerd namespace (`--namespace`). */
  namespace: string;
}

export const DEFAULT_CONTAINERD_ADDRESS = "/run/containerd/containerd.sock";

/** The global flags as given to `soci` (commander's `optsWithGlobals`). */
export function globalFlags(cmd: Command): GlobalFlags {
  const o = cmd.optsWithGlobals() as { root?: string; contentStore?: string; address?: string; namespace?: string };
  return {
    root: o.root || DEFAULT_SOCI_ROOT,
    contentStore: o.contentStore ?? CONTENT_STORE_CONTAINERD,
    address: o.address || DEFAULT_CONTAINERD_ADDRESS,
    namespace: o.namespace || "default",
  };
}

/** `--content-store` checked: `soci` or `containerd` ("" means the reference's default, containerd). */
export function contentStoreType(flags: GlobalFlags): typeof CONTENT_STORE_SOCI | typeof CONTENT_STORE_CONTAINERD {
  const t = flags.contentStore === "" ? CONTENT_STORE_CONTAINERD : flags.contentStore;
  if (t !== CONTENT_STORE_SOCI && t !== CONTENT_STORE_CONTAINERD) {
    throw new InvalidArgumentError(
      `unknown content store type: ${t}; must be one of [${CONTENT_STORE_SOCI} ${CONTENT_STORE_CONTAINERD}]`,
    );
  }
  return t;
}

/** A containerd client for `--address` / `--namespace` (the caller closes it). */
export function containerdClient(flags: GlobalFlags): ContainerdClient {
  return ContainerdClient.connect({ address: flags.address, namespace: flags.namespace });
}

/**
 * What the inspection commands read from a content store. The SOCI store (ContentStore) and
 * containerd's (ContainerdContentStore) both provide it.
 */
export type CliContentStore = ContentStore | ContainerdContentStore;

/** containerd's content store, at the path the reference hard-codes (rebuild-db walks it). */
export const CONTAINERD_CONTENT_STORE_PATH = "/var/lib/containerd/io.containerd.content.v1.content";

// ------------------------------------------------------------------------------------------------
// go-digest

const DIGEST_FORMAT_RE = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;
const ALGORITHM_HEX: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128 };

/** `digest.Parse`: the digest, or the go-digest error messages. */
export function parseGoDigest(s: string): string {
  const i = s.indexOf(":");
  if (i <= 0 || i + 1 === s.length) throw new InvalidArgumentError("invalid checksum digest format");
  const alg = s.slice(0, i);
  const encoded = s.slice(i + 1);
  const hexLen = ALGORITHM_HEX[alg];
  if (hexLen === undefined) {
    if (!DIGEST_FORMAT_RE.test(s)) throw new InvalidArgumentError("invalid checksum digest format");
    throw new InvalidArgumentError("unsupported digest algorithm");
  }
  if (encoded.length !== hexLen) throw new InvalidArgumentError("invalid checksum digest length");
  if (!/^[a-f0-9]+$/.test(encoded)) throw new InvalidArgumentError("invalid checksum digest format");
  return s;
}

// ------------------------------------------------------------------------------------------------
// The store

export class LocalStore {
  private dbHandle: ArtifactsDb | undefined;
  private content: ContentStore | undefined;
  private containerd: ContainerdClient | undefined;

  private constructor(
    readonly flags: GlobalFlags,
    /** Create nothing: a missing database reads as empty, a missing content store is an error. */
    private readonly readOnly: boolean,
  ) {}

  /**
   * Creates the root directory (mode 0700) if it is missing, as the reference CLI's Before hook
   * does — except for a command that only reads (`readOnly`), which must not leave state behind:
   * there a missing root is an error.
   */
  static async open(cmd: Command, opts: { readOnly?: boolean } = {}): Promise<LocalStore> {
    const flags = globalFlags(cmd);
    const readOnly = opts.readOnly ?? false;
    if (readOnly) {
      const st = await stat(flags.root).catch((e: NodeJS.ErrnoException) => {
        if (e.code === "ENOENT")
          throw new NotFoundError(
            `root directory ${flags.root} does not exist (nothing was created with this --root; give the one the SOCI artifacts are in)`,
          );
        throw e;
      });
      if (!st.isDirectory()) throw new FailedPreconditionError(`root ${flags.root} is not a directory`);
    } else {
      await mkdir(flags.root, { recursive: true, mode: 0o700 });
    }
    return new LocalStore(flags, readOnly);
  }

  get root(): string {
    return this.flags.root;
  }

  /**
   * The artifacts database (opened, and created 0600 if needed, on first use). Read-only, a
   * missing file is an empty database held in memory.
   */
  get db(): ArtifactsDb {
    const path = artifactsDbPath(this.flags.root);
    this.dbHandle ??= ArtifactsDb.open(this.readOnly && !existsSync(path) ? ":memory:" : path);
    return this.dbHandle;
  }

  /** Which content store `--content-store` selects. */
  get storeType(): typeof CONTENT_STORE_SOCI | typeof CONTENT_STORE_CONTAINERD {
    return contentStoreType(this.flags);
  }

  /**
   * Path of the content store's top directory: `<root>/content`, or containerd's hard-coded
   * content path (as the reference, whatever containerd's configured root).
   */
  contentStorePath(): string {
    return this.storeType === CONTENT_STORE_CONTAINERD
      ? CONTAINERD_CONTENT_STORE_PATH
      : contentStorePath(this.flags.root);
  }

  /** The containerd client (connected on first use; closed by close()). */
  get client(): ContainerdClient {
    this.containerd ??= containerdClient(this.flags);
    return this.containerd;
  }

  /**
   * The content store selected by `--content-store` (`store.NewContentStore`).
   *
   * With containerd this is a ContainerdContentStore; it is typed as ContentStore until the
   * inspection commands take CliContentStore, and provides what they call (get, exists, size,
   * createReadStream; image lookups go through resolveImage below).
   */
  async contentStore(): Promise<ContentStore> {
    if (this.storeType === CONTENT_STORE_CONTAINERD) return (await this.cliContentStore()) as unknown as ContentStore;
    if (!this.content) {
      const path = this.contentStorePath();
      if (this.readOnly && !existsSync(path))
        throw new NotFoundError(`content store ${path} does not exist (nothing was created with this --root)`);
      this.content = await ContentStore.open(path);
    }
    return this.content;
  }

  /** The content store selected by `--content-store`, honestly typed. */
  async cliContentStore(): Promise<CliContentStore> {
    if (this.storeType === CONTENT_STORE_CONTAINERD) return new ContainerdContentStore(this.client);
    return this.contentStore();
  }

  /**
   * Removes a blob from the content store: containerd deletes it (a missing blob is fine); the
   * SOCI store does not delete (a no-op in the reference too).
   */
  async deleteBlob(digest: string): Promise<void> {
    if (this.storeType !== CONTENT_STORE_CONTAINERD) return;
    await this.client.content.delete(digest).catch((err: unknown) => {
      if (!hasCode(err, "NotFound")) throw err;
    });
  }

  /** The names of containerd images whose target is `digest` (none with the SOCI store). */
  async imageNamesFor(digest: string): Promise<string[]> {
    if (this.storeType !== CONTENT_STORE_CONTAINERD || digest === "") return [];
    return new ContainerdContentStore(this.client).imageNamesFor(digest);
  }

  close(): void {
    this.dbHandle?.close();
    this.containerd?.close();
  }
}

/** Runs `f` with the local store (`readOnly`: see LocalStore.open), closing the database afterwards. */
export async function withLocalStore<T>(
  cmd: Command,
  f: (s: LocalStore) => Promise<T>,
  opts: { readOnly?: boolean } = {},
): Promise<T> {
  const s = await LocalStore.open(cmd, opts);
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
export async function fetchBlob(cs: CliContentStore, digest: string, mediaType = ""): Promise<Uint8Array> {
  try {
    return await cs.get(digest);
  } catch (err) {
    if (err instanceof BlobNotFoundError) throw new NotFoundError(`${digest}: ${mediaType}: not found`);
    throw err;
  }
}

/** What a blob claims to be: its `mediaType`, else (OCI documents may omit it) its shape. */
function sniffMediaType(bytes: Uint8Array): string {
  let v: JsonValue;
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
export async function resolveImage(cs: CliContentStore, ref: string): Promise<Descriptor> {
  if (cs instanceof ContainerdContentStore) {
    try {
      return await cs.resolveImage(ref);
    } catch (err) {
      if (hasCode(err, "NotFound")) throw new NotFoundError(err.message, { cause: err });
      throw err;
    }
  }
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
async function readContent(cs: CliContentStore, digest: string): Promise<Uint8Array> {
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
export async function imagePlatforms(cs: CliContentStore, target: Descriptor): Promise<Platform[]> {
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
export async function imageManifestFor(
  cs: CliContentStore,
  target: Descriptor,
  platform: Platform,
): Promise<Descriptor | undefined> {
  if (isIndexType(target.mediaType)) {
    for (const m of parseIndex(await readContent(cs, target.digest)).manifests ?? []) {
      if (!m.platform) throw new InvalidArgumentError("manifest should have proper platform");
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

// ------------------------------------------------------------------------------------------------
// Builds over images in containerd (`--content-store containerd`)

export interface CliBuildOptions extends BuildOptions, PlatformChoice {
  log(line: string): void;
  progress?: LayerProgress;
}

/** Runs a containerd build with the local store's DB, its containerd client and a build pool. */
async function withContainerdBuild<T>(cmd: Command, f: (s: LocalStore, pool: BuildPool) => Promise<T>): Promise<T> {
  return withLocalStore(cmd, async (s) => {
    const pool = new BuildPool();
    try {
      return await f(s, pool);
    } finally {
      await pool.destroy();
    }
  });
}

/** `soci --content-store containerd create <image>`: v1 indexes into containerd (indexer/containerd-build.ts). */
export async function createWithContainerd(cmd: Command, image: string, opts: CliBuildOptions): Promise<void> {
  await withContainerdBuild(cmd, (s, pool) => createInContainerd(s.client, image, { ...opts, db: s.db, pool }));
}

/** `soci --content-store containerd convert <src> <dst>`: a SOCI-enabled image `dst` in containerd. */
export async function convertWithContainerd(
  cmd: Command,
  src: string,
  dst: string,
  opts: CliBuildOptions,
): Promise<Descriptor> {
  return withContainerdBuild(cmd, (s, pool) => convertInContainerd(s.client, src, dst, { ...opts, db: s.db, pool }));
}
