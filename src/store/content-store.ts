// Content-addressed blob store laid out as an OCI image layout, compatible with oras-go v2's
// oci.Store (the `soci` content store at `<root>/content`): blobs at `blobs/<alg>/<hex>` (read-only
// once stored), temp files under `ingest/`, and manifest-type blobs listed in `index.json`.
import { randomBytes } from "node:crypto";
import { chmod, mkdir, open, readdir, readFile, rename, rm, stat, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { MediaTypeImageIndex, type Descriptor, type Index } from "../formats/oci.js";
import { createHasher, isKnownAlgorithm, isValidHex, parseDigest, type DigestAlgorithm } from "./digest.js";
import { FailedPreconditionError } from "../errors/errors.js";
import type { BlobContent, BlobInfo, BlobReader, BlobWriter, ExpectedBlob } from "./blobs.js";
import { BlobNotFoundError, DigestMismatchError, SizeMismatchError } from "./errors.js";
import { BLOBS_DIR, blobPathIn, ensureLayoutFile, hasLayoutFile, readIndexJson, writeIndex } from "./oci-layout.js";
import { ANNOTATION_REF_NAME, isManifestMediaType } from "./oci-types.js";

const INGEST_DIR = "ingest";

function isNotFound(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === "ENOENT" || code === "ENOTDIR";
}

function withoutRefName(desc: Descriptor): Descriptor {
  if (!desc.annotations || !Object.hasOwn(desc.annotations, ANNOTATION_REF_NAME)) return desc;
  const { [ANNOTATION_REF_NAME]: _ref, ...rest } = desc.annotations;
  const copy: Descriptor = { ...desc, annotations: rest };
  if (Object.keys(rest).length === 0) delete copy.annotations;
  return copy;
}

export class ContentStore implements BlobReader, BlobWriter {
  // Tag resolver as in oras-go: every tracked manifest is tagged by its digest; tags from
  // `org.opencontainers.image.ref.name` annotations are kept as further references.
  private readonly tags = new Map<string, Descriptor>();
  private saving: Promise<void> = Promise.resolve();

  private constructor(
    readonly root: string,
    private readonly index: Index,
    /** Opened by `openReadOnly`: writes are refused, so the layout stays exactly as it was. */
    private readonly readOnly = false,
  ) {
    for (const desc of index.manifests ?? []) {
      this.tags.set(desc.digest, withoutRefName(desc));
      const ref = desc.annotations?.[ANNOTATION_REF_NAME];
      if (ref) this.tags.set(ref, desc);
    }
  }

  /** Opens (creating if needed) the layout at `dir`; an existing layout is not rewritten. */
  static async open(dir: string): Promise<ContentStore> {
    await mkdir(join(dir, BLOBS_DIR), { recursive: true });
    await ensureLayoutFile(dir);
    let index = await readIndexJson(dir);
    if (index === undefined) {
      index = { schemaVersion: 2, mediaType: MediaTypeImageIndex, manifests: [] };
      await writeIndex(dir, index);
    }
    return new ContentStore(dir, index);
  }

  /**
   * Opens the layout at `dir` for reading only: nothing is created or rewritten (no `blobs/`,
   * `oci-layout` or `index.json` where there are none), and put/tag/delete fail.
   */
  static async openReadOnly(dir: string): Promise<ContentStore> {
    await hasLayoutFile(dir);
    const index = (await readIndexJson(dir)) ?? { schemaVersion: 2, mediaType: MediaTypeImageIndex, manifests: [] };
    return new ContentStore(dir, index, true);
  }

  /** Path of the blob (whether or not it exists). Malformed digests throw InvalidDigestError. */
  path(digest: string): string {
    return blobPathIn(this.root, digest);
  }

  /**
   * Streams `content` into the store. With `expected`, the digest (and size, if given) must match or
   * the write fails with DigestMismatchError / SizeMismatchError and nothing is stored. When the
   * expected blob is already present, `content` is not read at all.
   */
  async put(content: BlobContent, expected?: ExpectedBlob): Promise<BlobInfo> {
    this.checkWritable();
    let algorithm: DigestAlgorithm = "sha256";
    if (expected) {
      algorithm = parseDigest(expected.digest).algorithm;
      const existing = await this.statBlob(expected.digest);
      if (existing !== undefined) {
        if (expected.size !== undefined && existing !== expected.size) {
          throw new SizeMismatchError(expected.digest, expected.size, existing);
        }
        return { digest: expected.digest, size: existing };
      }
    }
    const ingestDir = join(this.root, INGEST_DIR);
    await mkdir(ingestDir, { recursive: true });
    const prefix = expected ? parseDigest(expected.digest).hex : "blob";
    const tmp = join(ingestDir, `${prefix}_${randomBytes(8).toString("hex")}`);
    let handle: FileHandle | undefined;
    try {
      handle = await open(tmp, "wx", 0o644);
      const hasher = createHasher(algorithm);
      let size = 0;
      for await (const chunk of chunksOf(content)) {
        size += chunk.byteLength;
        if (expected?.size !== undefined && size > expected.size) {
          throw new SizeMismatchError(expected.digest, expected.size, size);
        }
        hasher.update(chunk);
        await writeAll(handle, chunk);
      }
      await handle.close();
      handle = undefined;
      if (expected?.size !== undefined && size !== expected.size) {
        throw new SizeMismatchError(expected.digest, expected.size, size);
      }
      const digest = `${algorithm}:${hasher.digest("hex")}`;
      if (expected && digest !== expected.digest) throw new DigestMismatchError(expected.digest, digest);
      await chmod(tmp, 0o444);
      const target = this.path(digest);
      await mkdir(join(this.root, BLOBS_DIR, algorithm), { recursive: true });
      // rename() replaces atomically, so a concurrent put of the same blob just lands twice with identical bytes
      await rename(tmp, target);
      return { digest, size };
    } catch (err) {
      await handle?.close().catch(() => undefined);
      await rm(tmp, { force: true });
      throw err;
    }
  }

  /** Stores the blob for `desc`; manifest/index media types are then tracked in index.json. */
  async putDescriptor(desc: Descriptor, content: BlobContent): Promise<Descriptor> {
    await this.put(content, { digest: desc.digest, size: desc.size });
    if (isManifestMediaType(desc.mediaType)) await this.tag(desc, desc.digest);
    return desc;
  }

  /** Records `desc` in index.json under `reference` (a tag, or its own digest). */
  async tag(desc: Descriptor, reference: string): Promise<void> {
    this.checkWritable();
    if (!(await this.exists(desc.digest))) throw new BlobNotFoundError(desc.digest);
    const plain = withoutRefName(desc);
    if (reference !== desc.digest) this.tags.set(desc.digest, plain);
    this.tags.set(reference, reference === desc.digest ? plain : desc);
    await this.saveIndex();
  }

  /** The descriptor recorded under a tag or digest in index.json. */
  resolve(reference: string): Descriptor | undefined {
    const desc = this.tags.get(reference);
    if (!desc) return undefined;
    if (reference === desc.digest) return desc;
    return { ...desc, annotations: { ...desc.annotations, [ANNOTATION_REF_NAME]: reference } };
  }

  /** The `manifests` list index.json holds. */
  manifests(): Descriptor[] {
    // oras-go saveIndex: tagged descriptors (with their ref name) first, then digest-only ones
    const out: Descriptor[] = [];
    const tagged = new Set<string>();
    for (const [ref, desc] of this.tags) {
      if (ref === desc.digest) continue;
      out.push({ ...desc, annotations: { ...desc.annotations, [ANNOTATION_REF_NAME]: ref } });
      tagged.add(desc.digest);
    }
    for (const [ref, desc] of this.tags) {
      if (ref === desc.digest && !tagged.has(desc.digest)) out.push(withoutRefName(desc));
    }
    return out;
  }

  async get(digest: string): Promise<Uint8Array> {
    try {
      return new Uint8Array(await readFile(this.path(digest)));
    } catch (err) {
      if (isNotFound(err)) throw new BlobNotFoundError(digest);
      throw err;
    }
  }

  /** Reads bytes `[start, end)` of a blob (`end` exclusive, defaults to the blob size). */
  async createReadStream(digest: string, start = 0, end?: number): Promise<Readable> {
    let handle: FileHandle;
    try {
      handle = await open(this.path(digest), "r");
    } catch (err) {
      if (isNotFound(err)) throw new BlobNotFoundError(digest);
      throw err;
    }
    const size = (await handle.stat()).size;
    const stop = Math.min(end ?? size, size);
    if (
      start < 0 ||
      !Number.isSafeInteger(start) ||
      (end !== undefined && (!Number.isSafeInteger(end) || end < start))
    ) {
      await handle.close();
      throw new RangeError(`invalid range [${start}, ${end}) for ${digest}`);
    }
    if (start >= stop) {
      await handle.close();
      return Readable.from([]);
    }
    return handle.createReadStream({ start, end: stop - 1, autoClose: true });
  }

  async exists(digest: string): Promise<boolean> {
    return (await this.statBlob(digest)) !== undefined;
  }

  async size(digest: string): Promise<number> {
    const size = await this.statBlob(digest);
    if (size === undefined) throw new BlobNotFoundError(digest);
    return size;
  }

  /** Removes the blob and any index.json entries for it; false if it was not there. */
  async delete(digest: string): Promise<boolean> {
    this.checkWritable();
    const path = this.path(digest);
    let removed = true;
    try {
      await rm(path);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      removed = false;
    }
    let untagged = false;
    for (const [ref, desc] of [...this.tags]) {
      if (desc.digest === digest) {
        this.tags.delete(ref);
        untagged = true;
      }
    }
    if (untagged) await this.saveIndex();
    return removed;
  }

  /** Every blob under `blobs/` with a well-formed name, sorted by digest. */
  async list(): Promise<BlobInfo[]> {
    const out: BlobInfo[] = [];
    const blobsDir = join(this.root, BLOBS_DIR);
    for (const alg of await readdir(blobsDir)) {
      if (!isKnownAlgorithm(alg)) continue;
      let names: string[];
      try {
        names = await readdir(join(blobsDir, alg));
      } catch (err) {
        if (isNotFound(err)) continue;
        throw err;
      }
      for (const hex of names) {
        if (!isValidHex(alg, hex)) continue;
        const st = await stat(join(blobsDir, alg, hex)).catch(() => undefined);
        if (st?.isFile()) out.push({ digest: `${alg}:${hex}`, size: st.size });
      }
    }
    return out.sort((a, b) => (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0));
  }

  private checkWritable(): void {
    if (this.readOnly) throw new FailedPreconditionError(`${this.root}: opened read-only`);
  }

  private async statBlob(digest: string): Promise<number | undefined> {
    try {
      const st = await stat(this.path(digest));
      return st.isFile() ? st.size : undefined;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  private saveIndex(): Promise<void> {
    const write = this.saving.then(() => writeIndex(this.root, { ...this.index, manifests: this.manifests() }));
    this.saving = write.catch(() => undefined);
    return write;
  }
}

async function* chunksOf(content: BlobContent): AsyncIterable<Uint8Array> {
  if (content instanceof Uint8Array) {
    yield content;
    return;
  }
  yield* content as AsyncIterable<Uint8Array>;
}

async function writeAll(handle: FileHandle, chunk: Uint8Array): Promise<void> {
  let off = 0;
  while (off < chunk.byteLength) {
    const { bytesWritten } = await handle.write(chunk, off, chunk.byteLength - off);
    off += bytesWritten;
  }
}
