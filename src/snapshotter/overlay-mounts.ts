// The mounts a snapshot hands to containerd (docs/snapshotter.md §1.7 `mounts`): a bind mount when
// there is nothing to overlay, otherwise overlayfs with the snapshot's own fs/ as upper layer and
// its ancestors' fs/ as lower layers, nearest parent first.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { SnapshotRef } from "./snapshot-store.js";

/** containerd.types.Mount */
export interface Mount {
  type: string;
  source: string;
  options: string[];
}

/** `<snapshotsDir>/<id>/fs`: a snapshot's contents (upper dir, or a remote layer's mountpoint). */
export const fsDir = (snapshotsDir: string, id: string) => join(snapshotsDir, id, "fs");
/** `<snapshotsDir>/<id>/work`: overlayfs' work dir for an active snapshot. */
export const workDir = (snapshotsDir: string, id: string) => join(snapshotsDir, id, "work");

export interface MountOptions {
  /** add `userxattr` (overlayfs in a user namespace keeps its xattrs in user.*) */
  userxattr: boolean;
}

export function snapshotMounts(snapshotsDir: string, s: SnapshotRef, opts: MountOptions): Mount[] {
  const rw = s.kind === "view" ? "ro" : "rw";
  if (s.parentIds.length === 0) {
    return [{ type: "bind", source: fsDir(snapshotsDir, s.id), options: [rw, "rbind"] }];
  }
  if (s.kind === "view" && s.parentIds.length === 1) {
    // A read-only view of a single layer needs no overlay: bind the parent's contents.
    return [{ type: "bind", source: fsDir(snapshotsDir, s.parentIds[0]!), options: ["ro", "rbind"] }];
  }
  const options: string[] = [];
  if (s.kind === "active") {
    options.push(`workdir=${workDir(snapshotsDir, s.id)}`, `upperdir=${fsDir(snapshotsDir, s.id)}`);
  }
  options.push(`lowerdir=${s.parentIds.map((id) => fsDir(snapshotsDir, id)).join(":")}`);
  if (opts.userxattr) options.push("userxattr");
  return [{ type: "overlay", source: "overlay", options }];
}

/**
 * Whether overlayfs needs `userxattr`: only inside a user namespace (containerd's rule), i.e. when
 * uid 0 is not mapped to the whole host range.
 */
export function needsUserxattr(): boolean {
  try {
    const map = readFileSync("/proc/self/uid_map", "utf8").trim().split(/\s+/);
    return !(map.length === 3 && map[0] === "0" && map[1] === "0" && map[2] === "4294967295");
  } catch {
    return false;
  }
}
