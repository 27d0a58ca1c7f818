// Cleanup (docs/snapshotter.md §1.7): Remove only forgets a snapshot; the directories of snapshots that
// no longer exist are deleted here, after unmounting a remote layer still mounted on one.
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { mountPoints } from "./mountinfo.js";

/** The snapshot id a directory belongs to: its name, or the part after `_` (id-mapped copies). */
export function directoryId(name: string): string {
  const i = name.lastIndexOf("_");
  return i >= 0 ? name.slice(i + 1) : name;
}

/**
 * Deletes every entry of `snapshotsDir` whose id is not live. `liveIds` is read after listing the
 * directory, so a snapshot created meanwhile is never taken for an orphan.
 * Returns the removed directories.
 */
export async function removeOrphans(
  snapshotsDir: string,
  liveIds: () => Set<string>,
  unmount: (mountpoint: string) => Promise<void>,
): Promise<string[]> {
  const names = await readdir(snapshotsDir);
  const live = liveIds();
  const orphans = names.filter((n) => !live.has(directoryId(n))).map((n) => join(snapshotsDir, n));
  if (orphans.length === 0) return [];
  // Deepest first; rm -r would otherwise descend into a mounted layer and delete its files.
  const mounted = (await mountPoints()).reverse();
  for (const dir of orphans) {
    for (const mp of mounted.filter((m) => m === dir || m.startsWith(dir + "/"))) await unmount(mp);
    await rm(dir, { recursive: true, force: true });
  }
  return orphans;
}
