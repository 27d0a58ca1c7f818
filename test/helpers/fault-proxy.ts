// A loopback HTTP proxy in front of a registry that injects faults for matching requests:
// error statuses (500/429 with Retry-After), connections dropped after N response bytes or before
// any response, flipped bytes in response bodies, redirects to a second origin (another port), a
// registry gone silent (before or during a response) and a slow body.
// Every request is logged (method, path, Authorization, Range) so tests can check what was sent.

import { Agent, createServer, request, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export type FaultAction =
  | { kind: "status"; status: number; retryAfter?: string; body?: string; wwwAuthenticate?: string }
  | { kind: "drop"; afterBytes: number }
  | { kind: "reset" }
  | { kind: "corrupt"; offset?: number }
  | { kind: "redirect" }
  /** Forward without the Range header (a server that ignores ranges answers 200 with the whole body). */
  | { kind: "ignoreRange" }
  /**
   * Go silent: no response at all (the connection stays open), or with `afterBytes` the headers and
   * that many body bytes, then nothing more.
   */
  | { kind: "stall"; afterBytes?: number }
  /** Forward the body slowly: `bytesPerTick` every `tickMs` (a slow link that keeps making progress). */
  | { kind: "trickle"; bytesPerTick: number; tickMs: number };

export interface FaultRule {
  method?: string;
  path?: RegExp;
  /** How many matching requests to affect (default: all). */
  times?: number;
  action: FaultAction;
}

export interface LoggedRequest {
  method: string;
  path: string;
  origin: "main" | "redirect";
  authorization?: string;
  range?: string;
  fault?: FaultAction["kind"];
  /** Upstream status and Content-Type (set when the response arrives). */
  status?: number;
  contentType?: string;
}

export interface FaultProxy {
  /** host:port of the proxy */
  host: string;
  /** origin of the redirect target listener (another port) */
  redirectOrigin: string;
  log: LoggedRequest[];
  /** Replaces the rules (counters restart). */
  setRules(rules: FaultRule[]): void;
  close(): Promise<void>;
}

export async function startFaultProxy(upstream: string /* host:port */): Promise<FaultProxy> {
  const [upHost, upPort] = [
    upstream.slice(0, upstream.lastIndexOf(":")),
    Number(upstream.slice(upstream.lastIndexOf(":") + 1)),
  ];
  const agent = new Agent({ keepAlive: true });
  let rules: { rule: FaultRule; left: number }[] = [];
  const log: LoggedRequest[] = [];
  let redirectOrigin = "";

  const pick = (req: IncomingMessage, path: string): FaultAction | undefined => {
    for (const r of rules) {
      if (r.left <= 0) continue;
      if (r.rule.method && r.rule.method !== req.method) continue;
      if (r.rule.path && !r.rule.path.test(path)) continue;
      r.left--;
      return r.rule.action;
    }
    return undefined;
  };

  const handler = (origin: "main" | "redirect") => (req: IncomingMessage, res: ServerResponse) => {
    const path = req.url ?? "/";
    const action = origin === "main" ? pick(req, path) : undefined;
    const entry: LoggedRequest = {
      method: req.method ?? "",
      path,
      origin,
      ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}),
      ...(req.headers.range ? { range: req.headers.range } : {}),
      ...(action ? { fault: action.kind } : {}),
    };
    log.push(entry);
    if (action?.kind === "status") {
      req.resume();
      req.on("end", () => {
        const body = action.body ?? JSON.stringify({ errors: [{ code: "UNAVAILABLE", message: "injected fault" }] });
        res.writeHead(action.status, {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(body),
          ...(action.retryAfter !== undefined ? { "retry-after": action.retryAfter } : {}),
          ...(action.wwwAuthenticate !== undefined ? { "www-authenticate": action.wwwAuthenticate } : {}),
        });
        res.end(body);
      });
      return;
    }
    if (action?.kind === "stall" && action.afterBytes === undefined) {
      req.resume(); // the request is read, never answered
      return;
    }
    if (action?.kind === "reset") {
      req.resume();
      req.socket.destroy();
      return;
    }
    if (action?.kind === "redirect") {
      req.resume();
      req.on("end", () => {
        res.writeHead(307, { location: `${redirectOrigin}${path}`, "content-length": 0 });
        res.end();
      });
      return;
    }
    const headers = { ...req.headers, host: req.headers.host ?? upstream };
    if (action?.kind === "ignoreRange") delete headers.range;
    const up = request({ host: upHost, port: upPort, method: req.method, path, headers, agent }, (ur) => {
      entry.status = ur.statusCode;
      if (ur.headers["content-type"]) entry.contentType = ur.headers["content-type"];
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      let seen = 0;
      const bodyFault = (ur.statusCode === 200 || ur.statusCode === 206) && req.method === "GET" ? action : undefined;
      if (bodyFault?.kind === "trickle") {
        trickle(ur, res, bodyFault.bytesPerTick, bodyFault.tickMs);
        return;
      }
      ur.on("data", (c: Buffer) => {
        if (bodyFault?.kind === "stall") {
          const room = Math.max(0, bodyFault.afterBytes! - seen);
          seen += c.length;
          if (room > 0) res.write(c.subarray(0, room));
          return; // the rest is held back for good
        }
        if (bodyFault?.kind === "drop") {
          const room = bodyFault.afterBytes - seen;
          if (room <= c.length) {
            res.write(c.subarray(0, Math.max(0, room)), () => res.socket?.destroy());
            ur.destroy();
            seen += c.length;
            return;
          }
        } else if (bodyFault?.kind === "corrupt") {
          const off = bodyFault.offset ?? 0;
          if (off >= seen && off < seen + c.length) {
            c = Buffer.from(c);
            c[off - seen] ^= 0xff;
          }
        }
        seen += c.length;
        res.write(c);
      });
      ur.on("end", () => {
        if (bodyFault?.kind !== "stall") res.end();
      });
      ur.on("error", () => res.socket?.destroy());
    });
    up.on("error", () => res.socket?.destroy());
    req.pipe(up);
  };

  const listen = (s: Server) =>
    new Promise<number>((resolve) => s.listen(0, "127.0.0.1", () => resolve((s.address() as AddressInfo).port)));
  const main = createServer(handler("main"));
  const redirect = createServer(handler("redirect"));
  const port = await listen(main);
  const rport = await listen(redirect);
  redirectOrigin = `http://127.0.0.1:${rport}`;

  return {
    host: `127.0.0.1:${port}`,
    redirectOrigin,
    log,
    setRules(r) {
      rules = r.map((rule) => ({ rule, left: rule.times ?? Infinity }));
    },
    close: async () => {
      main.closeAllConnections();
      redirect.closeAllConnections();
      await Promise.all([new Promise((r) => main.close(r)), new Promise((r) => redirect.close(r))]);
      agent.destroy();
    },
  };
}

/** Writes the upstream body to `res` at `bytesPerTick` per `tickMs`. */
function trickle(ur: IncomingMessage, res: ServerResponse, bytesPerTick: number, tickMs: number): void {
  const queue: Buffer[] = [];
  let ended = false;
  ur.on("data", (c: Buffer) => queue.push(c));
  ur.on("end", () => (ended = true));
  ur.on("error", () => res.socket?.destroy());
  const timer = setInterval(() => {
    let budget = bytesPerTick;
    while (budget > 0 && queue.length) {
      const c = queue[0]!;
      const n = Math.min(budget, c.length);
      res.write(c.subarray(0, n));
      if (n === c.length) queue.shift();
      else queue[0] = c.subarray(n);
      budget -= n;
    }
    if (ended && queue.length === 0) {
      clearInterval(timer);
      res.end();
    }
  }, tickMs);
  res.on("close", () => clearInterval(timer));
}
