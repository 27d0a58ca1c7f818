// Registry flags shared by convert, create and push, and the client they configure.
import type { Command } from "commander";
import { RegistryClient } from "../registry/client.js";
import { RegistryAuthorizer } from "../registry/auth.js";
import { HostsDirResolver } from "../registry/hosts.js";

export interface RegistryFlags {
  plainHttp: boolean;
  user?: string;
  hostsDir?: string;
}

export function addRegistryFlags(cmd: Command): Command {
  return cmd
    .option("--plain-http", "talk to registries over http", false)
    .option("-u, --user <user[:password]>", "registry credentials (else ~/.docker/config.json, else anonymous)")
    .option("--hosts-dir <dir>", "containerd-style hosts directory (mirrors, TLS), e.g. /etc/containerd/certs.d");
}

export function registryClient(flags: RegistryFlags): RegistryClient {
  return new RegistryClient({
    plainHttp: flags.plainHttp,
    authorizer: new RegistryAuthorizer({ user: flags.user }),
    hosts: flags.hostsDir ? new HostsDirResolver({ hostsDir: flags.hostsDir, plainHttp: flags.plainHttp }) : undefined,
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
