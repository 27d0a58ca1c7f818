// containerd's image service: image name → target descriptor (+ labels).
import type { CallOptions, Rpc } from "./client.js";
import { labelPaths, toDate, type Labels, type ProtoDescriptor, type Timestamp } from "./types.js";

export interface Image {
  name: string;
  labels: Labels;
  target: ProtoDescriptor;
  createdAt?: Date;
  updatedAt?: Date;
}

interface ProtoImage {
  name: string;
  labels: Labels;
  target: ProtoDescriptor | null;
  createdAt: Timestamp | null;
  updatedAt: Timestamp | null;
}

function image(p: ProtoImage): Image {
  const t = p.target ?? { mediaType: "", digest: "", size: 0 };
  const target: ProtoDescriptor = { mediaType: t.mediaType, digest: t.digest, size: t.size };
  if (t.annotations && Object.keys(t.annotations).length > 0) target.annotations = { ...t.annotations };
  return {
    name: p.name,
    labels: { ...p.labels },
    target,
    createdAt: toDate(p.createdAt),
    updatedAt: toDate(p.updatedAt),
  };
}

function protoTarget(d: ProtoDescriptor): ProtoDescriptor {
  return { mediaType: d.mediaType, digest: d.digest, size: d.size, annotations: d.annotations ?? {} };
}

/** A filter that matches one image name exactly (containerd filter syntax, value quoted). */
export function nameFilter(name: string): string {
  return `name==${JSON.stringify(name)}`;
}

/** A filter matching images whose target is `digest`. */
export function targetDigestFilter(digest: string): string {
  return `target.digest==${JSON.stringify(digest)}`;
}

export class ImagesService {
  constructor(private readonly rpc: Rpc) {}

  /** NotFoundError (`image "<name>": not found`) when there is no such image. */
  async get(name: string, opts?: CallOptions): Promise<Image> {
    const res = await this.rpc.unary<{ name: string }, { image: ProtoImage }>("images", "Get", { name }, opts);
    return image(res.image);
  }

  /** Images matching any of `filters` (all images when empty). */
  async list(filters: string[] = [], opts?: CallOptions): Promise<Image[]> {
    const res = await this.rpc.unary<{ filters: string[] }, { images: ProtoImage[] }>(
      "images",
      "List",
      { filters },
      opts,
    );
    return res.images.map(image);
  }

  /** AlreadyExistsError if the name is taken. */
  async create(img: { name: string; target: ProtoDescriptor; labels?: Labels }, opts?: CallOptions): Promise<Image> {
    const res = await this.rpc.unary<unknown, { image: ProtoImage }>(
      "images",
      "Create",
      {
        image: { name: img.name, labels: img.labels ?? {}, target: protoTarget(img.target) },
      },
      opts,
    );
    return image(res.image);
  }

  /**
   * Updates an image. `fields` selects what changes (`target`, `labels`, `labels.<key>`); when
   * omitted, every field given in `img` is replaced.
   */
  async update(
    img: { name: string; target?: ProtoDescriptor; labels?: Labels },
    fields?: string[],
    opts?: CallOptions,
  ): Promise<Image> {
    const paths = fields ?? [...(img.target ? ["target"] : []), ...(img.labels ? ["labels"] : [])];
    const res = await this.rpc.unary<unknown, { image: ProtoImage }>(
      "images",
      "Update",
      {
        image: { name: img.name, labels: img.labels ?? {}, target: img.target ? protoTarget(img.target) : null },
        updateMask: { paths },
      },
      opts,
    );
    return image(res.image);
  }

  /** Sets (empty value: removes) the given labels, keeping the others. */
  async setLabels(name: string, labels: Labels, opts?: CallOptions): Promise<Image> {
    return this.update({ name, labels }, labelPaths(labels), opts);
  }

  /** Creates the image, or points an existing one at `target` (what `ctr`/the reference CLI do). */
  async put(img: { name: string; target: ProtoDescriptor; labels?: Labels }, opts?: CallOptions): Promise<Image> {
    try {
      return await this.create(img, opts);
    } catch (err) {
      if ((err as { code?: string }).code !== "AlreadyExists") throw err;
      return this.update(
        { name: img.name, target: img.target, ...(img.labels ? { labels: img.labels } : {}) },
        ["target", ...labelPaths(img.labels ?? {})],
        opts,
      );
    }
  }

  /** `sync` waits for containerd's garbage collection to run. */
  async delete(name: string, opts: CallOptions & { sync?: boolean } = {}): Promise<void> {
    await this.rpc.unary("images", "Delete", { name, sync: opts.sync ?? false }, opts);
  }
}
