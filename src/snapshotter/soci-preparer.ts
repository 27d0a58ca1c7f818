// The RemotePreparer of the SOCI snapshotter (docs/snapshotter.md §2.3–2.4, §3): for a labelled Prepare,
// find the image's SOCI index, and either mount the layer lazily from its ztoc (remote), unpack it
// ourselves (local: an indexed image's layer without a usable ztoc, or one below min_layer_size), or
// hand it back to containerd (defer: no index at all).
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import type { Descriptor } from "../formats/oci.js";
import { isIndexType, parseIndex, parseManifest } from "../formats/oci.js";
import { SociIndexArtifactTypeV2 } from "../formats/soci-index.js";
import { RegistrySource } from "../registry/blob-source.js";
import type { RegistryClient } from "../registry/client.js";
import { parseReference } from "../registry/reference.js";
import type { ImageRef } from "../registry/types.js";
import { ContentStore } from "../store/content-store.js";
import type { ContainerdClient } from "../containerd/client.js";
import { type ArtifactStore, openBatch } from "../fs/artifact-store.js";
import { ContainerdArtifactStore } from "./containerd-artifact-store.js";
import type { InflatePool } from "../wasm/pool.js";
import { BackgroundFetcher, prefetchSpans } from "../fs/background-fetcher.js";
import { RegistryBlobFetcher } from "../fs/blob-fetcher.js";
import { mountLayer, mountStatus, unmountPath, type MountedLayer } from "../fs/fuse-layer.js";
import { createLayerReader, type LayerReader } from "../fs/layer-reader.js";
import {
  fetchLayerArtifacts,
  fetchPrefetch,
  fetchSociIndex,
  findSociIndex,
  NoIndexError,
  type DiscoveryOptions,
  type LayerArtifacts,
  type ResolvedIndex,
} from "../fs/soci-artifacts.js";
import { Semaphore } from "../registry/semaphore.js";
import { SpanCache } from "../fs/span-cache.js";
import { ReadActivity } from "../fs/span-manager.js";
import { unpackLayer } from "../fs/unpack-layer.js";
import { ParallelPuller, type ParallelPullOptions } from "../fs/parallel-pull.js";
import type { Labels } from "./snapshot-store.js";
import type { Logger } from "../log/log.js";
import type { RemotePreparer, RemotePrepareRequest, RemotePrepareResult, RemoteRestoreRequest } from "./remote.js";
import { LABEL_HAS_SOCI_INDEX_DIGEST, LABEL_REMOTE_NAMESPACE } from "./remote.js";

// §2.1 labels: the CRI/nerdctl dialect and the stargz dialect ctr-remote sends.
export const LABEL_IMAGE_REF = "containerd.io/snapshot/cri.image-ref";
export const LABEL_MANIFEST_DIGEST = "containerd.io/snapshot/cri.manifest-digest";
export const LABEL_LAYER_DIGEST = "containerd.io/snapshot/cri.layer-digest";
export const LABEL_SOCI_INDEX_DIGEST = "containerd.io/snapshot/remote/soci.index.digest";
export const LABEL_SOCI_SIZE = "containerd.io/snapshot/remote/soci.size";
export const LABEL_STARGZ_REFERENCE = "containerd.io/snapshot/remote/stargz.reference";
export const LABEL_STARGZ_DIGEST = "containerd.io/snapshot/remote/stargz.digest";

/** The reference's messages for the `defer-snapshot-runtime=true` line (snapshot/snapshot.go). */
export const DEFER_NO_INDEX = "no valid SOCI index found; deferring to container runtime";
export const DEFER_LOCAL_FAILED = "failed to prepare local snapshot; deferring to container runtime";

/** `fuse_failure_state` counts FUSE failures at most once per this period. */
const FUSE_FAILURE_STATE_PERIOD_MS = 5 * 60_000;

/** The metric calls the preparer makes (the daemon's SociMetrics satisfies it). */
export interface PreparerMetrics {
  countOperation(
    layer: string,
    type: "fuse_mount_failure_count" | "local_mount_failure_count" | "fuse_failure_state",
    by?: number,
  ): void;
  observeOperation(layer: string, type: "mount" | "fuse_mount" | "soci_index_fetch" | "ztoc_fetch", ms: number): void;
  addLayer?(mountpoint: string, layer: { digest: string; size(): number; fetchedSize(): number }): void;
  removeLayer?(mountpoint: string): void;
  /** A FUSE operation of `layer` answered EIO (`fuse_<op>_failure_count`, layer = digest). */
  countFuseFailure?(layer: string, fuseOperation: string): void;
  /** `soci_fs_image_operation_count_key`: an image's FUSE operations, emitted once after the wait. */
  addImageOperationCount?(image: string, op: string, count: number): void;
}

export interface SociPreparerOptions {
  /** The daemon root: `<root>/content` (artifacts: the store `soci create` writes, docs/formats.md §4.1), `<root>/soci/spancache`, statfs of `<root>/soci`. */
  root: string;
  /**
   * `[content_store] type = "containerd"`: SOCI artifacts go to this containerd's content store, in
   * the namespace of each Prepare, instead of `<root>/content` (§3.3). The caller closes it.
   */
  containerd?: ContainerdClient;
  /** A registry client for an image host (mirrors, credentials, plain HTTP for localhost). */
  client: RegistryClient;
  pool: InflatePool;
  logger: Logger;
  metrics?: PreparerMetrics;
  discovery?: DiscoveryOptions;
  /** `[snapshotter] min_layer_size` */
  minLayerSize?: number;
  /** `mount_timeout_sec` × 1000 */
  mountTimeoutMs?: number;
  fuse?: { attrTimeout?: number; entryTimeout?: number; negativeTimeout?: number; operationTimeoutMs?: number };
  /** `blob.max_span_verification_retries` */
  maxSpanVerificationRetries?: number;
  /** `blob.fetching_timeout_sec` × 1000 */
  fetchTimeoutMs?: number;
  /** `blob.valid_interval` × 1000 (0 with `check_always`): how recent a successful fetch spares the availability check its request (default 60 s). */
  blobValidIntervalMs?: number;
  disableVerification?: boolean;
  /** `fuse_metrics_emit_wait_duration_sec` × 1000: per-image FUSE operation counts are emitted this long after the image's first mount. */
  fuseMetricsEmitWaitMs?: number;
  /** `fuse.log_fuse_operations`: a debug line per FUSE operation. */
  logFuseOperations?: boolean;
  /** `[prefetch] enable` (undefined ⇒ prefetch artifacts are ignored). */
  prefetch?: { concurrency: number };
  /**
   * `[blob] chunk_verification` (default true): use a layer's verification artifact when the index
   * lists one (docs/formats.md §9); false ignores it, as the reference does.
   */
  chunkVerification?: boolean;
  /** Requests for span data in flight at once, daemon-wide (default 8). */
  fetchConcurrency?: number;
  /**
   * `[pull_modes.parallel_pull_unpack]` (§6): "primary" downloads and unpacks every layer in
   * parallel instead of mounting it; "fallback" does so only for images without a SOCI index.
   */
  parallel?: { mode: "primary" | "fallback" } & Omit<ParallelPullOptions, "root" | "client" | "logger">;
  /** `[background_fetch]`; undefined or `disable` ⇒ none. */
  background?: {
    silencePeriodMs: number;
    fetchPeriodMs: number;
    maxQueueSize: number;
    dropPolicy: "newest" | "oldest";
  };
}

interface LayerLabels {
  ref: ImageRef;
  imageRef: string;
  layerDigest: string;
  /** The Prepare's namespace (`containerd.io/snapshot/remote/namespace`, which the snapshotter adds). */
  namespace: string;
  manifestDigest?: string;
  indexDigest?: string;
  size?: number;
}

/** An image as the snapshotter knows it: manifest, diff IDs, and its SOCI index (or why none). */
interface ImageContext {
  manifest: Descriptor;
  layers: Descriptor[];
  diffIds: string[];
  index: Promise<ResolvedIndex>;
}

interface Mounted {
  mount: MountedLayer;
  reader: LayerReader;
  fetcher: RegistryBlobFetcher;
}

export class SociPreparer implements RemotePreparer {
  /** `<root>/content`, opened unless artifacts go to containerd. */
  private readonly localStore: Promise<ContentStore> | undefined;
  /** containerd's content store per namespace (`[content_store] type = "containerd"`). */
  private readonly containerdStores = new Map<string, ContainerdArtifactStore>();
  private readonly spanCache: SpanCache;
  private readonly images = new Map<string, Promise<ImageContext>>();
  /** stargz labels: (ref, layer) → the manifest holding the layer */
  private readonly manifests = new Map<string, Promise<Descriptor>>();
  /** Layers that have had a FUSE operation fail (their first failure is logged as a warning). */
  private readonly failedLayers = new Set<string>();
  /** When `fuse_failure_state` was last incremented. */
  private lastFuseFailureState = -Infinity;
  private readonly mounted = new Map<string, Mounted>();
  private readonly background: BackgroundFetcher | undefined;
  /** On-demand reads waiting, daemon-wide: the background fetcher yields to them. */
  private readonly activity = new ReadActivity();
  /** Images with a mounted layer: the first mount of an image pauses background fetching. */
  private readonly mountedImages = new Set<string>();
  /** What layers need to mount, fetched ahead of their Prepare, by storeKey + layer digest + ztoc digest. */
  private readonly layerFetches = new Map<string, Promise<LayerArtifacts>>();
  /** Bounds requests for span data daemon-wide. */
  private readonly limiter: Semaphore;
  /** FUSE operations per image (manifest digest) until their counts are emitted. */
  private readonly imageOps = new Map<string, Map<string, number>>();
  private readonly parallel: { mode: "primary" | "fallback"; puller: ParallelPuller; ready: Promise<void> } | undefined;

  constructor(private readonly opts: SociPreparerOptions) {
    this.localStore = opts.containerd ? undefined : ContentStore.open(join(opts.root, "content"));
    // no in-memory span LRU: reads of spans on disk read only the bytes asked for, and the page
    // cache keeps them warm outside the daemon's resident memory (the daemon serves many layers)
    this.spanCache = new SpanCache({ root: join(opts.root, "soci", "spancache"), memoryBytes: 0 });
    this.limiter = new Semaphore(opts.fetchConcurrency ?? 8);
    if (opts.parallel) {
      const puller = new ParallelPuller({
        ...opts.parallel,
        root: opts.root,
        client: opts.client,
        logger: opts.logger,
      });
      const ready = puller.start();
      ready.catch(() => undefined); // reported by the first parallel pull
      this.parallel = { mode: opts.parallel.mode, puller, ready };
    }
    if (opts.background) {
      this.background = new BackgroundFetcher({
        ...opts.background,
        activity: this.activity,
        onEvent: (e) => {
          if (e.kind === "span-failed")
            opts.logger.debug("background fetch of a span failed", {
              layer: e.layer,
              span: e.span,
              error: e.error.message,
            });
        },
      });
      this.background
        .start()
        .catch((e: Error) => opts.logger.error("background fetcher stopped", { error: e.message }));
    }
  }

  async prepare(req: RemotePrepareRequest): Promise<RemotePrepareResult> {
    const log = this.opts.logger;
    const labels = layerLabels(req.labels);
    if (!labels) return { outcome: "defer", reason: "unable to get image ref from labels" };
    const fields = {
      key: req.key,
      parent: req.parent,
      "layer-digest": labels.layerDigest,
      "image-ref": labels.imageRef,
    };
    if (this.parallel?.mode === "primary") return this.pullParallel(req, labels);

    let ctx: ImageContext;
    let index: ResolvedIndex;
    try {
      ctx = await this.imageContext(labels);
      index = await ctx.index;
    } catch (e) {
      log.warn("failed to prepare remote snapshot", {
        ...fields,
        "remote-snapshot-prepared": "false",
        error: (e as Error).message,
      });
      // §2.3: every discovery/fetch failure is ErrNoIndex in the reference; the error is in the line above
      if (this.parallel?.mode === "fallback") return this.pullParallel(req, labels);
      return { outcome: "defer", reason: DEFER_NO_INDEX };
    }
    const layerIdx = ctx.layers.findIndex((l) => l.digest === labels.layerDigest);
    if (layerIdx < 0)
      return {
        outcome: "defer",
        reason: `layer ${labels.layerDigest} is not in image manifest ${ctx.manifest.digest}`,
      };
    const layer = ctx.layers[layerIdx]!;
    const small = (this.opts.minLayerSize ?? 0) > 0 && (labels.size ?? layer.size) < this.opts.minLayerSize!;

    const ztocDesc = small ? undefined : index.ztocs.get(layer.digest);
    if (ztocDesc) {
      try {
        if (!this.mountedImages.has(ctx.manifest.digest)) this.countImageOps(ctx.manifest.digest);
        await this.mountRemote(
          req.mountpoint,
          labels.ref,
          layer,
          index,
          index.prefetches.get(layer.digest),
          ctx.manifest.digest,
          labels.namespace,
        );
        if (!this.mountedImages.has(ctx.manifest.digest)) {
          this.mountedImages.add(ctx.manifest.digest);
          this.background?.pause();
        }
        return { outcome: "remote", labels: { [LABEL_HAS_SOCI_INDEX_DIGEST]: "true" } };
      } catch (e) {
        log.warn("failed to prepare remote snapshot", {
          ...fields,
          "remote-snapshot-prepared": "false",
          error: (e as Error).message,
        });
        this.opts.metrics?.countOperation("", "fuse_mount_failure_count");
        await unmountPath(req.mountpoint).catch(() => undefined);
      }
    }
    try {
      await mkdir(req.mountpoint, { recursive: true });
      await unpackLayer(this.opts.client.blobStream(labels.ref, layer.digest, { size: layer.size }), req.mountpoint, {
        digest: layer.digest,
        diffId: ctx.diffIds[layerIdx],
      });
      return { outcome: "local", labels: { [LABEL_HAS_SOCI_INDEX_DIGEST]: "true" } };
    } catch (e) {
      this.opts.metrics?.countOperation("", "local_mount_failure_count");
      log.warn("failed to prepare local snapshot", { ...fields, error: (e as Error).message });
      return { outcome: "defer", reason: DEFER_LOCAL_FAILED };
    }
  }

  /** §6: the layer downloaded and unpacked by the parallel puller; its failure fails the Prepare. */
  private async pullParallel(req: RemotePrepareRequest, labels: LayerLabels): Promise<RemotePrepareResult> {
    const { puller, ready } = this.parallel!;
    try {
      await ready;
      const ctx = await this.imageContext(labels);
      const index = ctx.layers.findIndex((l) => l.digest === labels.layerDigest);
      if (index < 0) throw new Error(`layer ${labels.layerDigest} is not in image manifest ${ctx.manifest.digest}`);
      const image = {
        key: ctx.manifest.digest,
        ref: labels.ref,
        namespace: req.namespace,
        layers: ctx.layers,
        diffIds: ctx.diffIds,
      };
      await puller.pullLayer(image, index, req.mountpoint);
      return { outcome: "local" };
    } catch (e) {
      return {
        outcome: "failed",
        error: new Error(`parallel pull of layer ${labels.layerDigest}: ${(e as Error).message}`, { cause: e }),
      };
    }
  }

  /** Remove of one of an image's snapshots cancels the image's unfinished parallel pulls (the reference's CleanImage). */
  removed(labels: Labels): void {
    const image = labels[LABEL_MANIFEST_DIGEST];
    if (!this.parallel || !image) return;
    this.parallel.puller
      .cleanImage(image)
      .catch((e: Error) => this.opts.logger.warn("parallel pull: cleanup failed", { image, error: e.message }));
  }

  async check(mountpoint: string): Promise<void> {
    const m = this.mounted.get(mountpoint);
    if (!m) throw new Error(`${mountpoint}: no layer is mounted here`);
    const status = await mountStatus(mountpoint);
    if (status !== "alive") throw new Error(`${mountpoint}: layer mount is ${status}`);
    // fs.Check: a layer not yet fully local must still be reachable (a ranged GET of its first
    // byte unless a fetch succeeded within blob.valid_interval)
    if (m.reader.fullyLocal) return;
    try {
      await m.fetcher.check(
        this.opts.blobValidIntervalMs ?? 60_000,
        AbortSignal.timeout(this.opts.fetchTimeoutMs ?? 60_000),
      );
    } catch (e) {
      throw new Error(`layer ${m.fetcher.digest} is not reachable: ${(e as Error).message}`, { cause: e });
    }
  }

  async restore(req: RemoteRestoreRequest): Promise<void> {
    const labels = layerLabels(req.labels);
    if (!labels) throw new Error(`snapshot ${req.name} has no image labels to restore it from`);
    const ctx = await this.imageContext(labels);
    const index = await ctx.index;
    const layer = ctx.layers.find((l) => l.digest === labels.layerDigest);
    const ztocDesc = layer && index.ztocs.get(layer.digest);
    if (!layer || !ztocDesc)
      throw new Error(`layer ${labels.layerDigest} has no ztoc in SOCI index ${index.descriptor.digest}`);
    await this.mountRemote(req.mountpoint, labels.ref, layer, index, undefined, ctx.manifest.digest, labels.namespace);
  }

  async unmount(mountpoint: string): Promise<void> {
    const m = this.mounted.get(mountpoint);
    this.mounted.delete(mountpoint);
    this.opts.metrics?.removeLayer?.(mountpoint);
    if (m) {
      m.reader.close();
      await m.mount.unmount();
    } else {
      await unmountPath(mountpoint);
    }
  }

  /** Unmounts every layer (daemon shutdown with SIGINT). */
  async close(opts: { unmount: boolean }): Promise<void> {
    await this.background?.stop();
    await this.parallel?.puller.close();
    if (opts.unmount) await Promise.all([...this.mounted.keys()].map((mp) => this.unmount(mp).catch(() => undefined)));
  }

  private async mountRemote(
    mountpoint: string,
    ref: ImageRef,
    layer: Descriptor,
    index: ResolvedIndex,
    prefetch: Descriptor | undefined,
    image: string,
    namespace: string,
  ): Promise<void> {
    const started = Date.now();
    const timeoutMs = this.opts.mountTimeoutMs ?? 30_000;
    const store = await this.storeFor(namespace);
    const fetcher = new RegistryBlobFetcher(this.opts.client, ref, layer.digest, layer.size);
    const resolveLayer = async () => {
      const t = Date.now();
      const key = this.layerKey(namespace, layer, index);
      const ahead = this.layerFetches.get(key);
      this.layerFetches.delete(key); // the mounted layer holds what it needs from here on
      // fetched ahead (else, or when that failed, now)
      const got =
        (await ahead?.catch(() => undefined)) ??
        (await fetchLayerArtifacts(this.opts.client, ref, store, layer, index, {
          chunkVerification: this.opts.chunkVerification,
        }));
      const z = got.ztoc;
      this.opts.metrics?.observeOperation(layer.digest, "ztoc_fetch", Date.now() - t);
      const reader = await createLayerReader({
        ztoc: z.ztoc,
        digest: layer.digest,
        ztocDigest: z.descriptor.digest,
        fetcher,
        cache: this.spanCache,
        inflater: this.opts.pool,
        verification: got.verification,
        maxSpanVerificationRetries: this.opts.maxSpanVerificationRetries,
        fetchTimeoutMs: this.opts.fetchTimeoutMs,
        disableVerification: this.opts.disableVerification,
        activity: this.activity,
        limiter: this.limiter,
        // `[background_fetch] disable = true`: nothing is fetched but what reads ask for (and the
        // readahead of a sequential reader), so no whole-file fetch on a file's first read either
        ...(this.opts.background ? {} : { fileAheadBytes: 0 }),
      });
      return { z, reader };
    };
    let timer: NodeJS.Timeout | undefined;
    const { z, reader } = await Promise.race([
      resolveLayer(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timeout waiting for layer ${layer.digest} to resolve`)), timeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
    const t = Date.now();
    let mount: MountedLayer;
    try {
      mount = await mountLayer({
        mountpoint,
        ztoc: z.ztoc,
        digest: layer.digest,
        reader,
        disableXattrs: z.disableXattrs,
        statfsDir: join(this.opts.root, "soci"),
        onError: (op, path, err) => this.fuseFailed(layer.digest, op, path, err),
        onOperation: (op, path) => this.fuseOperation(image, op, path),
        ...this.opts.fuse,
      });
    } catch (e) {
      reader.close();
      throw e;
    }
    this.opts.metrics?.observeOperation(layer.digest, "fuse_mount", Date.now() - t);
    this.opts.metrics?.observeOperation(layer.digest, "mount", Date.now() - started);
    this.opts.logger.debug("layer mounted", {
      layer: layer.digest,
      "resolve-ms": t - started,
      "fuse-mount-ms": Date.now() - t,
    });
    this.mounted.set(mountpoint, { mount, reader, fetcher });
    // prefetch runs once the layer is mounted, not before: reads of listed spans join its fetches
    if (prefetch && this.opts.prefetch) void this.prefetchLayer(ref, store, prefetch, reader);
    this.opts.metrics?.addLayer?.(mountpoint, {
      digest: layer.digest,
      size: () => layer.size,
      fetchedSize: () => reader.state().fetchedSize,
    });
    this.background?.add(reader.spans).catch(() => undefined);
  }

  /**
   * A failed FUSE operation (EIO to the kernel): its `fuse_*_failure_count` (layer = digest), the
   * daemon-wide `fuse_failure_state` at most once per 5 minutes (fs/metrics/monitor's global
   * listener), and a warning for a layer's first failure (debug after that).
   */
  /** Starts counting an image's FUSE operations; they are emitted once, after the configured wait (§4.2). */
  private countImageOps(image: string): void {
    if (this.imageOps.has(image) || !this.opts.metrics?.addImageOperationCount) return;
    const counts = new Map<string, number>();
    this.imageOps.set(image, counts);
    setTimeout(() => {
      this.imageOps.delete(image);
      for (const [op, n] of counts) this.opts.metrics?.addImageOperationCount?.(image, op, n);
    }, this.opts.fuseMetricsEmitWaitMs ?? 60_000).unref();
  }

  private fuseOperation(image: string, op: string, path: string): void {
    const counts = this.imageOps.get(image);
    if (counts) counts.set(op, (counts.get(op) ?? 0) + 1);
    if (this.opts.logFuseOperations) this.opts.logger.debug("FUSE operation", { operation: op, path });
  }

  /** §4.6: the layer's prefetch artifact, resolved before the mount completes; failures only logged. */
  private async prefetchLayer(
    ref: ImageRef,
    store: ArtifactStore,
    desc: Descriptor,
    reader: LayerReader,
  ): Promise<void> {
    const log = this.opts.logger;
    const layer = reader.spans.digest;
    try {
      log.info(`Loading prefetch artifact ${desc.digest}`, { layer });
      const spans = (await fetchPrefetch(this.opts.client, ref, store, desc)).prefetchSpans ?? [];
      log.info(`Successfully loaded prefetch artifact with ${spans.length} span ranges`, { layer });
      const { resolved, errors } = await prefetchSpans(reader.spans, spans);
      log.debug("prefetched spans", { layer, spans: resolved });
      for (const e of errors) log.warn("failed to prefetch a span", { layer, error: e.message });
    } catch (e) {
      log.warn("failed to prefetch layer", { layer, error: (e as Error).message });
    }
  }

  private fuseFailed(digest: string, op: string, path: string, err: unknown): void {
    const metrics = this.opts.metrics;
    metrics?.countFuseFailure?.(digest, op);
    const now = Date.now();
    if (now - this.lastFuseFailureState >= FUSE_FAILURE_STATE_PERIOD_MS) {
      this.lastFuseFailureState = now;
      metrics?.countOperation("", "fuse_failure_state");
    }
    const first = !this.failedLayers.has(digest);
    const fields = { layer: digest, operation: op, path, error: err instanceof Error ? err.message : String(err) };
    if (first) {
      this.failedLayers.add(digest);
      this.opts.logger.warn("FUSE operation failed", fields);
    } else {
      this.opts.logger.debug("FUSE operation failed", fields);
    }
  }

  /**
   * Per image manifest, computed once (errors included, as the reference caches them). Stargz labels
   * name no manifest: it is resolved once per (ref, layer), and the layers of one manifest share
   * one context (one index lookup per image, as with cri.* labels).
   */
  private async imageContext(labels: LayerLabels): Promise<ImageContext> {
    const manifest = labels.manifestDigest ? undefined : await this.manifestHolding(labels);
    const key = `${this.storeKey(labels.namespace)}${labels.imageRef}@${labels.manifestDigest ?? manifest!.digest}`;
    let p = this.images.get(key);
    if (!p) {
      p = this.loadImage(labels, manifest);
      this.images.set(key, p);
      // a failed manifest lookup (registry down) is retried next time; index errors stay cached
      p.catch(() => this.images.delete(key));
    }
    return p;
  }

  /**
   * containerd prepares an image's layers one after another: fetching what every remote layer needs
   * to mount (its ztoc, or its verification artifact and the ztoc's TOC part) as soon as the index is
   * known overlaps those fetches with each other and with the layers before them, instead of one
   * round trip (and transfer) per Prepare.
   */
  private fetchLayersAhead(
    ref: ImageRef,
    store: ArtifactStore,
    namespace: string,
    layers: Descriptor[],
    index: ResolvedIndex,
  ): Promise<void> {
    const min = this.opts.minLayerSize ?? 0;
    const started: Promise<unknown>[] = [];
    for (const layer of layers) {
      if (!index.ztocs.has(layer.digest) || (min > 0 && layer.size < min)) continue;
      const key = this.layerKey(namespace, layer, index);
      if (this.layerFetches.has(key)) continue;
      const p = fetchLayerArtifacts(this.opts.client, ref, store, layer, index, {
        chunkVerification: this.opts.chunkVerification,
      });
      p.catch(() => this.layerFetches.delete(key)); // the layer's Prepare fetches again and reports
      this.layerFetches.set(key, p);
      started.push(p);
    }
    return Promise.allSettled(started).then(() => undefined);
  }

  /** Keys a layer's artifacts: the store, the layer and the ztoc the index names for it. */
  private layerKey(namespace: string, layer: Descriptor, index: ResolvedIndex): string {
    return `${this.storeKey(namespace)}${layer.digest}/${index.ztocs.get(layer.digest)?.digest ?? ""}`;
  }

  /** Where the artifacts of a Prepare in `namespace` are kept: `<root>/content`, or containerd's content store in that namespace. */
  private async storeFor(namespace: string): Promise<ArtifactStore> {
    const containerd = this.opts.containerd;
    if (!containerd) return this.localStore!;
    let store = this.containerdStores.get(namespace);
    if (!store) {
      store = new ContainerdArtifactStore(containerd.withNamespace(namespace));
      this.containerdStores.set(namespace, store);
    }
    return store;
  }

  /** Keys what is cached per store: "" for `<root>/content` (shared by all namespaces), else `<namespace>/`. */
  private storeKey(namespace: string): string {
    return this.opts.containerd ? `${namespace}/` : "";
  }

  /** The platform manifest of `imageRef` holding the layer (stargz labels), cached per (ref, layer). */
  private manifestHolding(labels: LayerLabels): Promise<Descriptor> {
    const key = `${labels.imageRef}@${labels.layerDigest}`;
    let p = this.manifests.get(key);
    if (!p) {
      const client = this.opts.client;
      p = manifestHoldingLayer(client, new RegistrySource(client, labels.ref), labels.ref, labels.layerDigest);
      this.manifests.set(key, p);
      p.catch(() => this.manifests.delete(key));
    }
    return p;
  }

  private async loadImage(labels: LayerLabels, resolved?: Descriptor): Promise<ImageContext> {
    const client = this.opts.client;
    const source = new RegistrySource(client, labels.ref);
    let manifest: Descriptor;
    let bytes: Uint8Array;
    if (resolved) {
      manifest = resolved;
      bytes = await source.get(manifest.digest, manifest.mediaType);
    } else {
      const got = await client.getManifest({ ...labels.ref, tag: undefined, digest: labels.manifestDigest });
      manifest = got.descriptor;
      bytes = got.bytes;
      source.remember(manifest.digest, bytes);
    }
    const m = parseManifest(bytes);
    const discovery: DiscoveryOptions = { ...this.opts.discovery };
    if (labels.indexDigest) discovery.indexDigest = labels.indexDigest;
    // the SOCI index and the image config are fetched at the same time (one round trip saved);
    // parallel pull as the primary mode never looks for one
    const index =
      this.parallel?.mode === "primary"
        ? Promise.reject(new NoIndexError("parallel pull mode"))
        : (async () => {
            const t = Date.now();
            const desc = await findSociIndex(client, labels.ref, manifest, discovery, bytes);
            this.opts.logger.info("fetching SOCI artifacts using index descriptor", { digest: desc.digest });
            // the index and the ztocs fetched ahead are written in one batch (one containerd lease),
            // which ends once the ztocs are in: the index's GC labels keep them from then on
            const batch = await openBatch(await this.storeFor(labels.namespace));
            let found: ResolvedIndex;
            try {
              found = await fetchSociIndex(client, labels.ref, batch.store, desc);
            } catch (e) {
              await batch.done();
              throw e;
            }
            this.opts.metrics?.observeOperation("", "soci_index_fetch", Date.now() - t);
            void this.fetchLayersAhead(labels.ref, batch.store, labels.namespace, m.layers ?? [], found).finally(() =>
              batch.done(),
            );
            return found;
          })();
    index.catch(() => undefined); // observed by prepare
    const config = JSON.parse(Buffer.from(await source.get(m.config.digest, m.config.mediaType)).toString("utf8")) as {
      rootfs?: { diff_ids?: string[] };
    };
    return { manifest, layers: m.layers ?? [], diffIds: config.rootfs?.diff_ids ?? [], index };
  }
}

/** The image reference, layer digest and the rest from either label dialect, or undefined. */
export function layerLabels(labels: Labels): LayerLabels | undefined {
  const imageRef = labels[LABEL_IMAGE_REF] || labels[LABEL_STARGZ_REFERENCE];
  const layerDigest = labels[LABEL_LAYER_DIGEST] || labels[LABEL_STARGZ_DIGEST];
  if (!imageRef || !layerDigest) return undefined;
  let ref: ImageRef;
  try {
    ref = parseReference(imageRef);
  } catch {
    return undefined;
  }
  const out: LayerLabels = { ref, imageRef, layerDigest, namespace: labels[LABEL_REMOTE_NAMESPACE] || "default" };
  if (labels[LABEL_MANIFEST_DIGEST]) out.manifestDigest = labels[LABEL_MANIFEST_DIGEST];
  if (labels[LABEL_SOCI_INDEX_DIGEST]) out.indexDigest = labels[LABEL_SOCI_INDEX_DIGEST];
  const size = labels[LABEL_SOCI_SIZE];
  if (size && /^\d+$/.test(size)) out.size = Number(size);
  return out;
}

/** ctr-remote sends no manifest digest: resolve the reference and pick the manifest holding the layer. */
async function manifestHoldingLayer(
  client: RegistryClient,
  source: RegistrySource,
  ref: ImageRef,
  layerDigest: string,
): Promise<Descriptor> {
  const root = await client.resolve(ref);
  const candidates = isIndexType(root.mediaType)
    ? (parseIndex(await source.get(root.digest, root.mediaType)).manifests ?? []).filter(
        (m) => m.artifactType !== SociIndexArtifactTypeV2,
      )
    : [root];
  for (const c of candidates) {
    const m = parseManifest(await source.get(c.digest, c.mediaType));
    if ((m.layers ?? []).some((l) => l.digest === layerDigest)) return c;
  }
  throw new NoIndexError(`no manifest of ${ref.host}/${ref.repository} holds layer ${layerDigest}`);
}
