#!/usr/bin/env -S GLIBC_TUNABLES=glibc.malloc.arena_max=1 node --max-semi-space-size=2 --expose-gc
// The daemon's memory settings (given when this file is executed; the systemd unit spells them out).
// Span buffers are large and short-lived: a small V8 young generation (the default grows to 48 MB),
// an exposed gc that src/wasm/garbage.ts calls after every few spans, and one malloc arena. Not
// V8's --optimize-for-size nor glibc's mmap_threshold=32768: each saved ~10–20 MB at the peak, but
// a fresh mapping per span buffer (page faults, and unmaps that interrupt every thread) and
// size-tuned code made reading a whole image through FUSE 2× slower (bench/RESULTS.md).
// Two more V8 flags are for the HTTP parser of undici, WebAssembly that V8 recompiles with its
// optimizing compiler once a few MB went through it: that one compile took ~37 MB of compiler
// memory (a third of the process) for a moment, during the pull; without loop unrolling and with
// the simpler register allocator it takes ~11 MB, and the inflate core runs as fast (Node 20's
// V8 11.3; bench/RESULTS.md, 2026-12-08). They are set here, before anything is compiled, and not
// on the command line: they are V8's own (the second a testing flag), and a Node whose V8 lacks
// one refuses to start with it on its command line but ignores it here.
import { setFlagsFromString } from "node:v8";
for (const flag of ["--no-wasm-loop-unrolling", "--turbo-force-mid-tier-regalloc"]) setFlagsFromString(flag);
// FUSE requests are answered on this process's event loop while libuv's threadpool does the file
// I/O behind them: a larger pool keeps reads of the mount by threadpool work from starving it.
process.env.UV_THREADPOOL_SIZE ??= "64";
await import("../dist/daemon/main.js");
