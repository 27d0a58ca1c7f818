// A loopback TCP proxy that can be taken down (listener closed, connections cut: clients get
// ECONNREFUSED/ECONNRESET, as when the registry stops), brought back on the same port, and
// stalled (responses held back until released: a registry that has gone slow). It counts the
// bytes it forwarded to clients.
import { createServer, connect, type Server, type Socket } from "node:net";
import type { AddressInfo } from "node:net";

export interface SwitchProxy {
  /** host:port */
  host: string;
  /** Bytes forwarded from the upstream to clients. */
  readonly bytesDown: number;
  /** Closes the listener and cuts every connection. */
  down(): Promise<void>;
  /** Listens again on the same port. */
  up(): Promise<void>;
  /** Holds back (true) or releases (false) every upstream response. */
  stall(on: boolean): void;
  close(): Promise<void>;
}

export async function startSwitchProxy(upstream: string): Promise<SwitchProxy> {
  const i = upstream.lastIndexOf(":");
  const upHost = upstream.slice(0, i);
  const upPort = Number(upstream.slice(i + 1));
  const pairs = new Set<{ client: Socket; server: Socket }>();
  let stalled = false;
  let bytesDown = 0;
  let server: Server | undefined;
  let port = 0;

  const onConnection = (client: Socket) => {
    const up = connect(upPort, upHost);
    const pair = { client, server: up };
    pairs.add(pair);
    if (stalled) up.pause();
    up.on("data", (c: Buffer) => {
      bytesDown += c.length;
      client.write(c);
    });
    client.on("data", (c: Buffer) => up.write(c));
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      up.destroy();
    };
    up.on("close", end);
    client.on("close", end);
    up.on("error", end);
    client.on("error", end);
  };

  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const s = createServer(onConnection);
      s.once("error", reject);
      s.listen(port, "127.0.0.1", () => {
        port = (s.address() as AddressInfo).port;
        server = s;
        resolve();
      });
    });

  const down = async () => {
    const s = server;
    server = undefined;
    for (const p of pairs) {
      p.client.destroy();
      p.server.destroy();
    }
    pairs.clear();
    if (s) await new Promise((r) => s.close(r));
  };

  await listen();
  return {
    host: `127.0.0.1:${port}`,
    get bytesDown() {
      return bytesDown;
    },
    down,
    up: async () => {
      if (!server) await listen();
    },
    stall(on) {
      stalled = on;
      for (const p of pairs) {
        if (on) p.server.pause();
        else p.server.resume();
      }
    },
    close: down,
  };
}
