// `soci-snapshotter-grpc`: the containerd proxy snapshotter daemon. A thin shell: flags and
// environment, configuration, logger and metrics, then `runDaemon`.
import { Command, Option } from "commander";
import { packageVersion } from "../version.js";
import { reportAndExit } from "../errors/status.js";
import { InvalidArgumentError } from "../errors/errors.js";
import {
  DEFAULT_ADDRESS,
  DEFAULT_CONFIG_PATH,
  DEFAULT_ROOT_PATH,
  defaultConfigText,
  dumpConfig,
  loadConfig,
} from "./config/index.js";
import type { SnapshotterConfig } from "./config/types.js";
import { type LogLevel, parseLogLevel, stderrLogger } from "../log/json-logger.js";

const PROGRAM = "soci-snapshotter-grpc";

interface GlobalOptions {
  address: string;
  config: string;
  logLevel: string;
  root: string;
}

const program = new Command(PROGRAM)
  .description("containerd remote snapshotter that lazily loads SOCI-indexed images over FUSE")
  .version(`${PROGRAM} version ${packageVersion()}`, "-v, --version")
  .addOption(
    new Option("--address <path>", "address for the snapshotter's gRPC server")
      .env("SOCI_SNAPSHOTTER_ADDRESS")
      .default(DEFAULT_ADDRESS),
  )
  .addOption(
    new Option("--config <path>", "path to the configuration file")
      .env("SOCI_SNAPSHOTTER_CONFIG")
      .default(DEFAULT_CONFIG_PATH),
  )
  .addOption(
    new Option("--log-level <level>", "set the logging level [trace, debug, info, warn, error, fatal, panic]")
      .env("SOCI_SNAPSHOTTER_LOG_LEVEL")
      .default("info"),
  )
  .addOption(
    new Option("--root <dir>", "path to the root directory for this snapshotter")
      .env("SOCI_SNAPSHOTTER_ROOT")
      .default(DEFAULT_ROOT_PATH),
  )
  .action(async (opts: GlobalOptions) => {
    let level: LogLevel;
    try {
      level = parseLogLevel(opts.logLevel);
    } catch (e) {
      throw new InvalidArgumentError(`failed to prepare logger: ${(e as Error).message}`, { cause: e });
    }
    const logger = stderrLogger(level);
    logger.info("starting soci-snapshotter-grpc", { version: packageVersion(), revision: "" });
    let cfg: SnapshotterConfig;
    try {
      // go-toml ignores keys it does not know, and so do we; a typo in a key must not pass unnoticed
      cfg = await loadConfig(opts.config, {
        onUnknownKey: (key) => logger.warn(`unknown key "${key}" in config file ignored`, { key, path: opts.config }),
      });
    } catch (e) {
      logger.withError(e).fatal((e as Error).message);
      process.exit(1);
    }
    // Loaded only now: the service pulls in gRPC and SQLite, and a bad config must fail fast.
    const [{ runDaemon }, { SociMetrics }] = await Promise.all([import("./run.js"), import("./metrics.js")]);
    try {
      await runDaemon(cfg, { address: opts.address, root: opts.root }, logger, new SociMetrics());
    } catch {
      process.exit(1); // runDaemon has logged why at fatal level
    }
    process.exit(0);
  })
  .showHelpAfterError();

program.addCommand(
  new Command("config")
    .description("Manage configuration")
    .addCommand(
      new Command("default").description("Print default configuration").action(() => {
        process.stdout.write(defaultConfigText());
      }),
    )
    .addCommand(
      new Command("dump")
        .description("Dump configuration")
        .option("--config <path>", "path to the configuration file (overrides the global flag)")
        .action(async (local: { config?: string }, cmd: Command) => {
          const path = local.config ?? (cmd.optsWithGlobals() as GlobalOptions).config;
          try {
            process.stdout.write(dumpConfig(await loadConfig(path)));
          } catch (e) {
            stderrLogger()
              .withError(e)
              .fatal((e as Error).message);
            process.exit(1);
          }
        }),
    ),
);

program.parseAsync(process.argv).catch((err) => reportAndExit(PROGRAM, err));
