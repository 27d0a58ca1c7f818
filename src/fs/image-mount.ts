// `soci mount`: an image's layers, lazily where a ztoc exists and unpacked locally where not,
// stacked read-only with overlayfs at one mountpoint. No containerd involved.
//
// Layout under `root`:
//   content/                 SOCI index, ztocs (verified, reused by later mounts)
//   spancache/               decompressed spans per layer digest (reused across mounts)
//   layers/<digest hex>/     layers without a ztoc, unpacked once (overlay whiteout form)
//   mounts/<key>/            one mounted image: `state.json`, FUSE mountpoints `layers/<i>`, `empty/`
//
// `spancache/`, `layers/` and `mounts/` are kept 0700 whatever mode `root` has: they hold image
// content (decompressed spans, unpacked files, setuid binaries among them) that only the overlay
// at the mountpoint may show, with the image's own permissions.
import { createHash } from "node:crypto";
import { execFile } from "node:child_process";
import { chmod, mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { promisify } from "node:util";
import {
  AlreadyExistsError,
  DeadlineExceededError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
} from "../errors/errors.js";
import type { Descriptor, Platform } from "../formats/oci.js";
import {
  isIndexType,
  MediaTypeDockerSchema2LayerGzip,
  MediaTypeImageLayerGzip,
  parseManifest,
} from "../formats/oci.js";
import { defaultPlatform } from "../formats/platform.js";
import { manifestForPlatform } from "../store/image-manifests.js";
import { RegistrySource } from "../registry/blob-source.js";
import type { RegistryClient } from "../registry/client.js";
import { parseReference } from "../registry/reference.js";
import type { ImageRef } from "../registry/types.js";
import { ContentStore } from "../store/content-store.js";
import { parseDigest } from "../store/digest.js";
import type { InflatePool } from "../wasm/pool.js";
import {
  fetchLayerArtifacts,
  fetchSociIndex,
  findSociIndex,
  NoIndexError,
  type DiscoveryOptions,
  type LayerArtifacts,
  type ResolvedIndex,
} from "./soci-artifacts.js";
import type { FileMetadata } from "../formats/toc.js";
import type { LayerFileReader } from "./types.js";
import { mountLayer, mountTable, unmountPath } from "./fuse-layer.js";
import { createLayerReader } from "./layer-reader.js";
import { SpanCache } from "./span-cache.js";
import { RegistryBlobFetcher } from "./blob-fetcher.js";
import { unpackLayer } from "./unpack-layer.js";
import { isProcessAlive } from "./local-server.js";

const run = promisify(execFile);

export interface MountImageOptions {
  client: RegistryClient;
  /** Image reference (`host/repo:tag` or `@digest`). */
  ref: string;
  mountpoint: string;
  /** State root (content, span cache, unpacked layers, mount state). */
  root: string;
  platform?: Platform;
  discovery?: DiscoveryOptions;
  pool: InflatePool;
  log?(line: string): void;
  /** Use layer verification artifacts the index lists (default true; docs/formats.md §9). */
  chunkVerification?: boolean;
  /** Told about every file read of a lazy layer (layer index in the manifest, entry, range): the prefetch recorder. */
  onRead?(layer: number, entry: FileMetadata, offset: number, length: number): void;
}

export interface MountedLayerInfo {
  digest: string;
  /** "lazy" = FUSE over its ztoc; "local" = unpacked into the layer cache. */
  mode: "lazy" | "local";
  dir: string;
}

export interface MountedImage {
  mountpoint: string;
  manifest: Descriptor;
  sociIndex?: Descriptor;
  layers: MountedLayerInfo[];
  /** Unmounts the overlay and every lazy layer; idempotent. */
  unmount(): Promise<void>;
}

/** Where a mount's state lives, derived from the (absolute) mountpoint. */
export function mountStateDir(root: string, mountpoint: string): string {
  const key = createHash("sha256").update(resolve(mountpoint)).digest("hex").slice(0, 16);
  return join(root, "mounts", key);
}

/** What `soci unmount` reads to find the serving process. */
export interface MountStateFile {
  pid: number;
  mountpoint: string;
  ref: string;
  layers: MountedLayerInfo[];
}

export async function mountImage(opts: MountImageOptions): Promise<MountedImage> {
  const log = opts.log ?? (() => undefined);
  const mountpoint = resolve(opts.mountpoint);
  const { state: running } = await locateMount(opts.root, mountpoint);
  if (running && isProcessAlive(running.pid))
    throw new AlreadyExistsError(
      `${mountpoint} is already mounted by soci mount (pid ${running.pid}); run soci unmount first`,
    );
  const ref = parseReference(opts.ref);
  const store = await ContentStore.open(join(opts.root, "content"));
  const source = new RegistrySource(opts.client, ref);

  const root = await opts.client.resolve(ref);
  const manifestDesc = isIndexType(root.mediaType)
    ? await manifestForPlatform(source, root, opts.platform ?? defaultPlatform())
    : root;
  const manifestBytes = await source.get(manifestDesc.digest, manifestDesc.mediaType);
  const manifest = parseManifest(manifestBytes);
  const layerDescs = manifest.layers ?? [];
  const diffIds = await configDiffIds(source, manifest.config);
  if (diffIds.length !== layerDescs.length)
    throw new InvalidArgumentError(`image config lists ${diffIds.length} diff IDs for ${layerDescs.length} layers`);

  // A missing index still mounts the image (every layer local), as the snapshotter would defer.
  let index: ResolvedIndex | undefined;
  let sociIndex: Descriptor | undefined;
  try {
    const found = await findSociIndex(opts.client, ref, manifestDesc, opts.discovery, manifestBytes);
    index = await fetchSociIndex(opts.client, ref, store, found);
    sociIndex = index.descriptor;
    log(`SOCI index ${sociIndex.digest}: ${index.ztocs.size} of ${layerDescs.length} layers indexed`);
  } catch (e) {
    if (!(e instanceof NoIndexError)) throw e;
    log(`${e.message}: every layer is fetched and unpacked`);
  }

  const spanCache = new SpanCache({
    root: join(opts.root, "spancache"),
    onFull: (err) =>
      log(
        `span cache ${join(opts.root, "spancache")} is full (${err.message}): it stops growing, reads go on from the registry`,
      ),
  });
  const state = mountStateDir(opts.root, mountpoint);
  await privateDir(join(opts.root, "mounts"));
  await rm(state, { recursive: true, force: true });
  await mkdir(join(state, "empty"), { recursive: true });
  const lazy: { unmount(): Promise<void> }[] = [];
  const layers: MountedLayerInfo[] = [];
  let overlayMounted = false;
  const unmountAll = async () => {
    if (overlayMounted) {
      await unmountPath(mountpoint).catch(() => undefined);
      overlayMounted = false;
    }
    await Promise.all(lazy.splice(0).map((l) => l.unmount().catch(() => undefined)));
    await rm(state, { recursive: true, force: true }).catch(() => undefined);
  };

  try {
    // Lazy layers mount immediately; local layers download in parallel with them.
    await Promise.all(
      layerDescs.map(async (layer, i) => {
        const ztocDesc = index?.ztocs.get(layer.digest);
        let got: LayerArtifacts | undefined;
        if (ztocDesc) {
          try {
            got = await fetchLayerArtifacts(opts.client, ref, store, layer, index!, {
              chunkVerification: opts.chunkVerification,
            });
          } catch (e) {
            log(`layer ${layer.digest}: ztoc ${ztocDesc.digest} unusable (${(e as Error).message}); unpacking locally`);
          }
        }
        if (got) {
          const z = got.ztoc;
          const dir = join(state, "layers", String(i));
          await mkdir(dir, { recursive: true });
          const lazyReader = await createLayerReader({
            ztoc: z.ztoc,
            digest: layer.digest,
            ztocDigest: z.descriptor.digest,
            fetcher: new RegistryBlobFetcher(opts.client, ref, layer.digest, layer.size),
            cache: spanCache,
            inflater: opts.pool,
            verification: got.verification,
          });
          const reader = opts.onRead
            ? recording(lazyReader, (e, off, len) => opts.onRead!(i, e, off, len))
            : lazyReader;
          try {
            const m = await mountLayer({
              mountpoint: dir,
              ztoc: z.ztoc,
              digest: layer.digest,
              reader,
              disableXattrs: z.disableXattrs,
              statfsDir: opts.root,
            });
            lazy.push({ unmount: () => m.unmount().finally(() => lazyReader.close()) });
          } catch (e) {
            lazyReader.close();
            throw e;
          }
          layers[i] = { digest: layer.digest, mode: "lazy", dir };
        } else {
          const dir = join(opts.root, "layers", parseDigest(layer.digest).hex);
          await privateDir(join(opts.root, "layers"));
          if (!(await exists(dir))) {
            await unpackLayer(opts.client.blobStream(ref, layer.digest, { size: layer.size }), dir, {
              compression: isGzipLayer(layer.mediaType) ? "gzip" : "auto",
              digest: layer.digest,
              diffId: diffIds[i]!,
            });
          }
          layers[i] = { digest: layer.digest, mode: "local", dir };
        }
      }),
    );

    // overlayfs: first lowerdir is the top layer; an empty bottom dir allows a one-layer image.
    const lower = [...layers]
      .reverse()
      .map((l) => l.dir)
      .concat(join(state, "empty"));
    await mkdir(mountpoint, { recursive: true });
    await run("mount", [
      "-t",
      "overlay",
      "overlay",
      "-o",
      `ro,lowerdir=${lower.map(escapeLowerdir).join(":")}`,
      mountpoint,
    ]);
    overlayMounted = true;
    const file: MountStateFile = { pid: process.pid, mountpoint, ref: opts.ref, layers };
    await writeFile(join(state, "state.json"), JSON.stringify(file) + "\n");
  } catch (e) {
    await unmountAll();
    throw e;
  }
  let done: Promise<void> | undefined;
  return {
    mountpoint,
    manifest: manifestDesc,
    sociIndex,
    layers,
    unmount: () => (done ??= unmountAll()),
  };
}

/** A reader that tells `onRead` about each file read before serving it. */
function recording(
  reader: LayerFileReader,
  onRead: (entry: FileMetadata, offset: number, length: number) => void,
): LayerFileReader {
  return {
    read(entry, offset, length) {
      onRead(entry, offset, length);
      return reader.read(entry, offset, length);
    },
    state: () => reader.state(),
    noteError: (err) => reader.noteError(err),
  };
}

/** Reads a mount's state file (for `soci unmount`), or undefined when there is none. */
export async function readMountState(root: string, mountpoint: string): Promise<MountStateFile | undefined> {
  try {
    return JSON.parse(await readFile(join(mountStateDir(root, mountpoint), "state.json"), "utf8")) as MountStateFile;
  } catch {
    return undefined;
  }
}

async function configDiffIds(source: RegistrySource, config: Descriptor): Promise<string[]> {
  const bytes = await source.get(config.digest, config.mediaType);
  const parsed = JSON.parse(Buffer.from(bytes).toString("utf8")) as { rootfs?: { diff_ids?: string[] } };
  return parsed.rootfs?.diff_ids ?? [];
}

function isGzipLayer(mt: string): boolean {
  return mt === MediaTypeImageLayerGzip || mt === MediaTypeDockerSchema2LayerGzip || mt.endsWith("+gzip");
}

/** overlayfs separates lowerdirs with ':' and treats ',' as an option separator. */
function escapeLowerdir(dir: string): string {
  if (/[:,\\]/.test(dir))
    throw new InvalidArgumentError(`path ${dir} cannot be an overlay lowerdir (contains ':' ',' or '\\')`);
  return dir;
}

/** A directory only root may enter: created 0700, or narrowed to 0700 when it exists. */
async function privateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

export type { ImageRef };

/**
 * `soci unmount`: asks the serving `soci mount` process to stop (SIGTERM) and waits for it; when
 * that process is gone, removes whatever it left mounted. The mount is found under `root`, or —
 * when it was made with another `--root` — from the mount table (see the layout at the top: its
 * overlay's bottom lowerdir and its FUSE layers sit under `<its root>/mounts/<key>/`). A mountpoint
 * that is not a soci mount is an error and is left alone.
 */
export async function unmountImage(root: string, mountpoint: string, timeoutMs = 30_000): Promise<void> {
  const mp = resolve(mountpoint);
  const found = await locateMount(root, mp);
  const { state } = found;
  if (state && isProcessAlive(state.pid)) {
    process.kill(state.pid, "SIGTERM");
    const deadline = Date.now() + timeoutMs;
    while (isProcessAlive(state.pid)) {
      if (Date.now() > deadline)
        throw new DeadlineExceededError(`soci mount process ${state.pid} did not stop within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return;
  }
  if (!state && found.layerMounts.length === 0) {
    if (found.mounted)
      throw new FailedPreconditionError(
        `${mp} is mounted, but not by soci mount: no state for it under ${resolve(root)} nor in the mount table`,
      );
    throw new NotFoundError(`${mp}: not a soci mount`);
  }
  // No live server: clean up by hand (a SIGKILLed `soci mount` leaves dead FUSE mounts behind).
  await unmountPath(mp).catch(() => undefined);
  const lazy = new Set(found.layerMounts);
  for (const l of state?.layers ?? []) if (l.mode === "lazy") lazy.add(l.dir);
  for (const dir of lazy) await unmountPath(dir).catch(() => undefined);
  await rm(mountStateDir(found.root, mp), { recursive: true, force: true });
}

/** A `soci mount` at a mountpoint as found on disk and in the mount table. */
interface LocatedMount {
  /** The root its state is under (`root` as given, unless the mount table names another). */
  root: string;
  state: MountStateFile | undefined;
  /** Its FUSE layer mounts still in the mount table. */
  layerMounts: string[];
  /** Something is mounted at the mountpoint. */
  mounted: boolean;
}

/**
 * Finds the mount at `mp`: its state under `root`, else the root the mount table shows — the
 * overlay's bottom lowerdir `<root>/mounts/<key>/empty`, or FUSE layers at `<root>/mounts/<key>/layers/<i>`
 * (`key` derives from the mountpoint, so only this mountpoint's entries match).
 */
async function locateMount(root: string, mp: string): Promise<LocatedMount> {
  const key = basename(mountStateDir("/", mp));
  const layerRe = new RegExp(`^(/.*)/mounts/${key}/layers/\\d+$`);
  const emptyDir = `/mounts/${key}/empty`;
  const roots = new Set<string>();
  const layerMounts: string[] = [];
  let mounted = false;
  for (const m of await mountTable()) {
    const layer = layerRe.exec(m.mountpoint);
    if (layer) {
      roots.add(layer[1]!);
      layerMounts.push(m.mountpoint);
    }
    if (m.mountpoint !== mp) continue;
    mounted = true;
    if (m.fstype !== "overlay") continue;
    const lower = /(?:^|,)lowerdir=([^,]*)/.exec(m.superOptions)?.[1]?.split(":") ?? [];
    const bottom = lower[lower.length - 1] ?? "";
    if (bottom.endsWith(emptyDir)) roots.add(bottom.slice(0, -emptyDir.length));
  }
  const given = resolve(root);
  const givenState = await readMountState(given, mp);
  let chosen = given;
  if (!givenState) for (const r of roots) chosen = r;
  const state = givenState ?? (chosen === given ? undefined : await readMountState(chosen, mp));
  const under = `${chosen}/mounts/${key}/`;
  return { root: chosen, state, layerMounts: layerMounts.filter((l) => l.startsWith(under)), mounted };
}
