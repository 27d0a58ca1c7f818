// `soci create`: build SOCI index v1 for an image held in an OCI image layout, into the local
// SOCI store (<root>/content and <root>/artifacts.db).
import { Command } from "commander";
import { mkdir, stat } from "node:fs/promises";

import { terminalProgress } from "../progress.js";
import { addBuildFlags, buildOptionsFrom, type BuildFlags } from "../build-flags.js";
import { addRegistryFlags, registryClient, type RegistryFlags } from "../registry-flags.js";
import { createRemote } from "../../build/remote.js";
import { NotImplementedError } from "../errors.js";
import { ContentStore } from "../../store/content-store.js";
import { ArtifactsDb } from "../../store/artifacts-db.js";
import { artifactsDbPath, contentStorePath } from "../../store/paths.js";
import { BuildPool } from "../../build/pool.js";
import { buildIndexForManifest, manifestForPlatform, platformsFor } from "../../build/index-builder.js";
import type { Descriptor } from "../../formats/oci.js";

/** An OCI layout reference: `oci:<dir>[:tag]`, or a path (starts with `/` or `.`). */
export function isLayoutRef(ref: string): boolean {
  return ref.startsWith("oci:") || ref.startsWith("/") || ref.startsWith(".");
}

/** `oci:<dir>[:<tag>]` or a layout directory path; the tag defaults to the layout's only image. */
export async function openLayoutRef(ref: string): Promise<{ store: ContentStore; root: Descriptor }> {
  let spec = ref.startsWith("oci:") ? ref.slice(4) : ref;
  let tag: string | undefined;
  const colon = spec.lastIndexOf(":");
  if (colon > 0 && !spec.slice(colon).includes("/")) {
    tag = spec.slice(colon + 1);
    spec = spec.slice(0, colon);
  }
  if (!(await stat(spec).then((s) => s.isDirectory(), () => false))) {
    throw new Error(`${ref}: no such OCI layout directory`);
  }
  const store = await ContentStore.open(spec);
  const manifests = store.manifests();
  const root = tag ? store.resolve(tag) : manifests.length === 1 ? manifests[0] : undefined;
  if (!root) throw new Error(tag ? `${ref}: no image tagged ${tag}` : `${ref}: the layout holds ${manifests.length} images; name one as oci:<dir>:<tag>`);
  return { store, root };
}

export function createCommand(): Command {
  const cmd = new Command("create")
    .description("create a SOCI index (v1) for an image in a registry or an OCI layout (oci:<dir>[:tag])")
    .arguments("<image_ref>");
  addBuildFlags(cmd);
  addRegistryFlags(cmd);
  return cmd.action(async (ref: string, flags: BuildFlags & RegistryFlags, self: Command) => {
    const globals = self.optsWithGlobals<{ root: string; contentStore: string }>();
    if (globals.contentStore !== "soci") throw new NotImplementedError(`--content-store ${globals.contentStore}`);
    const opts = await buildOptionsFrom(flags);
    const { log, progress } = terminalProgress();
    if (!isLayoutRef(ref)) {
      await mkdir(globals.root, { recursive: true, mode: 0o700 });
      const target = await ContentStore.open(contentStorePath(globals.root));
      const db = ArtifactsDb.open(artifactsDbPath(globals.root));
      const client = registryClient(flags);
      try {
        await createRemote(client, ref, target, db, { ...opts, log, progress });
      } finally {
        db.close();
        await client.close();
      }
      return;
    }
    const { store: source, root } = await openLayoutRef(ref);
    await mkdir(globals.root, { recursive: true, mode: 0o700 });
    const target = await ContentStore.open(contentStorePath(globals.root));
    const db = ArtifactsDb.open(artifactsDbPath(globals.root));
    const pool = new BuildPool();
    try {
      const { platforms, target: image } = await platformsFor(source, root, opts);
      for (const platform of platforms) {
        const manifest = await manifestForPlatform(source, image, platform);
        await buildIndexForManifest({ source, target, db, pool, log, progress }, manifest, 1, platform, opts, root.digest);
      }
    } finally {
      db.close();
      await pool.destroy();
    }
  });
}

