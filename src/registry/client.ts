// OCI distribution API client on undici, split by job the way containerd's remotes/docker is:
// transport.ts (agents, auth and 401 challenges, redirects, retries), endpoints.ts (mirrors first,
// failover), manifests.ts (resolve, manifests, tags), blobs.ts (whole, streamed, ranges), push.ts
// (uploads, mounts, manifests) and referrers.ts (API + fallback tag). RegistryClient puts them
// together behind one API.
//
// Every request asks the Authorizer first and answers a 401 challenge once; transient failures
// (5xx, 429, resets, timeouts) are retried with backoff honouring Retry-After; blob GETs follow
// redirects manually and never forward Authorization to another origin; whole blobs are verified
// against their digest before they are returned, streams before their last chunk is released.
// Every operation waits on the registry for a bounded time (deadline.ts). Every failure a caller
// sees is a SociError (errors/errors.ts).
import type { Descriptor } from "../formats/oci.js";
import { Blobs, type ByteRange } from "./blobs.js";
import { Endpoints } from "./endpoints.js";
import { type ManifestResult, Manifests } from "./manifests.js";
import { type PushedManifest, Pusher } from "./push.js";
import { parseReference } from "./reference.js";
import { Referrers } from "./referrers.js";
import { Transport } from "./transport.js";
import type { Authorizer, HostResolver, ImageRef } from "./types.js";

export type { ByteRange } from "./blobs.js";
export { referrerDescriptor } from "./referrers.js";

export type RefLike = string | ImageRef;

/** The reference's request timeout (`[http] RequestTimeoutMsec`, `[blob] fetching_timeout_sec`). */
const DEFAULT_DEADLINE_MS = 300_000;

export interface RegistryClientOptions {
  authorizer?: Authorizer;
  /** Endpoints per host (hosts.toml); default: the host itself over HTTPS (docker.io → registry-1.docker.io). */
  hosts?: HostResolver;
  /** Use http:// for the default endpoint (all hosts, or those the predicate accepts). */
  plainHttp?: boolean | ((host: string) => boolean);
  /** Headers and body inactivity timeout per request (default 60 s). */
  timeoutMs?: number;
  /**
   * How long one operation may wait on the registry with nothing arriving — no response, no bytes
   * of a body, an upload not taken — across its retries and endpoints; then it fails with a
   * DeadlineExceededError saying what it waited for (default 5 min, 0 = no limit). Bytes that move
   * start the allowance again, so a large transfer is never cut short while it makes progress,
   * and the time a stream's consumer spends with a chunk does not count.
   */
  deadlineMs?: number;
  /** TCP/TLS connect timeout (default 10 s). */
  connectTimeoutMs?: number;
  /** Retries after the first attempt (default 4). */
  retries?: number;
  /** First backoff (default 200 ms) and cap of one backoff / Retry-After (default 10 s). */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Concurrent requests in flight (default 16); also the keep-alive connections per origin. */
  concurrency?: number;
  userAgent?: string;
  /** Chunk size of chunked uploads, and the largest blob pushed with one PUT (default 8 MiB). */
  chunkSize?: number;
  /** Largest manifest/index accepted (default 4 MiB, as containerd). */
  maxManifestBytes?: number;
  /** Most byte ranges asked in one multi-range request (default 32). */
  maxRangesPerRequest?: number;
}

export class RegistryClient {
  private readonly transport: Transport;
  private readonly endpoints: Endpoints;
  private readonly manifests: Manifests;
  private readonly blobs: Blobs;
  private readonly pusher: Pusher;
  private readonly referrersOf: Referrers;

  constructor(opts: RegistryClientOptions = {}) {
    this.transport = new Transport(opts);
    this.endpoints = new Endpoints({ ...opts, deadlineMs: opts.deadlineMs ?? DEFAULT_DEADLINE_MS });
    this.manifests = new Manifests(this.transport, this.endpoints, opts.maxManifestBytes ?? 4 << 20);
    this.blobs = new Blobs(this.transport, this.endpoints, opts.maxRangesPerRequest ?? 32);
    this.pusher = new Pusher(this.transport, this.endpoints, this.blobs, opts.chunkSize ?? 8 << 20);
    this.referrersOf = new Referrers(this.transport, this.endpoints, this.manifests, this.pusher);
  }

  /** Closes pooled connections; later calls fail with Unavailable. */
  async close(): Promise<void> {
    this.endpoints.close();
    await this.transport.close();
  }

  /** Resolves a tag (or digest) to the manifest's descriptor: HEAD first, GET when HEAD is not enough. */
  resolve(ref: RefLike): Promise<Descriptor> {
    return this.manifests.resolve(toRef(ref));
  }

  /** Fetches a manifest or index by reference, or by descriptor (digest and size verified). */
  getManifest(ref: RefLike, desc?: Descriptor): Promise<ManifestResult> {
    return this.manifests.get(toRef(ref), desc);
  }

  /** Pushes a manifest/index under a tag or its digest (default: `ref.tag`, else the digest). */
  pushManifest(ref: RefLike, bytes: Uint8Array, mediaType: string, reference?: string): Promise<PushedManifest> {
    return this.pusher.pushManifest(toRef(ref), bytes, mediaType, reference);
  }

  /** Deletes a manifest by digest (registries without delete answer Unsupported). */
  deleteManifest(ref: RefLike, digest: string): Promise<void> {
    return this.pusher.deleteManifest(toRef(ref), digest);
  }

  /** Size of a blob if the repository has it, else undefined. */
  blobExists(ref: RefLike, digest: string): Promise<number | undefined> {
    return this.blobs.exists(toRef(ref), digest);
  }

  /** A whole blob, digest (and size, if given) verified; a mismatch is never returned. */
  getBlob(ref: RefLike, digest: string, opts: { size?: number; verify?: boolean } = {}): Promise<Uint8Array> {
    return this.blobs.get(toRef(ref), digest, opts);
  }

  /**
   * Streams a blob. A dropped connection resumes with a Range request; the digest is checked at the
   * end and the last chunk is only yielded once it matched (a corrupt blob never completes).
   */
  async *blobStream(
    ref: RefLike,
    digest: string,
    opts: { size?: number } = {},
  ): AsyncGenerator<Uint8Array, void, undefined> {
    yield* this.blobs.stream(toRef(ref), digest, opts);
  }

  /** Bytes [start, end) of a blob by HTTP Range (206; a 200 full body is verified and sliced). */
  fetchRange(ref: RefLike, digest: string, start: number, end: number): Promise<Uint8Array> {
    return this.blobs.fetchRange(toRef(ref), digest, start, end);
  }

  /**
   * Several ranges of one blob: one multi-range request (multipart/byteranges) where the server
   * supports it, else one request per range. Results are in the order of `ranges`.
   */
  fetchRanges(ref: RefLike, digest: string, ranges: ByteRange[]): Promise<Uint8Array[]> {
    return this.blobs.fetchRanges(toRef(ref), digest, ranges);
  }

  /**
   * Pushes a blob unless the repository has it: cross-repository mount when `mountFrom` is given,
   * else one PUT (bytes up to `chunkSize`) or chunked PATCHes (larger bytes, streams).
   */
  pushBlob(
    ref: RefLike,
    data: Uint8Array | AsyncIterable<Uint8Array>,
    desc: { digest: string; size: number; mediaType?: string },
    opts: { mountFrom?: string } = {},
  ): Promise<Descriptor & { mounted?: boolean; existed?: boolean }> {
    return this.pusher.pushBlob(toRef(ref), data, desc, opts);
  }

  /** All tags of the repository (follows `Link` pagination). */
  listTags(ref: RefLike, opts: { pageSize?: number } = {}): Promise<string[]> {
    return this.manifests.listTags(toRef(ref), opts.pageSize);
  }

  /**
   * Manifests that refer to `subject`: the referrers API, or (404) the fallback tag `sha256-<hex>`;
   * filtered by artifactType client-side when the server did not apply the filter.
   */
  referrers(ref: RefLike, subject: string, artifactType?: string): Promise<Descriptor[]> {
    return this.referrersOf.list(toRef(ref), subject, artifactType);
  }

  /**
   * Adds `descriptor` to the referrers fallback index of `subject` (tag `sha256-<hex>`): reads or
   * creates it, writes Go-JSON under the tag, and deletes the superseded index (best effort).
   */
  addToReferrersFallback(ref: RefLike, subject: string, descriptor: Descriptor): Promise<Descriptor> {
    return this.referrersOf.addToFallback(toRef(ref), subject, descriptor);
  }
}

function toRef(r: RefLike): ImageRef {
  return typeof r === "string" ? parseReference(r) : r;
}
