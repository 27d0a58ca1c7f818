// Registries that do not answer, for timeout tests:
// * `startFullBacklog`: a listening socket nobody accepts on, its queue filled, so a new connection
//   is never established (the kernel drops its SYNs) — a dial that hangs, as to a blackholed
//   address. The listener lives on a worker thread whose event loop is blocked.
// * `startSilentServer`: accepts connections and never sends a byte (it counts the connections and
//   the bytes it received).
import { connect, createServer, type Socket } from "node:net";
import type { AddressInfo } from "node:net";
import { Worker } from "node:worker_threads";

export interface FullBacklog {
  /** host:port whose connects hang */
  host: string;
  close(): Promise<void>;
}

export async function startFullBacklog(): Promise<FullBacklog> {
  const gate = new SharedArrayBuffer(4);
  const worker = new Worker(
    `
    const { parentPort, workerData } = require("node:worker_threads");
    const net = require("node:net");
    const s = net.createServer();
    s.listen({ port: 0, host: "127.0.0.1", backlog: 1 }, () => {
      parentPort.postMessage(s.address().port);
      // from here on nothing is accepted: the event loop waits on the gate until close()
      setTimeout(() => Atomics.wait(new Int32Array(workerData), 0, 0), 50);
    });`,
    { eval: true, workerData: gate },
  );
  const port = await new Promise<number>((resolve) => worker.once("message", resolve));
  await new Promise((r) => setTimeout(r, 200));
  // fill the accept queue (backlog + 1 established connections), then check a dial really hangs
  const fillers: Socket[] = [];
  for (let i = 0; ; i++) {
    const s = connect(port, "127.0.0.1");
    s.on("error", () => undefined);
    fillers.push(s);
    const connected = await Promise.race([
      new Promise<boolean>((ok) => s.once("connect", () => ok(true))),
      new Promise<boolean>((ok) => setTimeout(() => ok(false), 500)),
    ]);
    if (!connected) break;
    if (i > 16) throw new Error("the listener's queue never filled up");
  }
  return {
    host: `127.0.0.1:${port}`,
    close: async () => {
      for (const s of fillers) s.destroy();
      const g = new Int32Array(gate);
      Atomics.store(g, 0, 1);
      Atomics.notify(g, 0);
      await worker.terminate();
    },
  };
}

export interface SilentServer {
  host: string;
  /** Connections accepted so far. */
  readonly connections: number;
  /** Bytes received so far (requests were sent). */
  readonly bytesIn: number;
  close(): Promise<void>;
}

export async function startSilentServer(): Promise<SilentServer> {
  const sockets = new Set<Socket>();
  let connections = 0;
  let bytesIn = 0;
  const server = createServer((s) => {
    connections++;
    sockets.add(s);
    s.on("data", (d: Buffer) => (bytesIn += d.length));
    s.on("error", () => undefined);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    get connections() {
      return connections;
    },
    get bytesIn() {
      return bytesIn;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
