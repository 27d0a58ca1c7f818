// containerd's content service: blob info/labels, listing, ranged reads as a stream, and writes
// through the Write bidi stream (stat → write… → commit with expected digest and size, which
// containerd verifies), plus delete.
import { randomBytes } from "node:crypto";
import type { CallOptions, Rpc } from "./client.js";
import {
  AlreadyExistsError,
  CanceledError,
  DeadlineExceededError,
  DigestMismatchError,
  FailedPreconditionError,
  hasCode,
  SociError,
} from "../errors/errors.js";
import { ContainerdProtocolError } from "./errors.js";
import { labelPaths, toDate, type Labels, type Timestamp } from "./types.js";

export interface ContentInfo {
  digest: string;
  size: number;
  createdAt?: Date;
  updatedAt?: Date;
  labels: Labels;
}

export interface ReadRange {
  /** First byte (default 0). */
  offset?: number;
  /** Bytes to read (default: to the end). */
  size?: number;
}

export interface WriteOptions extends CallOptions {
  /** The ingest ref (default: a fresh random one, so concurrent writers never contend for a lock). */
  ref?: string;
  /** Labels set on the blob when it is committed (and merged in if the blob already exists). */
  labels?: Labels;
  /** Bytes per Write message (default 1 MiB; containerd accepts up to 16 MiB). */
  chunkSize?: number;
}

export interface WriteResult {
  digest: string;
  size: number;
  /** The blob was already in the store; nothing was written. */
  existed: boolean;
}

export type WriteContent = Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>;

interface ProtoInfo {
  digest: string;
  size: number;
  createdAt: Timestamp | null;
  updatedAt: Timestamp | null;
  labels: Labels;
}

interface WriteRequest {
  action: "STAT" | "WRITE" | "COMMIT";
  ref: string;
  total?: number;
  expected?: string;
  offset?: number;
  data?: Uint8Array;
  labels?: Labels;
}

interface WriteResponse {
  action: string;
  offset: number;
  total: number;
  digest: string;
}

const DEFAULT_CHUNK = 1 << 20;

function info(p: ProtoInfo): ContentInfo {
  return {
    digest: p.digest,
    size: p.size,
    createdAt: toDate(p.createdAt),
    updatedAt: toDate(p.updatedAt),
    labels: { ...p.labels },
  };
}

/** Regroups chunks into messages of at most `max` bytes (small chunks are coalesced). */
async function* rechunk(content: WriteContent, max: number): AsyncGenerator<Uint8Array> {
  const source = content instanceof Uint8Array ? [content] : content;
  let pending: Uint8Array[] = [];
  let pendingSize = 0;
  const flush = () => {
    const out = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingSize);
    pending = [];
    pendingSize = 0;
    return out;
  };
  for await (const chunk of source as AsyncIterable<Uint8Array>) {
    let c = chunk;
    while (c.length > 0) {
      const take = Math.min(c.length, max - pendingSize);
      pending.push(c.subarray(0, take));
      pendingSize += take;
      c = c.subarray(take);
      if (pendingSize === max) yield flush();
    }
  }
  if (pendingSize > 0) yield flush();
}

export class ContentService {
  constructor(private readonly rpc: Rpc) {}

  /** Size and labels of a committed blob; NotFoundError if absent. */
  async info(digest: string, opts?: CallOptions): Promise<ContentInfo> {
    const res = await this.rpc.unary<{ digest: string }, { info: ProtoInfo }>("content", "Info", { digest }, opts);
    return info(res.info);
  }

  async exists(digest: string, opts?: CallOptions): Promise<boolean> {
    try {
      await this.info(digest, opts);
      return true;
    } catch (err) {
      if (hasCode(err, "NotFound")) return false;
      throw err;
    }
  }

  /** Every blob matching any of `filters` (containerd filter syntax, e.g. `labels."x"==y`). */
  async list(filters: string[] = [], opts?: CallOptions): Promise<ContentInfo[]> {
    const out: ContentInfo[] = [];
    for await (const msg of this.rpc.serverStream<{ filters: string[] }, { info: ProtoInfo[] }>(
      "content",
      "List",
      { filters },
      opts,
    )) {
      for (const i of msg.info) out.push(info(i));
    }
    return out;
  }

  /**
   * Sets (or, with an empty value, removes) the given labels, leaving the others alone. Returns
   * the updated info.
   */
  async setLabels(digest: string, labels: Labels, opts?: CallOptions): Promise<ContentInfo> {
    const res = await this.rpc.unary<unknown, { info: ProtoInfo }>(
      "content",
      "Update",
      {
        info: { digest, labels },
        updateMask: { paths: labelPaths(labels) },
      },
      opts,
    );
    return info(res.info);
  }

  /** The bytes of a blob (or a range of it) as they arrive, in order. */
  async *read(digest: string, range: ReadRange = {}, opts?: CallOptions): AsyncGenerator<Uint8Array> {
    const req = { digest, offset: range.offset ?? 0, size: range.size ?? 0 };
    // containerd numbers the answers' offsets from the requested offset, not from the blob's start
    let expect = 0;
    for await (const msg of this.rpc.serverStream<typeof req, { offset: number; data: Uint8Array }>(
      "content",
      "Read",
      req,
      opts,
    )) {
      if (msg.offset !== expect)
        throw new ContainerdProtocolError(
          `containerd content.Read ${digest}: data at offset ${msg.offset}, expected ${expect}`,
        );
      expect += msg.data.length;
      if (msg.data.length > 0) yield msg.data;
    }
  }

  /** A whole blob (or range) in memory; the length must be what `info` / the range says. */
  async readAll(digest: string, range: ReadRange = {}, opts?: CallOptions): Promise<Uint8Array> {
    let want = range.size;
    if (want === undefined) want = (await this.info(digest, opts)).size - (range.offset ?? 0);
    const chunks: Uint8Array[] = [];
    let size = 0;
    for await (const c of this.read(digest, range, opts)) {
      chunks.push(c);
      size += c.length;
    }
    if (size !== want)
      throw new ContainerdProtocolError(`containerd content.Read ${digest}: got ${size} bytes, expected ${want}`);
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
  }

  /**
   * Writes a blob. With `expected`, containerd checks digest and size on commit (a mismatch is a
   * FailedPreconditionError); if the blob is already stored, nothing is sent and its labels are
   * merged with `opts.labels`.
   */
  async write(
    content: WriteContent,
    expected?: { digest: string; size?: number },
    opts: WriteOptions = {},
  ): Promise<WriteResult> {
    const ref = opts.ref ?? `soci-${randomBytes(12).toString("hex")}`;
    const call = this.rpc.duplex<WriteRequest, WriteResponse>("content", "Write", opts);
    const responses = call[Symbol.asyncIterator]() as AsyncIterator<WriteResponse>;
    // each answer must come within the unary deadline (the stream as a whole may take long)
    const answerMs = opts.timeoutMs ?? this.rpc.timeoutMs;
    let timedOut = false;
    // lock-step: containerd answers every message, so the answer is also the flow control
    const send = async (req: WriteRequest): Promise<WriteResponse> => {
      if (opts.signal?.aborted) throw new CanceledError(`containerd content.Write ${ref}: canceled`);
      call.write(req);
      const timer = setTimeout(() => {
        timedOut = true;
        call.cancel();
      }, answerMs);
      try {
        const r = await responses.next();
        if (r.done)
          throw new ContainerdProtocolError(`containerd content.Write ${ref}: stream ended without an answer`);
        return r.value;
      } finally {
        clearTimeout(timer);
      }
    };
    const base = { ref, total: expected?.size ?? 0, expected: expected?.digest ?? "" };
    let committed = false;
    try {
      await send({ action: "STAT", ...base });
      // a caller-chosen ref may hold data from an earlier attempt: it is rewritten from 0 (which
      // every containerd writer supports)
      let offset = 0;
      for await (const data of rechunk(content, opts.chunkSize ?? DEFAULT_CHUNK)) {
        const r = await send({ action: "WRITE", ref, offset, data });
        offset += data.length;
        if (r.offset !== offset)
          throw new ContainerdProtocolError(
            `containerd content.Write ${ref}: server at offset ${r.offset}, sent up to ${offset}`,
          );
      }
      const done = await send({ action: "COMMIT", ...base, offset, labels: opts.labels ?? {} });
      committed = true;
      call.end();
      if (expected && done.digest !== expected.digest) {
        throw new DigestMismatchError(expected.digest, done.digest, { what: "containerd content.Write: committed" });
      }
      return { digest: done.digest, size: offset, existed: false };
    } catch (e) {
      call.cancel();
      const err = timedOut
        ? new DeadlineExceededError(`containerd content.Write ${ref}: no answer in ${answerMs} ms`)
        : e instanceof SociError
          ? e
          : this.rpc.error(e, "content", "Write");
      if (err instanceof AlreadyExistsError && expected) {
        // already stored (before we started, or by a concurrent writer): same digest, so same bytes
        const size = (await this.info(expected.digest, opts)).size;
        if (expected.size !== undefined && expected.size !== size) {
          throw new FailedPreconditionError(
            `containerd content.Write: ${expected.digest} is stored with ${size} bytes, expected ${expected.size}`,
          );
        }
        if (opts.labels && Object.keys(opts.labels).length > 0)
          await this.setLabels(expected.digest, opts.labels, opts);
        return { digest: expected.digest, size, existed: true };
      }
      if (!committed) await this.abort(ref).catch(() => undefined);
      throw err;
    }
  }

  /** Drops an unfinished write. */
  async abort(ref: string, opts?: CallOptions): Promise<void> {
    await this.rpc.unary("content", "Abort", { ref }, opts);
  }

  async delete(digest: string, opts?: CallOptions): Promise<void> {
    await this.rpc.unary("content", "Delete", { digest }, opts);
  }
}
