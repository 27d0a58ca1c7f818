// containerd 1.6 with its CRI plugin configured as a kubelet node would for SOCI (`snapshotter =
// "soci"`, `disable_snapshot_annotations = false`), plus what it needs to start here: a private
// (empty) CNI config dir instead of /etc/cni (image pulls need no network), the streaming server on
// loopback with a free port, and the test registry as a plain-HTTP mirror of itself (the CRI
// plugin's resolver does not use the registry client of ctr).
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { startContainerd, type Containerd } from "../containerd.js";

export async function startCriContainerd(opts: {
  dir: string;
  sociSocket: string;
  registryHost: string;
}): Promise<Containerd> {
  const cniDir = join(opts.dir, "cni");
  await mkdir(join(cniDir, "net.d"), { recursive: true });
  await mkdir(join(cniDir, "bin"), { recursive: true });
  const q = JSON.stringify;
  return startContainerd({
    cri: true,
    startTimeoutMs: 60_000,
    proxyPlugins: { soci: { address: opts.sociSocket } },
    extraConfig: [
      `[plugins."io.containerd.grpc.v1.cri"]`,
      `  stream_server_address = "127.0.0.1"`,
      `  stream_server_port = "0"`,
      `[plugins."io.containerd.grpc.v1.cri".containerd]`,
      `  snapshotter = "soci"`,
      `  disable_snapshot_annotations = false`,
      `[plugins."io.containerd.grpc.v1.cri".cni]`,
      `  bin_dir = ${q(join(cniDir, "bin"))}`,
      `  conf_dir = ${q(join(cniDir, "net.d"))}`,
      `[plugins."io.containerd.grpc.v1.cri".registry.mirrors.${q(opts.registryHost)}]`,
      `  endpoint = [${q(`http://${opts.registryHost}`)}]`,
    ].join("\n"),
  });
}
