// Serves the snapshots service (plus any extra services) on a unix socket (docs/snapshotter.md §1.4,
// §5.1): opens the snapshotter under `root`, removes a stale socket, binds, and closes everything
// on request.
import * as grpc from "@grpc/grpc-js";
import { mkdir, rm } from "node:fs/promises";
import { createServer, type Server as NetServer } from "node:net";
import { dirname, resolve } from "node:path";
import { FailedPreconditionError, messageOf } from "../errors/errors.js";
import { silentLogger, type Logger } from "../log/log.js";
import { snapshotsService } from "./proto.js";
import type { RemotePreparer } from "./remote.js";
import { snapshotsServiceImpl } from "./service.js";
import { Snapshotter } from "./snapshotter.js";
import { removeStaleSocket } from "../fs/local-server.js";

export interface SnapshotterServerOptions {
  /** unix socket path, e.g. /run/soci-snapshotter-grpc/soci-snapshotter-grpc.sock */
  address: string;
  /**
   * A listening socket passed by systemd (socket activation, see `systemdListenFds`): served
   * instead of binding `address`, and left alone at close (systemd owns it).
   */
  listenFd?: number;
  /** the snapshotter's directory (the daemon passes `<root>/snapshotter`): metadata.db, snapshots/ */
  root: string;
  logger?: Logger;
  /** lazy layers; without it this is a plain overlay snapshotter */
  remote?: RemotePreparer;
  /** start even if a remote snapshot cannot be re-mounted */
  allowInvalidMountsOnRestart?: boolean;
  /** force `userxattr` on or off (default: only inside a user namespace) */
  userxattr?: boolean;
  /** skip the startup check that overlayfs works under `root` */
  skipOverlayCheck?: boolean;
  /** more gRPC services served on the same socket (the daemon's CRI ImageService proxy) */
  extraServices?: ReadonlyArray<{
    definition: grpc.ServiceDefinition;
    implementation: grpc.UntypedServiceImplementation;
  }>;
}

export interface SnapshotterServer {
  readonly address: string;
  readonly snapshotter: Snapshotter;
  /**
   * Stops serving (in-flight calls finish), removes the socket and closes the store. `unmount`
   * (default true, the daemon's SIGINT) takes down mounts on snapshot directories first.
   */
  close(opts?: { unmount?: boolean }): Promise<void>;
}

// Messages as large as containerd allows (16 MiB), e.g. a List of many labelled snapshots.
const MAX_MESSAGE = 16 << 20;

export async function startSnapshotterServer(opts: SnapshotterServerOptions): Promise<SnapshotterServer> {
  const logger = opts.logger ?? silentLogger;
  const address = resolve(opts.address);
  const snapshotter = await Snapshotter.open({
    root: opts.root,
    remote: opts.remote,
    logger,
    userxattr: opts.userxattr,
    allowInvalidMountsOnRestart: opts.allowInvalidMountsOnRestart,
    skipOverlayCheck: opts.skipOverlayCheck,
  });

  const server = new grpc.Server({
    "grpc.max_receive_message_length": MAX_MESSAGE,
    "grpc.max_send_message_length": MAX_MESSAGE,
  });
  server.addService(snapshotsService().service, snapshotsServiceImpl(snapshotter, logger));
  for (const extra of opts.extraServices ?? []) server.addService(extra.definition, extra.implementation);
  let listener: NetServer | undefined;
  const where = opts.listenFd === undefined ? address : `fd ${opts.listenFd}`;
  try {
    if (opts.listenFd === undefined) {
      await mkdir(dirname(address), { recursive: true, mode: 0o711 });
      await removeStaleSocket(address);
      await new Promise<void>((ok, fail) =>
        server.bindAsync(`unix:${address}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? fail(err) : ok())),
      );
    } else {
      // connections accepted on the inherited socket are handed to the gRPC server
      const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
      const l = createServer((conn) => injector.injectConnection(conn));
      await new Promise<void>((ok, fail) => {
        l.once("error", fail);
        l.listen({ fd: opts.listenFd }, () => {
          l.off("error", fail);
          ok();
        });
      });
      listener = l;
    }
  } catch (err) {
    server.forceShutdown();
    await snapshotter.close({ unmount: false });
    throw new FailedPreconditionError(`cannot listen on ${where}: ${messageOf(err)}`, { cause: err });
  }
  logger.info("snapshotter serving", { address: where, root: snapshotter.root });

  let closing: Promise<void> | undefined;
  return {
    address,
    snapshotter,
    close(closeOpts = {}) {
      closing ??= (async () => {
        // stop accepting on an inherited socket (systemd keeps it open for the next start)
        listener?.close();
        await new Promise<void>((done) => {
          // A stuck stream must not keep the daemon alive: give calls 5 s, then cut them.
          const timer = setTimeout(() => server.forceShutdown(), 5000);
          server.tryShutdown(() => {
            clearTimeout(timer);
            done();
          });
        });
        if (!listener) await rm(address, { force: true });
        await snapshotter.close(closeOpts);
      })();
      return closing;
    },
  };
}

/**
 * The listening sockets systemd passed to this process (sd_listen_fds: `LISTEN_PID` is ours,
 * `LISTEN_FDS` of them from fd 3 on), or none.
 */
export function systemdListenFds(env: NodeJS.ProcessEnv = process.env, pid = process.pid): number[] {
  if (env.LISTEN_PID !== String(pid)) return [];
  const n = Number(env.LISTEN_FDS);
  if (!Number.isInteger(n) || n <= 0) return [];
  return Array.from({ length: n }, (_, i) => 3 + i);
}
