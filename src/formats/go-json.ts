// Go `encoding/json` compatibility (docs/formats.md §3.8).
//
// The reference hashes what Go's `json.Marshal` writes, and the snapshotter re-marshals the SOCI
// indexes it fetches, so every JSON document of §3 must be produced byte for byte as Go would.
// This module has two halves:
//
// * an encoder made of small building blocks that return JSON TEXT (a JS string holding only
//   well-formed UTF-16; `encodeUtf8` turns it into the bytes to hash):
//     goString, goInt, goBool, goBase64, goMap (sorted keys), goArray, goStruct (fixed field
//     order, omitted fields), goIndent (json.Indent / MarshalIndent layout);
// * a decoder with Go's semantics: `parseGoJson` checks the whole input first (Go's error
//   messages), repairs invalid UTF-8 as Go does, keeps number literals verbatim, and a small
//   toolkit (`decodeStruct`, `decodeGoString`, `decodeInt64`, ...) decodes into typed values the way
//   `json.Unmarshal` fills Go structs: exact-then-case-insensitive key matching, unknown keys
//   dropped, `null` leaving scalars untouched, decoding into the value already there (duplicate
//   keys merge structs and maps), `UnmarshalTypeError`-style messages.
import { InvalidArgumentError } from "../errors/errors.js";

// ------------------------------------------------------------------------------------------------
// UTF-8 helpers

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

/** UTF-8 bytes of a JSON text (or any string). Lone surrogates become U+FFFD. */
export function encodeUtf8(s: string): Uint8Array {
  return textEncoder.encode(s);
}

/**
 * Decodes one rune like Go's `utf8.DecodeRune`: returns [codePoint, size]; an invalid or
 * truncated sequence yields [-1, 1] (Go's `(RuneError, 1)`), so every bad byte is replaced alone.
 */
export function goDecodeRune(b: Uint8Array, i: number): [number, number] {
  const n = b.length - i;
  if (n <= 0) return [-1, 0];
  const x = b[i]!;
  if (x < 0x80) return [x, 1];
  let size: number;
  let lo = 0x80;
  let hi = 0xbf;
  if (x >= 0xc2 && x <= 0xdf) size = 2;
  else if (x >= 0xe0 && x <= 0xef) {
    size = 3;
    if (x === 0xe0) lo = 0xa0;
    else if (x === 0xed) hi = 0x9f;
  } else if (x >= 0xf0 && x <= 0xf4) {
    size = 4;
    if (x === 0xf0) lo = 0x90;
    else if (x === 0xf4) hi = 0x8f;
  } else return [-1, 1];
  if (n < size) return [-1, 1];
  const b1 = b[i + 1]!;
  if (b1 < lo || b1 > hi) return [-1, 1];
  if (size === 2) return [((x & 0x1f) << 6) | (b1 & 0x3f), 2];
  const b2 = b[i + 2]!;
  if (b2 < 0x80 || b2 > 0xbf) return [-1, 1];
  if (size === 3) return [((x & 0x0f) << 12) | ((b1 & 0x3f) << 6) | (b2 & 0x3f), 3];
  const b3 = b[i + 3]!;
  if (b3 < 0x80 || b3 > 0xbf) return [-1, 1];
  return [((x & 0x07) << 18) | ((b1 & 0x3f) << 12) | ((b2 & 0x3f) << 6) | (b3 & 0x3f), 4];
}

/** Decodes bytes as Go converts them when it must treat them as text: each bad byte → U+FFFD. */
export function goDecodeUtf8(b: Uint8Array): string {
  let out = "";
  let start = 0;
  let i = 0;
  while (i < b.length) {
    if (b[i]! < 0x80) {
      i++;
      continue;
    }
    const [r, size] = goDecodeRune(b, i);
    if (r < 0) {
      out += textDecoder.decode(b.subarray(start, i)) + "\ufffd";
      i += 1;
      start = i;
      continue;
    }
    i += size;
  }
  return out + textDecoder.decode(b.subarray(start));
}

/** Compares two strings by the bytes of their UTF-8 encodings (Go's string order). */
export function compareUtf8(a: string, b: string): number {
  if (a === b) return 0;
  return Buffer.compare(encodeUtf8(a), encodeUtf8(b));
}

// ------------------------------------------------------------------------------------------------
// Encoder

const HEX = "0123456789abcdef";

function escapeAscii(c: number): string | undefined {
  switch (c) {
    case 0x22:
      return '\\"';
    case 0x5c:
      return "\\\\";
    case 0x08:
      return "\\b";
    case 0x0c:
      return "\\f";
    case 0x0a:
      return "\\n";
    case 0x0d:
      return "\\r";
    case 0x09:
      return "\\t";
    case 0x3c:
    case 0x3e:
    case 0x26: // < > & (HTML-safe escaping, json.Marshal default)
      return "\\u00" + HEX[c >> 4]! + HEX[c & 0xf]!;
  }
  if (c < 0x20) return "\\u00" + HEX[c >> 4]! + HEX[c & 0xf]!;
  return undefined;
}

/**
 * A JSON string literal exactly as Go's `json.Marshal` writes it. A JS string is taken as text
 * (a lone surrogate becomes a literal U+FFFD, as Go's decoder would have produced); a byte array is
 * taken as a Go string of arbitrary bytes (each invalid UTF-8 byte becomes `\ufffd`).
 */
export function goString(s: string | Uint8Array): string {
  if (typeof s !== "string") return goStringBytes(s);
  let out = '"';
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    let rep: string | undefined;
    if (c < 0x80) {
      rep = escapeAscii(c);
    } else if (c === 0x2028 || c === 0x2029) {
      rep = c === 0x2028 ? "\\u2028" : "\\u2029";
    } else if (c >= 0xd800 && c <= 0xdfff) {
      const d = i + 1 < s.length ? s.charCodeAt(i + 1) : 0;
      if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) {
        i++;
        continue;
      }
      rep = "\ufffd";
    }
    if (rep === undefined) continue;
    out += s.slice(start, i) + rep;
    start = i + 1;
  }
  return out + s.slice(start) + '"';
}

function goStringBytes(b: Uint8Array): string {
  let out = '"';
  let start = 0;
  let i = 0;
  const flush = (end: number) => {
    if (end > start) out += textDecoder.decode(b.subarray(start, end));
  };
  while (i < b.length) {
    const c = b[i]!;
    if (c < 0x80) {
      const rep = escapeAscii(c);
      if (rep !== undefined) {
        flush(i);
        out += rep;
        start = i + 1;
      }
      i++;
      continue;
    }
    const [r, size] = goDecodeRune(b, i);
    if (r < 0) {
      flush(i);
      out += "\\ufffd";
      i += 1;
      start = i;
      continue;
    }
    if (r === 0x2028 || r === 0x2029) {
      flush(i);
      out += r === 0x2028 ? "\\u2028" : "\\u2029";
      i += size;
      start = i;
      continue;
    }
    i += size;
  }
  flush(b.length);
  return out + '"';
}

/** An integer in decimal (Go int/int64). Throws for non-integers and unsafe JS numbers. */
export function goInt(n: number | bigint): string {
  if (typeof n === "bigint") return n.toString(10);
  if (!Number.isSafeInteger(n)) throw new RangeError(`go-json: ${n} is not a safe integer`);
  return Object.is(n, -0) ? "0" : String(n);
}

export function goBool(b: boolean): string {
  return b ? "true" : "false";
}

/** Go's encoding of a []byte: standard base64 with padding in a JSON string (nil → null). */
export function goBase64(b: Uint8Array | null | undefined): string {
  if (b == null) return "null";
  return '"' + Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64") + '"';
}

/** Something enumerable as a Go `map[string]V`. */
export type GoMapInput<V> = Readonly<Record<string, V>> | ReadonlyMap<string, V>;

function mapEntries<V>(m: GoMapInput<V>): Array<[string, V]> {
  if (m instanceof Map) return [...(m as ReadonlyMap<string, V>).entries()];
  return Object.keys(m).map((k) => [k, (m as Readonly<Record<string, V>>)[k]!]);
}

/** Number of entries of a map input (for omitempty). */
export function goMapLen(m: GoMapInput<unknown> | null | undefined): number {
  if (m == null) return 0;
  return m instanceof Map ? m.size : Object.keys(m).length;
}

/**
 * A Go map: keys sorted by their UTF-8 bytes, values encoded with `enc` (default: strings).
 * `null`/`undefined` is a nil map → `null`.
 */
export function goMap<V = string>(
  m: GoMapInput<V> | null | undefined,
  enc: (v: V) => string = goString as unknown as (v: V) => string,
): string {
  if (m == null) return "null";
  const entries = mapEntries(m).map(([k, v]) => [k, goString(k), v] as const);
  // Keys of a Go map are distinct strings; JS keys that differ only in lone surrogates collapse in
  // Go too (both become U+FFFD) — sort by the encoded form so the order is still bytewise.
  entries.sort((a, b) => compareUtf8(a[0], b[0]));
  return "{" + entries.map(([, k, v]) => k + ":" + enc(v)).join(",") + "}";
}

/** A Go slice: `null` for nil, else `[e1,e2,...]`. */
export function goArray<T>(a: readonly T[] | null | undefined, enc: (v: T) => string): string {
  if (a == null) return "null";
  return "[" + a.map(enc).join(",") + "]";
}

/**
 * A Go struct: fields in declaration order; a field whose JSON is `undefined` is left out (use it
 * for omitempty fields that are empty). Keys are written as Go writes field names.
 */
export function goStruct(fields: ReadonlyArray<readonly [name: string, json: string | undefined]>): string {
  const parts: string[] = [];
  for (const [name, json] of fields) {
    if (json === undefined) continue;
    parts.push(goString(name) + ":" + json);
  }
  return "{" + parts.join(",") + "}";
}

/** omitempty helpers: the field's JSON, or `undefined` when Go would omit it. */
export const omitEmpty = {
  string(s: string | null | undefined): string | undefined {
    return s ? goString(s) : undefined;
  },
  int(n: number | bigint | null | undefined): string | undefined {
    return n ? goInt(n) : undefined;
  },
  bool(b: boolean | null | undefined): string | undefined {
    return b ? "true" : undefined;
  },
  map<V = string>(m: GoMapInput<V> | null | undefined, enc?: (v: V) => string): string | undefined {
    return goMapLen(m) > 0 ? goMap(m, enc) : undefined;
  },
  array<T>(a: readonly T[] | null | undefined, enc: (v: T) => string): string | undefined {
    return a && a.length > 0 ? goArray(a, enc) : undefined;
  },
  bytes(b: Uint8Array | null | undefined): string | undefined {
    return b && b.length > 0 ? goBase64(b) : undefined;
  },
  ptr<T>(p: T | null | undefined, enc: (v: T) => string): string | undefined {
    return p == null ? undefined : enc(p);
  },
};

// ------------------------------------------------------------------------------------------------
// json.Indent

/**
 * Re-indents JSON exactly like Go's `json.Indent(dst, src, prefix, indent)` (and hence the layout
 * of `json.MarshalIndent`): one element per line, `": "` after keys, `{}`/`[]` kept compact,
 * leading whitespace dropped, trailing whitespace kept, string contents copied byte for byte.
 * Returns the same kind it was given (text or bytes). Invalid JSON throws a GoJsonSyntaxError.
 */
export function goIndent(src: string, prefix?: string, indent?: string): string;
export function goIndent(src: Uint8Array, prefix?: string, indent?: string): Uint8Array;
export function goIndent(src: string | Uint8Array, prefix = "", indent = "  "): string | Uint8Array {
  const b = typeof src === "string" ? encodeUtf8(src) : src;
  const end = scanValid(b); // offset just past the top-level value; throws on invalid JSON
  const pre = encodeUtf8(prefix);
  const ind = encodeUtf8(indent);
  const out: number[] = [];
  const push = (bytes: Uint8Array) => {
    for (const x of bytes) out.push(x);
  };
  const newline = (depth: number) => {
    out.push(0x0a);
    push(pre);
    for (let i = 0; i < depth; i++) push(ind);
  };
  let depth = 0;
  let needIndent = false;
  let i = 0;
  while (i < end) {
    const c = b[i]!;
    if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) {
      i++;
      continue;
    }
    const closing = c === 0x7d || c === 0x5d;
    if (needIndent && !closing) {
      needIndent = false;
      depth++;
      newline(depth);
    }
    if (c === 0x22) {
      // copy the whole string literal verbatim
      let j = i + 1;
      while (b[j] !== 0x22) j += b[j] === 0x5c ? 2 : 1;
      for (let k = i; k <= j; k++) out.push(b[k]!);
      i = j + 1;
      continue;
    }
    switch (c) {
      case 0x7b:
      case 0x5b:
        needIndent = true;
        out.push(c);
        break;
      case 0x2c:
        out.push(c);
        newline(depth);
        break;
      case 0x3a:
        out.push(c, 0x20);
        break;
      case 0x7d:
      case 0x5d:
        if (needIndent) needIndent = false;
        else {
          depth--;
          newline(depth);
        }
        out.push(c);
        break;
      default:
        out.push(c);
    }
    i++;
  }
  for (let k = end; k < b.length; k++) out.push(b[k]!); // trailing whitespace is preserved
  const res = Uint8Array.from(out);
  return typeof src === "string" ? textDecoder.decode(res) : res;
}

// ------------------------------------------------------------------------------------------------
// Decoder: syntax

/** Go's `*json.SyntaxError` (message text matches Go's). */
export class GoJsonSyntaxError extends InvalidArgumentError {
  override name = "GoJsonSyntaxError";
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(message);
  }
}

/** Go's `*json.UnmarshalTypeError` and friends (message starts with `json: `). */
export class GoJsonTypeError extends InvalidArgumentError {
  override name = "GoJsonTypeError";
}

/** A JSON number, kept as its literal text (Go decodes it according to the target type). */
export class JsonNumber {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

/** A JSON object: its members in document order, duplicates included. */
export class JsonObject {
  constructor(readonly entries: ReadonlyArray<readonly [string, JsonValue]>) {}
  /** The value of the LAST member with exactly this key (what a Go map would keep). */
  get(key: string): JsonValue | undefined {
    for (let i = this.entries.length - 1; i >= 0; i--) if (this.entries[i]![0] === key) return this.entries[i]![1];
    return undefined;
  }
}

export type JsonValue = null | boolean | string | JsonNumber | JsonValue[] | JsonObject;

function quoteChar(c: number | undefined): string {
  if (c === undefined) return "EOF";
  if (c === 0x27) return "'\\''";
  if (c === 0x22) return "'\"'";
  const simple: Record<number, string> = {
    7: "\\a",
    8: "\\b",
    9: "\\t",
    10: "\\n",
    11: "\\v",
    12: "\\f",
    13: "\\r",
    0x5c: "\\\\",
  };
  if (simple[c]) return `'${simple[c]}'`;
  if (c < 0x20 || c === 0x7f) return `'\\x${HEX[c >> 4]}${HEX[c & 0xf]}'`;
  if (c >= 0x80 && (c < 0xa0 || c === 0xad)) return `'\\u00${HEX[c >> 4]}${HEX[c & 0xf]}'`;
  return `'${String.fromCharCode(c)}'`;
}

class Parser {
  i = 0;
  constructor(readonly b: Uint8Array) {}

  fail(context: string): never {
    if (this.i >= this.b.length) throw new GoJsonSyntaxError("unexpected end of JSON input", this.b.length);
    throw new GoJsonSyntaxError(`invalid character ${quoteChar(this.b[this.i])} ${context}`, this.i + 1);
  }

  ws(): void {
    const b = this.b;
    while (this.i < b.length) {
      const c = b[this.i];
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) this.i++;
      else break;
    }
  }

  value(build: boolean): JsonValue {
    this.ws();
    const b = this.b;
    const c = b[this.i];
    switch (c) {
      case 0x7b:
        return this.object(build);
      case 0x5b:
        return this.array(build);
      case 0x22:
        return this.string(build);
      case 0x74:
        this.literal("true");
        return true;
      case 0x66:
        this.literal("false");
        return false;
      case 0x6e:
        this.literal("null");
        return null;
    }
    if (c === 0x2d || (c !== undefined && c >= 0x30 && c <= 0x39)) return this.number();
    return this.fail("looking for beginning of value");
  }

  literal(word: string): void {
    for (let k = 0; k < word.length; k++) {
      if (this.b[this.i] !== word.charCodeAt(k)) {
        if (k === 0) this.fail("looking for beginning of value");
        this.fail(`in literal ${word} (expecting '${word[k]}')`);
      }
      this.i++;
    }
  }

  number(): JsonNumber {
    const b = this.b;
    const start = this.i;
    const digit = (x: number | undefined) => x !== undefined && x >= 0x30 && x <= 0x39;
    if (b[this.i] === 0x2d) {
      this.i++;
      if (!digit(b[this.i])) this.fail("in numeric literal");
    }
    if (b[this.i] === 0x30) this.i++;
    else while (digit(b[this.i])) this.i++;
    if (b[this.i] === 0x2e) {
      this.i++;
      if (!digit(b[this.i])) this.fail("after decimal point in numeric literal");
      while (digit(b[this.i])) this.i++;
    }
    if (b[this.i] === 0x65 || b[this.i] === 0x45) {
      this.i++;
      if (b[this.i] === 0x2b || b[this.i] === 0x2d) this.i++;
      if (!digit(b[this.i])) this.fail("in exponent of numeric literal");
      while (digit(b[this.i])) this.i++;
    }
    return new JsonNumber(textDecoder.decode(b.subarray(start, this.i)));
  }

  hex4(): number {
    let v = 0;
    for (let k = 0; k < 4; k++) {
      const c = this.b[this.i];
      let d: number;
      if (c !== undefined && c >= 0x30 && c <= 0x39) d = c - 0x30;
      else if (c !== undefined && c >= 0x61 && c <= 0x66) d = c - 0x57;
      else if (c !== undefined && c >= 0x41 && c <= 0x46) d = c - 0x37;
      else return this.fail("in \\u hexadecimal character escape");
      v = v * 16 + d;
      this.i++;
    }
    return v;
  }

  string(build: boolean): string {
    const b = this.b;
    this.i++; // opening quote
    let out = "";
    let runStart = this.i;
    const flush = () => {
      if (build && this.i > runStart) out += goDecodeUtf8(b.subarray(runStart, this.i));
    };
    for (;;) {
      const c = b[this.i];
      if (c === undefined) this.fail("in string literal");
      if (c === 0x22) {
        flush();
        this.i++;
        return out;
      }
      if (c < 0x20) this.fail("in string literal");
      if (c !== 0x5c) {
        this.i++;
        continue;
      }
      flush();
      this.i++;
      const e = b[this.i];
      const simple: Record<number, string> = {
        0x22: '"',
        0x5c: "\\",
        0x2f: "/",
        0x62: "\b",
        0x66: "\f",
        0x6e: "\n",
        0x72: "\r",
        0x74: "\t",
      };
      if (e !== undefined && simple[e] !== undefined) {
        out += simple[e];
        this.i++;
      } else if (e === 0x75) {
        this.i++;
        let r = this.hex4();
        if (r >= 0xd800 && r <= 0xdfff) {
          // Go combines a valid surrogate pair; anything else becomes U+FFFD.
          const save = this.i;
          let combined = -1;
          if (r <= 0xdbff && b[this.i] === 0x5c && b[this.i + 1] === 0x75) {
            this.i += 2;
            const r2 = this.hex4();
            if (r2 >= 0xdc00 && r2 <= 0xdfff) combined = 0x10000 + ((r - 0xd800) << 10) + (r2 - 0xdc00);
            else this.i = save;
          }
          r = combined >= 0 ? combined : 0xfffd;
        }
        out += String.fromCodePoint(r);
      } else {
        this.fail("in string escape code");
      }
      runStart = this.i;
    }
  }

  array(build: boolean): JsonValue[] {
    this.i++;
    const out: JsonValue[] = [];
    this.ws();
    if (this.b[this.i] === 0x5d) {
      this.i++;
      return out;
    }
    for (;;) {
      const v = this.value(build);
      if (build) out.push(v);
      this.ws();
      const c = this.b[this.i];
      if (c === 0x2c) {
        this.i++;
        continue;
      }
      if (c === 0x5d) {
        this.i++;
        return out;
      }
      this.fail("after array element");
    }
  }

  object(build: boolean): JsonObject {
    this.i++;
    const out: Array<[string, JsonValue]> = [];
    this.ws();
    if (this.b[this.i] === 0x7d) {
      this.i++;
      return new JsonObject(out);
    }
    for (;;) {
      this.ws();
      if (this.b[this.i] !== 0x22) this.fail("looking for beginning of object key string");
      const k = this.string(build);
      this.ws();
      if (this.b[this.i] !== 0x3a) this.fail("after object key");
      this.i++;
      const v = this.value(build);
      if (build) out.push([k, v]);
      this.ws();
      const c = this.b[this.i];
      if (c === 0x2c) {
        this.i++;
        continue;
      }
      if (c === 0x7d) {
        this.i++;
        return new JsonObject(out);
      }
      this.fail("after object key:value pair");
    }
  }
}

function runParser(b: Uint8Array, build: boolean): [JsonValue, number] {
  const p = new Parser(b);
  const v = p.value(build);
  const end = p.i;
  p.ws();
  if (p.i < b.length) p.fail("after top-level value");
  return [v, end];
}

/** Checks `b` is one JSON value (Go's checkValid); returns the offset just past the value. */
function scanValid(b: Uint8Array): number {
  return runParser(b, false)[1];
}

/** Whether the bytes are valid JSON (Go's `json.Valid`). */
export function goJsonValid(b: Uint8Array | string): boolean {
  try {
    scanValid(typeof b === "string" ? encodeUtf8(b) : b);
    return true;
  } catch {
    return false;
  }
}

/**
 * Parses JSON the way Go's decoder reads it: the whole input is validated first (Go's syntax error
 * messages), strings are unescaped with Go's rules (invalid UTF-8 bytes and unpaired surrogate
 * escapes → U+FFFD), numbers stay literal, objects keep duplicate members in order.
 */
export function parseGoJson(input: Uint8Array | string): JsonValue {
  const b = typeof input === "string" ? encodeUtf8(input) : input;
  return runParser(b, true)[0];
}

// ------------------------------------------------------------------------------------------------
// Decoder: typed decoding with json.Unmarshal semantics

/** Where a value sits, for error messages: the Go struct type and the field path. */
export interface DecodeContext {
  /** Go type name of the innermost struct being decoded (e.g. "Descriptor"); "" at the top. */
  struct: string;
  /** JSON field names from the top-level value. */
  path: readonly string[];
  /** Go type name of the top-level value, for `into Go value of type X`. */
  top: string;
}

export function topContext(goTypeName: string): DecodeContext {
  return { struct: "", path: [], top: goTypeName };
}

function kindOf(v: JsonValue): string {
  if (v === null) return "null";
  if (typeof v === "boolean") return "bool";
  if (typeof v === "string") return "string";
  if (v instanceof JsonNumber) return "number";
  if (Array.isArray(v)) return "array";
  return "object";
}

/** Throws Go's `json: cannot unmarshal <kind> into Go ...` error. */
export function typeError(what: string, ctx: DecodeContext, goType: string): never {
  if (ctx.path.length === 0 || ctx.struct === "") {
    throw new GoJsonTypeError(`json: cannot unmarshal ${what} into Go value of type ${goType}`);
  }
  throw new GoJsonTypeError(
    `json: cannot unmarshal ${what} into Go struct field ${ctx.struct}.${ctx.path.join(".")} of type ${goType}`,
  );
}

/** Go string field: null keeps `cur`. */
export function decodeGoString(v: JsonValue, cur: string | undefined, ctx: DecodeContext): string | undefined {
  if (v === null) return cur;
  if (typeof v !== "string") typeError(kindOf(v), ctx, "string");
  return v;
}

/** Go bool field: null keeps `cur`. */
export function decodeGoBool(v: JsonValue, cur: boolean | undefined, ctx: DecodeContext): boolean | undefined {
  if (v === null) return cur;
  if (typeof v !== "boolean") typeError(kindOf(v), ctx, "bool");
  return v;
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/**
 * Go int64/int field (64-bit): the literal must be an integer (no fraction/exponent) within int64.
 * Values outside JS's safe integer range are rejected (Go would accept them up to 2^63-1).
 */
export function decodeInt64(
  v: JsonValue,
  cur: number | undefined,
  ctx: DecodeContext,
  goType = "int64",
): number | undefined {
  if (v === null) return cur;
  if (!(v instanceof JsonNumber)) return typeError(kindOf(v), ctx, goType);
  if (!/^-?(0|[1-9][0-9]*)$/.test(v.text)) return typeError(`number ${v.text}`, ctx, goType);
  const big = BigInt(v.text);
  if (big < INT64_MIN || big > INT64_MAX) return typeError(`number ${v.text}`, ctx, goType);
  const n = Number(big);
  if (!Number.isSafeInteger(n)) {
    throw new GoJsonTypeError(
      `json: number ${v.text} ${fieldWhere(ctx)}is too large for this implementation (max ${Number.MAX_SAFE_INTEGER})`,
    );
  }
  return n;
}

function fieldWhere(ctx: DecodeContext): string {
  return ctx.path.length ? `in field ${ctx.path.join(".")} ` : "";
}

/** Go []byte field: base64 (standard alphabet, padding; `\r`/`\n` ignored). null → nil. */
export function decodeGoBytes(v: JsonValue, _cur: Uint8Array | undefined, ctx: DecodeContext): Uint8Array | undefined {
  if (v === null) return undefined;
  if (typeof v !== "string") return typeError(kindOf(v), ctx, "[]uint8");
  const s = v.replace(/[\r\n]/g, "");
  const ok = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(s);
  if (!ok) throw new GoJsonTypeError(`illegal base64 data ${fieldWhere(ctx)}`.trimEnd());
  return new Uint8Array(Buffer.from(s, "base64"));
}

/**
 * Go slice field: null → nil (`null`); an array is decoded element by element INTO the existing
 * elements (Go reuses them), then truncated to the array's length. Non-arrays are type errors.
 */
export function decodeGoSlice<T>(
  v: JsonValue,
  cur: T[] | null | undefined,
  ctx: DecodeContext,
  goType: string,
  elem: (v: JsonValue, cur: T | undefined, ctx: DecodeContext) => T,
): T[] | null {
  if (v === null) return null;
  if (!Array.isArray(v)) return typeError(kindOf(v), ctx, goType);
  const out: T[] = [];
  for (let i = 0; i < v.length; i++) out.push(elem(v[i]!, cur ? cur[i] : undefined, ctx));
  return out;
}

/** Record with a safe assignment of any key (including `__proto__`). */
export function setRecord<V>(r: Record<string, V>, k: string, v: V): void {
  if (k === "__proto__")
    Object.defineProperty(r, k, { value: v, enumerable: true, writable: true, configurable: true });
  else r[k] = v;
}

/**
 * Go map[string]string field: null → nil (undefined); an object adds its members to the existing
 * map (Go reuses a non-nil map); a null member value stores "".
 */
export function decodeGoStringMap(
  v: JsonValue,
  cur: Record<string, string> | undefined,
  ctx: DecodeContext,
): Record<string, string> | undefined {
  if (v === null) return undefined;
  if (!(v instanceof JsonObject)) return typeError(kindOf(v), ctx, "map[string]string");
  const out: Record<string, string> = cur ? { ...cur } : {};
  for (const [k, val] of v.entries) {
    setRecord(out, k, decodeGoString(val, "", ctx) ?? "");
  }
  return out;
}

/** Go's case folding for field-name matching (bytes.EqualFold; K and ſ fold to k and s). */
function foldName(s: string): string {
  return s.replace(/[A-Z\u212a\u017f]/g, (c) => (c === "\u212a" ? "k" : c === "\u017f" ? "s" : c.toLowerCase()));
}

/** One field of a Go struct: its JSON name, Go type name, and how to decode into the target. */
export interface FieldSpec<T> {
  name: string;
  decode: (v: JsonValue, target: T, ctx: DecodeContext) => void;
}

/**
 * Decodes a JSON object into `target` as Go fills a struct: for each member (document order) the
 * field with exactly that name, else the field whose name matches case-insensitively, is decoded
 * into; unknown members are skipped. `null` leaves the struct untouched. Returns whether a value
 * (not null) was present.
 */
export function decodeStruct<T>(
  v: JsonValue,
  target: T,
  ctx: DecodeContext,
  structName: string,
  goTypeName: string,
  fields: ReadonlyArray<FieldSpec<T>>,
): boolean {
  if (v === null) return false;
  if (!(v instanceof JsonObject)) typeError(kindOf(v), ctx, goTypeName);
  const exact = new Map<string, FieldSpec<T>>();
  const folded = new Map<string, FieldSpec<T>>();
  for (const f of fields) {
    exact.set(f.name, f);
    const k = foldName(f.name);
    if (!folded.has(k)) folded.set(k, f);
  }
  for (const [k, val] of v.entries) {
    const f = exact.get(k) ?? folded.get(foldName(k));
    if (!f) continue;
    f.decode(val, target, { struct: structName, path: [...ctx.path, f.name], top: ctx.top });
  }
  return true;
}
