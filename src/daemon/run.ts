// The daemon's serving phase (cmd/soci-snapshotter-grpc/main.go `serve`): metrics listener, the
// snapshots gRPC service on the unix socket, the "successfully started" line the startup probes
// wait for, then SIGINT (unmount everything, exit) or SIGTERM (exit, mounts left for the next start).

import { join } from "node:path";
import { startSnapshotterServer, type SnapshotterServer } from "../snapshotter/index.js";
import type { SnapshotterConfig } from "./config/index.js";
import { DEFAULT_ADDRESS } from "./config/index.js";
import type { Logger } from "./logger.js";
import { serveMetrics, type MetricsServer, type SociMetrics } from "./metrics.js";

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
  if (protocol === "fd") return DEFAULT_ADDRESS; // no socket activation here: the reference's fallback
  throw new Error(`unknown protocol for address ${address}`);
}

/**
 * Serves until SIGINT or SIGTERM. Resolves when the daemon has shut down; rejects (after closing
 * what it opened) when it cannot start.
 *
 * WIRING POINT for the lead: lazy layers need a `remote` (RemotePreparer) built from `cfg`
 * (fs/ + registry/) passed to startSnapshotterServer below; without it this serves a plain overlay
 * snapshotter. `metrics` is the handle the filesystem and the preparer should record into.
 */
export async function runDaemon(cfg: SnapshotterConfig, flags: DaemonFlags, logger: Logger, metrics: SociMetrics): Promise<void> {
  let address: string;
  try {
    address = socketPath(flags.address);
  } catch (e) {
    logger.withError(e).fatal("failed to serve snapshotter");
    throw e;
  }
  let server: SnapshotterServer | undefined;
  let metricsServer: MetricsServer | null = null;
  try {
    server = await startSnapshotterServer({
      address,
      root: join(flags.root, "snapshotter"),
      logger,
      allowInvalidMountsOnRestart: cfg.snapshotter.allowInvalidMountsOnRestart,
    });
  } catch (e) {
    logger.withError(e).fatal("failed to configure snapshotter");
    throw e;
  }
  try {
    metricsServer = await serveMetrics(cfg, metrics);
    if (metricsServer) logger.info("serving metrics", { address: metricsServer.address });
  } catch (e) {
    logger.withError(e).fatal("failed to serve snapshotter");
    await server.close({ unmount: false });
    throw e;
  }
  if (cfg.debugAddress !== "") logger.warn("debug_address is set but this daemon has no debug endpoint", { address: cfg.debugAddress });

  logger.info("soci-snapshotter-grpc successfully started", { address });
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
  const unmount = signal === "SIGINT"; // SIGTERM leaves FUSE mounts for the next start to repair
  if (unmount) logger.debug("Closing the snapshotter");
  await server.close({ unmount });
  logger.info("Exiting");
}
