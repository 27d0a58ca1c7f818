// A piscina pool of inflate workers, sized from the core count.
import { availableParallelism } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { MessageChannel, type Transferable } from "node:worker_threads";
import { Piscina } from "piscina";
import type { Checkpoint, CheckpointResult } from "./checkpoints.js";
import type { CheckpointState } from "./extract.js";
import type { BuildMessage, WorkerTask } from "./worker.js";
import { unwrap, type WorkerResult } from "./worker-result.js";
import { isAck, portSender, type AckMessage } from "./port-stream.js";
import { workerExecArgv } from "./worker-argv.js";

/** The compiled worker (tests and tsx run from src/, the worker always from dist/). */
export function workerPath(): string {
  return join(dirname(fileURLToPath(import.meta.url)), "..", "..", "dist", "wasm", "worker.js");
}

export interface PoolOptions {
  /** Worker threads (default: the number of cores). */
  threads?: number;
  /** Idle workers exit after this many ms (default 30 s). */
  idleTimeout?: number;
  /** Cap of each worker's V8 young generation in MB (V8's default lets it grow to ~48 MB). */
  maxYoungGenerationSizeMb?: number;
}

export interface PoolBuildOptions {
  verifyCrc?: boolean;
  onCheckpoint?(cp: Checkpoint): void;
  /** Chunks sent but not yet processed by the worker (backpressure; default 4). */
  inFlight?: number;
  signal?: AbortSignal;
}

const MAX_IN_FLIGHT = 4;

export class InflatePool {
  private readonly pool: Piscina;

  constructor(opts: PoolOptions = {}) {
    const threads = Math.max(1, opts.threads ?? availableParallelism());
    this.pool = new Piscina({
      filename: workerPath(),
      minThreads: 0,
      maxThreads: threads,
      idleTimeout: opts.idleTimeout ?? 30_000,
      concurrentTasksPerWorker: 1,
      execArgv: workerExecArgv(),
      ...(opts.maxYoungGenerationSizeMb
        ? { resourceLimits: { maxYoungGenerationSizeMb: opts.maxYoungGenerationSizeMb } }
        : {}),
    });
  }

  get threads(): number {
    return this.pool.options.maxThreads;
  }

  gunzip(bytes: Uint8Array, maxOutput?: number): Promise<Uint8Array> {
    return this.run({ op: "gunzip", bytes, maxOutput });
  }

  extract(spanBytes: Uint8Array, checkpoint: CheckpointState, offset: number, length: number): Promise<Uint8Array> {
    // Structured clone copies a view's whole ArrayBuffer — a checkpoint window is a view into its
    // ztoc (megabytes), span bytes may be one span of a multi-span response — so exact copies of
    // the two are made here and moved to the worker, not cloned.
    const bytes = new Uint8Array(spanBytes);
    const window = new Uint8Array(checkpoint.window);
    return this.run(
      {
        op: "extract",
        spanBytes: bytes,
        checkpoint: { out: checkpoint.out, bits: checkpoint.bits, window },
        offset,
        length,
      },
      [bytes.buffer, window.buffer],
    );
  }

  /**
   * Inflates a gzip stream on a worker, recording checkpoints. Chunks are copied to the worker
   * (the caller keeps its buffers); at most `inFlight` chunks wait there at once.
   */
  async buildCheckpoints(
    stream: Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
    spanSize: number,
    opts: PoolBuildOptions = {},
  ): Promise<CheckpointResult> {
    const { port1, port2 } = new MessageChannel();
    const checkpoints: Checkpoint[] = [];
    const sender = portSender(port1, Math.max(1, opts.inFlight ?? MAX_IN_FLIGHT));
    let finished: (sizes: Omit<CheckpointResult, "checkpoints">) => void = () => {};
    const done = new Promise<Omit<CheckpointResult, "checkpoints">>((r) => (finished = r));
    port1.on("message", (msg: BuildMessage | AckMessage) => {
      if (isAck(msg)) sender.onAck(msg);
      else if ("checkpoint" in msg) {
        checkpoints.push(msg.checkpoint);
        opts.onCheckpoint?.(msg.checkpoint);
      } else finished(msg.done);
    });
    const task = this.run<Omit<CheckpointResult, "checkpoints">>(
      { op: "checkpoints", port: port2, spanSize, verifyCrc: opts.verifyCrc },
      [port2],
      opts.signal,
    );
    task.catch(() => sender.stop());
    try {
      await sender.send(stream);
      await task; // rethrows the worker's error
      return { checkpoints, ...(await done) };
    } finally {
      port1.close();
    }
  }

  private async run<T>(task: WorkerTask, transferList?: Transferable[], signal?: AbortSignal): Promise<T> {
    return unwrap((await this.pool.run(task, { transferList, signal })) as WorkerResult<T>);
  }

  async destroy(): Promise<void> {
    await this.pool.destroy();
  }
}
