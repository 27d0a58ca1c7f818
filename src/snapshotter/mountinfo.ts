// Which paths are mount points (from /proc/self/mountinfo, never by stat: stat on a FUSE mount
// this process serves would wait on itself), and unmounting the ones left behind.
import { FailedPreconditionError } from "../errors/errors.js";
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { sep } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
const octalUnescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

/** All mount points of this mount namespace, in mount order. */
export async function mountPoints(): Promise<string[]> {
  const text = await readFile("/proc/self/mountinfo", "utf8");
  return text
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => octalUnescape(l.split(" ")[4]!));
}

/** Mount points strictly below `dir`, deepest (latest) first so they can be unmounted in order. */
export async function mountPointsUnder(dir: string): Promise<string[]> {
  const prefix = dir.endsWith(sep) ? dir : dir + sep;
  return (await mountPoints()).filter((m) => m.startsWith(prefix)).reverse();
}

/**
 * Unmounts `path` even when its FUSE server is gone (umount -f aborts the connection); falls back
 * to a lazy detach when the mount is busy.
 */
export async function forceUnmount(path: string): Promise<void> {
  try {
    await run("umount", ["-f", path]);
  } catch (err) {
    try {
      await run("umount", ["-l", path]);
    } catch {
      throw new FailedPreconditionError(
        `cannot unmount ${path}: ${(err as { stderr?: string }).stderr?.trim() || (err as Error).message}`,
      );
    }
  }
}
