// HTTP plumbing shared by the registry client's parts: response headers, bodies read whole (with a
// size limit, progress reported to the operation's deadline) or thrown away, Content-Range, multipart/byteranges, Link pagination, query strings.
import type { IncomingHttpHeaders } from "node:http";
import type { Dispatcher } from "undici";
import type { Deadline } from "./deadline.js";
import { InvalidArgumentError } from "./errors.js";
import { noteDroppedBuffers } from "../wasm/garbage.js";

export interface Response {
  status: number;
  headers: IncomingHttpHeaders;
  body: Dispatcher.ResponseData["body"];
  /** Final URL (after redirects). */
  url: string;
}

const ERROR_BODY_LIMIT = 64 * 1024;

export function header(h: IncomingHttpHeaders, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

export function mediaTypeOf(contentType: string | undefined): string | undefined {
  if (!contentType) return undefined;
  const mt = contentType.split(";")[0]!.trim();
  return mt.length ? mt : undefined;
}

function concat(chunks: Uint8Array[], total: number): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(total);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

/** A whole body: at most `limit` bytes, each chunk reported to `deadline` as progress. */
export async function readAll(
  body: Response["body"],
  opts: { limit?: number; what?: string; expected?: number; deadline?: Deadline } = {},
): Promise<Uint8Array> {
  const { limit, expected, deadline } = opts;
  // with the length known, chunks go straight into one buffer (each is garbage at once) instead of
  // all of them living until a final copy: half the peak memory of a span fetch
  let out =
    expected !== undefined && expected > 0 && (limit === undefined || expected <= limit)
      ? new Uint8Array(expected)
      : undefined;
  const chunks: Uint8Array[] = [];
  let n = 0;
  for await (const c of body as AsyncIterable<Buffer>) {
    deadline?.progress(c.length);
    if (limit !== undefined && n + c.length > limit) {
      body.destroy();
      throw new InvalidArgumentError(`${opts.what ?? "response"} larger than ${limit} bytes`);
    }
    if (out && n + c.length <= out.length) {
      out.set(c, n);
      noteDroppedBuffers(c.length); // the chunk is garbage now: a large body must not pile them up
    } else {
      if (out) chunks.push(out.subarray(0, n)); // longer than announced: collect the rest
      out = undefined;
      chunks.push(new Uint8Array(c.buffer, c.byteOffset, c.length));
    }
    n += c.length;
  }
  if (out) return n === out.length ? out : out.subarray(0, n);
  return concat(chunks, n);
}

/** The start of an error response's body (its OCI error codes), or nothing when it cannot be read. */
export async function readErrorBody(body: Response["body"]): Promise<Uint8Array> {
  try {
    const chunks: Uint8Array[] = [];
    let n = 0;
    for await (const c of body as AsyncIterable<Buffer>) {
      chunks.push(c);
      n += c.length;
      if (n >= ERROR_BODY_LIMIT) {
        body.destroy();
        break;
      }
    }
    return concat(chunks, n);
  } catch {
    return new Uint8Array(0);
  }
}

/** Reads a small body to its end so the connection is reused. */
export async function discard(body: Response["body"]): Promise<void> {
  try {
    await body.dump({ limit: 256 * 1024 });
  } catch {
    /* the connection is dropped instead of reused */
  }
}

/** Parses `Content-Range: bytes a-b/total` (end exclusive). */
export function parseContentRange(v: string | undefined): { start: number; end: number; total?: number } | undefined {
  const m = v ? /^bytes\s+(\d+)-(\d+)\/(\d+|\*)$/i.exec(v.trim()) : null;
  if (!m) return undefined;
  return { start: Number(m[1]), end: Number(m[2]) + 1, ...(m[3] !== "*" ? { total: Number(m[3]) } : {}) };
}

/** Splits a multipart/byteranges body into its parts. */
export function parseMultipartByteranges(
  body: Uint8Array,
  boundary: string,
): { start: number; end: number; data: Uint8Array }[] {
  const buf = Buffer.from(body.buffer, body.byteOffset, body.length);
  const delim = Buffer.from(`--${boundary}`);
  const parts: { start: number; end: number; data: Uint8Array }[] = [];
  let pos = buf.indexOf(delim);
  while (pos >= 0) {
    pos += delim.length;
    if (buf[pos] === 0x2d && buf[pos + 1] === 0x2d) break; // closing delimiter
    const hdrEnd = buf.indexOf("\r\n\r\n", pos);
    if (hdrEnd < 0) break;
    const headers = buf.subarray(pos, hdrEnd).toString("latin1");
    const m = /^content-range:\s*(.+)$/im.exec(headers);
    const cr = parseContentRange(m?.[1]);
    if (!cr) throw new InvalidArgumentError("multipart/byteranges part without a valid Content-Range");
    const dataStart = hdrEnd + 4;
    const dataEnd = dataStart + (cr.end - cr.start);
    if (dataEnd > buf.length) throw new InvalidArgumentError("truncated multipart/byteranges body");
    parts.push({ start: cr.start, end: cr.end, data: body.subarray(dataStart, dataEnd) });
    pos = buf.indexOf(delim, dataEnd);
  }
  return parts;
}

/** The `rel="next"` target of a `Link` header, absolute against the response's URL. */
export function nextPage(res: Response): string | undefined {
  const link = header(res.headers, "link");
  if (!link) return undefined;
  for (const part of link.split(",")) {
    const m = /<([^>]*)>\s*;\s*rel="?next"?/i.exec(part);
    if (m) return new URL(m[1]!, res.url).toString();
  }
  return undefined;
}

export function withQuery(url: string, q: Record<string, string>): string {
  const u = new URL(url);
  for (const [k, v] of Object.entries(q)) u.searchParams.set(k, v);
  return u.toString();
}
