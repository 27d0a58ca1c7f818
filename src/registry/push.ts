// Pushing (containerd's pusher): blobs the repository lacks — mounted from another repository of
// the same registry, one PUT for small ones, chunked PATCHes for large ones and streams, resuming a
// failed chunk from the session's progress — then manifests under a tag or digest.
import type { Descriptor } from "../formats/oci.js";
import type { Blobs } from "./blobs.js";
import { computeDigest, digester, verifyDigest } from "./digest.js";
import type { Endpoints } from "./endpoints.js";
import {
  DigestMismatchError,
  InvalidArgumentError,
  isRetryableNetworkError,
  networkError,
  redactUrl,
  UnavailableError,
  UnsupportedError,
} from "./errors.js";
import { discard, header, type Response, withQuery } from "./http.js";
import { RetryableError, withRetries } from "./retry.js";
import type { Target, Transport } from "./transport.js";
import type { ImageRef } from "./types.js";

export interface PushedManifest {
  descriptor: Descriptor;
  /** `OCI-Subject` response header: set when the registry indexed the manifest's subject itself. */
  ociSubject?: string;
}

export class Pusher {
  constructor(
    private readonly transport: Transport,
    private readonly endpoints: Endpoints,
    private readonly blobs: Blobs,
    /** Chunk size of chunked uploads, and the largest blob pushed with one PUT. */
    private readonly chunkSize: number,
  ) {}

  /**
   * Pushes a blob unless the repository has it: cross-repository mount when `mountFrom` is given,
   * else one PUT (bytes up to `chunkSize`) or chunked PATCHes (larger bytes, streams).
   */
  async pushBlob(
    ref: ImageRef,
    data: Uint8Array | AsyncIterable<Uint8Array>,
    desc: { digest: string; size: number; mediaType?: string },
    opts: { mountFrom?: string } = {},
  ): Promise<Descriptor & { mounted?: boolean; existed?: boolean }> {
    digester(desc.digest);
    const result: Descriptor = {
      mediaType: desc.mediaType ?? "application/octet-stream",
      digest: desc.digest,
      size: desc.size,
    };
    if (data instanceof Uint8Array) {
      if (data.length !== desc.size)
        throw new InvalidArgumentError(`blob ${desc.digest}: ${data.length} bytes, descriptor says ${desc.size}`);
      verifyDigest(desc.digest, data, undefined, "blob to push");
    }
    return this.endpoints.withEndpoints(ref, "push", ["pull", "push"], async (t) => {
      if ((await this.blobs.existsAt(t, desc.digest)) !== undefined) return { ...result, existed: true };
      const uploads = this.endpoints.repoUrl(t, "/blobs/uploads/");
      let location: string;
      if (opts.mountFrom !== undefined) {
        const mountUrl = withQuery(uploads, { mount: desc.digest, from: opts.mountFrom });
        // Bearer tokens are per repository: the mount also needs pull on the source repository
        const mt: Target = { ...t, also: [{ repository: opts.mountFrom, actions: ["pull"] }] };
        const r = await this.transport.call(
          mt,
          "POST blob mount",
          { method: "POST", url: mountUrl },
          [201, 202],
          async (res) => {
            await discard(res.body);
            return { status: res.status, location: locationOf(res) };
          },
        );
        if (r.status === 201) return { ...result, mounted: true };
        location = r.location;
      } else {
        location = await this.startUpload(t, uploads);
      }
      if (data instanceof Uint8Array && data.length <= this.chunkSize) {
        // Monolithic; a failed attempt restarts with a fresh session.
        await withRetries(async (attempt) => {
          const loc = attempt === 0 ? location : await this.startUpload(t, uploads);
          const url = withQuery(loc, { digest: desc.digest });
          await this.transport.attempt(
            t,
            "PUT blob",
            { method: "PUT", url, headers: { "content-type": "application/octet-stream" }, body: data },
            [201, 204],
          );
        }, this.transport.retryOpts(t)).catch((e: unknown) => {
          throw networkError("PUT blob", uploads, e);
        });
        return result;
      }
      await this.chunkedUpload(t, location, data, desc);
      return result;
    });
  }

  /** Pushes a manifest/index under a tag or its digest (default: `ref.tag`, else the digest). */
  async pushManifest(ref: ImageRef, bytes: Uint8Array, mediaType: string, reference?: string): Promise<PushedManifest> {
    const digest = computeDigest("sha256", bytes);
    const where = reference ?? ref.tag ?? digest;
    return this.endpoints.withEndpoints(ref, "push", ["pull", "push"], async (t) => {
      const url = this.endpoints.repoUrl(t, `/manifests/${where}`);
      return this.transport.call(
        t,
        "PUT manifest",
        { method: "PUT", url, headers: { "content-type": mediaType }, body: bytes },
        [200, 201],
        async (res) => {
          await discard(res.body);
          const got = header(res.headers, "docker-content-digest");
          if (got?.startsWith("sha256:") && got !== digest) {
            throw new DigestMismatchError(digest, got, { what: "pushed manifest", url: redactUrl(url) });
          }
          const ociSubject = header(res.headers, "oci-subject");
          return { descriptor: { mediaType, digest, size: bytes.length }, ...(ociSubject ? { ociSubject } : {}) };
        },
      );
    });
  }

  /** Deletes a manifest by digest (registries without delete answer Unsupported). */
  async deleteManifest(ref: ImageRef, digest: string): Promise<void> {
    await this.endpoints.withEndpoints(ref, "push", ["pull", "push"], async (t) => {
      const url = this.endpoints.repoUrl(t, `/manifests/${digest}`);
      await this.transport.call(t, "DELETE manifest", { method: "DELETE", url }, [200, 202, 204], (res) =>
        discard(res.body),
      );
    });
  }

  private async startUpload(t: Target, uploads: string): Promise<string> {
    return this.transport.call(t, "POST blob upload", { method: "POST", url: uploads }, [202], async (res) => {
      await discard(res.body);
      return locationOf(res);
    });
  }

  private async chunkedUpload(
    t: Target,
    location: string,
    data: Uint8Array | AsyncIterable<Uint8Array>,
    desc: { digest: string; size: number },
  ): Promise<void> {
    const { hash, algorithm } = digester(desc.digest);
    let offset = 0;
    let loc = location;
    // waiting for the source (a download feeding this upload) is not waiting for this registry
    t.deadline?.pause();
    for await (const chunk of rechunk(data, this.chunkSize)) {
      hash.update(chunk);
      loc = await this.patchChunk(t, loc, chunk, offset);
      offset += chunk.length;
      t.deadline?.pause();
    }
    const actual = `${algorithm}:${hash.digest("hex")}`;
    if (actual !== desc.digest || offset !== desc.size) {
      await this.transport
        .attempt(t, "DELETE blob upload", { method: "DELETE", url: loc }, [204, 200, 404])
        .catch(() => undefined);
      throw new DigestMismatchError(
        desc.digest,
        offset !== desc.size ? `${offset} bytes instead of ${desc.size}` : actual,
        { what: "blob to push" },
      );
    }
    await this.transport.call(
      t,
      "PUT blob",
      { method: "PUT", url: withQuery(loc, { digest: desc.digest }), headers: { "content-length": "0" } },
      [201, 204],
      (res) => discard(res.body),
    );
  }

  /** One PATCH; on a transient failure asks the session's progress and resends or moves on. */
  private async patchChunk(t: Target, loc: string, chunk: Uint8Array, offset: number): Promise<string> {
    const end = offset + chunk.length;
    let current = loc;
    return withRetries(async () => {
      try {
        const res = await this.transport.attempt(
          t,
          "PATCH blob",
          {
            method: "PATCH",
            url: current,
            body: chunk,
            headers: { "content-type": "application/octet-stream", "content-range": `${offset}-${end - 1}` },
          },
          [202],
        );
        return locationOf(res);
      } catch (e) {
        if (!(e instanceof RetryableError) && !isRetryableNetworkError(e)) throw e;
        // Where is the session? (GET upload URL → 204 with Range: 0-<last>)
        const st = await this.transport
          .attempt(t, "GET blob upload", { method: "GET", url: current }, [204])
          .catch(() => undefined);
        if (st) {
          const r = /^(?:bytes=)?0-(\d+)$/.exec(header(st.headers, "range") ?? "");
          // distribution answers "0-0" for an empty session as well as for one byte.
          let have = r ? Number(r[1]) + 1 : 0;
          if (have === 1 && offset === 0 && end !== 1) have = 0;
          const next = locationOf(st, current);
          if (have === end) return next;
          if (have !== offset) {
            throw new UnavailableError(`PATCH blob: upload session at ${have} bytes, expected ${offset} or ${end}`, {
              cause: e,
            });
          }
          current = next;
        }
        throw e;
      }
    }, this.transport.retryOpts(t)).catch((e: unknown) => {
      throw networkError("PATCH blob", current, e);
    });
  }
}

function locationOf(res: Response, fallback?: string): string {
  const loc = header(res.headers, "location");
  if (!loc) {
    if (fallback) return fallback;
    throw new UnsupportedError(`${redactUrl(res.url)}: upload response without Location`);
  }
  return new URL(loc, res.url).toString();
}

async function* rechunk(data: Uint8Array | AsyncIterable<Uint8Array>, size: number): AsyncGenerator<Uint8Array> {
  if (data instanceof Uint8Array) {
    for (let o = 0; o < data.length; o += size) yield data.subarray(o, Math.min(data.length, o + size));
    return;
  }
  let buf = new Uint8Array(size);
  let n = 0;
  for await (const c of data) {
    let o = 0;
    while (o < c.length) {
      const k = Math.min(size - n, c.length - o);
      buf.set(c.subarray(o, o + k), n);
      n += k;
      o += k;
      if (n === size) {
        yield buf;
        buf = new Uint8Array(size);
        n = 0;
      }
    }
  }
  if (n > 0) yield buf.subarray(0, n);
}
