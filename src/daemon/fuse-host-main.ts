// `soci-fuse-host`: the long-lived process that owns soci-snapshotter-grpc's FUSE layer mounts
// (docs/snapshotter.md §5.8). A thin shell: flags, logger, then `startFuseHost`. SIGTERM/SIGINT stop
// it for good (every layer unmounted, lazily where busy); SIGHUP upgrades it (a successor started
// from the same executable path takes over; this one retires and exits after its last layer).
import { Command, Option } from "commander";
import { closeSync, readdirSync, readlinkSync } from "node:fs";
import { reportAndExit } from "../errors/status.js";
import { defaultHostAddress } from "../fuse-host/protocol.js";
import { spawnSuccessor } from "../fuse-host/launch.js";
import { HostRunningError, LogHub, startFuseHost, type FuseHost } from "../fuse-host/server.js";
import { JsonLogger, parseLogLevel, type LogLevel } from "../log/json-logger.js";
import { packageVersion } from "../version.js";
import { InflatePool } from "../wasm/pool.js";
import { DEFAULT_ROOT_PATH } from "./config/index.js";
import { notifyMainPid, notifyReady } from "./sd-notify.js";

const PROGRAM = "soci-fuse-host";

interface Options {
  root: string;
  address?: string;
  logLevel: string;
  idleExitSec: string;
  takeover?: boolean;
}

const program = new Command(PROGRAM)
  .description("serves soci-snapshotter-grpc's lazily loaded layers over FUSE, across daemon restarts")
  .version(`${PROGRAM} version ${packageVersion()}`, "-v, --version")
  .addOption(new Option("--root <dir>", "the snapshotter's root directory").default(DEFAULT_ROOT_PATH))
  .addOption(new Option("--address <path>", "the host's unix socket (default <root>/fuse-host/host.sock)"))
  .addOption(
    new Option("--log-level <level>", "set the logging level [trace, debug, info, warn, error, fatal, panic]").default(
      "info",
    ),
  )
  .addOption(
    new Option("--idle-exit-sec <n>", "exit after this many seconds with no layer and no daemon (0: never)").default(
      "0",
    ),
  )
  .addOption(new Option("--takeover", "upgrade: the running host retires and this one takes new mounts"))
  .action(async (opts: Options) => {
    closeInheritedFuseDescriptors();
    let level: LogLevel;
    try {
      level = parseLogLevel(opts.logLevel);
    } catch (e) {
      throw new Error(`failed to prepare logger: ${(e as Error).message}`);
    }
    const logs = new LogHub(process.stderr);
    const logger = JsonLogger.create({ sink: logs, level }).withField("fuse-host", process.pid);
    const address = opts.address ?? defaultHostAddress(opts.root);
    const idleExitSec = Number(opts.idleExitSec);
    if (!Number.isInteger(idleExitSec) || idleExitSec < 0)
      throw new Error(`invalid --idle-exit-sec ${opts.idleExitSec}`);
    // as the daemon: one inflate worker keeps up with the network, a small young generation
    const pool = new InflatePool({ threads: 1, maxYoungGenerationSizeMb: 4 });
    const exit = (code: number) => {
      void pool.destroy().finally(() => process.exit(code));
    };
    let host: FuseHost;
    try {
      host = await startFuseHost({
        root: opts.root,
        address,
        logger,
        logs,
        pool,
        executable: process.argv[1] ?? "",
        version: packageVersion(),
        takeover: opts.takeover ?? false,
        idleExitMs: idleExitSec * 1000,
        beforeTakeover: () => notifyMainPid(logger),
        takeoverFailed: (pid) => notifyMainPid(logger, pid),
        onDone: (reason) => {
          logger.info("FUSE host exiting", { reason });
          exit(0);
        },
      });
    } catch (e) {
      if (e instanceof HostRunningError) {
        logger.warn(`${e.message}; nothing to do`);
        exit(0);
        return;
      }
      logger.withError(e).fatal("failed to start the FUSE host");
      exit(1);
      return;
    }
    await notifyReady(logger);
    const stop = (signal: NodeJS.Signals) => {
      logger.info(`Got ${signal === "SIGINT" ? "interrupt" : "terminated"}`);
      void host.stop().finally(() => exit(0));
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
    process.on("SIGHUP", () => {
      if (host.retired) return;
      const pid = spawnSuccessor({
        root: opts.root,
        address,
        executable: process.argv[1],
        logLevel: logger.level,
        idleExitSec,
      });
      logger.info("upgrading: started a successor that takes over", { successor: pid });
    });
  })
  .showHelpAfterError();

/**
 * libfuse 2 opens /dev/fuse without O_CLOEXEC, so a host's children inherit the connections of its
 * mounts; a successor started on SIGHUP would keep its predecessor's connections alive (and their
 * mounts hanging instead of failing) should the predecessor die. A host owns no connection when it
 * starts: any it holds is inherited, and closed.
 */
function closeInheritedFuseDescriptors(): void {
  for (const fd of readdirSync("/proc/self/fd")) {
    let target = "";
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue;
    }
    if (target === "/dev/fuse") closeSync(Number(fd));
  }
}

program.parseAsync(process.argv).catch((err) => reportAndExit(PROGRAM, err));
