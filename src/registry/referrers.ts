// Referrers (OCI distribution 1.1): the manifests that name a subject, from the referrers API or,
// where the registry lacks it, from the fallback tag `sha256-<hex>`, which pushes keep up to date.
import { MediaTypeImageIndex, marshalIndex, parseIndex, parseManifest, type Descriptor } from "../formats/oci.js";
import { SociError } from "../errors/errors.js";
import { computeDigest, digester } from "./digest.js";
import type { Endpoints } from "./endpoints.js";
import { NotFoundError, UnsupportedError } from "./errors.js";
import { header, mediaTypeOf, nextPage, readAll, withQuery } from "./http.js";
import type { ManifestResult, Manifests } from "./manifests.js";
import type { Pusher } from "./push.js";
import { referrersTag, withReference } from "./reference.js";
import type { Transport } from "./transport.js";
import type { ImageRef } from "./types.js";

/** The descriptor a referrers list holds for a manifest (oras: artifactType, else config.mediaType). */
export function referrerDescriptor(manifestBytes: Uint8Array, mediaType: string): Descriptor {
  const m = parseManifest(manifestBytes);
  const d: Descriptor = { mediaType, digest: computeDigest("sha256", manifestBytes), size: manifestBytes.length };
  const artifactType = m.artifactType || m.config?.mediaType;
  if (m.annotations && Object.keys(m.annotations).length) d.annotations = { ...m.annotations };
  if (artifactType) d.artifactType = artifactType;
  return d;
}

export class Referrers {
  constructor(
    private readonly transport: Transport,
    private readonly endpoints: Endpoints,
    private readonly manifests: Manifests,
    private readonly pusher: Pusher,
  ) {}

  /**
   * Manifests that refer to `subject`: the referrers API, or (404) the fallback tag `sha256-<hex>`;
   * filtered by artifactType client-side when the server did not apply the filter.
   */
  async list(ref: ImageRef, subject: string, artifactType?: string): Promise<Descriptor[]> {
    digester(subject);
    const filter = (ds: Descriptor[]) =>
      artifactType === undefined ? ds : ds.filter((d) => d.artifactType === artifactType);
    const api = await this.endpoints.withEndpoints(ref, "pull", ["pull"], async (t) => {
      const out: Descriptor[] = [];
      const first = this.endpoints.repoUrl(t, `/referrers/${subject}`);
      let url: string | undefined = artifactType !== undefined ? withQuery(first, { artifactType }) : first;
      for (let pages = 0; url && pages < 10_000; pages++) {
        let page: { ds: Descriptor[]; next: string | undefined } | undefined;
        try {
          page = await this.transport.call(
            t,
            "GET referrers",
            { method: "GET", url, headers: { accept: MediaTypeImageIndex } },
            [200],
            async (res) => {
              const mt = mediaTypeOf(header(res.headers, "content-type"));
              const bytes = await readAll(res.body, {
                limit: this.manifests.maxBytes,
                what: "referrers index",
                deadline: t.deadline,
              });
              if (mt !== MediaTypeImageIndex) return undefined;
              const idx = parseIndex(bytes);
              const applied = (
                header(res.headers, "oci-filters-applied") ??
                idx.annotations?.["org.opencontainers.image.referrers.filtersApplied"] ??
                ""
              )
                .split(",")
                .map((s) => s.trim());
              const ds = idx.manifests ?? [];
              return { ds: applied.includes("artifactType") ? ds : filter(ds), next: nextPage(res) };
            },
          );
        } catch (e) {
          if (pages === 0 && (e instanceof NotFoundError || e instanceof UnsupportedError)) return undefined;
          throw e;
        }
        if (!page) return undefined;
        out.push(...page.ds);
        url = page.next;
      }
      return out;
    });
    if (api) return api;
    try {
      const { bytes, descriptor } = await this.manifests.get(withReference(ref, { tag: referrersTag(subject) }));
      if (descriptor.mediaType !== MediaTypeImageIndex) {
        throw new UnsupportedError(
          `referrers tag ${referrersTag(subject)} is ${descriptor.mediaType}, not an OCI image index`,
        );
      }
      return filter(parseIndex(bytes).manifests ?? []);
    } catch (e) {
      if (e instanceof NotFoundError) return [];
      throw e;
    }
  }

  /**
   * Adds `descriptor` to the referrers fallback index of `subject` (tag `sha256-<hex>`): reads or
   * creates it, writes Go-JSON under the tag, and deletes the superseded index (best effort).
   */
  async addToFallback(ref: ImageRef, subject: string, descriptor: Descriptor): Promise<Descriptor> {
    const tagged = withReference(ref, { tag: referrersTag(subject) });
    let old: ManifestResult | undefined;
    try {
      old = await this.manifests.get(tagged);
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e;
    }
    const manifests = old ? (parseIndex(old.bytes).manifests ?? []) : [];
    if (old && manifests.some((d) => d.digest === descriptor.digest)) return old.descriptor;
    const bytes = marshalIndex({
      schemaVersion: 2,
      mediaType: MediaTypeImageIndex,
      manifests: [...manifests, descriptor],
    });
    const { descriptor: pushed } = await this.pusher.pushManifest(tagged, bytes, MediaTypeImageIndex, tagged.tag);
    if (old && old.descriptor.digest !== pushed.digest) {
      await this.pusher.deleteManifest(tagged, old.descriptor.digest).catch((e: unknown) => {
        if (!(e instanceof SociError)) throw e;
      });
    }
    return pushed;
  }
}
