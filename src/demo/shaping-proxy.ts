// A loopback TCP proxy that models a WAN link: every chunk waits half the round-trip time in each
// direction, and the downstream direction (server → client) shares one bandwidth budget across all
// connections. This kernel has no netem, so latency has to be modelled here (`tc` on `lo` shapes bandwidth only).
import { createServer, connect, type AddressInfo, type Socket } from "node:net";

export interface ShapingProxy {
  /** host:port to connect to instead of the upstream. */
  host: string;
  /** Bytes sent server → client since start (or the last reset). */
  downstreamBytes(): number;
  resetCounters(): void;
  stop(): Promise<void>;
}

export interface ShapingOptions {
  /** Round-trip time added to every exchange, ms. */
  rttMs: number;
  /** Downstream bandwidth, bits per second, shared by all connections. */
  bitsPerSecond: number;
}

export async function startShapingProxy(upstream: string, opts: ShapingOptions): Promise<ShapingProxy> {
  const [uhost, uport] = [
    upstream.slice(0, upstream.lastIndexOf(":")),
    Number(upstream.slice(upstream.lastIndexOf(":") + 1)),
  ];
  const bytesPerMs = opts.bitsPerSecond / 8 / 1000;
  const half = opts.rttMs / 2;
  let linkFreeAt = 0;
  let down = 0;
  const sockets = new Set<Socket>();

  // Delivers each chunk to `to` once its due time has come, strictly in arrival order (one FIFO
  // and one timer per direction: separate timers per chunk can fire out of order, because Node
  // schedules them from the event loop's cached clock), optionally paced by the shared link.
  const pipe = (from: Socket, to: Socket, paced: boolean) => {
    type Item = { due: number; chunk?: Buffer; end?: "end" | "destroy" };
    const fifo: Item[] = [];
    let queued = 0;
    let lastDue = 0;
    let timer: NodeJS.Timeout | undefined;
    const drain = () => {
      timer = undefined;
      const now = performance.now();
      while (fifo.length && fifo[0]!.due <= now + 0.5) {
        const item = fifo.shift()!;
        if (item.chunk) {
          if (paced) down += item.chunk.length;
          queued -= item.chunk.length;
          if (!to.destroyed) to.write(item.chunk);
        } else if (item.end === "end") to.end();
        else to.destroy();
      }
      if (queued <= 1 << 20 && from.isPaused() && !from.destroyed) from.resume();
      if (fifo.length) timer = setTimeout(drain, Math.max(0, fifo[0]!.due - now));
    };
    const enqueue = (item: Item) => {
      fifo.push(item);
      if (!timer) timer = setTimeout(drain, Math.max(0, fifo[0]!.due - performance.now()));
    };
    from.on("data", (chunk: Buffer) => {
      const now = performance.now();
      let due = now + half;
      if (paced) {
        const start = Math.max(now, linkFreeAt);
        linkFreeAt = start + chunk.length / bytesPerMs;
        due = Math.max(due, linkFreeAt);
      }
      due = Math.max(due, lastDue);
      lastDue = due;
      queued += chunk.length;
      if (queued > 4 << 20) from.pause();
      enqueue({ due, chunk });
    });
    from.on("end", () => enqueue({ due: Math.max(lastDue, performance.now()) + 1, end: "end" }));
    from.on("error", () => to.destroy());
    from.on("close", () => enqueue({ due: Math.max(lastDue, performance.now()) + 5, end: "destroy" }));
  };

  const server = createServer((client) => {
    const up = connect(uport, uhost);
    sockets.add(client).add(up);
    client.on("close", () => sockets.delete(client));
    up.on("close", () => sockets.delete(up));
    pipe(client, up, false);
    pipe(up, client, true);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  return {
    host: `127.0.0.1:${port}`,
    downstreamBytes: () => down,
    resetCounters: () => {
      down = 0;
    },
    stop: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
