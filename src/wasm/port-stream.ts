// Streams byte chunks to a worker over a MessagePort, with acknowledgements for backpressure.
// Main side: streamToPort(). Worker side: consumePort().
import type { MessagePort } from "node:worker_threads";

/** Main → worker. */
export type ChunkMessage = { chunk: Uint8Array } | { end: true };
/** Worker → main: chunk acknowledgements; other messages belong to the task using the port. */
export type AckMessage = { ack: number };

export function isAck(msg: unknown): msg is AckMessage {
  return typeof msg === "object" && msg !== null && "ack" in msg;
}

/**
 * Sends every chunk of `stream` (copied, so the caller keeps its buffers), keeping at most
 * `inFlight` chunks unacknowledged, then an end marker. Stops early once `failed()` is true.
 * The caller routes acks here through the returned `onAck`.
 */
export function portSender(port: MessagePort, inFlight: number, onProgress?: (bytesProcessed: number) => void) {
  let sent = 0;
  let acked = 0;
  const sizes: number[] = []; // sizes of sent, unacknowledged chunks
  let processed = 0;
  let wake: (() => void) | undefined;
  let stopped = false;
  return {
    onAck(msg: AckMessage) {
      while (acked < msg.ack) {
        processed += sizes.shift() ?? 0;
        acked++;
      }
      onProgress?.(processed);
      wake?.();
    },
    stop() {
      stopped = true;
      wake?.();
    },
    /** With `transfer`, chunks that own their whole ArrayBuffer move to the worker without a copy. */
    async send(stream: Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>, transfer = false): Promise<void> {
      const chunks = stream instanceof Uint8Array ? [stream] : stream;
      for await (const chunk of chunks as AsyncIterable<Uint8Array>) {
        if (stopped) return;
        const owned =
          transfer &&
          chunk.byteOffset === 0 &&
          chunk.byteLength === chunk.buffer.byteLength &&
          chunk.buffer instanceof ArrayBuffer;
        const copy = owned ? chunk : new Uint8Array(chunk);
        sizes.push(copy.length);
        port.postMessage({ chunk: copy } satisfies ChunkMessage, [copy.buffer as ArrayBuffer]);
        sent++;
        while (!stopped && sent - acked >= inFlight) await new Promise<void>((r) => (wake = r));
      }
      if (!stopped) port.postMessage({ end: true } satisfies ChunkMessage);
    },
  };
}

/**
 * Feeds chunks arriving on `port` to `onChunk` (acknowledging each), then resolves with `onEnd()`.
 * Any exception rejects and closes the port.
 */
export function consumePort<T>(
  port: MessagePort,
  onChunk: (c: Uint8Array) => void,
  onEnd: () => T,
  onError: () => void,
): Promise<T> {
  return new Promise((resolve, reject) => {
    let seq = 0;
    let settled = false;
    // the sender gave up (its source failed): abandon the work instead of waiting forever
    port.on("close", () => {
      if (settled) return;
      settled = true;
      onError();
      reject(new Error("input stream aborted"));
    });
    port.on("message", (msg: ChunkMessage) => {
      try {
        if ("chunk" in msg) {
          onChunk(msg.chunk);
          port.postMessage({ ack: ++seq } satisfies AckMessage);
          return;
        }
        const r = onEnd();
        settled = true;
        port.close();
        resolve(r);
      } catch (err) {
        settled = true;
        onError();
        port.close();
        reject(err);
      }
    });
  });
}
