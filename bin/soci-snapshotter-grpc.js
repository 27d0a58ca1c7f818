#!/usr/bin/env -S GLIBC_TUNABLES=glibc.malloc.arena_max=1 node --max-semi-space-size=2 --expose-gc
// The daemon's memory settings (given when this file is executed; the systemd unit spells them out).
// Span buffers are large and short-lived: a small V8 young generation (the default grows to 48 MB),
// an exposed gc that src/wasm/garbage.ts calls after every few spans, and one malloc arena. Not
// V8's --optimize-for-size nor glibc's mmap_threshold=32768: each saved ~10–20 MB at the peak, but
// a fresh mapping per span buffer (page faults, and unmaps that interrupt every thread) and
// size-tuned code made reading a whole image through FUSE 2× slower (bench/RESULTS.md).
// FUSE requests are answered on this process's event loop while libuv's threadpool does the file
// I/O behind them: a larger pool keeps reads of the mount by threadpool work from starving it.
process.env.UV_THREADPOOL_SIZE ??= "64";
await import("../dist/daemon/main.js");
