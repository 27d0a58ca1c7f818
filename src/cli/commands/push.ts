// `soci push`: push SOCI index v1 artifacts from the local store to the image's registry.
import { Command } from "commander";
import { mkdir } from "node:fs/promises";
import { addRegistryFlags, registryClient, type RegistryFlags } from "../registry-flags.js";
import { UnimplementedError } from "../../errors/errors.js";
import { parsePlatform } from "../../formats/platform.js";
import { ContentStore } from "../../store/content-store.js";
import { ArtifactsDb } from "../../store/artifacts-db.js";
import { artifactsDbPath, contentStorePath } from "../../store/paths.js";
import { pushSociIndexes, type ExistingIndexPolicy } from "../../indexer/remote.js";
import { collect } from "../build-flags.js";

export function pushCommand(): Command {
  const cmd = new Command("push")
    .description("push SOCI index v1 artifacts to the image's registry (referrers API or fallback tag)")
    .arguments("<ref>")
    .option("--existing-index <policy>", "when the registry already has a SOCI index: warn, skip or allow", "warn")
    .option("-p, --platform <platform>", "platform to push (repeatable)", collect, [] as string[])
    .option("-q, --quiet", "print only the pushed index digests", false);
  addRegistryFlags(cmd);
  return cmd.action(
    async (
      ref: string,
      flags: RegistryFlags & { existingIndex: string; platform: string[]; quiet: boolean },
      self: Command,
    ) => {
      const globals = self.optsWithGlobals<{ root: string; contentStore: string }>();
      if (globals.contentStore !== "soci")
        throw new UnimplementedError(`--content-store ${globals.contentStore}: not yet implemented`);
      if (!["warn", "skip", "allow"].includes(flags.existingIndex)) {
        throw new Error(
          `unexpected value for flag --existing-index: ${flags.existingIndex}, expected types: [warn skip allow]`,
        );
      }
      await mkdir(globals.root, { recursive: true, mode: 0o700 });
      const store = await ContentStore.open(contentStorePath(globals.root));
      const db = ArtifactsDb.open(artifactsDbPath(globals.root));
      const client = registryClient(flags);
      try {
        await pushSociIndexes(client, ref, store, db, {
          existingIndex: flags.existingIndex as ExistingIndexPolicy,
          platforms: flags.platform.map((p) => parsePlatform(p)),
          quiet: flags.quiet,
          log: (line) => process.stdout.write(`${line}\n`),
        });
      } finally {
        db.close();
        await client.close();
      }
    },
  );
}
