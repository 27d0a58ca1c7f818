// Library entry point: the inflate core and the formats built on it.
export { gunzip, type GunzipOptions } from "./wasm/gunzip.js";
export { extract, type CheckpointState } from "./wasm/extract.js";
export {
  buildCheckpoints, buildCheckpointsSync, CheckpointBuilder,
  type Checkpoint, type CheckpointOptions, type CheckpointResult,
} from "./wasm/checkpoints.js";
export { InflateError } from "./wasm/codes.js";
export { WINDOW_SIZE } from "./wasm/inflater.js";
export { InflatePool, type PoolOptions, type PoolBuildOptions } from "./wasm/pool.js";
export { GzipZinfo, ZinfoError, PACKED_CHECKPOINT_SIZE, ZINFO_HEADER_SIZE } from "./formats/gzip-zinfo.js";
export { TarZinfo } from "./formats/tar-zinfo.js";
export { spanRanges, type Zinfo, type SpanRange } from "./formats/zinfo.js";
