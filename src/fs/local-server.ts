// What a process serving on a local unix socket (the daemon, the FUSE host, `soci mount`) checks
// about the one before it: whether a recorded pid still runs, and whether a socket it left behind
// may be removed.
import { readFileSync, type Stats } from "node:fs";
import { lstat, rm } from "node:fs/promises";
import { FailedPreconditionError } from "../errors/errors.js";

/** The process runs (a zombie, killed but not yet reaped, does not). */
export function isProcessAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/** A socket left by a previous run blocks bind; anything that is not a socket is an error. */
export async function removeStaleSocket(path: string): Promise<void> {
  let st: Stats;
  try {
    st = await lstat(path);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new FailedPreconditionError(`${path} exists and is not a socket`);
  await rm(path, { force: true });
}
