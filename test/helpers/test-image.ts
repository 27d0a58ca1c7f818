// Small runnable test images pushed straight to a registry: gzip tar layers built in memory (a
// busybox-static layer for a shell, a data layer, a small /etc layer), an OCI image config with the
// diff IDs, and an OCI image manifest. Every image gets its own layer contents (a per-image marker
// in each layer) so that two images never share a chain ID in containerd.
import { createHash, randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { gzipSync } from "node:zlib";
import type { RegistryClient } from "../../src/registry/client.js";
import { archive, entry } from "./tar-build.js";

export const BUSYBOX_TOOLS = ["sh", "cat", "sha256sum", "ls", "sort", "wc", "sleep", "echo", "head"];

export type LayerFile =
  | { path: string; type: "dir" }
  | { path: string; type: "file"; data: Uint8Array | string; mode?: number }
  | { path: string; type: "symlink"; target: string };

export interface PushedImage {
  ref: string;
  manifestDigest: string;
  manifestBytes: Uint8Array;
  /** Compressed layer descriptors in manifest order. */
  layers: Array<{ digest: string; size: number }>;
  /** What each layer holds (to check the container's view). */
  files: { id: string; big: Buffer; hello: string };
}

const sha256 = (b: Uint8Array) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

export function tarLayer(files: LayerFile[]): Uint8Array {
  const parts = files.map((f) => {
    if (f.type === "dir")
      return entry({ name: f.path.endsWith("/") ? f.path : `${f.path}/`, typeflag: "5", mode: 0o755 });
    if (f.type === "symlink") return entry({ name: f.path, typeflag: "2", linkname: f.target, mode: 0o777 });
    return entry(
      { name: f.path, typeflag: "0", mode: f.mode ?? 0o644 },
      typeof f.data === "string" ? Buffer.from(f.data) : f.data,
    );
  });
  return archive(...parts);
}

/**
 * Pushes a three-layer image `<repo>:<tag>` (busybox shell; /data/big.bin of `bigBytes` (half
 * random, half repetitive) and 50 small files; /etc/hello) and returns its digests.
 */
export async function pushTestImage(
  client: RegistryClient,
  host: string,
  repo: string,
  tag: string,
  bigBytes = 2 << 20,
): Promise<PushedImage> {
  const busybox = await readFile("/bin/busybox");
  const id = `${tag}-${randomBytes(8).toString("hex")}`;
  const big = Buffer.concat([randomBytes(bigBytes / 2), Buffer.alloc(bigBytes / 2, `${id} 0123456789abcdef `)]);
  const hello = `hello from ${id}\n`;
  const layerFiles: LayerFile[][] = [
    [
      { path: "bin", type: "dir" },
      { path: "bin/busybox", type: "file", data: busybox, mode: 0o755 },
      ...BUSYBOX_TOOLS.map((t): LayerFile => ({ path: `bin/${t}`, type: "symlink", target: "busybox" })),
      { path: "id", type: "file", data: `${id}\n` },
    ],
    [
      { path: "data", type: "dir" },
      { path: "data/big.bin", type: "file", data: big },
      ...Array.from(
        { length: 50 },
        (_, i): LayerFile => ({ path: `data/f${i}.txt`, type: "file", data: `${id} file ${i}\n` }),
      ),
    ],
    [
      { path: "etc", type: "dir" },
      { path: "etc/hello", type: "file", data: hello },
    ],
  ];
  const ref = `${host}/${repo}:${tag}`;
  const layers: Array<{ digest: string; size: number }> = [];
  const diffIds: string[] = [];
  for (const files of layerFiles) {
    const tar = tarLayer(files);
    const gz = gzipSync(tar);
    const desc = { digest: sha256(gz), size: gz.length, mediaType: "application/vnd.oci.image.layer.v1.tar+gzip" };
    await client.pushBlob(ref, gz, desc);
    layers.push({ digest: desc.digest, size: desc.size });
    diffIds.push(sha256(tar));
  }
  const config = Buffer.from(
    JSON.stringify({
      architecture: "amd64",
      os: "linux",
      config: { Cmd: ["/bin/sh"], Env: ["PATH=/bin"] },
      rootfs: { type: "layers", diff_ids: diffIds },
    }),
  );
  const configDesc = {
    digest: sha256(config),
    size: config.length,
    mediaType: "application/vnd.oci.image.config.v1+json",
  };
  await client.pushBlob(ref, config, configDesc);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: configDesc,
      layers: layers.map((l) => ({ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", ...l })),
    }),
  );
  const pushed = await client.pushManifest(ref, manifest, "application/vnd.oci.image.manifest.v1+json", tag);
  return { ref, manifestDigest: pushed.descriptor.digest, manifestBytes: manifest, layers, files: { id, big, hello } };
}
