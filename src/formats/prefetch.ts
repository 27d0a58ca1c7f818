// Prefetch artifacts (docs/formats.md §3.7; soci/prefetch.go): the JSON document, span-range merging
// and the cleaning of requested paths.

import { InvalidArgumentError } from "../errors/errors.js";
import {
  decodeGoSlice,
  decodeGoString,
  decodeInt64,
  decodeStruct,
  encodeUtf8,
  goArray,
  goInt,
  goString,
  goStruct,
  omitEmpty,
  parseGoJson,
  topContext,
  type FieldSpec,
} from "./go-json.js";
import { digestOf, type Descriptor } from "./oci.js";

export const PrefetchArtifactMediaType = "application/vnd.amazon.soci.prefetch.v1+json";
export const PrefetchArtifactVersion = "1.0";

/** `ErrEmptyPrefetchArtifact`. */
export const ErrEmptyPrefetchArtifactMessage = "prefetch artifact is empty";

export class PrefetchArtifactError extends InvalidArgumentError {
  override name = "PrefetchArtifactError";
}

/** An inclusive range of span ids; `priority` omitted from JSON when 0. */
export interface PrefetchSpan {
  startSpan: number;
  endSpan: number;
  priority?: number;
}

export interface PrefetchArtifact {
  version: string;
  /** JSON `prefetch_spans` (always written; nil → null). */
  prefetchSpans: PrefetchSpan[] | null;
}

export function newPrefetchArtifact(spans: PrefetchSpan[] = []): PrefetchArtifact {
  return { version: PrefetchArtifactVersion, prefetchSpans: spans };
}

function spanJson(s: PrefetchSpan): string {
  return goStruct([
    ["start_span", goInt(s.startSpan)],
    ["end_span", goInt(s.endSpan)],
    ["priority", omitEmpty.int(s.priority)],
  ]);
}

/** Go-JSON text of an artifact (no emptiness check). */
export function prefetchArtifactJson(a: PrefetchArtifact): string {
  return goStruct([
    ["version", goString(a.version)],
    ["prefetch_spans", goArray(a.prefetchSpans, spanJson)],
  ]);
}

/**
 * `MarshalPrefetchArtifact`: Go-JSON bytes, digest, size and descriptor
 * `{mediaType: prefetch type, digest, size}`. A nil or span-less artifact is an error
 * (`prefetch artifact is empty`).
 */
export function marshalPrefetchArtifact(a: PrefetchArtifact | null | undefined): {
  bytes: Uint8Array;
  digest: string;
  size: number;
  descriptor: Descriptor;
} {
  if (a == null || !a.prefetchSpans || a.prefetchSpans.length === 0) {
    throw new PrefetchArtifactError(ErrEmptyPrefetchArtifactMessage);
  }
  const bytes = encodeUtf8(prefetchArtifactJson(a));
  const digest = digestOf(bytes);
  return {
    bytes,
    digest,
    size: bytes.length,
    descriptor: { mediaType: PrefetchArtifactMediaType, digest, size: bytes.length },
  };
}

const spanFields: FieldSpec<PrefetchSpan>[] = [
  {
    name: "start_span",
    decode: (v, t, c) => {
      t.startSpan = decodeInt64(v, t.startSpan, c, "compression.SpanID") ?? 0;
    },
  },
  {
    name: "end_span",
    decode: (v, t, c) => {
      t.endSpan = decodeInt64(v, t.endSpan, c, "compression.SpanID") ?? 0;
    },
  },
  {
    name: "priority",
    decode: (v, t, c) => {
      const p = decodeInt64(v, t.priority, c, "int");
      if (p) t.priority = p;
      else delete t.priority;
    },
  },
];

const artifactFields: FieldSpec<PrefetchArtifact>[] = [
  {
    name: "version",
    decode: (v, t, c) => {
      t.version = decodeGoString(v, t.version, c) ?? "";
    },
  },
  {
    name: "prefetch_spans",
    decode: (v, t, c) => {
      t.prefetchSpans = decodeGoSlice(v, t.prefetchSpans, c, "[]soci.PrefetchSpan", (e, cur, cc) => {
        const s: PrefetchSpan = cur ? { ...cur } : { startSpan: 0, endSpan: 0 };
        decodeStruct(e, s, cc, "PrefetchSpan", "soci.PrefetchSpan", spanFields);
        return s;
      });
    },
  },
];

/**
 * `UnmarshalPrefetchArtifact`: JSON errors → `failed to unmarshal prefetch artifact: ...`; version
 * must be "1.0" (`unsupported prefetch artifact version: X (expected 1.0)`); the span list must be
 * non-empty (`prefetch artifact is empty`).
 */
export function parsePrefetchArtifact(bytes: Uint8Array | string): PrefetchArtifact {
  const a: PrefetchArtifact = { version: "", prefetchSpans: null };
  try {
    decodeStruct(
      parseGoJson(bytes),
      a,
      topContext("soci.PrefetchArtifact"),
      "PrefetchArtifact",
      "soci.PrefetchArtifact",
      artifactFields,
    );
  } catch (e) {
    throw new PrefetchArtifactError(`failed to unmarshal prefetch artifact: ${(e as Error).message}`, { cause: e });
  }
  if (a.version !== PrefetchArtifactVersion) {
    throw new PrefetchArtifactError(
      `unsupported prefetch artifact version: ${a.version} (expected ${PrefetchArtifactVersion})`,
    );
  }
  if (!a.prefetchSpans || a.prefetchSpans.length === 0)
    throw new PrefetchArtifactError(ErrEmptyPrefetchArtifactMessage);
  return a;
}

/** Number of spans an artifact covers: Σ(end − start + 1) (`prefetch list` SPANS column). */
export function totalPrefetchSpans(a: PrefetchArtifact): number {
  let n = 0;
  for (const s of a.prefetchSpans ?? []) n += s.endSpan - s.startSpan + 1;
  return n;
}

/**
 * `normalizePrefetchSpans`: sorts by (start, end) and merges a range into the previous one when
 * `next.start <= cur.end + 1` (overlapping or adjacent). Empty input → empty output (nil in Go).
 * Priorities are not carried (the builder never sets them).
 */
export function normalizePrefetchSpans(spans: readonly PrefetchSpan[]): PrefetchSpan[] {
  if (spans.length === 0) return [];
  const sorted = spans
    .map((s) => ({ startSpan: s.startSpan, endSpan: s.endSpan }))
    .sort((a, b) => a.startSpan - b.startSpan || a.endSpan - b.endSpan);
  const out: PrefetchSpan[] = [{ ...sorted[0]! }];
  for (let i = 1; i < sorted.length; i++) {
    const cur = out[out.length - 1]!;
    const next = sorted[i]!;
    if (next.startSpan <= cur.endSpan + 1) {
      if (next.endSpan > cur.endSpan) cur.endSpan = next.endSpan;
    } else {
      out.push({ ...next });
    }
  }
  return out;
}

/**
 * The span range of a file: `[SpanID(offset), SpanID(offset+size)]` with the EXCLUSIVE end offset,
 * `end < start` ⇒ `end = start`. `spanOf` maps an uncompressed offset to its span id.
 */
export function fileSpanRange(
  offset: number,
  size: number,
  spanOf: (uncompressedOffset: number) => number,
): PrefetchSpan {
  const startSpan = spanOf(offset);
  let endSpan = spanOf(offset + size);
  if (endSpan < startSpan) endSpan = startSpan;
  return { startSpan, endSpan };
}

/** Go `path.Clean` (lexical: `//`, `.`, `..` resolved; no trailing slash; "" → "."). */
export function goCleanPath(p: string): string {
  if (p === "") return ".";
  const rooted = p.startsWith("/");
  const out: string[] = [];
  for (const seg of p.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") {
      if (out.length > 0 && out[out.length - 1] !== "..") out.pop();
      else if (!rooted) out.push("..");
      continue;
    }
    out.push(seg);
  }
  const body = out.join("/");
  if (rooted) return "/" + body;
  return body === "" ? "." : body;
}

/**
 * How a requested prefetch path is matched against TOC names:
 * `strings.TrimPrefix(filepath.Clean("/"+p), "/")` — `/app/x` and `app/x` give `app/x`, trailing
 * slashes and `..` above the root vanish, `/` gives "".
 */
export function cleanPrefetchPath(p: string): string {
  const c = goCleanPath("/" + p);
  return c.startsWith("/") ? c.slice(1) : c;
}
