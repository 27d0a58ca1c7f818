// A small HTTP proxy, as a corporate network has them: absolute-URL requests are forwarded
// (`GET http://host/path`), CONNECT opens a tunnel. Host names are looked up in `routes` first
// (names that exist only for the proxy), so a client can reach them only through it. Every request
// and tunnel is logged.
import { createServer, request, type IncomingMessage, type ServerResponse } from "node:http";
import { connect, type AddressInfo, type Socket } from "node:net";

export interface ProxyLogEntry {
  kind: "forward" | "connect";
  /** `GET http://host:port/path` or the CONNECT target `host:port` */
  target: string;
}

export interface HttpProxy {
  /** http://127.0.0.1:<port> */
  url: string;
  log: ProxyLogEntry[];
  close(): Promise<void>;
}

export async function startHttpProxy(routes: Record<string, string> = {}): Promise<HttpProxy> {
  const log: ProxyLogEntry[] = [];
  const sockets = new Set<Socket>();
  const route = (hostPort: string): { host: string; port: number } => {
    const to = routes[hostPort] ?? hostPort;
    const i = to.lastIndexOf(":");
    return { host: to.slice(0, i), port: Number(to.slice(i + 1)) };
  };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let u: URL;
    try {
      u = new URL(req.url ?? "");
    } catch {
      res.writeHead(400).end("absolute URL expected");
      return;
    }
    log.push({ kind: "forward", target: `${req.method} ${req.url}` });
    const to = route(u.port ? u.host : `${u.hostname}:80`);
    const up = request(
      { host: to.host, port: to.port, method: req.method, path: u.pathname + u.search, headers: req.headers },
      (ur) => {
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        ur.pipe(res);
      },
    );
    up.on("error", () => res.socket?.destroy());
    req.pipe(up);
  });
  server.on("connect", (req: IncomingMessage, client: Socket, head: Buffer) => {
    log.push({ kind: "connect", target: req.url ?? "" });
    const to = route(req.url ?? "");
    const up = connect(to.port, to.host, () => {
      client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      if (head.length) up.write(head);
      up.pipe(client);
      client.pipe(up);
    });
    for (const s of [client, up]) {
      sockets.add(s);
      s.on("error", () => undefined);
      s.on("close", () => {
        sockets.delete(s);
        client.destroy();
        up.destroy();
      });
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    log,
    close: async () => {
      for (const s of sockets) s.destroy();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}
