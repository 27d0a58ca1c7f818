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
import { formatReference, parseReference } from "../registry/reference.js";
import type { ImageRef } from "../registry/types.js";
import { ContentStore } from "../store/content-store.js";
import type { ContainerdClient } from "../containerd/client.js";
import { type ArtifactStore, openBatch } from "../fs/artifact-store.js";
import { ContainerdArtifactStore } from "./containerd-artifact-store.js";
import type { InflatePool } from "../wasm/pool.js";
import { noteDroppedBuffers } from "../wasm/garbage.js";
import type { PrefetchSpan } from "../formats/prefetch.js";
import { mountStatus } from "../fs/fuse-layer.js";
import {
  LazyLayers,
  type LayerMetricsSnapshot,
  type LayerMounter,
  type LayerSettings,
  type RegistryAccess,
} from "../fs/lazy-layers.js";
import {
  fetchLayerArtifactBytes,
  fetchPrefetch,
  fetchSociIndex,
  findSociIndex,
  NoIndexError,
  type DiscoveryOptions,
  type LayerArtifactBytes,
  type ResolvedIndex,
} from "../fs/soci-artifacts.js";
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

/** The metric calls the preparer makes (the daemon's SociMetrics satisfies it). */
export interface PreparerMetrics {
  countOperation(layer: string, type: "fuse_mount_failure_count" | "local_mount_failure_count", by?: number): void;
  observeOperation(layer: string, type: "mount" | "fuse_mount" | "soci_index_fetch" | "ztoc_fetch", ms: number): void;
}

export interface SociPreparerOptions {
  /** The daemon root: `<root>/content` (artifacts: the store `soci create` writes, docs/formats.md §4.1), `<root>/soci/spancache`, statfs of `<root>/soci`. */
  root: string;
  /**
   * Where lazy layers are mounted and served (docs/snapshotter.md §5.8): the FUSE host's client,
   * or by default this process (a LazyLayers on `client` and `pool`).
   */
  mounter?: LayerMounter;
  /** Registry settings and the credentials a repository needs, sent with every mount (the FUSE host fetches with them). */
  registryAccess?(ref: ImageRef): Promise<RegistryAccess>;
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

export class SociPreparer implements RemotePreparer {
  /** `<root>/content`, opened unless artifacts go to containerd. */
  private readonly localStore: Promise<ContentStore> | undefined;
  /** containerd's content store per namespace (`[content_store] type = "containerd"`). */
  private readonly containerdStores = new Map<string, ContainerdArtifactStore>();
  private readonly mounter: LayerMounter;
  private readonly images = new Map<string, Promise<ImageContext>>();
  /** stargz labels: (ref, layer) → the manifest holding the layer */
  private readonly manifests = new Map<string, Promise<Descriptor>>();
  /** What layers need to mount, fetched ahead of their Prepare, by storeKey + layer digest + ztoc digest. */
  private readonly layerFetches = new Map<string, Promise<LayerArtifactBytes>>();
  private readonly parallel: { mode: "primary" | "fallback"; puller: ParallelPuller; ready: Promise<void> } | undefined;

  constructor(private readonly opts: SociPreparerOptions) {
    this.localStore = opts.containerd ? undefined : ContentStore.open(join(opts.root, "content"));
    this.mounter =
      opts.mounter ??
      new LazyLayers({
        dir: join(opts.root, "soci"),
        pool: opts.pool,
        logger: opts.logger,
        registryClient: () => opts.client,
        mountRoot: opts.root,
      });
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
  }

  /** The settings each mount carries (the mounter may outlive this daemon and its config). */
  private layerSettings(resolveTimeoutMs: number): LayerSettings {
    const o = this.opts;
    return {
      maxSpanVerificationRetries: o.maxSpanVerificationRetries,
      fetchTimeoutMs: o.fetchTimeoutMs,
      disableVerification: o.disableVerification,
      ...o.fuse,
      logFuseOperations: o.logFuseOperations,
      fuseMetricsEmitWaitMs: o.fuseMetricsEmitWaitMs,
      background: o.background,
      resolveTimeoutMs,
    };
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
        await this.mountRemote(
          req.mountpoint,
          labels.ref,
          layer,
          index,
          index.prefetches.get(layer.digest),
          ctx.manifest.digest,
          labels.namespace,
        );
        return { outcome: "remote", labels: { [LABEL_HAS_SOCI_INDEX_DIGEST]: "true" } };
      } catch (e) {
        log.warn("failed to prepare remote snapshot", {
          ...fields,
          "remote-snapshot-prepared": "false",
          error: (e as Error).message,
        });
        this.opts.metrics?.countOperation("", "fuse_mount_failure_count");
        await this.mounter.unmount(req.mountpoint).catch(() => undefined);
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
    await this.mounter.check(mountpoint, {
      validIntervalMs: this.opts.blobValidIntervalMs ?? 60_000,
      timeoutMs: this.opts.fetchTimeoutMs ?? 60_000,
    });
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
    await this.mounter.unmount(mountpoint);
  }

  /**
   * The layer mounts that still serve (a FUSE host that outlived the daemon): the snapshotter
   * adopts them instead of mounting their layers again.
   */
  async liveMounts(): Promise<Set<string>> {
    const live = new Set<string>();
    const served = await this.mounter.list();
    for (let i = 0; i < served.length; i += 8) {
      const batch = served.slice(i, i + 8);
      const alive = await Promise.all(batch.map((l) => mountStatus(l.mountpoint).then((st) => st === "alive")));
      batch.forEach((l, j) => {
        if (alive[j]) live.add(l.mountpoint);
      });
    }
    return live;
  }

  /** Metrics of whoever serves the layers (this process, or the FUSE host and its retired predecessors). */
  layerMetrics(): Promise<LayerMetricsSnapshot[]> {
    return this.mounter.metrics();
  }

  /** Stops background work; with `unmount` (the daemon stopping for good) every layer is taken down. */
  async close(opts: { unmount: boolean }): Promise<void> {
    await this.parallel?.puller.close();
    await this.mounter.close(opts);
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
    const deadline = started + (this.opts.mountTimeoutMs ?? 30_000);
    const store = await this.storeFor(namespace);
    // what this process resolves (the artifacts are in its store) is bounded by the mount timeout;
    // the rest of it bounds the mounter's own set-up, so no layer is mounted after the Prepare gave up
    const resolveArtifacts = async () => {
      const t = Date.now();
      const key = this.layerKey(namespace, layer, index);
      const ahead = this.layerFetches.get(key);
      this.layerFetches.delete(key); // the mounted layer holds what it needs from here on
      // fetched ahead (else, or when that failed, now)
      const artifacts =
        (await ahead?.catch(() => undefined)) ??
        (await fetchLayerArtifactBytes(this.opts.client, ref, store, layer, index, {
          chunkVerification: await this.chunkVerification(),
        }));
      this.opts.metrics?.observeOperation(layer.digest, "ztoc_fetch", Date.now() - t);
      const spans =
        prefetch && this.opts.prefetch ? await this.prefetchList(ref, store, prefetch, layer.digest) : undefined;
      const registry = (await this.opts.registryAccess?.(ref)) ?? { settings: { mirrors: {} }, credentials: [] };
      return { artifacts, spans, registry };
    };
    let timer: NodeJS.Timeout | undefined;
    const timeout = () => new Error(`timeout waiting for layer ${layer.digest} to resolve`);
    const { artifacts, spans, registry } = await Promise.race([
      resolveArtifacts(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(timeout()), deadline - Date.now());
      }),
    ]).finally(() => clearTimeout(timer));
    const left = deadline - Date.now();
    if (left <= 0) throw timeout();
    const times = await this.mounter.mount({
      mountpoint,
      imageRef: formatReference(ref),
      image,
      layer,
      ...artifacts,
      ...(spans ? { prefetch: spans } : {}),
      settings: this.layerSettings(left),
      registry,
    });
    // handed over (to a FUSE host, or kept decoded by this process): the fetched bytes and their
    // serialized copies are garbage, and an idle daemon would not collect them for a long while
    noteDroppedBuffers(artifactBytes(artifacts));
    this.opts.metrics?.observeOperation(layer.digest, "fuse_mount", times.fuseMountMs);
    this.opts.metrics?.observeOperation(layer.digest, "mount", Date.now() - started);
  }

  /** §4.6: the layer's prefetch artifact, from the store or the registry; failures only logged. */
  private async prefetchList(
    ref: ImageRef,
    store: ArtifactStore,
    desc: Descriptor,
    layer: string,
  ): Promise<PrefetchSpan[] | undefined> {
    const log = this.opts.logger;
    try {
      log.info(`Loading prefetch artifact ${desc.digest}`, { layer });
      const spans = (await fetchPrefetch(this.opts.client, ref, store, desc)).prefetchSpans ?? [];
      log.info(`Successfully loaded prefetch artifact with ${spans.length} span ranges`, { layer });
      return spans;
    } catch (e) {
      log.warn("failed to prefetch layer", { layer, error: (e as Error).message });
      return undefined;
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
    const chunkVerification = this.chunkVerification();
    for (const layer of layers) {
      if (!index.ztocs.has(layer.digest) || (min > 0 && layer.size < min)) continue;
      const key = this.layerKey(namespace, layer, index);
      if (this.layerFetches.has(key)) continue;
      const p = chunkVerification.then((on) =>
        fetchLayerArtifactBytes(this.opts.client, ref, store, layer, index, { chunkVerification: on }),
      );
      p.catch(() => this.layerFetches.delete(key)); // the layer's Prepare fetches again and reports
      this.layerFetches.set(key, p);
      started.push(p);
    }
    return Promise.allSettled(started).then(() => undefined);
  }

  /**
   * `[blob] chunk_verification`, unless whoever serves the layers cannot use the artifacts (a FUSE
   * host of an older build): then layers are mounted from their whole ztocs, as without artifacts.
   */
  private async chunkVerification(): Promise<boolean> {
    if (this.opts.chunkVerification === false) return false;
    return this.mounter.supportsLayerVerification().catch(() => false);
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

/** Bytes of a layer's fetched artifacts. */
function artifactBytes(a: LayerArtifactBytes): number {
  return (
    (a.ztocBlob?.length ?? 0) +
    (a.ztocTocPart ? a.ztocTocPart.head.length + a.ztocTocPart.tail.length : 0) +
    (a.verification?.blob.length ?? 0)
  );
}
