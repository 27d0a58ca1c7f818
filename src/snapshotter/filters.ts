// containerd's filter language (containerd/filters), as List uses it (docs/snapshotter.md §1.6):
//   filters   := one string per filter, OR-ed together (no strings: everything matches)
//   selectors := selector ("," selector)*            AND-ed
//   selector  := fieldpath [operator value]          no operator: the field is present
//   fieldpath := field ("." field)*                  field: [A-Za-z0-9_-]+ or quoted
//   operator  := "==" | "!=" | "~="                  ~= is a regular expression search
//   value     := quoted | run of characters up to "," or white space
//   quoted    := "…", /…/ or |…| with Go escapes (the last two spare escaping in regexps)
// containerd compiles a bad regexp lazily and then matches nothing; we reject it up front so the
// caller learns why.
import { InvalidArgumentError } from "../errors/errors.js";

export type FieldLookup = (fieldpath: string[]) => { value: string; present: boolean };

type Operator = "present" | "==" | "!=" | "~=";

interface Selector {
  fieldpath: string[];
  op: Operator;
  value: string;
  re?: RegExp;
}

/** A parsed filter list: matches when any of its filters matches. */
export interface Filter {
  match(lookup: FieldLookup): boolean;
}

export class FilterSyntaxError extends InvalidArgumentError {
  override name = "FilterSyntaxError";
}

export const MATCH_ALL: Filter = { match: () => true };

/** Parses the filters of a List request (OR-ed). */
export function parseFilters(filters: readonly string[]): Filter {
  if (filters.length === 0) return MATCH_ALL;
  const parsed = filters.map(parseFilter);
  return { match: (lookup) => parsed.some((f) => f.match(lookup)) };
}

/** Parses one filter string (comma-separated selectors, AND-ed). The empty string matches all. */
export function parseFilter(input: string): Filter {
  if (input === "") return MATCH_ALL;
  const selectors = new Parser(input).selectors();
  return { match: (lookup) => selectors.every((s) => matchSelector(s, lookup)) };
}

function matchSelector(s: Selector, lookup: FieldLookup): boolean {
  const { value, present } = lookup(s.fieldpath);
  switch (s.op) {
    case "present":
      return present;
    case "==":
      return present && value === s.value;
    case "!=":
      return value !== s.value;
    case "~=":
      return s.re!.test(value);
  }
}

type Token =
  | { kind: "eof"; pos: number }
  | { kind: "field" | "value" | "quoted" | "operator" | "separator" | "illegal"; pos: number; text: string };

const isFieldChar = (c: string) => /^[A-Za-z0-9_-]$/.test(c);
const isQuoteChar = (c: string) => c === '"' || c === "/" || c === "|";
const isOperatorChar = (c: string) => c === "=" || c === "!" || c === "~";
const isSpace = (c: string) => /^\s$/u.test(c);

/** Splits the input into tokens; a token after an operator is read as a value. */
class Scanner {
  private pos = 0;
  private afterOperator = false;
  constructor(private readonly input: string) {}

  peek(): Token {
    const { pos, afterOperator } = this;
    const tok = this.next();
    this.pos = pos;
    this.afterOperator = afterOperator;
    return tok;
  }

  next(): Token {
    const s = this.input;
    while (this.pos < s.length && isSpace(s[this.pos]!)) this.pos++;
    const start = this.pos;
    if (start >= s.length) return { kind: "eof", pos: start };
    const c = s[start]!;
    if (c === "\0") return { kind: "illegal", pos: start, text: c };
    if (isQuoteChar(c)) {
      const end = this.quotedEnd(start);
      this.afterOperator = false;
      if (end < 0) {
        this.pos = s.length;
        return { kind: "illegal", pos: start, text: s.slice(start) };
      }
      this.pos = end;
      return { kind: "quoted", pos: start, text: s.slice(start, end) };
    }
    if (c === "," || c === ".") {
      this.pos++;
      this.afterOperator = false;
      return { kind: "separator", pos: start, text: c };
    }
    if (isOperatorChar(c)) {
      while (this.pos < s.length && isOperatorChar(s[this.pos]!)) this.pos++;
      this.afterOperator = true;
      return { kind: "operator", pos: start, text: s.slice(start, this.pos) };
    }
    if (this.afterOperator) {
      while (this.pos < s.length && s[this.pos] !== "," && !isSpace(s[this.pos]!)) this.pos++;
      this.afterOperator = false;
      return { kind: "value", pos: start, text: s.slice(start, this.pos) };
    }
    if (isFieldChar(c)) {
      while (this.pos < s.length && isFieldChar(s[this.pos]!)) this.pos++;
      return { kind: "field", pos: start, text: s.slice(start, this.pos) };
    }
    this.pos++;
    return { kind: "illegal", pos: start, text: c };
  }

  /** Index just past the closing quote of the literal opening at `start`, or -1 if unterminated. */
  private quotedEnd(start: number): number {
    const s = this.input;
    const quote = s[start];
    for (let i = start + 1; i < s.length; i++) {
      const c = s[i];
      if (c === "\n") return -1;
      if (c === "\\") i++;
      else if (c === quote) return i + 1;
    }
    return -1;
  }
}

class Parser {
  private readonly scanner: Scanner;
  constructor(private readonly input: string) {
    this.scanner = new Scanner(input);
  }

  selectors(): Selector[] {
    const out = [this.selector()];
    for (;;) {
      const tok = this.scanner.peek();
      if (tok.kind === "eof") return out;
      if (tok.kind === "separator" && tok.text === ",") {
        this.scanner.next();
        out.push(this.selector());
        continue;
      }
      throw this.error(tok.pos, `unexpected input: ${"text" in tok ? tok.text : ""}`);
    }
  }

  private selector(): Selector {
    const fieldpath = this.fieldpath();
    const next = this.scanner.peek();
    if (next.kind === "eof" || (next.kind === "separator" && next.text === ",")) {
      return { fieldpath, op: "present", value: "" };
    }
    const opTok = this.scanner.next();
    if (opTok.kind !== "operator") throw this.error(opTok.pos, 'expected an operator ("=="|"!="|"~=")');
    if (opTok.text !== "==" && opTok.text !== "!=" && opTok.text !== "~=") {
      throw this.error(opTok.pos, `unsupported operator "${opTok.text}"`);
    }
    const valTok = this.scanner.next();
    let value: string;
    if (valTok.kind === "value" || valTok.kind === "field") value = valTok.text;
    else if (valTok.kind === "quoted") value = this.unquote(valTok.pos, valTok.text);
    else if (valTok.kind === "eof") throw this.error(valTok.pos, "unexpected end of input: expected a value");
    else throw this.error(valTok.pos, "expected value or quoted");
    const sel: Selector = { fieldpath, op: opTok.text, value };
    if (sel.op === "~=") sel.re = compileRegexp(value, (msg) => this.error(valTok.pos, msg));
    return sel;
  }

  private fieldpath(): string[] {
    const out = [this.field()];
    while (true) {
      const tok = this.scanner.peek();
      if (tok.kind !== "separator" || tok.text !== ".") return out;
      this.scanner.next();
      out.push(this.field());
    }
  }

  private field(): string {
    const tok = this.scanner.next();
    if (tok.kind === "field") return tok.text;
    if (tok.kind === "quoted") return this.unquote(tok.pos, tok.text);
    throw this.error(tok.pos, "expected field or quoted");
  }

  private unquote(pos: number, text: string): string {
    try {
      return unquote(text);
    } catch (err) {
      throw this.error(pos, `unquoting failed: ${(err as Error).message}`);
    }
  }

  /** containerd's error shape: the input with the offending character marked. */
  private error(pos: number, msg: string): FilterSyntaxError {
    const s = this.input;
    const where = pos < s.length ? `[${s.slice(0, pos)} >|${s[pos]}|< ${s.slice(pos + 1)}]` : `[${s}]`;
    return new FilterSyntaxError(`filters: parse error: ${where}: ${msg}`);
  }
}

const SIMPLE_ESCAPES: Record<string, string> = {
  a: "\x07",
  b: "\b",
  f: "\f",
  n: "\n",
  r: "\r",
  t: "\t",
  v: "\v",
  "\\": "\\",
};

/** Go-style unquoting with `"`, `/` or `|` as the delimiter (only that delimiter may be escaped). */
export function unquote(text: string): string {
  const quote = text[0]!;
  if (text.length < 2 || text[text.length - 1] !== quote || !isQuoteChar(quote))
    throw new FilterSyntaxError("quote syntax error");
  const body = text.slice(1, -1);
  const bytes: number[] = [];
  const pushChar = (ch: string) => bytes.push(...Buffer.from(ch, "utf8"));
  for (let i = 0; i < body.length; ) {
    const c = body[i]!;
    if (c === quote) throw new FilterSyntaxError("quote syntax error");
    if (c !== "\\") {
      const cp = body.codePointAt(i)!;
      const ch = String.fromCodePoint(cp);
      pushChar(ch);
      i += ch.length;
      continue;
    }
    const e = body[i + 1];
    if (e === undefined) throw new FilterSyntaxError("quote syntax error");
    i += 2;
    if (e in SIMPLE_ESCAPES) pushChar(SIMPLE_ESCAPES[e]!);
    else if (e === quote) pushChar(e);
    else if (e === "x" || e === "u" || e === "U") {
      const n = e === "x" ? 2 : e === "u" ? 4 : 8;
      const hex = body.slice(i, i + n);
      if (hex.length !== n || !/^[0-9a-fA-F]+$/.test(hex)) throw new FilterSyntaxError("quote syntax error");
      i += n;
      const v = parseInt(hex, 16);
      if (e === "x")
        bytes.push(v); // a raw byte, as Go allows
      else if (v > 0x10ffff) throw new FilterSyntaxError("quote syntax error");
      else pushChar(String.fromCodePoint(v));
    } else if (e >= "0" && e <= "7") {
      const oct = e + body.slice(i, i + 2);
      if (!/^[0-7]{3}$/.test(oct) || parseInt(oct, 8) > 255) throw new FilterSyntaxError("quote syntax error");
      i += 2;
      bytes.push(parseInt(oct, 8));
    } else throw new FilterSyntaxError("quote syntax error");
  }
  return Buffer.from(bytes).toString("utf8");
}

/**
 * Compiles a Go (RE2) regexp as a JS one. Both search unanchored; a leading Go flag group such as
 * `(?i)` becomes a JS flag.
 */
function compileRegexp(source: string, fail: (msg: string) => Error): RegExp {
  // No `u` flag: RE2 accepts escaped punctuation such as `\:` or `\-`, which `u` would reject.
  let flags = "";
  const m = /^\(\?([imsU]+)\)/.exec(source);
  if (m && !m[1]!.includes("U")) {
    flags += m[1]!;
    source = source.slice(m[0].length);
  }
  try {
    return new RegExp(source, flags);
  } catch (err) {
    throw fail(`invalid regular expression: ${(err as Error).message}`);
  }
}
