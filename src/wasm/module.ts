// Loads the WebAssembly inflate core: compiled once per thread, instantiated per decoder.
import { readFileSync } from "node:fs";
import { crc32 } from "node:zlib";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

/** The exports of build/inflate.wasm (assembly/index.ts). Offsets are f64, pointers i32. */
export interface InflateExports {
  memory: WebAssembly.Memory;
  configure(inCap: number, outCap: number): number;
  growInput(newCap: number): number;
  startGzip(span: number, checkCrc: number): void;
  startRaw(bits: number, outAt: number): void;
  compact(): number;
  inputEnd(): number;
  inputFree(): number;
  windowPtr(): number;
  pushed(n: number, last: number): void;
  pendingPtr(): number;
  pendingLen(): number;
  takePending(): void;
  outPtr(): number;
  slide(): void;
  setLimit(total: number): void;
  totalOut(): number;
  totalIn(): number;
  checkpointIn(): number;
  checkpointOut(): number;
  checkpointBits(): number;
  memberCount(): number;
  lastError(): number;
  run(): number;
}

let compiled: WebAssembly.Module | undefined;

/** Path of the built module: <package root>/build/inflate.wasm (src/wasm and dist/wasm alike). */
export function wasmPath(): string {
  return join(dirname(fileURLToPath(import.meta.url)), "..", "..", "build", "inflate.wasm");
}

function compiledModule(): WebAssembly.Module {
  if (!compiled) {
    let bytes: Buffer;
    try {
      bytes = readFileSync(wasmPath());
    } catch (err) {
      throw new Error(`cannot load ${wasmPath()}: run "npm run build" first (${(err as Error).message})`);
    }
    compiled = new WebAssembly.Module(bytes);
  }
  return compiled;
}

/** A fresh instance (its own memory and decoder state). */
export function instantiate(): InflateExports {
  let memory: WebAssembly.Memory | undefined;
  const inst = new WebAssembly.Instance(compiledModule(), {
    env: {
      abort(_msg: number, _file: number, line: number, col: number) {
        throw new Error(`inflate.wasm aborted at ${line}:${col}`);
      },
      // the decoder's CRC-32: node:zlib's native crc32 over the module's memory, in place
      crc32: (crc: number, ptr: number, len: number) => crc32(new Uint8Array(memory!.buffer, ptr, len), crc >>> 0),
    },
  });
  const ex = inst.exports as unknown as InflateExports;
  memory = ex.memory;
  return ex;
}
