// The unpacker's I/O thread: applies batches of filesystem operations in order with synchronous
// calls (a file is open, write, fchown, fchmod, futimes, close: six system calls and no event-loop
// round trips), reporting each batch's completion and the first failure. After a failure the
// remaining operations of the session are skipped; the next session starts clean.
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  closeSync,
  fchmodSync,
  fchownSync,
  futimesSync,
  lchownSync,
  linkSync,
  lutimesSync,
  mkdirSync,
  openSync,
  renameSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeSync,
} from "node:fs";
import { parentPort } from "node:worker_threads";
import type { FsBatchMessage, FsOp, FsReply } from "./fs-batch.js";

const port = parentPort!;
let fds = new Map<number, number>();
let failed = false;

function writeAll(fd: number, data: Uint8Array, off: number, len: number): void {
  while (len > 0) {
    const n = writeSync(fd, data, off, len);
    off += n;
    len -= n;
  }
}

// Owner, mode and times of an open file, then close (as TreeWriter.finishFile did).
function finish(fd: number, op: { uid: number; gid: number; chmod: number; t: string }): void {
  try {
    if (op.uid >= 0) fchownSync(fd, op.uid, op.gid);
    if (op.chmod >= 0) fchmodSync(fd, op.chmod);
    futimesSync(fd, op.t, op.t);
  } finally {
    closeSync(fd);
  }
}

function special(op: Extract<FsOp, { o: "special" }>): void {
  const args =
    op.kind === "fifo"
      ? ["-m", "000", "--", op.tmp]
      : ["-m", "000", "--", op.tmp, op.kind === "char" ? "c" : "b", String(op.major), String(op.minor)];
  const cmd = op.kind === "fifo" ? "mkfifo" : "mknod";
  const r = spawnSync(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
  if (r.error) {
    const e = r.error as NodeJS.ErrnoException;
    throw e.code === "ENOENT" ? new Error(`${cmd} not found: install it (coreutils)`) : e;
  }
  if (r.status !== 0)
    throw new Error(`${cmd}: ${r.stderr.toString("utf8").trim() || `exited with status ${r.status}`}`);
  renameSync(op.tmp, op.p);
  lchownSync(op.p, op.uid, op.gid);
  if (op.chmod >= 0) chmodSync(op.p, op.chmod);
  if (op.t !== "") lutimesSync(op.p, op.t, op.t);
}

function apply(op: FsOp, data: Uint8Array): void {
  switch (op.o) {
    case "mkdir":
      mkdirSync(op.p, op.mode);
      if (op.chmod) chmodSync(op.p, op.mode);
      return;
    case "file": {
      const fd = openSync(op.p, "wx", op.mode);
      try {
        writeAll(fd, data, op.off, op.len);
      } catch (e) {
        closeSync(fd);
        throw e;
      }
      finish(fd, op);
      return;
    }
    case "open":
      fds.set(op.id, openSync(op.p, "wx", op.mode));
      return;
    case "write":
      writeAll(fds.get(op.id)!, data, op.off, op.len);
      return;
    case "close": {
      const fd = fds.get(op.id)!;
      fds.delete(op.id);
      finish(fd, op);
      return;
    }
    case "drop": {
      const fd = fds.get(op.id);
      fds.delete(op.id);
      if (fd !== undefined) closeSync(fd);
      return;
    }
    case "symlink":
      symlinkSync(op.target, op.p);
      if (op.uid >= 0) lchownSync(op.p, op.uid, op.gid);
      lutimesSync(op.p, op.t, op.t);
      return;
    case "link":
      linkSync(op.from, op.p);
      return;
    case "rm":
      rmSync(op.p, { recursive: true, force: true });
      return;
    case "special":
      special(op);
      return;
    case "attrs":
      if (op.uid >= 0) lchownSync(op.p, op.uid, op.gid);
      if (op.chmod >= 0) chmodSync(op.p, op.chmod);
      return;
    case "utimes":
      utimesSync(op.p, op.t, op.t);
      return;
  }
}

function closeAll(): void {
  for (const fd of fds.values()) {
    try {
      closeSync(fd);
    } catch {
      // closing is all that is left to do
    }
  }
  fds = new Map();
}

port.on("message", (msg: FsBatchMessage) => {
  if (msg.reset) {
    closeAll();
    failed = false;
    return;
  }
  let reply: FsReply = { done: msg.seq };
  if (!failed) {
    const data = msg.data ? new Uint8Array(msg.data) : new Uint8Array(0);
    for (const op of msg.ops) {
      try {
        apply(op, data);
      } catch (e) {
        const err = e as NodeJS.ErrnoException;
        failed = true;
        closeAll();
        reply = { done: msg.seq, error: { entry: op.n, message: err.message, code: err.code } };
        break;
      }
    }
  }
  // the data buffer goes back to be filled again
  if (msg.data) reply.data = msg.data;
  port.postMessage(reply, msg.data ? [msg.data] : []);
});
