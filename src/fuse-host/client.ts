import { realpath } from "node:fs/promises";
import { UnavailableError } from "../errors/errors.js";
import { mountStatus, mountsUnder, unmountPath } from "../fs/fuse-layer.js";
import type {
  LayerMetricsSnapshot,
  LayerMounter,
  LayerMountRequest,
  LayerMountTimes,
  ServedLayer,
} from "../fs/lazy-layers.js";
import type { Logger } from "../log/log.js";
import { FuseHostConnection, type LogsEnd } from "./connection.js";
import { startHost, type HostCommand, type Started, type StartMode } from "./launch.js";
import type { HostInfo } from "./protocol.js";
import { isProcessAlive } from "../fs/local-server.js";

export interface FuseHostClientOptions {
  /** The daemon root the host serves. */
  root: string;
  /** The host's socket. */
  address: string;
  /** How to start a host when none answers ("none": wait for one started elsewhere, e.g. its unit). */
  start: StartMode;
  /** `[fuse_manager] path` */
  executable?: string;
  /** The host logs at this level (the daemon's). */
  logLevel: string;
  /** A host the daemon starts exits after this long with no layer and no daemon (0: never). */
  idleExitSec: number;
  /** How long to wait for a host to answer (started here or elsewhere). */
  startTimeoutMs?: number;
  logger: Logger;
  /** One of the host's JSON log lines, for the daemon's log. */
  relay(line: string): void;
  /** The host that served the layers is gone with its mounts: the daemon mounts them again. */
  onHostLost?(why: "died" | "stopped"): void;
  /** A host died (`soci_fuse_host_failures_total`). */
  onFailure?(): void;
}

export class FuseHostClient implements LayerMounter {
  private ready: Promise<FuseHostConnection> | undefined;
  private current: { conn: FuseHostConnection; info: HostInfo } | undefined;
  private closed = false;
  /** The host is known dead (counted already): a new one finds its dead mounts, no news. */
  private knownDead = false;

  constructor(private readonly opts: FuseHostClientOptions) {}

  /** The host serving now (connecting, or starting one, if needed). */
  async info(): Promise<HostInfo> {
    await this.connection();
    return this.current!.info;
  }

  async mount(req: LayerMountRequest): Promise<LayerMountTimes> {
    // the FUSE mount itself has no deadline of its own in the host: give it a minute past the set-up's
    const timeout = (req.settings.resolveTimeoutMs ?? 30_000) + 60_000;
    return this.withHost((c) => c.mount(req, timeout));
  }

  async unmount(mountpoint: string): Promise<void> {
    try {
      await this.withHost((c) => c.unmount(mountpoint));
    } catch (e) {
      if (!(e instanceof UnavailableError)) throw e;
      // no host to ask: whatever is mounted there is dead, detach it
      await unmountPath(mountpoint);
    }
  }

  /** The mount answers (a stat from this process, which does not serve it), and the host finds its blob reachable. */
  async check(mountpoint: string, opts: { validIntervalMs: number; timeoutMs: number }): Promise<void> {
    const status = await mountStatus(mountpoint);
    if (status !== "alive") throw new UnavailableError(`${mountpoint}: layer mount is ${status}`);
    await this.withHost((c) => c.check(mountpoint, opts));
  }

  list(): Promise<ServedLayer[]> {
    return this.withHost((c) => c.list());
  }

  async supportsLayerVerification(): Promise<boolean> {
    return (await this.info()).features?.includes("layer-verification") ?? false;
  }

  metrics(): Promise<LayerMetricsSnapshot[]> {
    return this.withHost((c) => c.metrics());
  }

  /**
   * Disconnects. The host keeps serving: a daemon that stops leaves its layers to the host
   * (`unmount` is done by the snapshotter, one Unmount per layer, when the daemon stops for good).
   */
  async close(_opts: { unmount: boolean }): Promise<void> {
    this.closed = true;
    const c = await this.ready?.catch(() => undefined);
    c?.close();
    this.ready = undefined;
    this.current = undefined;
  }

  /** Runs `fn` on the host; a host that stopped answering is reconnected to (or started) once. */
  private async withHost<T>(fn: (c: FuseHostConnection) => Promise<T>): Promise<T> {
    const c = await this.connection();
    try {
      return await fn(c);
    } catch (e) {
      if (!(e instanceof UnavailableError) || this.closed) throw e;
      this.drop(c);
      return fn(await this.connection());
    }
  }

  /** `successor`: a host retired; its successor is about to serve (none is started in the meantime). */
  private connection(successor = false): Promise<FuseHostConnection> {
    if (this.closed) return Promise.reject(new UnavailableError("the FUSE host client is closed"));
    if (!this.ready) {
      const p = this.connect(successor);
      this.ready = p;
      p.catch(() => {
        if (this.ready === p) this.ready = undefined;
      });
    }
    return this.ready;
  }

  private drop(c: FuseHostConnection): void {
    if (this.current?.conn === c) this.current = undefined;
    this.ready = undefined;
    c.close();
  }

  private async connect(successor: boolean): Promise<FuseHostConnection> {
    const o = this.opts;
    const root = await realpath(o.root);
    const deadline = Date.now() + (o.startTimeoutMs ?? 60_000);
    let conn = new FuseHostConnection(o.address);
    let info = await conn.info(3_000).catch(() => undefined);
    for (const end = Date.now() + 10_000; successor && (!info || info.retired) && Date.now() < end; ) {
      await sleep(100);
      if (info?.retired) {
        conn.close();
        conn = new FuseHostConnection(o.address);
      }
      info = await conn.info(2_000).catch(() => undefined);
    }
    let started: Started | undefined;
    if (!info && o.start !== "none") {
      const cmd: HostCommand = {
        root: o.root,
        address: o.address,
        logLevel: o.logLevel,
        idleExitSec: o.idleExitSec,
        ...(o.executable ? { executable: o.executable } : {}),
      };
      started = await startHost(o.start, cmd);
      o.logger.info("started a FUSE host", { pid: started.pid, log: started.log });
    }
    // a host that is starting, or a successor binding the socket after a takeover, answers soon
    let exited = started?.exited;
    for (let delay = 50; !info || info.retired; delay = Math.min(delay * 2, 500)) {
      if (Date.now() > deadline) {
        conn.close();
        const how = started ? ` (see ${started.log})` : o.start === "none" ? " and [fuse_manager] start = none" : "";
        throw new UnavailableError(`no FUSE host answers on ${o.address}${how}`);
      }
      const code = await Promise.race([exited ?? new Promise<never>(() => {}), sleep(delay).then(() => "waiting")]);
      if (code !== "waiting") {
        // status 0: it found another host serving the root (which will answer)
        if (code !== 0) {
          conn.close();
          throw new UnavailableError(`the FUSE host exited with status ${code} before serving (see ${started!.log})`);
        }
        exited = undefined;
      }
      if (info?.retired) {
        conn.close();
        conn = new FuseHostConnection(o.address);
      }
      info = await conn.info(2_000).catch(() => undefined);
    }
    if (info.root !== root) {
      conn.close();
      throw new UnavailableError(`the FUSE host on ${o.address} serves ${info.root}, not ${root}`);
    }
    if (started && !this.knownDead) await this.reportDeadMounts(root);
    this.knownDead = false;
    this.current = { conn, info };
    conn.relayLogs(
      o.logLevel,
      (line) => o.relay(line),
      (why) => this.lost(conn, info, why),
    );
    o.logger.info("connected to the FUSE host", { pid: info.pid, version: info.version, layers: info.layers });
    return conn;
  }

  /** The host's log stream ended: find out why, reconnect, and have the layers mounted again if they are gone. */
  private lost(conn: FuseHostConnection, info: HostInfo, why: LogsEnd): void {
    if (this.closed || this.current?.conn !== conn) return;
    this.drop(conn);
    void this.afterLoss(info, why);
  }

  private async afterLoss(info: HostInfo, why: LogsEnd): Promise<void> {
    const log = this.opts.logger;
    let gone: "died" | "stopped" | undefined;
    if (why === "retired") {
      log.info("the FUSE host retired; connecting to its successor", { pid: info.pid });
    } else if (why === "stopping") {
      log.warn("the FUSE host stopped and took its layers down; they are mounted again", { pid: info.pid });
      gone = "stopped";
      // it holds the root until its layers are down: its successor starts after it
      await waitForExit(info.pid, 120_000);
    } else {
      // the stream may close a moment before the process is gone
      await waitForExit(info.pid, 1_000);
      if (isProcessAlive(info.pid)) {
        log.debug("lost the FUSE host's log stream; reconnecting", { pid: info.pid });
      } else {
        log.error("the FUSE host died: its layers no longer answer; they are mounted again", { pid: info.pid });
        this.opts.onFailure?.();
        this.knownDead = true;
        gone = "died";
      }
    }
    try {
      await this.connection(why === "retired");
    } catch (e) {
      log.error("cannot reach a FUSE host", { error: (e as Error).message });
      return;
    }
    if (gone) this.opts.onHostLost?.(gone);
  }

  /**
   * A host had to be started: layer mounts under the root that no longer answer mean the one
   * before died (SIGKILL, OOM) while the daemon was down too. Logged and counted; the daemon's
   * restore mounts those layers again.
   */
  private async reportDeadMounts(root: string): Promise<void> {
    const mounts = await mountsUnder(root);
    const dead: string[] = [];
    for (const mp of mounts) if ((await mountStatus(mp)) === "dead") dead.push(mp);
    if (dead.length === 0) return;
    this.opts.logger.error("a FUSE host died: its layer mounts no longer answer; they are mounted again", {
      mounts: dead.length,
    });
    this.opts.onFailure?.();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function waitForExit(pid: number, ms: number): Promise<void> {
  for (const end = Date.now() + ms; isProcessAlive(pid) && Date.now() < end; ) await sleep(100);
}
