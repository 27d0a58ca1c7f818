// Library entry point: the inflate core and the formats built on it.
export { gunzip, type GunzipOptions } from "./wasm/gunzip.js";
export {
  GunzipDecoder,
  createGunzipStream,
  gunzipChunks,
  type GunzipStreamOptions,
} from "./wasm/gunzip-stream.js";
export { extract, type CheckpointState } from "./wasm/extract.js";
export {
  buildCheckpoints,
  buildCheckpointsSync,
  CheckpointBuilder,
  type Checkpoint,
  type CheckpointOptions,
  type CheckpointResult,
} from "./wasm/checkpoints.js";
export { InflateError } from "./wasm/codes.js";
export { WINDOW_SIZE } from "./wasm/inflater.js";
export { InflatePool, type PoolOptions, type PoolBuildOptions } from "./wasm/pool.js";
export { GzipZinfo, ZinfoError, PACKED_CHECKPOINT_SIZE, ZINFO_HEADER_SIZE } from "./formats/gzip-zinfo.js";
export { TarZinfo } from "./formats/tar-zinfo.js";
export { spanRanges, type Zinfo, type SpanRange } from "./formats/zinfo.js";
export { TarReader, TarError, readTarEntries, type TarEntry } from "./formats/tar.js";
export { encodeZtoc, decodeZtoc, ztocInfoJson, ZtocError, type Ztoc } from "./formats/ztoc.js";
export type { FileMetadata, PaxRecord, EntryType } from "./formats/toc.js";
export { buildSociIndex, parseSociIndex, type SociIndex } from "./formats/soci-index.js";
export { ContentStore } from "./store/content-store.js";
export { ArtifactsDb } from "./store/artifacts-db.js";
export { LayerIndexer, type LayerIndexOptions, type IndexedLayer } from "./indexer/layer-indexer.js";
export { BuildPool } from "./indexer/pool.js";
export { buildIndexForManifest, convertImage, type BuildContext, type BuildOptions } from "./indexer/index-builder.js";
export { convertStandalone } from "./indexer/standalone.js";
export { extractFile, metadataEntry } from "./indexer/extract-file.js";
export { RegistryClient, type RegistryClientOptions } from "./registry/client.js";
export { mountLayer, unmountPath, isMountAlive, type MountLayerOptions, type MountedLayer } from "./fs/fuse-layer.js";
export { createLayerReader, LayerReader, type LayerReaderOptions } from "./fs/layer-reader.js";
export { RegistryBlobFetcher, FileBlobFetcher, type BlobFetcher } from "./fs/blob-fetcher.js";
export { SpanCache } from "./fs/span-cache.js";
export { BackgroundFetcher, prefetchSpans } from "./fs/background-fetcher.js";
export { unpackLayer, unpackLayers, UnpackError } from "./fs/unpack-layer.js";
export { findSociIndex, fetchSociIndex, fetchZtoc, NoIndexError } from "./fs/soci-artifacts.js";
export { mountImage, unmountImage, type MountImageOptions, type MountedImage } from "./fs/image-mount.js";
export { startSnapshotterServer, type SnapshotterServer, type RemotePreparer } from "./snapshotter/index.js";
export { SociPreparer, type SociPreparerOptions } from "./snapshotter/soci-preparer.js";
export { LazyLayers, type LayerMounter, type LayerMountRequest, type LayerSettings } from "./fs/lazy-layers.js";
export { startFuseHost, type FuseHost, type FuseHostOptions } from "./fuse-host/server.js";
export { FuseHostClient, type FuseHostClientOptions } from "./fuse-host/client.js";
export { ContainerdClient } from "./containerd/client.js";
export { pullImage } from "./pull/pull-image.js";
