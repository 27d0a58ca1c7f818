// The FUSE host (docs/snapshotter.md §5.8): a long-lived process that owns the snapshotter's FUSE
// layer mounts and everything serving them (LazyLayers: span cache, inflate pool, background
// fetcher, the registry credentials it was handed), so that the daemon can be killed, restarted or
// upgraded under running containers. It serves proto/fuse-host.proto on a unix socket only root can
// reach; one host per daemon root (an abstract-socket lock).
//
// Upgrade: a successor started with `takeover` asks the running host to retire. The retired host
// stops taking mounts, moves to a private socket (`retired-<pid>.sock` beside the active one), gives
// up the lock and the well-known socket, keeps serving its mounts and exits when the last one is
// gone. The active host forwards what concerns a retired host's mounts (unmount, check, list,
// metrics, log lines) to it, so the daemon only ever talks to one socket.
import * as grpc from "@grpc/grpc-js";
import { createHash } from "node:crypto";
import { chmod, mkdir, readdir, realpath, rm } from "node:fs/promises";
import { createServer, type Server as NetServer } from "node:net";
import { basename, dirname, join, resolve } from "node:path";
import { FailedPreconditionError, UnavailableError } from "../errors/errors.js";
import { LazyLayers, type LayerMetricsSnapshot, type RegistryAccess, type ServedLayer } from "../fs/lazy-layers.js";
import type { JsonLogger, LogLevel, LogSink } from "../log/json-logger.js";
import { parseLogLevel } from "../log/json-logger.js";
import type { RegistryClient } from "../registry/client.js";
import { HandedCredentials, handedAuthorizer, registryClientWith, settingsKey } from "../registry/settings.js";
import type { InflatePool } from "../wasm/pool.js";
import { FuseHostConnection } from "./connection.js";
import {
  HOST_FEATURES,
  CHANNEL_OPTIONS,
  fuseHostService,
  mountRequestFromWire,
  retiredAddress,
  snapshotToWire,
  toStatus,
  type HostInfo,
  type WireMountRequest,
} from "./protocol.js";
import { isProcessAlive, removeStaleSocket } from "../fs/local-server.js";

export interface FuseHostOptions {
  /** The daemon root it serves: `<root>/soci` (span cache, statfs), mountpoints below `<root>`. */
  root: string;
  /** The well-known socket. */
  address: string;
  logger: JsonLogger;
  /** Every log line of `logger` also goes to the subscribed daemons: the shell builds the logger on `logs`. */
  logs: LogHub;
  pool: InflatePool;
  /** The executable an upgrade runs (reported by Info). */
  executable: string;
  version: string;
  /** Ask the running host to retire and take its place (an upgrade). */
  takeover?: boolean;
  /** Exit after this long with no layer and no daemon subscribed (0: never, e.g. under systemd). */
  idleExitMs?: number;
  /** Called once the host has nothing left to do (retired and empty, or idle); the shell exits. */
  onDone(reason: string): void;
  /** Called before a takeover asks the old host to retire (the shell tells systemd the new main pid). */
  beforeTakeover?(): Promise<void>;
  /** The takeover failed after `beforeTakeover`: the old host (`pid`) stays the main process. */
  takeoverFailed?(pid: number): Promise<void>;
}

/** A log sink that tees to stderr (or a file) and to every subscribed daemon. */
export class LogHub implements LogSink {
  private readonly subscribers = new Set<grpc.ServerWritableStream<unknown, unknown>>();

  constructor(private readonly out: LogSink) {}

  write(line: string): void {
    this.out.write(line);
    this.relay(line);
  }

  /** A line for the subscribers only (a retired host's, already in its own log). */
  relay(line: string): void {
    const text = line.endsWith("\n") ? line.slice(0, -1) : line;
    for (const s of this.subscribers) {
      try {
        s.write({ line: text, retired: false, stopping: false });
      } catch {
        this.subscribers.delete(s);
      }
    }
  }

  subscribe(call: grpc.ServerWritableStream<unknown, unknown>): void {
    this.subscribers.add(call);
    const drop = () => this.subscribers.delete(call);
    call.on("cancelled", drop);
    call.on("close", drop);
    call.on("error", drop);
  }

  get count(): number {
    return this.subscribers.size;
  }

  /** Ends every subscription with a last event saying why. */
  endAll(why: "retired" | "stopping"): void {
    for (const s of this.subscribers) {
      try {
        s.write({ line: "", retired: why === "retired", stopping: why === "stopping" });
        s.end();
      } catch {
        // a subscriber already gone
      }
    }
    this.subscribers.clear();
  }
}

export interface FuseHost {
  readonly address: string;
  /** Stops for good: every layer is unmounted (lazily where busy), then the sockets close. */
  stop(): Promise<void>;
  /** Upgrade: retire in favour of a successor (SIGHUP starts one, which then calls Retire). */
  readonly retired: boolean;
}

/** The abstract socket that marks the one host of a root; the kernel drops it with the process. */
function hostLockName(realRoot: string): string {
  return `\0soci-fuse-host/${createHash("sha256").update(realRoot).digest("hex")}`;
}

async function lockHost(realRoot: string): Promise<NetServer | undefined> {
  const server = createServer((conn) => conn.destroy());
  const ok = await new Promise<boolean>((done, fail) => {
    server.once("error", (err: NodeJS.ErrnoException) => (err.code === "EADDRINUSE" ? done(false) : fail(err)));
    server.listen(hostLockName(realRoot), () => done(true));
  });
  if (!ok) return undefined;
  server.unref();
  return server;
}

function bind(server: grpc.Server, path: string): Promise<void> {
  return new Promise<void>((ok, fail) =>
    server.bindAsync(`unix:${path}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? fail(err) : ok())),
  );
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Another host already serves this root (and no takeover was asked for). */
export class HostRunningError extends FailedPreconditionError {
  override name = "HostRunningError";
}

/**
 * Starts a FUSE host. Rejects with HostRunningError when another one serves the root, unless
 * `takeover` is set (then that one retires first).
 */
export async function startFuseHost(opts: FuseHostOptions): Promise<FuseHost> {
  const log = opts.logger;
  const address = resolve(opts.address);
  await mkdir(dirname(address), { recursive: true, mode: 0o700 });
  await chmod(dirname(address), 0o700);
  const root = await realpath(opts.root);
  const started = Date.now();

  const handed = new HandedCredentials();
  const authorizer = handedAuthorizer(handed);
  const clients = new Map<string, RegistryClient>();
  const registryClient = (access: RegistryAccess): RegistryClient => {
    for (const c of access.credentials) handed.remember(c);
    const key = settingsKey(access.settings);
    let c = clients.get(key);
    if (!c) {
      c = registryClientWith(access.settings, authorizer);
      clients.set(key, c);
    }
    return c;
  };
  const layers = new LazyLayers({
    dir: join(root, "soci"),
    pool: opts.pool,
    logger: log,
    registryClient,
    // the daemon names mountpoints below the root as given to both (not its real path)
    mountRoot: resolve(opts.root),
  });

  let retired = false;
  let privateServer: grpc.Server | undefined;
  // one host per root: a second start fails, a takeover waits for the lock the old host gives up
  let lock: NetServer | undefined;
  let timer: NodeJS.Timeout | undefined;
  let done = false;
  let idleSince = Date.now();
  let closing: Promise<void> | undefined;
  /** Retired hosts' sockets this host forwards to, by path. */
  const predecessors = new Map<string, FuseHostConnection>();

  /** The retired hosts still running (their sockets beside ours); dead ones' sockets are removed. */
  const retiredHosts = async (): Promise<FuseHostConnection[]> => {
    if (retired) return [];
    const dir = dirname(address);
    const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => /^retired-\d+\.sock$/.test(n));
    const out: FuseHostConnection[] = [];
    for (const name of names) {
      const path = join(dir, name);
      let c = predecessors.get(path);
      if (!c) {
        c = new FuseHostConnection(path);
        predecessors.set(path, c);
      }
      try {
        await c.info(2_000);
        out.push(c);
        // its log lines reach the daemons subscribed here
        c.relayLogs(log.level, (line) => opts.logs.relay(line));
      } catch {
        c.close();
        predecessors.delete(path);
        const pid = Number(/\d+/.exec(basename(name))![0]);
        if (!isProcessAlive(pid)) await rm(path, { force: true });
      }
    }
    return out;
  };
  /** The retired host serving `mountpoint`, if any. */
  const ownerOf = async (mountpoint: string): Promise<FuseHostConnection | undefined> => {
    for (const c of await retiredHosts()) {
      if ((await c.list()).some((l) => l.mountpoint === mountpoint)) return c;
    }
    return undefined;
  };

  const info = (): HostInfo => ({
    pid: process.pid,
    version: opts.version,
    root,
    retired,
    executable: opts.executable,
    startedMs: started,
    layers: layers.size,
    features: [...HOST_FEATURES],
  });

  const unary =
    <Req, Res>(name: string, fn: (req: Req) => Promise<Res>): grpc.handleUnaryCall<Req, Res> =>
    (call, callback) => {
      fn(call.request).then(
        (res) => callback(null, res),
        (err: unknown) => {
          log.debug(`FUSE host ${name} failed`, { error: err instanceof Error ? err.message : String(err) });
          callback(toStatus(err) as grpc.ServiceError);
        },
      );
    };

  const publicServer = new grpc.Server(CHANNEL_OPTIONS);
  const handlers: grpc.UntypedServiceImplementation = {
    Info: unary("Info", async () => info()),
    Mount: unary("Mount", async (w: WireMountRequest) => {
      if (retired) throw new FailedPreconditionError("this FUSE host has retired: mount through the active one");
      return layers.mount(mountRequestFromWire(w));
    }),
    Unmount: unary("Unmount", async (req: { mountpoint: string }) => {
      const mp = resolve(req.mountpoint);
      const owner = layers.serves(mp) ? undefined : await ownerOf(mp);
      if (owner) await owner.unmount(mp);
      else await layers.unmount(mp);
      checkDone();
      return {};
    }),
    Check: unary("Check", async (req: { mountpoint: string; validIntervalMs: number; timeoutMs: number }) => {
      const mp = resolve(req.mountpoint);
      const owner = layers.serves(mp) ? undefined : await ownerOf(mp);
      const o = { validIntervalMs: req.validIntervalMs, timeoutMs: req.timeoutMs || 60_000 };
      if (owner) await owner.check(mp, o);
      else await layers.check(mp, { ...o, probe: false }); // the daemon stats the mount itself
      return {};
    }),
    List: unary("List", async () => {
      const own: ServedLayer[] = await layers.list();
      const others = await Promise.all((await retiredHosts()).map((c) => c.list().catch(() => [])));
      return { layers: [...own, ...others.flat()] };
    }),
    Metrics: unary("Metrics", async () => {
      const own: LayerMetricsSnapshot[] = await layers.metrics();
      const others = await Promise.all((await retiredHosts()).map((c) => c.metrics().catch(() => [])));
      return { snapshots: [...own, ...others.flat()].map(snapshotToWire) };
    }),
    Logs: (call: grpc.ServerWritableStream<{ level: string }, unknown>) => {
      try {
        if (call.request.level) log.setLevel(parseLogLevel(call.request.level) as LogLevel);
      } catch {
        // an unknown level keeps the current one
      }
      opts.logs.subscribe(call);
      void retiredHosts(); // starts relaying their lines
    },
    Retire: unary("Retire", async (req: { successorPid: number }) => {
      if (retired) return { address: retiredAddress(address, process.pid), pid: process.pid };
      const priv = retiredAddress(address, process.pid);
      log.info("retiring: a successor takes new mounts; this host serves its layers until they are unmounted", {
        successor: req.successorPid,
        layers: layers.size,
      });
      retired = true;
      await removeStaleSocket(priv);
      privateServer = new grpc.Server(CHANNEL_OPTIONS);
      privateServer.addService(fuseHostService().service, handlers);
      await bind(privateServer, priv);
      await chmod(priv, 0o600);
      for (const c of predecessors.values()) c.close();
      predecessors.clear();
      lock?.close();
      lock = undefined;
      opts.logs.endAll("retired");
      // the listener closes (and its socket file goes) before the successor hears back and binds
      publicServer.tryShutdown(() => undefined);
      setTimeout(() => publicServer.forceShutdown(), 2_000).unref();
      checkDone();
      return { address: priv, pid: process.pid };
    }),
  };
  publicServer.addService(fuseHostService().service, handlers);

  if (opts.takeover) {
    const old = new FuseHostConnection(address);
    try {
      const running = await old.info(5_000).catch(() => undefined);
      if (running) {
        if (running.root !== root)
          throw new FailedPreconditionError(`the FUSE host at ${address} serves ${running.root}, not ${root}`);
        await opts.beforeTakeover?.();
        try {
          const r = await old.retire(process.pid);
          log.info("took over from the running FUSE host", { predecessor: r.pid, address: r.address });
        } catch (e) {
          await opts.takeoverFailed?.(running.pid);
          throw e;
        }
      }
    } finally {
      old.close();
    }
    for (let i = 0; !lock; i++) {
      lock = await lockHost(root);
      if (!lock && i >= 100) throw new HostRunningError(`another FUSE host is running for ${root}`);
      if (!lock) await delay(50);
    }
  } else {
    lock = await lockHost(root);
    if (!lock) throw new HostRunningError(`another FUSE host is running for ${root}`);
  }
  try {
    await removeStaleSocket(address);
    await bind(publicServer, address);
    await chmod(address, 0o600);
  } catch (e) {
    lock.close();
    throw new UnavailableError(`cannot listen on ${address}: ${(e as Error).message}`, { cause: e });
  }
  log.info("FUSE host serving", { address, root, version: opts.version });

  // layers unmounted from outside are released; a retired host with none left, or an idle one, is done
  timer = setInterval(() => {
    layers
      .prune()
      .catch((e: Error) => log.warn("failed to check the mount table", { error: e.message }))
      .finally(checkDone);
  }, 2_000);
  void retiredHosts(); // a successor relays its predecessors' log lines from the start

  function finish(reason: string): void {
    if (done) return;
    done = true;
    clearInterval(timer);
    void shutdown(false).then(() => opts.onDone(reason));
  }
  function checkDone(): void {
    if (done) return;
    if (retired && layers.size === 0) {
      finish("retired, and the last layer is unmounted");
      return;
    }
    if (layers.size > 0 || opts.logs.count > 0) idleSince = Date.now();
    else if (opts.idleExitMs && !retired && Date.now() - idleSince >= opts.idleExitMs)
      finish("no layer served and no daemon connected");
  }

  function shutdown(unmount: boolean): Promise<void> {
    closing ??= (async () => {
      clearInterval(timer);
      if (unmount) opts.logs.endAll("stopping");
      await layers.close({ unmount });
      for (const c of predecessors.values()) c.close();
      await Promise.all(
        [publicServer, privateServer].map(
          (s) =>
            s &&
            new Promise<void>((ok) => {
              const t = setTimeout(() => {
                s.forceShutdown();
                ok();
              }, 2_000);
              s.tryShutdown(() => {
                clearTimeout(t);
                ok();
              });
            }),
        ),
      );
      for (const c of clients.values()) await c.close().catch(() => undefined);
      lock?.close();
    })();
    return closing;
  }

  return {
    address,
    get retired() {
      return retired;
    },
    async stop() {
      done = true;
      log.info("FUSE host stopping: unmounting its layers", { layers: layers.size });
      await shutdown(true);
    },
  };
}
