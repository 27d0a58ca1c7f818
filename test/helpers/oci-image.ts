// One-platform OCI images from layer blobs the test makes (possibly hostile: cut short, bombs,
// huge headers), written as an OCI image layout or pushed to a registry. Blobs may be given as
// bytes or as a file already on disk (a large layer is never held in memory).
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { copyFile, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { RegistryClient } from "../../src/registry/client.js";

export const LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip";

export interface LayerBlob {
  /** The blob's bytes, or a file holding them. */
  data: Uint8Array | { file: string };
  /** Digest of the uncompressed tar (the config's diff ID). */
  diffId: string;
  /** What the manifest says (default: the blob's own digest and size). */
  descriptor?: { digest: string; size: number };
}

export const sha256 = (b: Uint8Array) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

async function sha256File(file: string): Promise<{ digest: string; size: number }> {
  const h = createHash("sha256");
  let size = 0;
  for await (const c of createReadStream(file) as AsyncIterable<Buffer>) {
    h.update(c);
    size += c.length;
  }
  return { digest: `sha256:${h.digest("hex")}`, size };
}

async function describe(l: LayerBlob): Promise<{ digest: string; size: number }> {
  if (l.descriptor) return l.descriptor;
  if ("file" in l.data) return sha256File(l.data.file);
  return { digest: sha256(l.data), size: l.data.length };
}

function imageDocs(layers: { digest: string; size: number }[], diffIds: string[]) {
  const config = Buffer.from(
    JSON.stringify({
      architecture: "amd64",
      os: "linux",
      config: { Cmd: ["/bin/sh"] },
      rootfs: { type: "layers", diff_ids: diffIds },
    }),
  );
  const configDesc = {
    mediaType: "application/vnd.oci.image.config.v1+json",
    digest: sha256(config),
    size: config.length,
  };
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: configDesc,
      layers: layers.map((l) => ({ mediaType: LAYER_GZIP, ...l })),
    }),
  );
  return { config, configDesc, manifest };
}

/** Writes an OCI image layout at `dir` holding the image, tagged `latest`. */
export async function writeOciLayout(dir: string, layers: LayerBlob[]): Promise<void> {
  const blobs = join(dir, "blobs", "sha256");
  await mkdir(blobs, { recursive: true });
  const put = (digest: string, data: Uint8Array) => writeFile(join(blobs, digest.slice(7)), data);
  const descs = [];
  for (const l of layers) {
    const d = await describe(l);
    const actual = "file" in l.data ? await sha256File(l.data.file) : { digest: sha256(l.data) };
    if ("file" in l.data) await copyFile(l.data.file, join(blobs, actual.digest.slice(7)));
    else await put(actual.digest, l.data);
    // a descriptor that lies about the blob: store the blob under the digest the manifest names
    if (actual.digest !== d.digest) await copyFile(join(blobs, actual.digest.slice(7)), join(blobs, d.digest.slice(7)));
    descs.push(d);
  }
  const { config, configDesc, manifest } = imageDocs(
    descs,
    layers.map((l) => l.diffId),
  );
  await put(configDesc.digest, config);
  await put(sha256(manifest), manifest);
  await writeFile(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  await writeFile(
    join(dir, "index.json"),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          digest: sha256(manifest),
          size: manifest.length,
          annotations: { "org.opencontainers.image.ref.name": "latest" },
        },
      ],
    }),
  );
}

/** Pushes the image as `ref` (`host/repo:tag`); blobs given as bytes only. */
export async function pushOciImage(client: RegistryClient, ref: string, layers: LayerBlob[]): Promise<void> {
  const descs = [];
  for (const l of layers) {
    if ("file" in l.data) throw new TypeError("pushOciImage takes layer bytes");
    const d = await describe(l);
    await client.pushBlob(ref, l.data, { mediaType: LAYER_GZIP, ...d });
    descs.push(d);
  }
  const { config, configDesc, manifest } = imageDocs(
    descs,
    layers.map((l) => l.diffId),
  );
  await client.pushBlob(ref, config, configDesc);
  await client.pushManifest(ref, manifest, "application/vnd.oci.image.manifest.v1+json", ref.split(":").pop()!);
}
