// Builds ztocs for many layers in parallel, one layer per worker thread.
import { availableParallelism } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { MessageChannel } from "node:worker_threads";
import { Piscina } from "piscina";
import { isAck, portSender, type AckMessage } from "../wasm/port-stream.js";
import type { LayerIndexOptions } from "./layer-indexer.js";
import type { ZtocTask, ZtocTaskResult } from "./worker.js";
import { unwrap, type WorkerResult } from "../wasm/worker-result.js";
import { workerExecArgv } from "../wasm/worker-argv.js";

export function buildWorkerPath(): string {
  return join(dirname(fileURLToPath(import.meta.url)), "..", "..", "dist", "indexer", "worker.js");
}

export class BuildPool {
  private readonly pool: Piscina;

  /** `warm`: start one worker now, so it has loaded its modules when the first layer comes. */
  constructor(opts: { threads?: number; warm?: boolean } = {}) {
    this.pool = new Piscina({
      filename: buildWorkerPath(),
      minThreads: opts.warm ? 1 : 0,
      maxThreads: Math.max(1, opts.threads ?? availableParallelism()),
      idleTimeout: 30_000,
      concurrentTasksPerWorker: 1,
      execArgv: workerExecArgv(),
    });
  }

  get threads(): number {
    return this.pool.options.maxThreads;
  }

  /**
   * Streams one layer blob to a worker (through a shared ring: the caller keeps its buffers);
   * resolves with the serialized ztoc and its digest. With `options.expect`, the worker also checks
   * the blob's sha256 digest and size against the descriptor's.
   */
  async buildZtoc(
    stream: Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
    options: LayerIndexOptions,
    opts: {
      signal?: AbortSignal;
      /** Compressed bytes the worker has processed so far. */
      onProgress?: (bytes: number) => void;
    } = {},
  ): Promise<ZtocTaskResult> {
    const { port1, port2 } = new MessageChannel();
    const sender = portSender(port1, 4, opts.onProgress);
    port1.on("message", (msg: AckMessage) => {
      if (isAck(msg)) sender.onAck(msg);
    });
    const task = this.pool
      .run({ port: port2, options } satisfies ZtocTask, { transferList: [port2], signal: opts.signal })
      .then((r: WorkerResult<ZtocTaskResult>) => unwrap(r));
    task.catch(() => sender.stop());
    try {
      await sender.send(stream);
      return await task;
    } finally {
      port1.close();
    }
  }

  async destroy(): Promise<void> {
    await this.pool.destroy();
  }
}
