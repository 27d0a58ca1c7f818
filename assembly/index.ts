// WebAssembly entry points: pure compute over linear memory, no I/O.
import { crcInitTables, crc32Update } from "./crc32";

export {
  configure, growInput, startGzip, startRaw, compact, inputEnd, inputFree, windowPtr, pushed,
  pendingPtr, pendingLen, takePending, outPtr, slide, setLimit, totalOut, totalIn,
  checkpointIn, checkpointOut, checkpointBits, memberCount, lastError, run,
} from "./inflate";
import { copyInit } from "./inflate";

crcInitTables();
copyInit();

/** CRC-32 of [ptr, ptr+len) continuing from `crc` (0 to start). */
export function crc32(crc: u32, ptr: usize, len: usize): u32 {
  return crc32Update(crc, ptr, len);
}
