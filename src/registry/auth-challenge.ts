// `WWW-Authenticate` parsing (RFC 7235 §4.1 / §2.1): one header value may hold several challenges,
// each `auth-scheme [ token68 / #auth-param ]`, params `name = token / quoted-string` (with `\`
// escapes). Scheme and parameter names are case-insensitive (returned lower-case).

export interface Challenge {
  /** lower-cased auth scheme, e.g. "bearer", "basic" */
  scheme: string;
  /** lower-cased parameter names → values (quotes and escapes removed) */
  params: Record<string, string>;
  /** token68 form (e.g. `Negotiate abc==`), if the challenge used it */
  token68?: string;
}

const TCHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/;
const TOKEN68CHAR = /[A-Za-z0-9\-._~+/]/;

/** Parses every challenge in a `WWW-Authenticate` value; malformed tails are dropped, not thrown. */
export function parseWwwAuthenticate(header: string): Challenge[] {
  const s = header;
  let i = 0;
  const out: Challenge[] = [];

  const skipWs = (): void => {
    while (i < s.length && (s[i] === " " || s[i] === "\t")) i++;
  };
  const readToken = (): string => {
    const start = i;
    while (i < s.length && TCHAR.test(s[i]!)) i++;
    return s.slice(start, i);
  };
  const readQuoted = (): string | undefined => {
    // s[i] === '"'
    i++;
    let v = "";
    while (i < s.length) {
      const c = s[i]!;
      if (c === "\\" && i + 1 < s.length) {
        v += s[i + 1];
        i += 2;
        continue;
      }
      if (c === '"') {
        i++;
        return v;
      }
      v += c;
      i++;
    }
    return undefined; // unterminated
  };
  /** Looks ahead from i: is this `token BWS "="` (an auth-param, not a new scheme or token68)? */
  const atParam = (): boolean => {
    let j = i;
    while (j < s.length && TCHAR.test(s[j]!)) j++;
    if (j === i) return false;
    while (j < s.length && (s[j] === " " || s[j] === "\t")) j++;
    if (s[j] !== "=") return false;
    // token68 may end in "=" padding: `abc==` — an auth-param's "=" is followed by a value, not "=" / "," / end
    const after = s[j + 1];
    return after !== "=";
  };

  while (i < s.length) {
    // skip empty list elements
    skipWs();
    while (s[i] === ",") {
      i++;
      skipWs();
    }
    if (i >= s.length) break;
    const scheme = readToken();
    if (!scheme) break; // garbage
    const ch: Challenge = { scheme: scheme.toLowerCase(), params: {} };
    out.push(ch);
    skipWs();
    if (i >= s.length) break;
    if (s[i] === ",") continue; // challenge without params
    if (!atParam()) {
      // token68
      const start = i;
      while (i < s.length && TOKEN68CHAR.test(s[i]!)) i++;
      while (s[i] === "=") i++;
      if (i > start) ch.token68 = s.slice(start, i);
      skipWs();
      if (i < s.length && s[i] !== ",") return out; // malformed
      continue;
    }
    // auth-param list; a following `, token SP token...` (not `token =`) starts a new challenge
    for (;;) {
      const name = readToken().toLowerCase();
      skipWs();
      if (s[i] !== "=") return out; // malformed
      i++;
      skipWs();
      let value: string | undefined;
      if (s[i] === '"') value = readQuoted();
      else value = readToken();
      if (value === undefined) return out;
      if (!(name in ch.params)) ch.params[name] = value;
      skipWs();
      if (i >= s.length) break;
      if (s[i] !== ",") return out; // malformed
      // consume commas, then decide: another param, or a new challenge
      let j = i;
      while (j < s.length && (s[j] === "," || s[j] === " " || s[j] === "\t")) j++;
      const save = i;
      i = j;
      if (i >= s.length) break;
      if (atParam()) continue;
      i = save; // new challenge: outer loop skips the commas
      break;
    }
  }
  return out;
}
