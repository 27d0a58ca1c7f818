// undici's Agent with its request API, loaded without undici's index: the index loads every
// dispatcher, mock agent, cache store and interceptor (≈ 90 ms before a `soci` command can send its
// first request; these two modules take ≈ 25 ms). undici is pinned by the lockfile, and the
// registry tests exercise exactly this path. The ProxyAgent (hosts.toml `proxy`) is loaded only
// when an endpoint has a proxy.
import { createRequire } from "node:module";
import type { Agent as UndiciAgent, ProxyAgent as UndiciProxyAgent } from "undici";

const require = createRequire(import.meta.url);
const Dispatcher = require("undici/lib/dispatcher/dispatcher") as { prototype: object };
// what undici's index does: the request/stream/pipeline API lives on every dispatcher
Object.assign(Dispatcher.prototype, require("undici/lib/api") as object);

export const Agent = require("undici/lib/dispatcher/agent") as typeof UndiciAgent;
export type Agent = UndiciAgent;

export function proxyAgent(opts: UndiciProxyAgent.Options): UndiciProxyAgent {
  const ProxyAgent = require("undici/lib/dispatcher/proxy-agent") as typeof UndiciProxyAgent;
  return new ProxyAgent(opts);
}
