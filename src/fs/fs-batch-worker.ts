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
const B = (s: string) => Buffer.from(s, "latin1"); // paths arrive as binary strings
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

// Nodes a batch's GNU tar run already made (their scratch paths).
const made = new Set<string>();

// One ustar header block for a device or fifo named `name` (mode 000, owner 0:0).
function ustarHeader(name: string, op: Extract<FsOp, { o: "special" }>, mtime: number): Buffer {
  const h = Buffer.alloc(512);
  const put = (off: number, len: number, s: string) => h.write(s, off, len, "latin1");
  const oct = (off: number, len: number, v: number) => put(off, len, `${v.toString(8).padStart(len - 1, "0")}\0`);
  put(0, 100, name);
  oct(100, 8, 0);
  oct(108, 8, 0);
  oct(116, 8, 0);
  oct(124, 12, 0);
  oct(136, 12, mtime);
  put(156, 1, op.kind === "fifo" ? "6" : op.kind === "char" ? "3" : "4");
  put(257, 8, "ustar\u000000");
  oct(329, 8, op.major);
  oct(337, 8, op.minor);
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  put(148, 8, `${sum.toString(8).padStart(6, "0")}\0 `);
  return h;
}

/**
 * Makes every device and fifo of a batch with one GNU tar run (instead of a mknod process per
 * node): the nodes go to their scratch names, where special() finds them. Without tar, or if it
 * fails, special() makes each node itself (and reports that failure).
 */
function makeSpecials(ops: FsOp[]): void {
  made.clear();
  const specials = ops.filter((o): o is Extract<FsOp, { o: "special" }> => o.o === "special");
  if (specials.length < 2) return;
  const byDir = new Map<string, Extract<FsOp, { o: "special" }>[]>();
  for (const op of specials) {
    const slash = op.tmp.lastIndexOf("/");
    const dir = op.tmp.slice(0, slash);
    if (!/^node-\d+$/.test(op.tmp.slice(slash + 1))) return;
    byDir.set(dir, [...(byDir.get(dir) ?? []), op]);
  }
  const mtime = Math.floor(Date.now() / 1000);
  for (const [dir, list] of byDir) {
    const archive = Buffer.concat([
      ...list.map((op) => ustarHeader(op.tmp.slice(dir.length + 1), op, mtime)),
      Buffer.alloc(1024),
    ]);
    const r = spawnSync("tar", ["-x", "-f", "-", "-C", dir, "--no-same-permissions", "--numeric-owner"], {
      input: archive,
      stdio: ["pipe", "ignore", "ignore"],
    });
    if (r.status === 0) for (const op of list) made.add(op.tmp);
  }
}

function special(op: Extract<FsOp, { o: "special" }>): void {
  if (made.has(op.tmp)) {
    made.delete(op.tmp);
    chmodSync(op.tmp, 0); // tar's umask is the process's: make it 000 as mknod -m 000 would
    placeSpecial(op);
    return;
  }
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
  placeSpecial(op);
}

function placeSpecial(op: Extract<FsOp, { o: "special" }>): void {
  renameSync(op.tmp, B(op.p));
  lchownSync(B(op.p), op.uid, op.gid);
  if (op.chmod >= 0) chmodSync(B(op.p), op.chmod);
  if (op.t !== "") lutimesSync(B(op.p), op.t, op.t);
}

function apply(op: FsOp, data: Uint8Array): void {
  switch (op.o) {
    case "mkdir":
      mkdirSync(B(op.p), op.mode);
      if (op.chmod) chmodSync(B(op.p), op.mode);
      return;
    case "file": {
      const fd = openSync(B(op.p), "wx", op.mode);
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
      fds.set(op.id, openSync(B(op.p), "wx", op.mode));
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
      symlinkSync(B(op.target), B(op.p));
      if (op.uid >= 0) lchownSync(B(op.p), op.uid, op.gid);
      lutimesSync(B(op.p), op.t, op.t);
      return;
    case "link":
      linkSync(B(op.from), B(op.p));
      return;
    case "rm":
      rmSync(B(op.p), { recursive: true, force: true });
      return;
    case "special":
      special(op);
      return;
    case "attrs":
      if (op.uid >= 0) lchownSync(B(op.p), op.uid, op.gid);
      if (op.chmod >= 0) chmodSync(B(op.p), op.chmod);
      return;
    case "utimes":
      utimesSync(B(op.p), op.t, op.t);
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
    makeSpecials(msg.ops);
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
