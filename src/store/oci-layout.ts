// OCI image layout files (`oci-layout`, `index.json`) as oras-go's oci.Store reads and writes them.
// Usable on any layout directory, e.g. the staged input and the output of standalone convert.
import { InvalidArgumentError } from "../errors/errors.js";
import { randomBytes } from "node:crypto";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { indexJson, MediaTypeImageIndex, parseIndex, type Descriptor, type Index } from "../formats/oci.js";
import { parseDigest } from "./digest.js";
import { InvalidLayoutError } from "./errors.js";
import { IMAGE_LAYOUT_VERSION } from "./oci-types.js";

export const OCI_LAYOUT_FILE = "oci-layout";
export const INDEX_FILE = "index.json";
export const BLOBS_DIR = "blobs";

export interface OciLayout {
  dir: string;
  /** `manifests` is never null here */
  index: Index & { manifests: Descriptor[] };
  /** Path of a blob in this layout; throws InvalidDigestError for malformed digests. */
  blobPath(digest: string): string;
  readBlob(digest: string): Promise<Uint8Array>;
}

export function blobPathIn(dir: string, digest: string): string {
  const { algorithm, hex } = parseDigest(digest);
  return join(dir, BLOBS_DIR, algorithm, hex);
}

/** Replaces `path` atomically (temp file in the same directory, then rename). */
export async function atomicWriteFile(path: string, data: string | Uint8Array, mode = 0o666): Promise<void> {
  const tmp = `${path}.${randomBytes(6).toString("hex")}.tmp`;
  try {
    await writeFile(tmp, data, { mode });
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** Creates `oci-layout` if missing, otherwise checks that it declares version 1.0.0. */
export async function ensureLayoutFile(dir: string): Promise<void> {
  if (await hasLayoutFile(dir)) return;
  await writeFile(join(dir, OCI_LAYOUT_FILE), JSON.stringify({ imageLayoutVersion: IMAGE_LAYOUT_VERSION }), {
    mode: 0o666,
    flag: "wx",
  }).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== "EEXIST") throw e; // created concurrently by another opener
  });
}

/** Whether `dir` has an `oci-layout` file; one that does not declare version 1.0.0 is InvalidLayoutError. */
export async function hasLayoutFile(dir: string): Promise<boolean> {
  let text: string;
  try {
    text = await readFile(join(dir, OCI_LAYOUT_FILE), "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return false;
    throw err;
  }
  checkLayoutFile(dir, text);
  return true;
}

function checkLayoutFile(dir: string, text: string): void {
  let layout: unknown;
  try {
    layout = JSON.parse(text);
  } catch (err) {
    throw new InvalidLayoutError(dir, `failed to decode ${OCI_LAYOUT_FILE}: ${(err as Error).message}`);
  }
  const version = (layout as { imageLayoutVersion?: unknown } | null)?.imageLayoutVersion;
  if (version !== IMAGE_LAYOUT_VERSION) {
    throw new InvalidLayoutError(dir, `unsupported imageLayoutVersion ${JSON.stringify(version)}`);
  }
}

export async function readOciLayout(dir: string): Promise<OciLayout> {
  let layoutText: string;
  try {
    layoutText = await readFile(join(dir, OCI_LAYOUT_FILE), "utf8");
  } catch (err) {
    throw new InvalidLayoutError(dir, `cannot read ${OCI_LAYOUT_FILE}: ${(err as Error).message}`);
  }
  checkLayoutFile(dir, layoutText);
  const index = await readIndexJson(dir);
  if (index === undefined) throw new InvalidLayoutError(dir, `missing ${INDEX_FILE}`);
  return {
    dir,
    index,
    blobPath: (digest) => blobPathIn(dir, digest),
    readBlob: async (digest) => new Uint8Array(await readFile(blobPathIn(dir, digest))),
  };
}

/**
 * Parses `<dir>/index.json` as oras-go does (`json.Unmarshal` into `ocispec.Index`: unknown fields
 * dropped); undefined if the file does not exist. Entries must carry well-formed digests and sizes.
 */
export async function readIndexJson(dir: string): Promise<(Index & { manifests: Descriptor[] }) | undefined> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(join(dir, INDEX_FILE));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  try {
    const index = parseIndex(bytes);
    const manifests = index.manifests ?? [];
    for (const d of manifests) {
      parseDigest(d.digest);
      if (!Number.isSafeInteger(d.size) || d.size < 0)
        throw new InvalidArgumentError(`${d.digest}: invalid size ${d.size}`);
    }
    return { ...index, manifests };
  } catch (err) {
    throw new InvalidLayoutError(dir, `${INDEX_FILE}: ${(err as Error).message}`);
  }
}

/** Writes `index.json` as Go-JSON `{"schemaVersion":2,"mediaType":<OCI index>,"manifests":[...]}`. */
export async function writeIndexJson(
  dir: string,
  manifests: Descriptor[],
  extra: Partial<Omit<Index, "manifests">> = {},
): Promise<void> {
  const index: Index = { schemaVersion: 2, mediaType: MediaTypeImageIndex, ...extra, manifests };
  await writeIndex(dir, index);
}

/** Writes `index.json` as Go-JSON of `ocispec.Index` (what oras-go's saveIndex writes). */
export async function writeIndex(dir: string, index: Index): Promise<void> {
  await mkdir(dir, { recursive: true });
  await atomicWriteFile(join(dir, INDEX_FILE), indexJson(index));
}
