// `soci mount` / `soci unmount`: look inside an image without pulling it.
import { Command } from "commander";
import { mkdir } from "node:fs/promises";
import { addRegistryFlags, registryClient, type RegistryFlags } from "../registry-flags.js";
import { parsePlatform } from "../../formats/platform.js";
import { mountImage, unmountImage } from "../../fs/image-mount.js";
import { InflatePool } from "../../wasm/pool.js";

interface MountFlags extends RegistryFlags {
  platform?: string;
  indexDigest?: string;
  sociV1: boolean;
  chunkVerification: boolean;
}

export function mountCommand(): Command {
  const cmd = new Command("mount")
    .description(
      "lazily mount an image from its SOCI index (read-only, overlayfs over FUSE layers); stays in the foreground",
    )
    .arguments("<ref> <mountpoint>")
    .option("--platform <platform>", "platform of a multi-platform image (default: this host's)")
    .option("--index-digest <digest>", "use this SOCI index instead of discovering one")
    .option("--soci-v1", "also look for SOCI index manifest v1 (referrers API / fallback tag)", false)
    .option("--no-chunk-verification", "ignore layer verification artifacts (fetch whole spans and ztocs)");
  addRegistryFlags(cmd);
  return cmd.action(async (ref: string, mountpoint: string, flags: MountFlags, self: Command) => {
    const { root } = self.optsWithGlobals<{ root: string }>();
    await mkdir(root, { recursive: true, mode: 0o700 });
    const client = registryClient(flags);
    const pool = new InflatePool();
    const log = (line: string) => process.stderr.write(`${line}\n`);
    const mounted = await mountImage({
      client,
      ref,
      mountpoint,
      root,
      pool,
      log,
      platform: flags.platform ? parsePlatform(flags.platform) : undefined,
      discovery: { indexDigest: flags.indexDigest, v1: flags.sociV1, v2: true },
      chunkVerification: flags.chunkVerification,
    }).catch(async (e: unknown) => {
      await pool.destroy();
      await client.close();
      throw e;
    });
    const lazy = mounted.layers.filter((l) => l.mode === "lazy").length;
    process.stdout.write(
      `mounted ${ref} at ${mounted.mountpoint} (${lazy} lazy, ${mounted.layers.length - lazy} local layers)\n`,
    );
    await new Promise<void>((done) => {
      const stop = () => done();
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    });
    await mounted.unmount();
    await pool.destroy();
    await client.close();
    process.stdout.write(`unmounted ${mounted.mountpoint}\n`);
  });
}

export function unmountCommand(): Command {
  return new Command("unmount")
    .description("unmount a soci mount (stops its `soci mount` process)")
    .arguments("<mountpoint>")
    .action(async (mountpoint: string, _flags: unknown, self: Command) => {
      const { root } = self.optsWithGlobals<{ root: string }>();
      await unmountImage(root, mountpoint);
    });
}
