// `soci-snapshotter-grpc`: the containerd proxy snapshotter daemon.
import { Command } from "commander";
import { packageVersion } from "../cli/version.js";
import { NotImplementedError, reportAndExit } from "../cli/errors.js";

const program = new Command("soci-snapshotter-grpc")
  .description("containerd remote snapshotter that lazily loads SOCI-indexed images over FUSE")
  .version(`soci-snapshotter-grpc version ${packageVersion()}`, "-v, --version")
  .option("--address <path>", "gRPC socket", process.env.SOCI_SNAPSHOTTER_ADDRESS ?? "/run/soci-snapshotter-grpc/soci-snapshotter-grpc.sock")
  .option("--config <path>", "TOML config file", process.env.SOCI_SNAPSHOTTER_CONFIG ?? "/etc/soci-snapshotter-grpc/config.toml")
  .option("--log-level <level>", "log level", process.env.SOCI_SNAPSHOTTER_LOG_LEVEL ?? "info")
  .option("--root <dir>", "state directory", process.env.SOCI_SNAPSHOTTER_ROOT ?? "/var/lib/soci-snapshotter-grpc")
  .action(() => {
    throw new NotImplementedError("soci-snapshotter-grpc daemon");
  })
  .showHelpAfterError();

program.addCommand(
  new Command("config")
    .description("print configuration")
    .addCommand(new Command("default").description("print the default config").action(() => {
      throw new NotImplementedError("config default");
    }))
    .addCommand(new Command("dump").description("print the effective config").action(() => {
      throw new NotImplementedError("config dump");
    })),
);

program.parseAsync(process.argv).catch((err) => reportAndExit("soci-snapshotter-grpc", err));
