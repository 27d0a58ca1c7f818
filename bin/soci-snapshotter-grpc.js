#!/usr/bin/env node
// FUSE requests are answered on this process's event loop while libuv's threadpool does the file
// I/O behind them: a larger pool keeps reads of the mount by threadpool work from starving it.
process.env.UV_THREADPOOL_SIZE ??= "64";
await import("../dist/daemon/main.js");
