// One snapshotter per root directory. A second daemon started on the same root (a manual start
// beside the systemd unit, a test) would begin by force-unmounting every layer under
// `snapshots/` (restore, §5.1) — the live mounts of the first — and then share its SQLite store.
// The lock is an abstract unix socket named after the root's real path: the kernel drops it when
// its process dies, even by SIGKILL, so a crash never leaves a stale lock behind.
import { AlreadyExistsError, FailedPreconditionError } from "../errors/errors.js";
import { createHash } from "node:crypto";
import { realpath } from "node:fs/promises";
import { createServer } from "node:net";

export interface RootLock {
  release(): Promise<void>;
}

/** The abstract socket name (leading NUL) that stands for `realRoot`. */
export function rootLockName(realRoot: string): string {
  return `\0soci-snapshotter-grpc/${createHash("sha256").update(realRoot).digest("hex")}`;
}

/** Takes the lock of `root` (an existing directory), or throws if another process holds it. */
export async function lockRoot(root: string): Promise<RootLock> {
  const real = await realpath(root);
  const server = createServer((conn) => conn.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "EADDRINUSE")
        reject(new AlreadyExistsError(`another snapshotter is already running on ${real}`, { cause: err }));
      else reject(new FailedPreconditionError(`cannot lock ${real}: ${err.message}`, { cause: err }));
    });
    server.listen(rootLockName(real), () => resolve());
  });
  server.unref(); // the lock alone never keeps the process alive
  let released: Promise<void> | undefined;
  return {
    release: () => (released ??= new Promise<void>((resolve) => server.close(() => resolve()))),
  };
}
