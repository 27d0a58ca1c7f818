#!/usr/bin/env -S GLIBC_TUNABLES=glibc.malloc.arena_max=1:glibc.malloc.mmap_threshold=32768 node --max-semi-space-size=2 --expose-gc --optimize-for-size
// The daemon's memory settings (given when this file is executed; the systemd unit spells them out).
// Span buffers are large and short-lived: a small V8 young generation (the default grows to 48 MB),
// an exposed gc that src/wasm/garbage.ts calls after every few spans, V8's size-over-speed mode
// (about 10 MB less at a NumPy pull's peak for ~15% more CPU), and glibc malloc settings
// that give freed buffers back to the system (one arena; buffers of 32 KiB and more mmapped) keep
// resident memory near what the daemon really holds.
// FUSE requests are answered on this process's event loop while libuv's threadpool does the file
// I/O behind them: a larger pool keeps reads of the mount by threadpool work from starving it.
process.env.UV_THREADPOOL_SIZE ??= "64";
await import("../dist/daemon/main.js");
