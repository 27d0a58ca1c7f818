// The `soci` command tree (command names and flags follow the reference CLI). bin/soci.js runs it
// through soci.ts; tests build it in-process to run commands without a Node start per call.
import { Command } from "commander";
import { packageVersion } from "../version.js";

// Each command's module (and the registry, containerd, FUSE and worker libraries behind it) is
// loaded only when that command runs: a pull or a mount does not pay for the rest at start-up.
const commands: [string, () => Promise<Command[]>][] = [
  ["create", async () => [(await import("./commands/create.js")).createCommand()]],
  ["convert", async () => [(await import("./commands/convert.js")).convertCommand()]],
  ["push", async () => [(await import("./commands/push.js")).pushCommand()]],
  ["rebuild-db", async () => [(await import("./commands/inspect.js")).rebuildDbCommand()]],
  ["index", async () => [(await import("./commands/inspect.js")).indexCommand()]],
  ["ztoc", async () => [(await import("./commands/inspect.js")).ztocCommand()]],
  [
    "prefetch",
    async () => {
      const cmd = (await import("./commands/inspect.js")).prefetchCommand();
      return [cmd.addCommand((await import("./commands/prefetch-record.js")).prefetchRecordCommand())];
    },
  ],
  ["image", async () => [(await import("./commands/image.js")).imageCommand()]],
  ["mount", async () => [(await import("./commands/mount.js")).mountCommand()]],
  ["unmount", async () => [(await import("./commands/mount.js")).unmountCommand()]],
  ["demo", async () => [(await import("../demo/main.js")).demoCommand()]],
];

/** Global options that take a value (the command name is the first argument that is neither). */
const VALUE_OPTIONS = new Set(["-a", "--address", "-n", "--namespace", "--content-store", "--root"]);

function commandName(args: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (!a.startsWith("-")) return a;
    if (VALUE_OPTIONS.has(a)) i++;
  }
  return undefined;
}

/**
 * A new `soci` program holding the commands `args` (the arguments after the executable) can run:
 * parse them with `parseAsync(args, { from: "user" })`. Commander keeps parsed options on the
 * commands, so each run needs its own.
 */
export async function sociProgram(args: string[]): Promise<Command> {
  const program = new Command("soci")
    .description("Seekable OCI: build and inspect SOCI indexes for lazily loaded container images")
    .version(`soci version ${packageVersion()}`, "-v, --version")
    .option(
      "-a, --address <path>",
      "containerd socket",
      process.env.CONTAINERD_ADDRESS ?? "/run/containerd/containerd.sock",
    )
    .option("-n, --namespace <ns>", "containerd namespace", process.env.CONTAINERD_NAMESPACE ?? "default")
    .option("--content-store <store>", "content store: soci (<root>/content) or containerd", "soci")
    .option("--root <dir>", "root directory", "/var/lib/soci-snapshotter-grpc/")
    .option("--debug", "debug output")
    .showHelpAfterError();
  const name = commandName(args);
  const chosen = commands.filter(([n]) => n === name);
  // `--version` needs no command; no command, `help`, or an unknown name: register them all, for
  // help and error messages
  const versionOnly = name === undefined && args.some((a) => a === "-v" || a === "--version");
  if (!versionOnly)
    for (const [, load] of chosen.length > 0 ? chosen : commands) for (const c of await load()) program.addCommand(c);
  return program;
}
