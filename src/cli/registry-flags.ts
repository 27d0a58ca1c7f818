// Registry flags shared by convert, create, push, mount and image rpull, and the client they configure.
import { type Command, InvalidArgumentError } from "commander";
import { RegistryClient } from "../registry/client.js";
import { RegistryAuthorizer } from "../registry/auth.js";
import { HostsDirResolver, parseGoDuration } from "../registry/hosts.js";

export interface RegistryFlags {
  plainHttp: boolean;
  user?: string;
  hostsDir?: string;
  /** `--timeout`, ms (0: no limit). */
  timeout: number;
}

/**
 * `--timeout` default: how long an operation may wait on a registry with nothing arriving. As long
 * as the client's own wait for one response, so nothing that works today fails; a registry that
 * accepts and stays silent is reported after a minute instead of after every retry's wait (5 × 60 s).
 * Bytes that move restart it, so a multi-GB layer is never cut short while it makes progress.
 */
const DEFAULT_TIMEOUT = "1m";

export function addRegistryFlags(cmd: Command): Command {
  return cmd
    .option("--plain-http", "talk to registries over http", false)
    .option("-u, --user <user[:password]>", "registry credentials (else ~/.docker/config.json, else anonymous)")
    .option("--hosts-dir <dir>", "containerd-style hosts directory (mirrors, TLS), e.g. /etc/containerd/certs.d")
    .option(
      "--timeout <duration>",
      "give up on a registry that sends nothing for this long: no response, a transfer stalled (e.g. 30s, 5m; 0: never)",
      parseTimeout,
      parseTimeout(DEFAULT_TIMEOUT),
    );
}

/** A Go-style duration (`30s`, `1m30s`, `500ms`, `0`) in ms. */
export function parseTimeout(value: string): number {
  let ms: number;
  try {
    ms = parseGoDuration(value);
  } catch {
    ms = Number.NaN;
  }
  if (!(ms >= 0)) throw new InvalidArgumentError(`not a duration: ${JSON.stringify(value)} (e.g. 30s, 2m, 0)`);
  return Math.round(ms);
}

export function registryClient(flags: RegistryFlags): RegistryClient {
  return new RegistryClient({
    plainHttp: flags.plainHttp,
    authorizer: new RegistryAuthorizer({ user: flags.user }),
    hosts: flags.hostsDir ? new HostsDirResolver({ hostsDir: flags.hostsDir, plainHttp: flags.plainHttp }) : undefined,
    deadlineMs: flags.timeout,
  });
}

/** A client made on first use (commands over OCI layouts never need one); close() if it was. */
export function lazyRegistryClient(flags: RegistryFlags): { get: () => RegistryClient; close(): Promise<void> } {
  let client: RegistryClient | undefined;
  return {
    get: () => (client ??= registryClient(flags)),
    close: async () => {
      await client?.close();
    },
  };
}
