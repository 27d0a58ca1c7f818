// Startup check that overlayfs works on the snapshotter's filesystem (SOCI's service.Supported,
// containerd's overlayutils.Supported): one real overlay mount in a scratch directory, so a
// misconfigured host fails at start with a clear message instead of at the first container.
import { FailedPreconditionError } from "../errors/errors.js";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export async function checkOverlaySupported(dir: string, userxattr: boolean): Promise<void> {
  const scratch = await mkdtemp(join(dir, "overlay-check-"));
  try {
    for (const d of ["lower1", "lower2", "upper", "work", "merged"]) await mkdir(join(scratch, d));
    // two lower dirs: the shape of every container on a multi-layer image
    const opts = [
      `lowerdir=${join(scratch, "lower2")}:${join(scratch, "lower1")}`,
      `upperdir=${join(scratch, "upper")}`,
      `workdir=${join(scratch, "work")}`,
    ];
    if (userxattr) opts.push("userxattr");
    try {
      await run("mount", ["-t", "overlay", "overlay", join(scratch, "merged"), "-o", opts.join(",")]);
    } catch (err) {
      const why = (err as { stderr?: string }).stderr?.trim() || (err as Error).message;
      throw new FailedPreconditionError(`overlayfs is not usable on ${dir}: ${why}`, { cause: err });
    }
    await run("umount", [join(scratch, "merged")]);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
