// The daemon's serving phase (cmd/soci-snapshotter-grpc/main.go `serve`): metrics listener, the
// snapshots gRPC service on the unix socket, the "successfully started" line the startup probes
// wait for, then SIGINT (unmount everything, exit) or SIGTERM (exit, mounts left for the next start).

import { join } from "node:path";
import { startSnapshotterServer, type SnapshotterServer } from "../snapshotter/index.js";
import { systemdListenFds } from "../snapshotter/server.js";
import type { SnapshotterConfig } from "./config/index.js";
import { DEFAULT_ADDRESS } from "./config/index.js";
import type { JsonLogger } from "../log/json-logger.js";
import { notifyReady } from "./sd-notify.js";
import { serveMetrics, type MetricsServer, type SociMetrics } from "./metrics.js";
import { SociPreparer, type SociPreparerOptions } from "../snapshotter/soci-preparer.js";
import type { LayerMounter } from "../fs/lazy-layers.js";
import type { RegistryClient } from "../registry/client.js";
import { DockerConfigCredentials, RegistryAuthorizer, type CredentialsProvider } from "../registry/auth.js";
import { credentialsFor, registryClientWith, type RegistrySettings } from "../registry/settings.js";
import { FuseHostClient } from "../fuse-host/client.js";
import { defaultHostAddress } from "../fuse-host/protocol.js";
import { InflatePool } from "../wasm/pool.js";
import { ContainerdClient, socketPath as containerdSocketPath } from "../containerd/client.js";
import { storeLayerBlob } from "../containerd/content-source.js";
import { fileChunks } from "../fs/parallel-pull.js";
import { warmUnpacker } from "../fs/unpack-layer.js";
import { CriImageService } from "../cri/image-service.js";

export interface DaemonFlags {
  /** `--address`: a socket path, `unix://<path>` */
  address: string;
  /** `--root`: the state directory */
  root: string;
}

/** `--address` → socket path: a bare path or `unix://`; `fd://` (systemd activation) is not supported. */
export function socketPath(address: string): string {
  const i = address.indexOf("://");
  if (i < 0) return address;
  const protocol = address.slice(0, i);
  if (protocol === "unix") return address.slice(i + 3);
  if (protocol === "fd") return DEFAULT_ADDRESS; // used when systemd passed no socket: the reference's fallback
  throw new Error(`unknown protocol for address ${address}`);
}

/**
 * Serves until SIGINT or SIGTERM. Resolves when the daemon has shut down; rejects (after closing
 * what it opened) when it cannot start.
 * `--address fd://` serves the socket systemd passed (socket activation) when there is one.
 */
export async function runDaemon(
  cfg: SnapshotterConfig,
  flags: DaemonFlags,
  logger: JsonLogger,
  metrics: SociMetrics,
): Promise<void> {
  let address: string;
  try {
    address = socketPath(flags.address);
  } catch (e) {
    logger.withError(e).fatal("failed to serve snapshotter");
    throw e;
  }
  const activated = flags.address.startsWith("fd://") ? systemdListenFds()[0] : undefined;
  let server: SnapshotterServer | undefined;
  let metricsServer: MetricsServer | null = null;
  // lazy loading is network-bound: one inflate worker keeps up (a span inflates in milliseconds)
  // and each extra worker thread costs tens of MB of resident memory; a span's buffers are short-
  // lived, so a small young generation is enough
  const pool = new InflatePool({ threads: 1, maxYoungGenerationSizeMb: 4 });
  // [cri_keychain]: the kubelet's ImageService calls pass through us, PullImage leaves its credentials
  const cri = cfg.criKeychain.enableKeychain
    ? new CriImageService({ backend: cfg.criKeychain.imageServicePath, logger })
    : undefined;
  const authorizer = daemonAuthorizer(cri?.credentials.provider);
  const settings = registrySettingsFor(cfg);
  const client = registryClientWith(settings, authorizer);
  // SOCI artifacts and, in parallel pull mode, downloaded layers go to containerd's content store
  const containerd = contentStoreClientFor(cfg);
  // [fuse_manager] (§5.8): the layers live in the FUSE host, which outlives this process
  const host = cfg.fuseManager.enable
    ? fuseHostClientFor(cfg, flags.root, logger, metrics, () => {
        server?.snapshotter
          .repairRemote()
          .catch((e: Error) => logger.error("failed to mount the layers again", { error: e.message }));
      })
    : undefined;
  const remote = sociPreparerFor(cfg, flags.root, {
    client,
    pool,
    logger,
    metrics,
    containerd,
    ...(host
      ? {
          mounter: host,
          registryAccess: async (ref) => ({ settings, credentials: await credentialsFor(settings, authorizer, ref) }),
        }
      : {}),
  });
  metrics.collectLayersFrom(() => remote.layerMetrics());
  // everything but the server, after it stopped (or failed to start)
  const release = async (unmount = false) => {
    await remote.close({ unmount });
    await pool.destroy();
    await client.close();
    containerd?.close();
    cri?.close();
  };
  try {
    server = await startSnapshotterServer({
      address,
      ...(activated !== undefined ? { listenFd: activated } : {}),
      root: join(flags.root, "snapshotter"),
      logger,
      remote,
      allowInvalidMountsOnRestart: cfg.snapshotter.allowInvalidMountsOnRestart,
      skipOverlayCheck: cfg.skipCheckSnapshotterSupported,
      ...(cri ? { extraServices: cri.services } : {}),
    });
  } catch (e) {
    logger.withError(e).fatal("failed to configure snapshotter");
    await release();
    throw e;
  }
  try {
    metricsServer = await serveMetrics(cfg, metrics);
    if (metricsServer) logger.info("serving metrics", { address: metricsServer.address });
  } catch (e) {
    logger.withError(e).fatal("failed to serve snapshotter");
    await server.close({ unmount: false });
    await release();
    throw e;
  }
  // layers below the minimum size are unpacked here during pulls: not on the first one's clock
  void warmUnpacker();
  if (cfg.debugAddress !== "")
    logger.warn("debug_address is set but this daemon has no debug endpoint", { address: cfg.debugAddress });
  if (cfg.kubeconfigKeychain.enableKeychain) {
    logger.warn(
      "kubeconfig_keychain is not supported by this daemon: credentials come from the docker config and, when enabled, the CRI keychain",
    );
  }
  if (cfg.filesystemCacheType === "memory")
    logger.warn(
      'filesystem_cache_type = "memory" is not supported by this daemon: spans are cached on disk under the root',
    );

  logger.info("soci-snapshotter-grpc successfully started", { address });
  await notifyReady(logger);
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    const on = (s: NodeJS.Signals) => {
      process.off("SIGINT", on);
      process.off("SIGTERM", on);
      resolve(s);
    };
    process.on("SIGINT", on);
    process.on("SIGTERM", on);
  });
  logger.info(`Got ${signal === "SIGINT" ? "interrupt" : "terminated"}`);
  await metricsServer?.close();
  // SIGINT: stop for good, every layer unmounted. SIGTERM (a restart): the FUSE host keeps serving
  // the layers; without one they die with this process, so they are unmounted cleanly (lazily where
  // busy) and the next start mounts them again
  const unmount = signal === "SIGINT" || !host;
  if (unmount) logger.debug("Closing the snapshotter");
  await server.close({ unmount });
  await release(unmount);
  logger.info("Exiting");
}

/**
 * The registry client of the daemon: `[resolver]` mirrors, `[http]`/`[blob]` retries and timeouts,
 * docker credentials, then the CRI keychain's (`criCredentials`) when it is enabled.
 */
export function registryClientFor(cfg: SnapshotterConfig, criCredentials?: CredentialsProvider): RegistryClient {
  return registryClientWith(registrySettingsFor(cfg), daemonAuthorizer(criCredentials));
}

/** Docker config credentials, then the CRI keychain's when it is enabled. */
function daemonAuthorizer(criCredentials?: CredentialsProvider): RegistryAuthorizer {
  return new RegistryAuthorizer(
    criCredentials ? { credentials: [new DockerConfigCredentials().provider, criCredentials] } : {},
  );
}

/** A FUSE host started by this daemon exits after this long with no layer and no daemon connected. */
const HOST_IDLE_EXIT_SEC = 60;

/** The client of the FUSE host that serves this root's layers (§5.8). */
export function fuseHostClientFor(
  cfg: SnapshotterConfig,
  root: string,
  logger: JsonLogger,
  metrics: SociMetrics,
  onHostLost: () => void,
): FuseHostClient {
  const fm = cfg.fuseManager;
  metrics.enableFuseHostMetrics();
  return new FuseHostClient({
    root,
    address: fm.address || defaultHostAddress(root),
    start: fm.start,
    ...(fm.path ? { executable: fm.path } : {}),
    logLevel: logger.level,
    idleExitSec: HOST_IDLE_EXIT_SEC,
    logger,
    // the host's lines are JSON lines already: they join this log as they are
    relay: (line) => process.stderr.write(`${line}\n`),
    onFailure: () => metrics.countFuseHostFailure(),
    onHostLost,
  });
}

/** `[resolver]` mirrors and the `[http]`/`[blob]` timeouts and retries, as data (the FUSE host gets them too). */
export function registrySettingsFor(cfg: SnapshotterConfig): RegistrySettings {
  const mirrors: RegistrySettings["mirrors"] = {};
  for (const [host, h] of Object.entries(cfg.resolver.host ?? {})) {
    mirrors[host] = h.mirrors.map((m) => ({
      host: m.host,
      insecure: m.insecure,
      request_timeout_sec: m.requestTimeoutSec,
    }));
  }
  return {
    mirrors,
    timeoutMs:
      cfg.http.responseHeaderTimeoutMsec > 0 ? Math.max(cfg.http.responseHeaderTimeoutMsec, 30_000) : undefined,
    connectTimeoutMs: cfg.http.dialTimeoutMsec > 0 ? cfg.http.dialTimeoutMsec : undefined,
    // every registry operation (manifests, SOCI index, ztocs, spans, layers) gives up after
    // `fetching_timeout_sec` with nothing arriving, as span fetches already did (§5.3)
    deadlineMs: cfg.blob.fetchingTimeoutSec * 1000,
    // `max_retries = -1` disables retries (§5.3); left undefined it fell back to the client's default
    retries: cfg.blob.maxRetries < 0 ? 0 : Math.min(cfg.blob.maxRetries, 8),
    baseDelayMs: cfg.blob.minWaitMsec > 0 ? cfg.blob.minWaitMsec : undefined,
    maxDelayMs: cfg.blob.maxWaitMsec > 0 ? Math.min(cfg.blob.maxWaitMsec, 30_000) : undefined,
  };
}

/**
 * `[content_store] type = "containerd"`: a client of the containerd at `containerd_address` (its
 * namespace is chosen per Prepare), where SOCI artifacts are kept; none for the SOCI store. It
 * connects on first use.
 */
export function contentStoreClientFor(cfg: SnapshotterConfig): ContainerdClient | undefined {
  if (cfg.contentStore.type !== "containerd") return undefined;
  return ContainerdClient.connect({ address: containerdSocketPath(cfg.contentStore.containerdAddress) });
}

/** The lazy-loading half of the snapshotter, configured from the daemon config. */
export function sociPreparerFor(
  cfg: SnapshotterConfig,
  root: string,
  deps: {
    client: RegistryClient;
    pool: InflatePool;
    logger: JsonLogger;
    metrics: SociMetrics;
    containerd?: ContainerdClient;
    mounter?: LayerMounter;
    registryAccess?: SociPreparerOptions["registryAccess"];
  },
): SociPreparer {
  const bf = cfg.backgroundFetch;
  const p = cfg.pullModes.parallelPullUnpack;
  const containerd = deps.containerd;
  return new SociPreparer({
    root,
    ...deps,
    discovery: { v1: cfg.pullModes.sociV1.enable, v2: cfg.pullModes.sociV2.enable },
    minLayerSize: cfg.snapshotter.minLayerSize,
    mountTimeoutMs: cfg.mountTimeoutSec * 1000,
    fuse: {
      attrTimeout: cfg.fuse.attrTimeout,
      entryTimeout: cfg.fuse.entryTimeout,
      negativeTimeout: cfg.fuse.negativeTimeout,
    },
    maxSpanVerificationRetries: cfg.blob.maxSpanVerificationRetries,
    chunkVerification: cfg.blob.chunkVerification,
    fetchTimeoutMs: cfg.blob.fetchingTimeoutSec * 1000,
    blobValidIntervalMs: cfg.blob.validInterval * 1000, // 0 with check_always
    disableVerification: cfg.disableVerification,
    fuseMetricsEmitWaitMs: cfg.fuseMetricsEmitWaitDurationSec * 1000,
    logFuseOperations: cfg.fuse.logFuseOperations,
    prefetch: cfg.prefetch.enable
      ? { concurrency: cfg.prefetch.maxConcurrency > 0 ? cfg.prefetch.maxConcurrency : 4 }
      : undefined,
    parallel:
      p.enable || p.experimentalParallelPullAsFallback
        ? {
            mode: p.enable ? "primary" : "fallback",
            maxConcurrentDownloads: p.maxConcurrentDownloads,
            maxConcurrentDownloadsPerImage: p.maxConcurrentDownloadsPerImage,
            maxConcurrentUnpacks: p.maxConcurrentUnpacks,
            maxConcurrentUnpacksPerImage: p.maxConcurrentUnpacksPerImage,
            chunkSize: p.concurrentDownloadChunkSizeBytes,
            decompressors: p.decompressStreams,
            storeLayer:
              containerd && !p.discardUnpackedLayers
                ? (namespace, layer, file) => storeLayerBlob(containerd, namespace, layer, fileChunks(file))
                : undefined,
          }
        : undefined,
    background: bf.disable
      ? undefined
      : {
          silencePeriodMs: bf.silencePeriodMsec,
          fetchPeriodMs: bf.fetchPeriodMsec,
          maxQueueSize: bf.maxQueueSize,
          dropPolicy: bf.dropPolicy,
        },
  });
}
