// Piscina worker: runs the inflate core off the main thread. One WebAssembly module per thread.
import type { MessagePort } from "node:worker_threads";
import { gunzip } from "./gunzip.js";
import { extract, type CheckpointState } from "./extract.js";
import { CheckpointBuilder } from "./checkpoints.js";
import { consumePort } from "./port-stream.js";
import { collectYoung } from "./garbage.js";
import { failed, moved, type WorkerResult } from "./worker-result.js";

export type WorkerTask =
  | { op: "gunzip"; bytes: Uint8Array; maxOutput?: number }
  | { op: "extract"; spanBytes: Uint8Array; checkpoint: CheckpointState; offset: number; length: number }
  | { op: "checkpoints"; port: MessagePort; spanSize: number; verifyCrc?: boolean };

/** Messages on a checkpoints port, worker → main (besides chunk acks). */
export type BuildMessage =
  | { checkpoint: { in: number; out: number; bits: number; window: Uint8Array } }
  | { done: { compressedSize: number; uncompressedSize: number; members: number } };

export default async function run(task: WorkerTask): Promise<WorkerResult<unknown>> {
  try {
    switch (task.op) {
      case "gunzip":
        return result(gunzip(task.bytes, { maxOutput: task.maxOutput }));
      case "extract":
        // the previous span's bytes died young here: free them before taking the next
        collectYoung();
        return result(extract(task.spanBytes, task.checkpoint, task.offset, task.length));
      case "checkpoints":
        return { ok: await buildFromPort(task.port, task.spanSize, task.verifyCrc ?? true) };
    }
  } catch (err) {
    return failed(err);
  }
}

const result = (out: Uint8Array) => moved(out, [out.buffer]);

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
