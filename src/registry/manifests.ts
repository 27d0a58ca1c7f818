// Resolving references and fetching manifests (containerd's resolver): a tag or digest becomes a
// descriptor (HEAD, or GET when HEAD says too little), manifests and indexes are fetched with their
// digest and size verified, and a repository's tags are listed page by page.
import {
  MediaTypeDockerSchema2Manifest,
  MediaTypeDockerSchema2ManifestList,
  MediaTypeImageIndex,
  MediaTypeImageManifest,
  type Descriptor,
} from "../formats/oci.js";
import { checkSize, computeDigest, verifyDigest } from "./digest.js";
import type { Endpoints } from "./endpoints.js";
import { DigestMismatchError, InvalidArgumentError, redactUrl } from "./errors.js";
import { discard, header, mediaTypeOf, nextPage, readAll, withQuery } from "./http.js";
import { manifestReference } from "./reference.js";
import type { Target, Transport } from "./transport.js";
import type { ImageRef } from "./types.js";

/** Manifest media types asked for (OCI and Docker schema 2). */
export const MANIFEST_ACCEPT = [
  MediaTypeImageManifest,
  MediaTypeImageIndex,
  MediaTypeDockerSchema2Manifest,
  MediaTypeDockerSchema2ManifestList,
];

export interface ManifestResult {
  bytes: Uint8Array;
  descriptor: Descriptor;
}

export class Manifests {
  constructor(
    private readonly transport: Transport,
    private readonly endpoints: Endpoints,
    /** Largest manifest/index accepted. */
    readonly maxBytes: number,
  ) {}

  /** A tag (or digest) as the manifest's descriptor: HEAD first, GET when HEAD is not enough. */
  async resolve(ref: ImageRef): Promise<Descriptor> {
    return this.endpoints.withEndpoints(ref, "resolve", ["pull"], async (t) => {
      const url = this.endpoints.repoUrl(t, `/manifests/${manifestReference(ref)}`);
      const head = await this.transport.call(
        t,
        "HEAD manifest",
        { method: "HEAD", url, headers: { accept: MANIFEST_ACCEPT.join(", ") } },
        [200],
        async (res) => {
          await discard(res.body);
          return res;
        },
      );
      const digest = header(head.headers, "docker-content-digest") ?? ref.digest;
      const mediaType = mediaTypeOf(header(head.headers, "content-type"));
      const len = header(head.headers, "content-length");
      if (digest && mediaType && MANIFEST_ACCEPT.includes(mediaType) && len !== undefined && /^\d+$/.test(len)) {
        if (ref.digest && digest !== ref.digest) {
          throw new DigestMismatchError(ref.digest, digest, { what: "manifest", url: redactUrl(url) });
        }
        return { mediaType, digest, size: Number(len) };
      }
      return (await this.getAt(t, ref)).descriptor;
    });
  }

  /** A manifest or index by reference, or by descriptor (digest and size verified). */
  async get(ref: ImageRef, desc?: Descriptor): Promise<ManifestResult> {
    return this.endpoints.withEndpoints(ref, "pull", ["pull"], (t) => this.getAt(t, ref, desc));
  }

  /** All tags of the repository (follows `Link` pagination). */
  async listTags(ref: ImageRef, pageSize?: number): Promise<string[]> {
    return this.endpoints.withEndpoints(ref, "pull", ["pull"], async (t) => {
      const tags: string[] = [];
      const first = this.endpoints.repoUrl(t, "/tags/list");
      let url: string | undefined = pageSize ? withQuery(first, { n: String(pageSize) }) : first;
      for (let pages = 0; url && pages < 10_000; pages++) {
        const page: { tags: string[]; next: string | undefined } = await this.transport.call(
          t,
          "GET tags",
          { method: "GET", url },
          [200],
          async (res) => {
            const bytes = await readAll(res.body, { limit: 64 << 20, what: "tag list", deadline: t.deadline });
            let body: { tags?: unknown };
            try {
              body = JSON.parse(new TextDecoder().decode(bytes)) as { tags?: unknown };
            } catch (e) {
              throw new InvalidArgumentError(`GET tags: ${redactUrl(res.url)}: invalid JSON`, { cause: e });
            }
            const list = Array.isArray(body.tags) ? body.tags.filter((x): x is string => typeof x === "string") : [];
            return { tags: list, next: nextPage(res) };
          },
        );
        tags.push(...page.tags);
        url = page.next;
      }
      return tags;
    });
  }

  /** The manifest on one endpoint (the one a HEAD said too little about, or the caller's). */
  private async getAt(t: Target, ref: ImageRef, desc?: Descriptor): Promise<ManifestResult> {
    const expected = desc?.digest ?? ref.digest;
    const url = this.endpoints.repoUrl(t, `/manifests/${expected ?? manifestReference(ref)}`);
    const accept =
      desc?.mediaType && !MANIFEST_ACCEPT.includes(desc.mediaType)
        ? [desc.mediaType, ...MANIFEST_ACCEPT]
        : MANIFEST_ACCEPT;
    return this.transport.call(
      t,
      "GET manifest",
      { method: "GET", url, headers: { accept: accept.join(", ") } },
      [200],
      async (res) => {
        const bytes = await readAll(res.body, { limit: this.maxBytes, what: "manifest", deadline: t.deadline });
        let digest: string;
        if (expected) {
          verifyDigest(expected, bytes, url, "manifest");
          digest = expected;
        } else {
          const headerDigest = header(res.headers, "docker-content-digest");
          const alg = headerDigest?.startsWith("sha512:")
            ? "sha512"
            : headerDigest?.startsWith("sha384:")
              ? "sha384"
              : "sha256";
          digest = computeDigest(alg, bytes);
          if (headerDigest && headerDigest !== digest) {
            throw new DigestMismatchError(headerDigest, digest, { what: "manifest", url: redactUrl(url) });
          }
        }
        if (desc && desc.size > 0) checkSize(expected!, bytes.length, desc.size, "manifest size", url);
        const mediaType =
          mediaTypeOf(header(res.headers, "content-type")) ?? sniffMediaType(bytes) ?? desc?.mediaType ?? "";
        return { bytes, descriptor: { mediaType, digest, size: bytes.length } };
      },
    );
  }
}

function sniffMediaType(bytes: Uint8Array): string | undefined {
  try {
    const v = JSON.parse(new TextDecoder().decode(bytes)) as { mediaType?: unknown; manifests?: unknown };
    if (typeof v.mediaType === "string" && v.mediaType) return v.mediaType;
    return Array.isArray(v.manifests) ? MediaTypeImageIndex : MediaTypeImageManifest;
  } catch {
    return undefined;
  }
}
