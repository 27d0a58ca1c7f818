// containerd 1.6 with its CRI plugin configured as a kubelet node would be for SOCI. The settings
// come from the containerd snippet in docs/kubernetes.md (the proxy plugin, `snapshotter = "soci"`,
// `disable_snapshot_annotations = false`), so the CRI tests fail when the documented configuration
// stops working. Only the snapshotter's socket path is replaced, and what containerd needs to start
// here is added: a private (empty) CNI config dir instead of /etc/cni (image pulls need no network),
// the streaming server on loopback with a free port, and the test registry as a plain-HTTP mirror of
// itself (the CRI plugin's resolver does not use the registry client of ctr).
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { parse, stringify, type TomlTable } from "smol-toml";
import { startContainerd, type Containerd } from "../containerd.js";
import { containerdCriSnippet, DEFAULT_SOCI_SOCKET } from "../docs.js";

const CRI_PLUGIN = "io.containerd.grpc.v1.cri";

/** `parent[key]` as a table, created when absent. */
function table(parent: TomlTable, key: string): TomlTable {
  const v = parent[key];
  if (v === undefined) {
    const t: TomlTable = {};
    parent[key] = t;
    return t;
  }
  if (typeof v !== "object" || v === null || Array.isArray(v) || v instanceof Date)
    throw new Error(`containerd snippet: ${key} is not a table`);
  return v as TomlTable;
}

/**
 * The documented containerd settings with the soci proxy plugin pointed at `sociSocket`. Throws when
 * the snippet lacks what the tests rely on; its settings are checked in detail by test/docs.test.ts.
 */
export function documentedCriConfig(sociSocket: string, snippet = containerdCriSnippet()): TomlTable {
  const config = parse(snippet) as TomlTable;
  if (config.version !== 2) throw new Error("containerd snippet: version must be 2");
  delete config.version; // startContainerd writes its own header
  for (const [key, value] of Object.entries(config)) {
    // appended after startContainerd's tables, a top-level key would land inside the last of them
    if (typeof value !== "object" || value === null || Array.isArray(value) || value instanceof Date)
      throw new Error(`containerd snippet: top-level key ${key} is not supported by the test harness`);
  }
  const soci = table(table(config, "proxy_plugins"), "soci");
  if (soci.type !== "snapshot" || soci.address !== DEFAULT_SOCI_SOCKET)
    throw new Error(`containerd snippet: [proxy_plugins.soci] must be type "snapshot" at ${DEFAULT_SOCI_SOCKET}`);
  soci.address = sociSocket;
  return config;
}

export async function startCriContainerd(opts: {
  dir: string;
  sociSocket: string;
  registryHost: string;
}): Promise<Containerd> {
  const cniDir = join(opts.dir, "cni");
  await mkdir(join(cniDir, "net.d"), { recursive: true });
  await mkdir(join(cniDir, "bin"), { recursive: true });
  const config = documentedCriConfig(opts.sociSocket);
  // test-only settings, beside the documented ones
  const cri = table(table(config, "plugins"), CRI_PLUGIN);
  cri.stream_server_address = "127.0.0.1";
  cri.stream_server_port = "0";
  Object.assign(table(cri, "cni"), { bin_dir: join(cniDir, "bin"), conf_dir: join(cniDir, "net.d") });
  table(table(table(cri, "registry"), "mirrors"), opts.registryHost).endpoint = [`http://${opts.registryHost}`];
  return startContainerd({ cri: true, startTimeoutMs: 60_000, extraConfig: stringify(config) });
}
