// Piscina worker: runs the inflate core off the main thread. One WebAssembly module per thread.
import { Piscina } from "piscina";
import type { MessagePort } from "node:worker_threads";
import { gunzip } from "./gunzip.js";
import { extract, type CheckpointState } from "./extract.js";
import { CheckpointBuilder } from "./checkpoints.js";

export type WorkerTask =
  | { op: "gunzip"; bytes: Uint8Array; maxOutput?: number }
  | { op: "extract"; spanBytes: Uint8Array; checkpoint: CheckpointState; offset: number; length: number }
  | { op: "checkpoints"; port: MessagePort; spanSize: number; verifyCrc?: boolean };

/** Messages on a checkpoints port, main → worker. */
export type ChunkMessage = { chunk: Uint8Array } | { end: true };
/** Messages on a checkpoints port, worker → main. */
export type BuildMessage =
  | { ack: number }
  | { checkpoint: { in: number; out: number; bits: number; window: Uint8Array } }
  | { done: { compressedSize: number; uncompressedSize: number; members: number } };

/** A task's outcome. Errors travel as data: structured clone would drop their class and code. */
export type WorkerResult<T> = { ok: T } | { err: { name: string; message: string; code?: number } };

export default async function run(task: WorkerTask): Promise<WorkerResult<unknown>> {
  try {
    switch (task.op) {
      case "gunzip":
        return moved(gunzip(task.bytes, { maxOutput: task.maxOutput }));
      case "extract":
        return moved(extract(task.spanBytes, task.checkpoint, task.offset, task.length));
      case "checkpoints":
        return { ok: await buildFromPort(task.port, task.spanSize, task.verifyCrc ?? true) };
    }
  } catch (err) {
    const e = err as Error & { code?: unknown };
    return { err: { name: e.name, message: e.message, code: typeof e.code === "number" ? e.code : undefined } };
  }
}

// Transfers the result's buffer instead of copying it.
function moved(out: Uint8Array) {
  const wrapped = {
    get [Piscina.transferableSymbol]() {
      return [out.buffer];
    },
    get [Piscina.valueSymbol]() {
      return { ok: out };
    },
  };
  return Piscina.move(wrapped as never) as unknown as WorkerResult<Uint8Array>;
}

// Streams a layer in over a MessagePort; acknowledges each chunk so the sender can apply backpressure.
function buildFromPort(port: MessagePort, spanSize: number, verifyCrc: boolean) {
  return new Promise((resolve, reject) => {
    let builder: CheckpointBuilder | undefined;
    try {
      builder = new CheckpointBuilder(spanSize, {
        verifyCrc,
        onCheckpoint(cp) {
          const msg: BuildMessage = { checkpoint: cp };
          port.postMessage(msg, [cp.window.buffer as ArrayBuffer]);
        },
      });
    } catch (err) {
      port.close();
      reject(err);
      return;
    }
    const b = builder;
    let seq = 0;
    port.on("message", (msg: ChunkMessage) => {
      try {
        if ("chunk" in msg) {
          b.push(msg.chunk);
          port.postMessage({ ack: ++seq } satisfies BuildMessage);
          return;
        }
        const r = b.finish();
        const done = { compressedSize: r.compressedSize, uncompressedSize: r.uncompressedSize, members: r.members };
        // sent on the port, after every checkpoint, so the receiver has them all when it sees it
        port.postMessage({ done } satisfies BuildMessage);
        port.close();
        resolve(done);
      } catch (err) {
        b.close();
        port.close();
        reject(err);
      }
    });
  });
}
