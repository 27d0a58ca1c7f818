// `soci image rpull`: pull an image into containerd lazily through a SOCI snapshotter.
import { Command } from "commander";
import { addRegistryFlags, registryClient, type RegistryFlags } from "../registry-flags.js";
import { parsePlatform } from "../../formats/platform.js";
import { resolvePull } from "../../pull/resolve-pull.js";
import type { ContainerdClient } from "../../containerd/client.js";

interface RpullFlags extends RegistryFlags {
  platform?: string;
  snapshotter: string;
  sociIndexDigest?: string;
  quiet: boolean;
}

export function imageCommand(): Command {
  const rpull = new Command("rpull")
    .description(
      "pull an image into containerd, letting the snapshotter mount indexed layers lazily (cri.* labels, as the CRI plugin sends)",
    )
    .arguments("<ref>")
    .option("--platform <platform>", "platform to pull (default: this host's)")
    .option("--snapshotter <name>", "containerd snapshotter to unpack with", "soci")
    .option("--soci-index-digest <digest>", "use this SOCI index instead of discovering one")
    .option("-q, --quiet", "print nothing but errors", false);
  addRegistryFlags(rpull);
  rpull.action(async (ref: string, flags: RpullFlags, self: Command) => {
    const globals = self.optsWithGlobals<{ address: string; namespace: string }>();
    const registry = registryClient(flags);
    const platform = flags.platform ? parsePlatform(flags.platform) : undefined;
    // the registry requests go out first; gRPC and the containerd protos load while they travel
    const resolving = resolvePull(registry, ref, platform);
    resolving.catch(() => undefined); // awaited below
    let ctd: ContainerdClient | undefined;
    try {
      const [client, { pullImage }] = await Promise.all([
        import("../../containerd/client.js"),
        import("../../pull/pull-image.js"),
      ]);
      ctd = client.ContainerdClient.connect({ address: globals.address, namespace: globals.namespace });
      const r = await pullImage(ctd, registry, await resolving, {
        snapshotter: flags.snapshotter,
        platform,
        sociIndexDigest: flags.sociIndexDigest,
        log: flags.quiet ? undefined : (line) => process.stdout.write(`${line}\n`),
      });
      if (!flags.quiet) {
        const lazy = r.unpack.layers.filter((l) => l.outcome === "remote").length;
        process.stdout.write(
          `pulled ${r.name}: ${lazy} of ${r.unpack.layers.length} layers provided by ${flags.snapshotter}\n`,
        );
      }
    } finally {
      ctd?.close();
      await registry.close();
    }
  });
  return new Command("image").description("images in containerd").addCommand(rpull);
}
