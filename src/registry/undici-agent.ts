// undici's Agent with its request API, loaded without undici's index: the index loads every
// dispatcher, mock agent, cache store and interceptor (≈ 90 ms before a `soci` command can send its
// first request; these two modules take ≈ 25 ms). undici is pinned by the lockfile, and the
// registry tests exercise exactly this path.
import { createRequire } from "node:module";
import type { Agent as UndiciAgent } from "undici";

const require = createRequire(import.meta.url);
const Dispatcher = require("undici/lib/dispatcher/dispatcher") as { prototype: object };
// what undici's index does: the request/stream/pipeline API lives on every dispatcher
Object.assign(Dispatcher.prototype, require("undici/lib/api") as object);

export const Agent = require("undici/lib/dispatcher/agent") as typeof UndiciAgent;
export type Agent = UndiciAgent;
