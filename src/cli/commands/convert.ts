// `soci convert`: make a SOCI-enabled image (SOCI index v2).
import { Command } from "commander";
import { terminalProgress } from "../progress.js";
import { addBuildFlags, buildOptionsFrom, type BuildFlags } from "../build-flags.js";
import { RegistryClient } from "../../registry/client.js";
import { RegistryAuthorizer } from "../../registry/auth.js";
import { HostsDirResolver } from "../../registry/hosts.js";
import { convertRemote } from "../../build/remote.js";
import { convertStandalone } from "../../build/standalone.js";
import type { LayoutFormat } from "../../build/oci-archive.js";

export function convertCommand(): Command {
  const cmd = new Command("convert")
    .description("convert an image into a SOCI-enabled image (SOCI index manifest v2)")
    .arguments("<image_ref> <dest_ref>")
    .option("--standalone", "convert an OCI layout (directory or archive) without containerd", false)
    .option("--format <format>", "standalone output: oci-archive or oci-dir", "oci-archive")
    .option("--plain-http", "talk to registries over http", false)
    .option("-u, --user <user[:password]>", "registry credentials (else ~/.docker/config.json, else anonymous)")
    .option("--hosts-dir <dir>", "containerd-style hosts directory (mirrors, TLS) e.g. /etc/containerd/certs.d");
  addBuildFlags(cmd);
  return cmd.action(async (src: string, dst: string, flags: BuildFlags & { standalone: boolean; format: string; plainHttp: boolean; user?: string; hostsDir?: string }) => {
    if (flags.format !== "oci-archive" && flags.format !== "oci-dir") {
      throw new Error(`invalid format ${flags.format}: expect oci-archive or oci-dir`);
    }
    const opts = await buildOptionsFrom(flags);
    const { log, progress } = terminalProgress();
    if (flags.standalone) {
      const desc = await convertStandalone(src, dst, { ...opts, format: flags.format as LayoutFormat, log, progress });
      log(`converted image index: ${desc.digest}`);
      return;
    }
    // registry to registry, no containerd
    const client = new RegistryClient({
      plainHttp: flags.plainHttp,
      authorizer: new RegistryAuthorizer({ user: flags.user }),
      hosts: flags.hostsDir ? new HostsDirResolver({ hostsDir: flags.hostsDir, plainHttp: flags.plainHttp }) : undefined,
    });
    try {
      const desc = await convertRemote(client, src, dst, { ...opts, log, progress });
      log(`converted image index: ${desc.digest}`);
    } finally {
      await client.close();
    }
  });
}
