// Disk usage of a directory tree the way containerd counts it (continuity fs.DiskUsage): every
// inode once (hardlinks count once), size = allocated 512-byte blocks. Asynchronous on purpose:
// the tree may sit on a FUSE mount served by this very process.
import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";
import type { Usage } from "./snapshot-store.js";

export async function diskUsage(root: string): Promise<Usage> {
  const seen = new Set<string>();
  let size = 0;
  const visit = async (path: string): Promise<void> => {
    const st = await lstat(path, { bigint: true });
    const ino = `${st.dev}:${st.ino}`;
    if (!seen.has(ino)) {
      seen.add(ino);
      size += Number(st.blocks) * 512;
    }
    if (st.isDirectory()) {
      for (const name of await readdir(path)) await visit(join(path, name));
    }
  };
  await visit(root);
  return { size, inodes: seen.size };
}
