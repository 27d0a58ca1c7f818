// `soci convert`: make a SOCI-enabled image (SOCI index v2).
import { Command } from "commander";
import { terminalProgress } from "../progress.js";
import { addBuildFlags, buildOptionsFrom, type BuildFlags } from "../build-flags.js";
import { NotImplementedError } from "../errors.js";
import { convertStandalone } from "../../build/standalone.js";
import type { LayoutFormat } from "../../build/oci-archive.js";

export function convertCommand(): Command {
  const cmd = new Command("convert")
    .description("convert an image into a SOCI-enabled image (SOCI index manifest v2)")
    .arguments("<image_ref> <dest_ref>")
    .option("--standalone", "convert an OCI layout (directory or archive) without containerd", false)
    .option("--format <format>", "standalone output: oci-archive or oci-dir", "oci-archive");
  addBuildFlags(cmd);
  return cmd.action(async (src: string, dst: string, flags: BuildFlags & { standalone: boolean; format: string }) => {
    if (flags.format !== "oci-archive" && flags.format !== "oci-dir") {
      throw new Error(`invalid format ${flags.format}: expect oci-archive or oci-dir`);
    }
    if (!flags.standalone) throw new NotImplementedError("soci convert without --standalone");
    const opts = await buildOptionsFrom(flags);
    const { log, progress } = terminalProgress();
    const desc = await convertStandalone(src, dst, { ...opts, format: flags.format as LayoutFormat, log, progress });
    log(`converted image index: ${desc.digest}`);
  });
}
