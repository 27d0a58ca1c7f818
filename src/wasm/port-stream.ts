// Streams byte chunks to a worker over a MessagePort, with acknowledgements for backpressure.
// Main side: portSender(). Worker side: consumePort().
//
// The bytes travel through a ring of 1 MiB slots in one SharedArrayBuffer: the sender packs the
// source's chunks (whatever their sizes) into the next free slot and posts only its number and
// length; the worker reads the slot in place and acknowledges it, which frees it. Nothing is
// allocated per chunk on either side, so no garbage piles up in the worker between collections.
import type { MessagePort } from "node:worker_threads";

/** Bytes per ring slot (and per message). */
export const SLOT_SIZE = 1 << 20;
/** The consumer acknowledges slots in pairs (a sender must allow at least this many in flight). */
const ACK_EVERY = 2;

/** Main → worker: the ring (first), then filled slots, then the end marker. */
export type ChunkMessage = { ring: SharedArrayBuffer } | { slot: number; len: number } | { end: true };
/** Worker → main: chunk acknowledgements; other messages belong to the task using the port. */
export type AckMessage = { ack: number };

export function isAck(msg: unknown): msg is AckMessage {
  return typeof msg === "object" && msg !== null && "ack" in msg;
}

/**
 * Sends every byte of `stream` through a ring of `inFlight + 1` slots (the caller keeps its
 * buffers), keeping at most `inFlight` slots unacknowledged, then an end marker. Stops early once
 * stop() was called. The caller routes acks here through the returned `onAck`.
 */
export function portSender(port: MessagePort, inFlight: number, onProgress?: (bytesProcessed: number) => void) {
  inFlight = Math.max(inFlight, 2 * ACK_EVERY);
  const slots = inFlight + 1;
  let ring: Uint8Array | undefined;
  let sent = 0;
  let acked = 0;
  const sizes: number[] = []; // sizes of sent, unacknowledged slots
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
    async send(stream: Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<void> {
      if (!ring) {
        const sab = new SharedArrayBuffer(slots * SLOT_SIZE);
        ring = new Uint8Array(sab);
        port.postMessage({ ring: sab } satisfies ChunkMessage);
      }
      const r = ring;
      let fill = 0; // bytes in the slot being filled
      const flush = async () => {
        port.postMessage({ slot: sent % slots, len: fill } satisfies ChunkMessage);
        sizes.push(fill);
        sent++;
        fill = 0;
        while (!stopped && sent - acked >= inFlight) await new Promise<void>((w) => (wake = w));
      };
      const chunks = stream instanceof Uint8Array ? [stream] : stream;
      for await (const chunk of chunks as AsyncIterable<Uint8Array>) {
        for (let pos = 0; pos < chunk.length; ) {
          if (stopped) return;
          const n = Math.min(SLOT_SIZE - fill, chunk.length - pos);
          r.set(chunk.subarray(pos, pos + n), (sent % slots) * SLOT_SIZE + fill);
          fill += n;
          pos += n;
          if (fill === SLOT_SIZE) await flush();
        }
      }
      if (stopped) return;
      if (fill > 0) await flush();
      if (!stopped) port.postMessage({ end: true } satisfies ChunkMessage);
    },
  };
}

/**
 * Feeds chunks arriving on `port` to `onChunk` (acknowledging each), then resolves with `onEnd()`.
 * A chunk is a view into the shared ring, valid only during the call (copy what must be kept).
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
    let ring: SharedArrayBuffer | undefined;
    // the sender gave up (its source failed): abandon the work instead of waiting forever
    port.on("close", () => {
      if (settled) return;
      settled = true;
      onError();
      reject(new Error("input stream aborted"));
    });
    port.on("message", (msg: ChunkMessage) => {
      try {
        if ("ring" in msg) {
          ring = msg.ring;
          return;
        }
        if ("slot" in msg) {
          if (!ring) throw new Error("port stream: chunk before ring");
          onChunk(new Uint8Array(ring, msg.slot * SLOT_SIZE, msg.len));
          // every second slot: each wake-up of the sender refills two (it keeps at least two queued)
          if (++seq % ACK_EVERY === 0) port.postMessage({ ack: seq } satisfies AckMessage);
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
