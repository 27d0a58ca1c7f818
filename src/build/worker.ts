// Piscina worker for index builds: a layer streams in over a MessagePort, its ztoc comes back.
import { Piscina } from "piscina";
import type { MessagePort } from "node:worker_threads";
import { consumePort } from "../wasm/port-stream.js";
import { LayerIndexer, type LayerIndexOptions } from "./layer-indexer.js";

export interface ZtocTask {
  port: MessagePort;
  options: LayerIndexOptions;
}

export interface ZtocTaskResult {
  bytes: Uint8Array;
  digest: string;
}

export type BuildWorkerResult = { ok: ZtocTaskResult } | { err: { name: string; message: string; code?: number } };

export default async function run(task: ZtocTask): Promise<BuildWorkerResult> {
  try {
    const indexer = new LayerIndexer(task.options);
    const r = await consumePort(task.port, (c) => indexer.push(c), () => indexer.finish(), () => indexer.close());
    const ok: ZtocTaskResult = { bytes: r.bytes, digest: r.digest };
    const wrapped = {
      get [Piscina.transferableSymbol]() {
        return [r.bytes.buffer];
      },
      get [Piscina.valueSymbol]() {
        return { ok };
      },
    };
    return Piscina.move(wrapped as never) as unknown as BuildWorkerResult;
  } catch (err) {
    task.port.close();
    const e = err as Error & { code?: unknown };
    return { err: { name: e.name, message: e.message, code: typeof e.code === "number" ? e.code : undefined } };
  }
}
