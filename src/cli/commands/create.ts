// `soci create`: build SOCI index v1 for an image in a registry, an OCI layout directory
// (`oci:<dir>[:tag]` or a path) or an OCI layout archive (`oci-archive:<file>[:tag]`), into the
// local SOCI store (<root>/content and <root>/artifacts.db).
import { Command } from "commander";
import { mkdir } from "node:fs/promises";

import { terminalProgress } from "../progress.js";
import { addBuildFlags, buildOptionsFrom, type BuildFlags } from "../build-flags.js";
import { addRegistryFlags, lazyRegistryClient, type RegistryFlags } from "../registry-flags.js";
import { createIndexes, openImage, parseImageLocation } from "../../indexer/image-location.js";
import { UnimplementedError } from "../../errors/errors.js";
import { CONTENT_STORE_CONTAINERD, createWithContainerd } from "../local-store.js";
import { ContentStore } from "../../store/content-store.js";
import { ArtifactsDb } from "../../store/artifacts-db.js";
import { artifactsDbPath, contentStorePath } from "../../store/paths.js";

export function createCommand(): Command {
  const cmd = new Command("create")
    .description(
      "create a SOCI index (v1) for an image in a registry, an OCI layout (oci:<dir>[:tag]) or an OCI archive (oci-archive:<file>[:tag])",
    )
    .arguments("<image_ref>");
  addBuildFlags(cmd);
  addRegistryFlags(cmd);
  return cmd.action(async (ref: string, flags: BuildFlags & RegistryFlags, self: Command) => {
    const globals = self.optsWithGlobals<{ root: string; contentStore: string }>();
    if (globals.contentStore === CONTENT_STORE_CONTAINERD) {
      // the image is one in containerd's image store; artifacts go to its content store
      await createWithContainerd(self, ref, { ...(await buildOptionsFrom(flags, self)), ...terminalProgress() });
      return;
    }
    if (globals.contentStore !== "soci")
      throw new UnimplementedError(`--content-store ${globals.contentStore}: not yet implemented`);
    const opts = await buildOptionsFrom(flags, self);
    const { log, progress } = terminalProgress();
    const client = lazyRegistryClient(flags);
    try {
      // the image is checked before the root directory is created
      const image = await openImage(parseImageLocation(ref, { pathsAreLayouts: true }), client.get);
      try {
        await mkdir(globals.root, { recursive: true, mode: 0o700 });
        const target = await ContentStore.open(contentStorePath(globals.root));
        const db = ArtifactsDb.open(artifactsDbPath(globals.root));
        try {
          await createIndexes(image, target, db, { ...opts, log, progress });
        } finally {
          db.close();
        }
      } finally {
        await image.close();
      }
    } finally {
      await client.close();
    }
  });
}
