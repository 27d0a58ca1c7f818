// `soci convert`: make a SOCI-enabled image (SOCI index v2).
import { Command } from "commander";
import { terminalProgress } from "../progress.js";
import { addBuildFlags, buildOptionsFrom, type BuildFlags } from "../build-flags.js";
import { addRegistryFlags, lazyRegistryClient, type RegistryFlags } from "../registry-flags.js";
import { convertLocations } from "../../indexer/image-location.js";
import { convertStandalone } from "../../indexer/standalone.js";
import type { LayoutFormat } from "../../indexer/oci-archive.js";
import { CONTENT_STORE_CONTAINERD, convertWithContainerd } from "../local-store.js";

export function convertCommand(): Command {
  const cmd = new Command("convert")
    .description(
      "convert an image into a SOCI-enabled image (SOCI index manifest v2); images are registry refs, oci:<dir>[:tag] or oci-archive:<file>[:tag]",
    )
    .arguments("<image_ref> <dest_ref>")
    .option("--standalone", "convert an OCI layout (directory or archive) without containerd", false)
    .option("--format <format>", "standalone output: oci-archive or oci-dir", "oci-archive");
  addBuildFlags(cmd);
  addRegistryFlags(cmd);
  return cmd.action(
    async (
      src: string,
      dst: string,
      flags: BuildFlags & RegistryFlags & { standalone: boolean; format: string },
      self: Command,
    ) => {
      if (flags.format !== "oci-archive" && flags.format !== "oci-dir") {
        throw new Error(`invalid format ${flags.format}: expect oci-archive or oci-dir`);
      }
      const opts = await buildOptionsFrom(flags, self);
      const { log, progress } = terminalProgress();
      if (flags.standalone) {
        const desc = await convertStandalone(src, dst, {
          ...opts,
          format: flags.format as LayoutFormat,
          log,
          progress,
        });
        log(`converted image index: ${desc.digest}`);
        return;
      }
      if (self.optsWithGlobals<{ contentStore: string }>().contentStore === CONTENT_STORE_CONTAINERD) {
        // images in containerd's image store; the result is created there as <dest_ref>
        const desc = await convertWithContainerd(self, src, dst, { ...opts, log, progress });
        log(`converted image index: ${desc.digest}`);
        return;
      }
      // registry refs and OCI layouts in any combination, no containerd
      const client = lazyRegistryClient(flags);
      try {
        const desc = await convertLocations(src, dst, client.get, { ...opts, log, progress });
        log(`converted image index: ${desc.digest}`);
      } finally {
        await client.close();
      }
    },
  );
}
