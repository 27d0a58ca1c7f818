// containerd's content and image stores in the shapes the SOCI code reads and writes:
// ContainerdContentStore is a BlobReader (manifests, configs, layer streams, plus the ranged reads,
// sizes and image lookups the CLI needs) and a BlobWriter (ztocs, prefetch artifacts, SOCI indexes
// and converted manifests, each committed with its GC reference labels, gc-labels.ts).
// Writes should run under a lease (ContainerdClient.withLease) until the image that references
// them is labelled or created, or containerd's GC may collect them in between.
import type { Descriptor } from "../formats/oci.js";
import type { BlobContent, BlobInfo, BlobReader, BlobWriter, ExpectedBlob } from "../store/blobs.js";
import { BlobNotFoundError } from "../store/errors.js";
import type { ContainerdClient } from "./client.js";
import { NotFoundError } from "../errors/errors.js";
import { gcLabelsFor } from "./gc-labels.js";
import type { WriteContent } from "./content.js";
import type { Labels } from "./types.js";

/** containerd's "not found" as the store's BlobNotFoundError (what the CLI's messages expect). */
async function blobCall<T>(digest: string, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (err) {
    if (err instanceof NotFoundError) throw new BlobNotFoundError(digest);
    throw err;
  }
}

export class ContainerdContentStore implements BlobReader, BlobWriter {
  constructor(readonly client: ContainerdClient) {}

  async get(digest: string): Promise<Uint8Array> {
    return blobCall(digest, () => this.client.content.readAll(digest));
  }

  async exists(digest: string): Promise<boolean> {
    return this.client.content.exists(digest);
  }

  async size(digest: string): Promise<number> {
    return blobCall(digest, async () => (await this.client.content.info(digest)).size);
  }

  /** Bytes `[start, end)` of a blob (`end` defaults to its end), streamed. */
  async createReadStream(digest: string, start = 0, end?: number): Promise<AsyncIterable<Uint8Array>> {
    if (
      start < 0 ||
      !Number.isSafeInteger(start) ||
      (end !== undefined && (!Number.isSafeInteger(end) || end < start))
    ) {
      throw new RangeError(`invalid range [${start}, ${end}) for ${digest}`);
    }
    const size = await this.size(digest); // also: NotFound now rather than on first read
    const stop = Math.min(end ?? size, size);
    if (start >= stop) return (async function* () {})();
    return this.client.content.read(digest, { offset: start, size: stop - start });
  }

  /**
   * Commits a blob (containerd verifies `expected`), labelled with the GC references its content
   * makes and `labels` (both merged into the labels of a blob already stored).
   */
  async put(content: BlobContent, expected?: ExpectedBlob, labels: Labels = {}): Promise<BlobInfo> {
    const all = { ...(content instanceof Uint8Array ? gcLabelsFor(content) : {}), ...labels };
    const r = await this.client.content.write(content satisfies WriteContent, expected, { labels: all });
    return { digest: r.digest, size: r.size };
  }

  /** containerd lists no manifests: the same as `put`. */
  async putDescriptor(desc: Descriptor, content: BlobContent): Promise<Descriptor> {
    await this.put(content, { digest: desc.digest, size: desc.size });
    return desc;
  }

  /**
   * The target of containerd image `name` (`ImageService().Get(name).Target`), without
   * annotations. A missing image is `image "<name>": not found`, containerd's message.
   */
  async resolveImage(name: string): Promise<Descriptor> {
    try {
      const img = await this.client.images.get(name);
      return { mediaType: img.target.mediaType, digest: img.target.digest, size: img.target.size };
    } catch (err) {
      if (err instanceof NotFoundError)
        throw new NotFoundError(`image ${JSON.stringify(name)}: not found`, { cause: err });
      throw err;
    }
  }

  /** Names of the images whose target is `digest`. */
  async imageNamesFor(digest: string): Promise<string[]> {
    return (await this.client.images.list([`target.digest==${digest}`])).map((i) => i.name);
  }
}

/** How long a layer written by the snapshotter is held by its own lease (the pulled image's manifest references it after that). */
const LAYER_LEASE_MS = 3600_000;

/**
 * Writes a layer blob the snapshotter downloaded (parallel pull mode) into containerd's content
 * store in `namespace`, as containerd's own pull would have, digest checked by containerd.
 */
export async function storeLayerBlob(
  client: ContainerdClient,
  namespace: string,
  layer: Descriptor,
  content: WriteContent,
): Promise<void> {
  const ns = client.withNamespace(namespace);
  const lease = await ns.leases.create({ expiresInMs: LAYER_LEASE_MS });
  await ns.withLease(lease.id).content.write(content, { digest: layer.digest, size: layer.size });
}
