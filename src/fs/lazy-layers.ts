// Lazily loaded layers, served over FUSE (docs/snapshotter.md §3.4, §4, §5.8): what one process
// needs to serve many layers — one span cache, one inflate pool, one background fetcher — and,
// per layer, its ztoc, blob fetcher, reader and FUSE mount. The snapshotter decides which layers
// to mount and hands each one over with everything it needs (a LayerMountRequest); whoever owns
// the mounts runs this: the daemon itself (`[fuse_manager] enable = false`) or the FUSE host
// (src/fuse-host), which the daemon reaches through the same LayerMounter interface.
import { join, resolve } from "node:path";
import { AlreadyExistsError, DeadlineExceededError, NotFoundError, UnavailableError } from "../errors/errors.js";
import type { Descriptor } from "../formats/oci.js";
import type { PrefetchSpan } from "../formats/prefetch.js";
import type { Logger } from "../log/log.js";
import type { RegistryClient } from "../registry/client.js";
import { parseReference } from "../registry/reference.js";
import type { HostCredentials, RegistrySettings } from "../registry/settings.js";
import { Semaphore } from "../registry/semaphore.js";
import { SpanBudget } from "./span-budget.js";
import type { InflatePool } from "../wasm/pool.js";
import { BackgroundFetcher, prefetchSpans } from "./background-fetcher.js";
import { RegistryBlobFetcher } from "./blob-fetcher.js";
import { mountLayer, mountsAt, mountStatus, mountsUnder, unmountPath, type MountedLayer } from "./fuse-layer.js";
import { createLayerReader, type LayerReader } from "./layer-reader.js";
import { resolveLayerArtifacts } from "./soci-artifacts.js";
import { SpanCache } from "./span-cache.js";
import { ReadActivity } from "./span-manager.js";

/** `[background_fetch]` (§4.5) as the fetcher takes it. */
export interface BackgroundSettings {
  silencePeriodMs: number;
  fetchPeriodMs: number;
  maxQueueSize: number;
  dropPolicy: "newest" | "oldest";
}

/** The daemon config's per-layer settings, sent with every mount (a daemon restart may change them). */
export interface LayerSettings {
  /** `blob.max_span_verification_retries` */
  maxSpanVerificationRetries?: number;
  /** `blob.fetching_timeout_sec` × 1000 */
  fetchTimeoutMs?: number;
  /** `disable_verification` */
  disableVerification?: boolean;
  /** `[fuse]` kernel cache timeouts, seconds */
  attrTimeout?: number;
  entryTimeout?: number;
  negativeTimeout?: number;
  /** `fuse.log_fuse_operations`: a debug line per FUSE operation. */
  logFuseOperations?: boolean;
  /** `fuse_metrics_emit_wait_duration_sec` × 1000: per-image FUSE operation counts are emitted this long after the image's first mount. */
  fuseMetricsEmitWaitMs?: number;
  /** `[background_fetch]`; undefined ⇒ this layer is not fetched in the background (nor whole files ahead). */
  background?: BackgroundSettings;
  /** Longest the reader's set-up may take before the mount is given up (`mount_timeout_sec`). */
  resolveTimeoutMs?: number;
}

/** Where a layer's blob is and how to reach it: registry settings plus the credentials its repository needs. */
export interface RegistryAccess {
  settings: RegistrySettings;
  credentials: HostCredentials[];
}

/** Everything needed to mount one layer lazily. */
export interface LayerMountRequest {
  mountpoint: string;
  /** A reference of the repository holding the layer blob (`host/repository[:tag|@digest]`). */
  imageRef: string;
  /** The image manifest digest (per-image FUSE operation counts). */
  image: string;
  layer: Descriptor;
  ztoc: Descriptor;
  /** The ztoc's bytes; checked against `ztoc.digest` before use. */
  ztocBlob?: Uint8Array;
  /** Instead of the whole ztoc: its TOC part, checked against `verification` (docs/formats.md §9). */
  ztocTocPart?: { head: Uint8Array; tail: Uint8Array };
  /** The layer verification artifact: reads are verified chunk by chunk, windows fetched per span. */
  verification?: { descriptor: Descriptor; blob: Uint8Array };
  /** §4.6: span ranges fetched as soon as the layer is mounted. */
  prefetch?: PrefetchSpan[];
  settings: LayerSettings;
  registry: RegistryAccess;
}

export interface LayerMountTimes {
  /** artifact checks, ztoc decode and reader set-up (the prefetch runs after the mount) */
  resolveMs: number;
  /** the FUSE mount itself */
  fuseMountMs: number;
}

/** A layer mount as listed for adoption after a daemon restart. */
export interface ServedLayer {
  mountpoint: string;
  digest: string;
  image: string;
  /** pid of the process serving it */
  pid: number;
}

/** The metrics of one serving process, cumulative since it started (`source` tells processes apart). */
export interface LayerMetricsSnapshot {
  source: string;
  /** `soci_fs_layer_size_bytes` / `soci_fs_layer_fetched_size_bytes` */
  layers: Array<{ mountpoint: string; digest: string; size: number; fetchedSize: number }>;
  /** FUSE operations answered EIO, by layer and operation name (`fuse_*_failure_count`). */
  fuseFailures: Array<{ layer: string; operation: string; count: number }>;
  /** `fuse_failure_state`: failures counted at most once per 5 minutes. */
  failureStates: number;
  /** `soci_fs_image_operation_count_key`, emitted once per image after the wait. */
  imageOperations: Array<{ image: string; operation: string; count: number }>;
  /** Span cache writes that failed (`soci_fs_cache_write_failures_total`), by reason. */
  cacheWriteFailures: Array<{ reason: "no_space" | "other"; count: number }>;
}

/** How the snapshotter mounts its lazy layers: here, or in the FUSE host. */
export interface LayerMounter {
  mount(req: LayerMountRequest): Promise<LayerMountTimes>;
  /** Unmounts (lazily where busy); a mountpoint this mounter does not serve is detached if mounted. */
  unmount(mountpoint: string): Promise<void>;
  /** The layer answers and, unless fully local, its blob is reachable (§1.7 checkAvailability). */
  check(mountpoint: string, opts: { validIntervalMs: number; timeoutMs: number }): Promise<void>;
  /** The layers served now (still in the mount table). */
  list(): Promise<ServedLayer[]>;
  metrics(): Promise<LayerMetricsSnapshot[]>;
  /** Whether mounts may use a layer verification artifact (a FUSE host of an older build may not). */
  supportsLayerVerification(): Promise<boolean>;
  /** Stops background work; with `unmount`, takes every layer down. */
  close(opts: { unmount: boolean }): Promise<void>;
}

/** `fuse_failure_state` counts FUSE failures at most once per this period. */
const FUSE_FAILURE_STATE_PERIOD_MS = 5 * 60_000;

export interface LazyLayersOptions {
  /** `<root>/soci`: the span cache (`spancache/`) and the directory whose statfs the mounts report. */
  dir: string;
  pool: InflatePool;
  logger: Logger;
  /** The client that fetches a layer's blob (the daemon's own, or one per settings in the host). */
  registryClient(access: RegistryAccess): RegistryClient;
  /** Only mountpoints below this directory are accepted (the daemon's `<root>`). */
  mountRoot: string;
}

interface Served {
  mount: MountedLayer;
  reader: LayerReader;
  fetcher: RegistryBlobFetcher;
  image: string;
}

export class LazyLayers implements LayerMounter {
  private readonly spanCache: SpanCache;
  private readonly served = new Map<string, Served>();
  /** Mounts being set up: an unmount waits for them. */
  private readonly pending = new Map<string, Promise<unknown>>();
  /** On-demand reads waiting, process-wide: the background fetcher yields to them. */
  private readonly activity = new ReadActivity();
  /** Bounds requests for span data process-wide (each layer's fetch queue bounds its own). */
  private readonly limiter = new Semaphore(8);
  /** Bounds the bytes of spans being produced process-wide: the resident memory serving takes. */
  private readonly budget = new SpanBudget();
  private background: { fetcher: BackgroundFetcher; key: string } | undefined;
  /** Images with a mounted layer: the first mount of an image pauses background fetching. */
  private readonly mountedImages = new Set<string>();
  /** FUSE operations per image until their counts are emitted. */
  private readonly imageOps = new Map<string, Map<string, number>>();
  private readonly imageOpTimers = new Map<string, NodeJS.Timeout>();
  private readonly emittedImageOps = new Map<string, number>();
  private readonly fuseFailures = new Map<string, number>();
  private failureStates = 0;
  private readonly cacheWriteFailures = new Map<"no_space" | "other", number>();
  private lastFailureState = -Infinity;
  /** Layers that had a FUSE operation fail (the first failure is a warning). */
  private readonly failedLayers = new Set<string>();
  private readonly source = `${process.pid}@${Date.now()}`;
  private readonly logger: Logger;

  constructor(private readonly opts: LazyLayersOptions) {
    this.logger = opts.logger;
    // no in-memory span LRU: reads of spans on disk read only the bytes asked for, and the page
    // cache keeps them warm outside this process's resident memory (it serves many layers)
    const spanRoot = join(opts.dir, "spancache");
    this.spanCache = new SpanCache({
      root: spanRoot,
      memoryBytes: 0,
      onWriteFailure: (_err, noSpace) => {
        const reason = noSpace ? "no_space" : "other";
        this.cacheWriteFailures.set(reason, (this.cacheWriteFailures.get(reason) ?? 0) + 1);
      },
      onFull: (err) =>
        this.logger.warn("span cache is full: it stops growing, reads go on from the registry", {
          root: spanRoot,
          error: err.message,
        }),
    });
  }

  /** Whether this serves (or is mounting) a layer at `mountpoint`. */
  serves(mountpoint: string): boolean {
    const mp = resolve(mountpoint);
    return this.served.has(mp) || this.pending.has(mp);
  }

  /** Number of layers served. */
  get size(): number {
    return this.served.size + this.pending.size;
  }

  async mount(req: LayerMountRequest): Promise<LayerMountTimes> {
    const mountpoint = resolve(req.mountpoint);
    if (!mountpoint.startsWith(resolve(this.opts.mountRoot) + "/"))
      throw new NotFoundError(`mountpoint ${mountpoint} is outside ${this.opts.mountRoot}`);
    const existing = this.served.get(mountpoint);
    if (existing) {
      if (existing.reader.spans.digest === req.layer.digest) return { resolveMs: 0, fuseMountMs: 0 };
      throw new AlreadyExistsError(`${mountpoint} already serves layer ${existing.reader.spans.digest}`);
    }
    if (this.pending.has(mountpoint)) throw new AlreadyExistsError(`${mountpoint} is being mounted`);
    const work = this.mountNew(mountpoint, req);
    this.pending.set(mountpoint, work);
    try {
      return await work;
    } finally {
      this.pending.delete(mountpoint);
    }
  }

  private async mountNew(mountpoint: string, req: LayerMountRequest): Promise<LayerMountTimes> {
    const started = Date.now();
    const s = req.settings;
    const { layer, image } = req;
    const client = this.opts.registryClient(req.registry);
    const ref = parseReference(req.imageRef);
    const artifacts = resolveLayerArtifacts(req, layer, (z) => new RegistryBlobFetcher(client, ref, z.digest, z.size));
    const z = artifacts.ztoc;
    const fetcher = new RegistryBlobFetcher(client, ref, layer.digest, layer.size);
    if (!this.mountedImages.has(image)) this.countImageOps(image, s.fuseMetricsEmitWaitMs ?? 60_000);
    const resolveLayer = async () => {
      const reader = await createLayerReader({
        ztoc: z.ztoc,
        digest: layer.digest,
        ztocDigest: z.descriptor.digest,
        fetcher,
        cache: this.spanCache,
        inflater: this.opts.pool,
        ...(artifacts.verification ? { verification: artifacts.verification } : {}),
        maxSpanVerificationRetries: s.maxSpanVerificationRetries,
        fetchTimeoutMs: s.fetchTimeoutMs,
        disableVerification: s.disableVerification,
        activity: this.activity,
        limiter: this.limiter,
        budget: this.budget,
        // without background fetching nothing is fetched but what reads ask for (and the readahead
        // of a sequential reader), so no whole-file fetch on a file's first read either
        ...(s.background ? {} : { fileAheadBytes: 0 }),
      });
      return reader;
    };
    const timeoutMs = s.resolveTimeoutMs ?? 30_000;
    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    const resolving = resolveLayer();
    const reader = await Promise.race([
      resolving,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          timedOut = true;
          reject(new DeadlineExceededError(`timeout waiting for layer ${layer.digest} to resolve`));
        }, timeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
    if (timedOut) {
      // a reader finished after the deadline is closed, never mounted
      resolving.then((r) => r.close()).catch(() => undefined);
    }
    const t = Date.now();
    let mount: MountedLayer;
    try {
      mount = await mountLayer({
        mountpoint,
        ztoc: z.ztoc,
        digest: layer.digest,
        reader,
        disableXattrs: z.disableXattrs,
        statfsDir: this.opts.dir,
        onError: (op, path, err) => this.fuseFailed(layer.digest, op, path, err),
        onOperation: (op, path) => this.fuseOperation(image, op, path, s.logFuseOperations ?? false),
        attrTimeout: s.attrTimeout,
        entryTimeout: s.entryTimeout,
        negativeTimeout: s.negativeTimeout,
      });
    } catch (e) {
      reader.close();
      throw e;
    }
    const fuseMountMs = Date.now() - t;
    this.served.set(mountpoint, { mount, reader, fetcher, image });
    this.logger.debug("layer mounted", {
      layer: layer.digest,
      "resolve-ms": t - started,
      "fuse-mount-ms": fuseMountMs,
    });
    if (!this.mountedImages.has(image)) {
      this.mountedImages.add(image);
      this.background?.fetcher.pause();
    }
    // prefetch runs once the layer is mounted, not before: reads of listed spans join its fetches
    if (req.prefetch?.length) void this.prefetch(reader, req.prefetch);
    if (s.background)
      this.backgroundFetcher(s.background)
        .add(reader.spans)
        .catch(() => undefined);
    return { resolveMs: t - started, fuseMountMs };
  }

  async unmount(mountpoint: string): Promise<void> {
    const mp = resolve(mountpoint);
    await this.pending.get(mp)?.catch(() => undefined);
    const m = this.served.get(mp);
    this.served.delete(mp);
    if (m) {
      m.reader.close();
      this.imageGone(m.image);
      await m.mount.unmount();
    } else {
      await unmountPath(mp);
    }
  }

  /**
   * `probe: false` skips the stat of the mount (in a child process), for a caller that did it
   * from another process: a child of the serving process inherits its /dev/fuse descriptors
   * (libfuse 2 opens them without O_CLOEXEC), and one stuck on a mount whose server died would
   * keep that dead connection from failing fast.
   */
  async check(
    mountpoint: string,
    opts: { validIntervalMs: number; timeoutMs: number; probe?: boolean },
  ): Promise<void> {
    const mp = resolve(mountpoint);
    const m = this.served.get(mp);
    if (!m) throw new NotFoundError(`${mp}: no layer is mounted here`);
    const status =
      opts.probe === false ? ((await mountsAt(mp)).length > 0 ? "alive" : "unmounted") : await mountStatus(mp);
    if (status !== "alive") throw new UnavailableError(`${mp}: layer mount is ${status}`);
    // fs.Check: a layer not yet fully local must still be reachable (a ranged GET of its first
    // byte unless a fetch succeeded within blob.valid_interval)
    if (m.reader.fullyLocal) return;
    try {
      await m.fetcher.check(opts.validIntervalMs, AbortSignal.timeout(opts.timeoutMs));
    } catch (e) {
      throw new UnavailableError(`layer ${m.fetcher.digest} is not reachable: ${(e as Error).message}`, { cause: e });
    }
  }

  async list(): Promise<ServedLayer[]> {
    await this.prune();
    return [...this.served].map(([mountpoint, m]) => ({
      mountpoint,
      digest: m.reader.spans.digest,
      image: m.image,
      pid: process.pid,
    }));
  }

  /** Forgets layers whose mount is gone from the mount table (unmounted from outside); returns how many. */
  async prune(): Promise<number> {
    if (this.served.size === 0) return 0;
    const mounted = new Set(await mountsUnder(resolve(this.opts.mountRoot)));
    let n = 0;
    for (const [mp, m] of [...this.served]) {
      if (mounted.has(mp)) continue;
      if (this.served.get(mp) !== m) continue;
      this.served.delete(mp);
      m.reader.close();
      await m.mount.unmount().catch(() => undefined);
      this.logger.info("layer was unmounted from outside; released", { mountpoint: mp, layer: m.reader.spans.digest });
      n++;
    }
    return n;
  }

  async supportsLayerVerification(): Promise<boolean> {
    return true;
  }

  async metrics(): Promise<LayerMetricsSnapshot[]> {
    return [this.snapshot()];
  }

  snapshot(): LayerMetricsSnapshot {
    const split = (key: string) => key.split("\n") as [string, string];
    return {
      source: this.source,
      layers: [...this.served].map(([mountpoint, m]) => {
        const st = m.reader.state();
        return { mountpoint, digest: st.digest, size: st.size, fetchedSize: st.fetchedSize };
      }),
      fuseFailures: [...this.fuseFailures].map(([k, count]) => {
        const [layer, operation] = split(k);
        return { layer, operation, count };
      }),
      failureStates: this.failureStates,
      imageOperations: [...this.emittedImageOps].map(([k, count]) => {
        const [image, operation] = split(k);
        return { image, operation, count };
      }),
      cacheWriteFailures: [...this.cacheWriteFailures].map(([reason, count]) => ({ reason, count })),
    };
  }

  async close(opts: { unmount: boolean }): Promise<void> {
    await this.background?.fetcher.stop();
    this.background = undefined;
    if (!opts.unmount) return;
    await Promise.all([...this.pending.values()].map((p) => p.catch(() => undefined)));
    await Promise.all(
      [...this.served.keys()].map((mp) =>
        this.unmount(mp).catch((e: Error) =>
          this.logger.warn("failed to unmount layer", { mountpoint: mp, error: e.message }),
        ),
      ),
    );
  }

  /**
   * The process-wide background fetcher with these settings: a mount with other settings (a
   * daemon restarted with a new config) replaces it, and the layers still being fetched move over.
   */
  private backgroundFetcher(settings: BackgroundSettings): BackgroundFetcher {
    const key = JSON.stringify([
      settings.silencePeriodMs,
      settings.fetchPeriodMs,
      settings.maxQueueSize,
      settings.dropPolicy,
    ]);
    if (this.background?.key === key) return this.background.fetcher;
    const old = this.background?.fetcher;
    const fetcher = new BackgroundFetcher({
      ...settings,
      activity: this.activity,
      onEvent: (e) => {
        if (e.kind === "span-failed")
          this.logger.debug("background fetch of a span failed", {
            layer: e.layer,
            span: e.span,
            error: e.error.message,
          });
      },
    });
    fetcher.start().catch((e: Error) => this.logger.error("background fetcher stopped", { error: e.message }));
    this.background = { fetcher, key };
    if (old) {
      void old.stop();
      for (const m of this.served.values())
        if (!m.reader.fullyLocal) fetcher.add(m.reader.spans).catch(() => undefined);
    }
    return fetcher;
  }

  /** §4.6: the layer's prefetch spans, resolved before the mount completes; failures only logged. */
  /** A layer's prefetch list, handed to its fetch queue at once (it merges adjacent spans and bounds requests). */
  private async prefetch(reader: LayerReader, spans: PrefetchSpan[]): Promise<void> {
    const layer = reader.spans.digest;
    const { resolved, errors } = await prefetchSpans(reader.spans, spans);
    this.logger.debug("prefetched spans", { layer, spans: resolved });
    for (const e of errors) this.logger.warn("failed to prefetch a span", { layer, error: e.message });
  }

  /** Starts counting an image's FUSE operations; they are emitted once, after the wait (§4.2). */
  private countImageOps(image: string, waitMs: number): void {
    if (this.imageOps.has(image)) return;
    const counts = new Map<string, number>();
    this.imageOps.set(image, counts);
    this.imageOpTimers.set(image, setTimeout(() => this.emitImageOps(image), waitMs).unref());
  }

  private emitImageOps(image: string): void {
    const counts = this.imageOps.get(image);
    clearTimeout(this.imageOpTimers.get(image));
    this.imageOps.delete(image);
    this.imageOpTimers.delete(image);
    for (const [op, n] of counts ?? []) {
      const k = `${image}\n${op}`;
      this.emittedImageOps.set(k, (this.emittedImageOps.get(k) ?? 0) + n);
    }
  }

  /**
   * The image's last layer went: its counts so far are final and emitted now, and a later mount of
   * it counts anew (with the wait the daemon asks for then: it may have restarted with another).
   */
  private imageGone(image: string): void {
    for (const m of this.served.values()) if (m.image === image) return;
    this.mountedImages.delete(image);
    this.emitImageOps(image);
  }

  private fuseOperation(image: string, op: string, path: string, log: boolean): void {
    const counts = this.imageOps.get(image);
    if (counts) counts.set(op, (counts.get(op) ?? 0) + 1);
    if (log) this.logger.debug("FUSE operation", { operation: op, path });
  }

  /**
   * A failed FUSE operation (EIO to the kernel): its `fuse_*_failure_count` (layer = digest), the
   * process-wide `fuse_failure_state` at most once per 5 minutes (fs/metrics/monitor's global
   * listener), and a warning for a layer's first failure (debug after that).
   */
  private fuseFailed(digest: string, op: string, path: string, err: unknown): void {
    const k = `${digest}\n${op}`;
    this.fuseFailures.set(k, (this.fuseFailures.get(k) ?? 0) + 1);
    const now = Date.now();
    if (now - this.lastFailureState >= FUSE_FAILURE_STATE_PERIOD_MS) {
      this.lastFailureState = now;
      this.failureStates++;
    }
    const fields = { layer: digest, operation: op, path, error: err instanceof Error ? err.message : String(err) };
    if (!this.failedLayers.has(digest)) {
      this.failedLayers.add(digest);
      this.logger.warn("FUSE operation failed", fields);
    } else {
      this.logger.debug("FUSE operation failed", fields);
    }
  }
}
