// Unpacking an image's layers into a snapshotter through containerd, as containerd's client
// unpacker does (docs/snapshotter.md §1.5): per layer, Stat(chainID); else Prepare
// `extract-<random> <chainID>` on the parent chain with `containerd.io/snapshot.ref=<chainID>`
// (plus caller labels, e.g. the remote-snapshot labels); AlreadyExists with the chain present
// means a remote snapshotter provided the layer; otherwise the diff service extracts the blob
// onto the mounts (its diff ID is checked) and the snapshot is committed as the chain ID.
// Finally the image config is labelled `containerd.io/gc.ref.snapshot.<snapshotter>=<top chain>`
// so containerd's GC keeps the snapshots with the image.
import { createHash, randomBytes } from "node:crypto";
import { parseManifest, type Descriptor, type Manifest, type Platform } from "../formats/oci.js";
import { defaultPlatform } from "../formats/platform.js";
import { manifestForPlatform } from "../store/image-manifests.js";
import type { ContainerdClient } from "../containerd/client.js";
import { ContainerdContentStore } from "../containerd/content-source.js";
import { withLease } from "../containerd/leases.js";
import {
  AlreadyExistsError,
  DigestMismatchError,
  InvalidArgumentError,
  NotFoundError,
  UnavailableError,
} from "../errors/errors.js";
import type { Labels, Mount } from "../containerd/types.js";

export const SNAPSHOT_REF_LABEL = "containerd.io/snapshot.ref";
export const GC_REF_SNAPSHOT = "containerd.io/gc.ref.snapshot";

/** `identity.ChainID` for each prefix of `diffIds`. */
export function chainIds(diffIds: string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) {
    const prev = out[out.length - 1];
    out.push(prev === undefined ? d : `sha256:${createHash("sha256").update(`${prev} ${d}`).digest("hex")}`);
  }
  return out;
}

export interface UnpackLayer {
  /** The layer blob (must be in containerd's content store unless a remote snapshotter provides it). */
  blob: Descriptor;
  /** Its uncompressed digest (from the image config's `rootfs.diff_ids`). */
  diffId: string;
}

export type LayerOutcome = "existing" | "remote" | "applied";

export interface UnpackResult {
  /** The top layer's chain ID (the snapshot a container is prepared on). */
  chainId: string;
  layers: { chainId: string; outcome: LayerOutcome }[];
}

export interface UnpackOptions {
  /** Extra Prepare labels per layer (e.g. the soci remote-snapshot labels). */
  labels?: (layer: UnpackLayer, index: number, chainId: string) => Labels;
  /**
   * Called before a layer is extracted when its blob is not in containerd's content store: a
   * lazy pull fetches it here (into the content store, under the client's lease), so layers a
   * remote snapshotter provides are never downloaded.
   */
  fetchBlob?: (layer: UnpackLayer, client: ContainerdClient) => Promise<void>;
}

/** Unpacks `layers` (bottom first) into `snapshotter`. */
export async function unpackLayers(
  client: ContainerdClient,
  snapshotter: string,
  layers: UnpackLayer[],
  opts: UnpackOptions = {},
): Promise<UnpackResult> {
  const chains = chainIds(layers.map((l) => l.diffId));
  const out: UnpackResult["layers"] = [];
  let parent = "";
  for (let i = 0; i < layers.length; i++) {
    const layer = layers[i]!;
    const chainId = chains[i]!;
    out.push({ chainId, outcome: await unpackOne(client, snapshotter, layer, i, chainId, parent, opts) });
    parent = chainId;
  }
  return { chainId: parent, layers: out };
}

async function exists(client: ContainerdClient, snapshotter: string, key: string): Promise<boolean> {
  try {
    await client.snapshots(snapshotter).stat(key);
    return true;
  } catch (err) {
    if (err instanceof NotFoundError) return false;
    throw err;
  }
}

async function unpackOne(
  client: ContainerdClient,
  snapshotter: string,
  layer: UnpackLayer,
  index: number,
  chainId: string,
  parent: string,
  opts: UnpackOptions,
): Promise<LayerOutcome> {
  const sn = client.snapshots(snapshotter);
  if (await exists(client, snapshotter, chainId)) return "existing";
  const labels: Labels = { ...opts.labels?.(layer, index, chainId), [SNAPSHOT_REF_LABEL]: chainId };
  // a second try covers a concurrent unpacker that removed its half-done snapshot meanwhile
  for (let attempt = 0; attempt < 3; attempt++) {
    const key = `extract-${randomBytes(6).toString("hex")} ${chainId}`;
    let mounts: Mount[];
    try {
      mounts = await sn.prepare(key, parent, labels);
    } catch (err) {
      if (!(err instanceof AlreadyExistsError)) throw err;
      if (await exists(client, snapshotter, chainId)) return "remote";
      continue;
    }
    try {
      if (opts.fetchBlob && !(await client.content.exists(layer.blob.digest))) await opts.fetchBlob(layer, client);
      const { mediaType, digest, size } = layer.blob;
      const applied = await client.diff.apply({ mediaType, digest, size }, mounts);
      if (applied.digest !== layer.diffId) {
        throw new DiffIdMismatchError(layer.blob.digest, layer.diffId, applied.digest);
      }
      await sn.commit(chainId, key, labels);
      return "applied";
    } catch (err) {
      await sn.remove(key).catch(() => undefined);
      if (err instanceof AlreadyExistsError && (await exists(client, snapshotter, chainId))) return "existing";
      throw err;
    }
  }
  throw new UnavailableError(`layer ${layer.blob.digest}: could not prepare snapshot ${chainId} in ${snapshotter}`);
}

/** A layer whose extracted content does not hash to its diff ID (containerd's message). */
export class DiffIdMismatchError extends DigestMismatchError {
  override name = "DiffIdMismatchError";
  constructor(layer: string, expected: string, actual: string) {
    super(expected, actual);
    this.message = `layer ${layer}: wrong diff id calculated on extraction: ${actual}, expected ${expected}`;
  }
}

interface ImageConfigRootfs {
  rootfs?: { diff_ids?: unknown };
}

/** The layers of `manifest` with the diff IDs its config lists (InvalidArgument when they do not match up). */
export function imageLayers(what: string, manifest: Manifest, configBytes: Uint8Array): UnpackLayer[] {
  const config = JSON.parse(Buffer.from(configBytes).toString("utf8")) as ImageConfigRootfs;
  const diffIds = config.rootfs?.diff_ids;
  const blobs = manifest.layers ?? [];
  if (!Array.isArray(diffIds) || diffIds.length !== blobs.length || !diffIds.every((d) => typeof d === "string")) {
    throw new InvalidArgumentError(
      `image ${what}: config ${manifest.config.digest} has ${Array.isArray(diffIds) ? diffIds.length : "no"} diff IDs for ${blobs.length} layers`,
    );
  }
  return blobs.map((blob, i) => ({ blob, diffId: diffIds[i] as string }));
}

/**
 * Unpacks `layers` of an image whose config is `configDigest` into `snapshotter` under `client`'s
 * lease, and labels the config so the snapshots live as long as the image.
 */
export async function unpackImageLayers(
  client: ContainerdClient,
  snapshotter: string,
  configDigest: string,
  layers: UnpackLayer[],
  opts: UnpackOptions = {},
): Promise<UnpackResult> {
  const res = await unpackLayers(client, snapshotter, layers, opts);
  if (layers.length > 0)
    await client.content.setLabels(configDigest, { [`${GC_REF_SNAPSHOT}.${snapshotter}`]: res.chainId });
  return res;
}

/**
 * Unpacks containerd image `name` (the manifest for `platform`, default: this host's) into
 * `snapshotter` and labels its config so the snapshots live as long as the image.
 */
export async function unpackImage(
  client: ContainerdClient,
  name: string,
  snapshotter: string,
  opts: UnpackOptions & { platform?: Platform } = {},
): Promise<UnpackResult> {
  const source = new ContainerdContentStore(client);
  const target = await source.resolveImage(name);
  const manifestDesc = await manifestForPlatform(source, target, opts.platform ?? defaultPlatform());
  const manifest = parseManifest(await source.get(manifestDesc.digest));
  const layers = imageLayers(name, manifest, await source.get(manifest.config.digest));
  return withLease(client, (leased) => unpackImageLayers(leased, snapshotter, manifest.config.digest, layers, opts));
}
