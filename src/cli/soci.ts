// `soci`: the SOCI command line (command names and flags follow the reference CLI).
import { Command } from "commander";
import { packageVersion } from "./version.js";
import { reportAndExit } from "./errors.js";
import { demoCommand } from "./demo.js";
import { convertCommand } from "./commands/convert.js";
import { createCommand } from "./commands/create.js";
import { pushCommand } from "./commands/push.js";
import { mountCommand, unmountCommand } from "./commands/mount.js";
import { imageCommand } from "./commands/image.js";
import { indexCommand, prefetchCommand, rebuildDbCommand, ztocCommand } from "./commands/inspect.js";

const program = new Command("soci")
  .description("Seekable OCI: build and inspect SOCI indexes for lazily loaded container images")
  .version(`soci version ${packageVersion()}`, "-v, --version")
  .option("-a, --address <path>", "containerd socket", process.env.CONTAINERD_ADDRESS ?? "/run/containerd/containerd.sock")
  .option("-n, --namespace <ns>", "containerd namespace", process.env.CONTAINERD_NAMESPACE ?? "default")
  .option("--content-store <store>", "content store: soci (<root>/content) or containerd", "soci")
  .option("--root <dir>", "root directory", "/var/lib/soci-snapshotter-grpc/")
  .option("--debug", "debug output")
  .showHelpAfterError();

program.addCommand(createCommand());
program.addCommand(convertCommand());
program.addCommand(pushCommand());
program.addCommand(rebuildDbCommand());
program.addCommand(indexCommand());
program.addCommand(ztocCommand());
program.addCommand(prefetchCommand());
program.addCommand(imageCommand());
program.addCommand(mountCommand());
program.addCommand(unmountCommand());
program.addCommand(demoCommand());

program.parseAsync(process.argv).catch((err) => reportAndExit("soci", err));
