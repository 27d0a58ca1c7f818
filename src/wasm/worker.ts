// Piscina worker: runs the inflate core off the main thread. One WebAssembly module per thread.
import { Piscina } from "piscina";
import type { MessagePort } from "node:worker_threads";
import { gunzip } from "./gunzip.js";
import { extract, type CheckpointState } from "./extract.js";
import { CheckpointBuilder } from "./checkpoints.js";
import { consumePort } from "./port-stream.js";

export type WorkerTask =
  | { op: "gunzip"; bytes: Uint8Array; maxOutput?: number }
  | { op: "extract"; spanBytes: Uint8Array; checkpoint: CheckpointState; offset: number; length: number }
  | { op: "checkpoints"; port: MessagePort; spanSize: number; verifyCrc?: boolean };

/** Messages on a checkpoints port, worker → main (besides chunk acks). */
export type BuildMessage =
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

// Streams a layer in over a MessagePort; checkpoints go back on the same port as they are found.
function buildFromPort(port: MessagePort, spanSize: number, verifyCrc: boolean) {
  const builder = new CheckpointBuilder(spanSize, {
    verifyCrc,
    onCheckpoint(cp) {
      port.postMessage({ checkpoint: cp } satisfies BuildMessage, [cp.window.buffer as ArrayBuffer]);
    },
  });
  return consumePort(
    port,
    (chunk) => builder.push(chunk),
    () => {
      const r = builder.finish();
      const done = { compressedSize: r.compressedSize, uncompressedSize: r.uncompressedSize, members: r.members };
      // after every checkpoint on the port, so the receiver has them all when it sees this
      port.postMessage({ done } satisfies BuildMessage);
      return done;
    },
    () => builder.close(),
  );
}
