// Filesystem operations of an unpack, applied in order on an I/O thread (fs-batch-worker.ts):
// the unpacker queues them without waiting, they travel in batches with the file data packed
// into one transferred buffer, and the thread runs each with synchronous calls. Decoding and
// parsing on the main thread overlap the writes; per-entry cost is the system calls themselves.
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";

/**
 * Paths (and link targets) are binary strings, one char per byte (the worker makes them Buffers):
 * structured clone would copy a whole pooled ArrayBuffer for every small Buffer. Times are strings
 * (see tree-writer.ts times()); uid < 0: no chown; chmod < 0: no chmod.
 */
export type FsOp =
  | { o: "mkdir"; n: string; p: string; mode: number; chmod: boolean }
  | {
      o: "file";
      n: string;
      p: string;
      mode: number;
      off: number;
      len: number;
      uid: number;
      gid: number;
      chmod: number;
      t: string;
    }
  | { o: "open"; n: string; id: number; p: string; mode: number }
  | { o: "write"; n: string; id: number; off: number; len: number }
  | { o: "close"; n: string; id: number; uid: number; gid: number; chmod: number; t: string }
  | { o: "drop"; n: string; id: number }
  | { o: "symlink"; n: string; target: string; p: string; uid: number; gid: number; t: string }
  | { o: "link"; n: string; from: string; p: string }
  | { o: "rm"; n: string; p: string }
  | {
      o: "special";
      n: string;
      tmp: string;
      p: string;
      kind: "char" | "block" | "fifo";
      major: number;
      minor: number;
      uid: number;
      gid: number;
      chmod: number;
      t: string;
    }
  | { o: "attrs"; n: string; p: string; uid: number; gid: number; chmod: number }
  | { o: "utimes"; n: string; p: string; t: string };

export interface FsBatchMessage {
  seq: number;
  ops: FsOp[];
  data?: ArrayBuffer;
  /** Starts a new session (closes what a failed one left open). */
  reset?: boolean;
}

export interface FsReply {
  done: number;
  error?: { entry: string; message: string; code?: string };
  data?: ArrayBuffer;
}

/** The first operation that failed: its entry name and the error. */
export interface FsFailure {
  entry: string;
  error: NodeJS.ErrnoException;
}

const DATA_SIZE = 1 << 20; // bytes of file data per batch
const MAX_OPS = 512; // operations per batch
const MAX_IN_FLIGHT = 4; // batches sent and not yet applied

export function fsWorkerPath(): string {
  return join(dirname(fileURLToPath(import.meta.url)), "..", "..", "dist", "fs", "fs-batch-worker.js");
}

// I/O threads outlive their unpacks (idle ones do not keep the process alive).
const idle: Worker[] = [];

function acquireWorker(): Worker {
  const w = idle.pop() ?? new Worker(fsWorkerPath());
  w.ref();
  w.postMessage({ seq: 0, ops: [], reset: true } satisfies FsBatchMessage);
  return w;
}

/**
 * Starts an I/O thread ahead of the first unpack and parks it idle once its module is loaded, so
 * that unpack does not wait for a thread to start (tens of milliseconds of CPU on a busy machine).
 */
export async function prestartIoThread(): Promise<void> {
  if (idle.length > 0) return;
  let w: Worker | undefined;
  try {
    w = new Worker(fsWorkerPath());
    const started = w;
    // An empty batch is answered once the worker's module has loaded and its handler runs.
    await new Promise<void>((resolve, reject) => {
      started.once("message", () => resolve());
      started.once("error", reject);
      started.postMessage({ seq: 0, ops: [] } satisfies FsBatchMessage);
    });
  } catch {
    void w?.terminate(); // the unpack will start (and report on) a thread of its own
    return;
  }
  releaseWorker(w);
}

function releaseWorker(w: Worker): void {
  w.removeAllListeners("message");
  w.removeAllListeners("error");
  w.unref();
  if (idle.length < 4) idle.push(w);
  else void w.terminate();
}

export class FsBatch {
  private worker: Worker | undefined;
  private ops: FsOp[] = [];
  private data: Uint8Array;
  private fill = 0;
  private readonly free: ArrayBuffer[] = [];
  private seq = 0;
  private done = 0;
  private waiters: (() => void)[] = [];
  private nextId = 0;
  /** The first failure, once the I/O thread reported it. */
  failure: FsFailure | undefined;

  constructor() {
    this.data = new Uint8Array(DATA_SIZE);
  }

  private get io(): Worker {
    if (!this.worker) {
      const w = acquireWorker();
      w.on("message", (r: FsReply) => this.onReply(r));
      w.on("error", (e: Error) => {
        this.failure ??= { entry: "", error: e };
        this.worker = undefined; // a dead thread is not reused
        this.done = this.seq;
        this.wake();
      });
      this.worker = w;
    }
    return this.worker;
  }

  private onReply(r: FsReply): void {
    this.done = r.done;
    if (r.data) this.free.push(r.data);
    if (r.error && !this.failure) {
      const error = new Error(r.error.message) as NodeJS.ErrnoException;
      if (r.error.code) error.code = r.error.code;
      this.failure = { entry: r.error.entry, error };
    }
    this.wake();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Queues an operation without file data. */
  queue(op: FsOp): void {
    this.ops.push(op);
    if (this.ops.length >= MAX_OPS) this.flush();
  }

  /** Queues a regular file: created, written, owned, moded and timed in one go. */
  file(op: Omit<Extract<FsOp, { o: "file" }>, "off" | "len">, body: Uint8Array): void {
    if (body.length > DATA_SIZE) {
      const id = this.open(op.n, op.p, op.mode);
      this.write(op.n, id, body);
      this.close(op.n, id, op);
      return;
    }
    if (body.length > DATA_SIZE - this.fill) this.flush();
    this.data.set(body, this.fill);
    this.queue({ ...op, o: "file", off: this.fill, len: body.length });
    this.fill += body.length;
  }

  /** Opens a file whose data follows in write() calls; returns its id. */
  open(n: string, p: string, mode: number): number {
    const id = ++this.nextId;
    this.queue({ o: "open", n, id, p, mode });
    return id;
  }

  write(n: string, id: number, body: Uint8Array): void {
    for (let pos = 0; pos < body.length; ) {
      if (this.fill === DATA_SIZE) this.flush();
      const k = Math.min(DATA_SIZE - this.fill, body.length - pos);
      this.data.set(body.subarray(pos, pos + k), this.fill);
      this.queue({ o: "write", n, id, off: this.fill, len: k });
      this.fill += k;
      pos += k;
    }
  }

  close(n: string, id: number, a: { uid: number; gid: number; chmod: number; t: string }): void {
    this.queue({ o: "close", n, id, uid: a.uid, gid: a.gid, chmod: a.chmod, t: a.t });
  }

  /** Sends what is queued. */
  flush(): void {
    if (this.ops.length === 0) return;
    const data = this.fill > 0 ? this.data.buffer : undefined;
    const msg: FsBatchMessage = { seq: ++this.seq, ops: this.ops, ...(data ? { data: data as ArrayBuffer } : {}) };
    this.io.postMessage(msg, data ? [data as ArrayBuffer] : []);
    this.ops = [];
    if (data) {
      const next = this.free.pop();
      this.data = next ? new Uint8Array(next) : new Uint8Array(DATA_SIZE);
      this.fill = 0;
    }
  }

  /** Sends what is queued, then waits while too many batches are in flight (the writes are behind). */
  async ready(): Promise<void> {
    this.flush();
    while (this.seq - this.done >= MAX_IN_FLIGHT && this.worker) {
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }

  /** Sends what is queued and waits until all of it was applied (or skipped after a failure). */
  async drain(): Promise<void> {
    this.flush();
    while (this.done < this.seq && this.worker) await new Promise<void>((r) => this.waiters.push(r));
  }

  /** Drains and gives the I/O thread back (a later operation takes a thread again). */
  async release(): Promise<void> {
    await this.drain();
    if (this.worker) releaseWorker(this.worker);
    this.worker = undefined;
  }
}
