// A hang guard for synchronous decoder calls. A stuck WebAssembly loop blocks the test thread, so
// vitest's own timeout can never fire; this watchdog runs in a worker thread, and when the test
// thread has not reported progress for `limitMs` it prints what was running and kills the test
// process, so the run fails with a message instead of hanging CI forever.
import { Worker } from "node:worker_threads";

const WORKER = `
const { workerData } = require("node:worker_threads");
const fs = require("node:fs");
const beat = new Int32Array(workerData.beat);
const label = new Uint8Array(workerData.label);
let last = Atomics.load(beat, 0);
let since = Date.now();
for (;;) {
  Atomics.wait(beat, 1, 0, 250);
  if (Atomics.load(beat, 1) !== 0) break; // stopped
  const now = Atomics.load(beat, 0);
  if (now !== last) { last = now; since = Date.now(); continue; }
  if (Date.now() - since > workerData.limitMs) {
    const n = label.indexOf(0);
    const what = Buffer.from(label.subarray(0, n < 0 ? label.length : n)).toString();
    fs.writeSync(2, "\\n[watchdog] no progress for " + workerData.limitMs + " ms in " + workerData.name +
      " while running: " + what + "\\n[watchdog] the decoder is probably stuck in a loop; killing the test process\\n");
    process.kill(process.pid, "SIGKILL");
  }
}
`;

export class Watchdog {
  private readonly beat = new Int32Array(new SharedArrayBuffer(8)); // [progress counter, stopped]
  private readonly label = new Uint8Array(new SharedArrayBuffer(512));
  private readonly worker: Worker;
  private readonly enc = new TextEncoder();

  constructor(name: string, limitMs: number) {
    this.worker = new Worker(WORKER, {
      eval: true,
      workerData: { beat: this.beat.buffer, label: this.label.buffer, limitMs, name },
    });
    this.worker.unref();
  }

  /** Records progress; `what` is printed if the next step hangs. */
  step(what: string): void {
    this.label.fill(0);
    this.enc.encodeInto(what.slice(0, 500), this.label);
    Atomics.add(this.beat, 0, 1);
  }

  stop(): void {
    Atomics.store(this.beat, 1, 1);
    Atomics.notify(this.beat, 1);
    void this.worker.terminate();
  }
}
