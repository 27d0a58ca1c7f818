// WebAssembly entry points: pure compute over linear memory, no I/O (the host supplies crc32).

export {
  configure, growInput, startGzip, startRaw, compact, inputEnd, inputFree, windowPtr, pushed,
  pendingPtr, pendingLen, takePending, outPtr, slide, setLimit, totalOut, totalIn,
  checkpointIn, checkpointOut, checkpointBits, memberCount, lastError, run,
} from "./inflate";
import { copyInit } from "./inflate";

copyInit();

