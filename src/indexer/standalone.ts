// `soci convert --standalone <in> <out>` (docs/formats.md §4.2): convert an OCI image layout (directory
// or archive) without containerd, using a throwaway artifacts database.
import { NotFoundError } from "../errors/errors.js";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { isIndexType, MediaTypeImageIndex, marshalIndex, type Descriptor, type Index } from "../formats/oci.js";
import { imageIndexFromBytes } from "../formats/convert-docs.js";
import { ContentStore } from "../store/content-store.js";
import { ArtifactsDb } from "../store/artifacts-db.js";
import { readIndexJson } from "../store/oci-layout.js";
import { BuildPool } from "./pool.js";
import { convertImage, type BuildOptions, type LayerProgress } from "./index-builder.js";
import type { PlatformChoice } from "../store/image-manifests.js";
import { ArchiveWriter, listBlobs, stageLayout, writeLayout, type LayoutFormat } from "./oci-archive.js";

/** The image a layout holds, per §4.2: one entry ⇒ it; several ⇒ index.json itself is the list. */
export async function layoutRootDescriptor(store: ContentStore, dir: string): Promise<Descriptor> {
  const index = await readIndexJson(dir);
  const entries = (index?.manifests ?? []) as Descriptor[];
  if (entries.length === 0) throw new NotFoundError(`${dir}: index.json lists no image`);
  if (entries.length === 1 && !isIndexType(entries[0]!.mediaType)) return entries[0]!;
  let list: Index;
  if (entries.length === 1) {
    list = imageIndexFromBytes(await store.get(entries[0]!.digest));
  } else {
    list = { schemaVersion: 2, mediaType: MediaTypeImageIndex, manifests: entries };
  }
  // keep only children whose blobs are present (an archive may hold one platform of many)
  const present: Descriptor[] = [];
  for (const m of list.manifests ?? []) if (await store.exists(m.digest)) present.push(m);
  if (entries.length === 1 && present.length === (list.manifests ?? []).length) return entries[0]!;
  const bytes = marshalIndex({ ...list, mediaType: list.mediaType ?? MediaTypeImageIndex, manifests: present });
  const info = await store.put(bytes);
  return { mediaType: MediaTypeImageIndex, digest: info.digest, size: info.size };
}

export interface StandaloneOptions extends BuildOptions, PlatformChoice {
  format: LayoutFormat;
  log(line: string): void;
  progress?: LayerProgress;
}

export async function convertStandalone(input: string, output: string, opts: StandaloneOptions): Promise<Descriptor> {
  const pool = new BuildPool({ warm: true }); // its worker starts while the layout is staged
  const work = await stageLayout(input, tmpdir())
    .catch(async (err: Error) => {
      // fall back to the output's parent when the temp dir is unusable
      if (/ENOSPC|EACCES/.test(err.message)) return stageLayout(input, dirname(output));
      throw err;
    })
    .catch(async (err: unknown) => {
      await pool.destroy();
      throw err;
    });
  const dbDir = await mkdtemp(join(tmpdir(), "soci-db-"));
  const db = ArtifactsDb.open(join(dbDir, "artifacts.db"));
  // An archive gets the image's own blobs while the index is being built (tar copies them).
  const originals = await listBlobs(work);
  const archive = opts.format === "oci-archive" ? new ArchiveWriter(work, output) : undefined;
  archive?.start(originals);
  let written = false;
  try {
    const store = await ContentStore.open(work);
    const root = await layoutRootDescriptor(store, work);
    const converted = await convertImage(
      { source: store, target: store, db, pool, log: opts.log, progress: opts.progress },
      root,
      opts,
      opts,
    );
    const index = { schemaVersion: 2, mediaType: MediaTypeImageIndex, manifests: [converted] } satisfies Index;
    await writeFile(join(work, "index.json"), marshalIndex(index));
    await rm(join(work, "ingest"), { recursive: true, force: true });
    if (archive) {
      const known = new Set(originals);
      await archive.finish((await listBlobs(work)).filter((b) => !known.has(b)));
    } else {
      await writeLayout(work, output, opts.format);
    }
    written = true;
    return converted;
  } finally {
    if (!written) await archive?.abort();
    db.close();
    await pool.destroy();
    await rm(work, { recursive: true, force: true });
    await rm(dbDir, { recursive: true, force: true });
  }
}
