#!/usr/bin/env -S GLIBC_TUNABLES=glibc.malloc.arena_max=1 node --max-semi-space-size=2 --expose-gc
// The FUSE host's memory settings are the daemon's (see bin/soci-snapshotter-grpc.js): it serves
// the layers' spans, so it has the same short-lived buffers; the units in deploy/ spell them out.
// The V8 flags for undici's parser are set as the daemon's are (see there why not on the command line).
import { setFlagsFromString } from "node:v8";
for (const flag of ["--no-wasm-loop-unrolling", "--turbo-force-mid-tier-regalloc"]) setFlagsFromString(flag);
// FUSE requests are answered on this process's event loop while libuv's threadpool does the file
// I/O behind them: a larger pool keeps reads of the mounts by threadpool work from starving it.
process.env.UV_THREADPOOL_SIZE ??= "64";
await import("../dist/daemon/fuse-host-main.js");
