// Piscina worker for index builds: a layer streams in over a MessagePort, its ztoc comes back.
import type { MessagePort } from "node:worker_threads";
import { consumePort } from "../wasm/port-stream.js";
import { failed, moved, type WorkerResult } from "../wasm/worker-result.js";
import { LayerIndexer, type LayerIndexOptions } from "./layer-indexer.js";
import type { LayerChunks } from "../formats/layer-verification.js";

export interface ZtocTask {
  port: MessagePort;
  options: LayerIndexOptions;
}

export interface ZtocTaskResult {
  bytes: Uint8Array;
  digest: string;
  /** With `options.chunkSize`: the layer's chunk digests (docs/formats.md §9). */
  chunks?: LayerChunks;
}

export default async function run(task: ZtocTask): Promise<WorkerResult<ZtocTaskResult>> {
  try {
    const indexer = new LayerIndexer(task.options);
    const r = await consumePort(
      task.port,
      (c) => indexer.push(c),
      () => indexer.finish(),
      () => indexer.close(),
    );
    const out: ZtocTaskResult = { bytes: r.bytes, digest: r.digest };
    if (r.chunks) out.chunks = r.chunks;
    return moved<ZtocTaskResult>(out, r.chunks ? [r.bytes.buffer, r.chunks.digests.buffer] : [r.bytes.buffer]);
  } catch (err) {
    task.port.close();
    return failed(err);
  }
}
