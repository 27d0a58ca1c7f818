// `soci prefetch record`: mount an image lazily, run a workload in it (chrooted into a writable
// overlay over the mount, as a container would see it), and write the files it read
// as the JSON list `soci convert --prefetch-files-json` takes (docs/formats.md §9.8). With no
// workload command, it records until interrupted (run the workload against the mountpoint yourself).
import { Command } from "commander";
import { spawn } from "node:child_process";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { addRegistryFlags, registryClient, type RegistryFlags } from "../registry-flags.js";
import { parsePlatform } from "../../formats/platform.js";
import { mountImage } from "../../fs/image-mount.js";
import { PrefetchRecorder } from "../../fs/prefetch-recorder.js";
import { InflatePool } from "../../wasm/pool.js";
import { FailedPreconditionError } from "../../errors/errors.js";

const run = promisify(execFile);

interface RecordFlags extends RegistryFlags {
  platform?: string;
  indexDigest?: string;
  mountpoint?: string;
  minFraction: string;
  smallFile: string;
}

export function prefetchRecordCommand(): Command {
  const cmd = new Command("record")
    .description(
      "mount an image lazily, run a command in it (chroot; put it after --) and write the files it read as a --prefetch-files-json list",
    )
    .arguments("<ref> <output> [command...]")
    .option("--platform <platform>", "platform of a multi-platform image (default: this host's)")
    .option("--index-digest <digest>", "use this SOCI index instead of discovering one")
    .option("--mountpoint <dir>", "where to mount the image (default: a temporary directory)")
    .option("--min-fraction <share>", "list a file when at least this share of it was read", "0.5")
    .option("--small-file <bytes>", "list a file this small when any of it was read", String(1 << 20));
  addRegistryFlags(cmd);
  return cmd.action(async (ref: string, output: string, command: string[], flags: RecordFlags, self: Command) => {
    const { root } = self.optsWithGlobals<{ root: string }>();
    await mkdir(root, { recursive: true, mode: 0o700 });
    const recorder = new PrefetchRecorder();
    const client = registryClient(flags);
    const pool = new InflatePool();
    const scratch = await mkdtemp(join(root, "record-"));
    const mountpoint = flags.mountpoint ?? join(scratch, "image");
    const log = (line: string) => process.stderr.write(`${line}\n`);
    try {
      const mounted = await mountImage({
        client,
        ref,
        mountpoint,
        root,
        pool,
        log,
        platform: flags.platform ? parsePlatform(flags.platform) : undefined,
        discovery: { indexDigest: flags.indexDigest, v2: true },
        onRead: (_layer, entry, offset, length) => recorder.record(entry, offset, length),
      });
      try {
        if (command.length > 0) await runInImage(mounted.mountpoint, join(scratch, "run"), command);
        else await recordUntilInterrupted(mounted.mountpoint);
      } finally {
        await mounted.unmount();
      }
    } finally {
      await pool.destroy();
      await client.close();
      await rm(scratch, { recursive: true, force: true });
    }
    const { files, skipped } = recorder.prefetchList({
      minFraction: Number(flags.minFraction),
      smallFile: Number(flags.smallFile),
    });
    await writeFile(output, `${JSON.stringify(files, null, 2)}\n`);
    for (const f of skipped) log(`not listed (${f.read} of ${f.size} bytes read): ${f.path}`);
    log(`${files.length} files written to ${output}`);
  });
}

/**
 * Runs `command` chrooted into the mounted image as a container would see it: a writable overlay (in
 * `scratch`) over the read-only image, with /proc and /dev bound in.
 */
async function runInImage(image: string, scratch: string, command: string[]): Promise<void> {
  const upper = join(scratch, "upper");
  const work = join(scratch, "work");
  const rootfs = join(scratch, "rootfs");
  for (const d of [upper, work, rootfs]) await mkdir(d, { recursive: true });
  const mounted: string[] = [];
  try {
    await run("mount", [
      "-t",
      "overlay",
      "overlay",
      "-o",
      `lowerdir=${image},upperdir=${upper},workdir=${work}`,
      rootfs,
    ]);
    mounted.push(rootfs);
    for (const d of ["proc", "dev"]) {
      const target = join(rootfs, d);
      await mkdir(target, { recursive: true });
      await run("mount", ["--rbind", `/${d}`, target]);
      mounted.push(target);
    }
    const code = await new Promise<number | null>((resolve, reject) => {
      const child = spawn("chroot", [rootfs, ...command], {
        stdio: "inherit",
        env: { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", HOME: "/root", LANG: "C.UTF-8" },
      });
      child.once("error", reject);
      child.once("exit", (c) => resolve(c));
    });
    if (code !== 0) throw new FailedPreconditionError(`the workload exited with status ${code}`);
  } finally {
    for (const t of mounted.reverse()) await run("umount", ["-l", t]).catch(() => undefined);
  }
}

function recordUntilInterrupted(mountpoint: string): Promise<void> {
  process.stderr.write(`recording reads under ${mountpoint}; interrupt (Ctrl-C) to write the list\n`);
  return new Promise<void>((done) => {
    process.once("SIGINT", () => done());
    process.once("SIGTERM", () => done());
  });
}
