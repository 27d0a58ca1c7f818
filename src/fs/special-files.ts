// Device nodes and fifos. Node has no mknod(2), so coreutils' mknod/mkfifo create them (mode 000;
// the caller sets owner and mode afterwards). The path is passed as an argument, so callers create
// the node under a plain ASCII name and rename it into place: any byte survives that way.
import { runToolOrThrow } from "./run-tool.js";

export type SpecialKind = "char" | "block" | "fifo";

export async function makeSpecial(
  path: string,
  kind: SpecialKind,
  major = 0,
  minor = 0,
  signal?: AbortSignal,
): Promise<void> {
  const opts = signal ? { signal } : {};
  if (kind === "fifo") {
    await runToolOrThrow("mkfifo", "mkfifo", ["-m", "000", "--", path], opts);
    return;
  }
  if (!Number.isInteger(major) || !Number.isInteger(minor) || major < 0 || minor < 0) {
    throw new RangeError(`invalid device number ${major}:${minor}`);
  }
  await runToolOrThrow(
    "mknod",
    "mknod",
    ["-m", "000", "--", path, kind === "char" ? "c" : "b", String(major), String(minor)],
    opts,
  );
}
