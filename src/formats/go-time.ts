// Go `time.Time` text rendering and parsing, as the ztoc's `mod_time` field needs it (docs/formats.md §1.4, §1.6).
//
// Rendering = Go `Time.MarshalText`: layout `2006-01-02T15:04:05.999999999Z07:00` (fraction only when the
// nanoseconds are non-zero, trailing zeros trimmed; `Z` for a zero zone offset, else `±hh:mm` with the
// offset truncated to whole minutes). MarshalText fails — and the reference then stores "" — when the
// year (in the time's own zone) is outside [0,9999] or the zone's hour part is >= 24.
//
// Parsing = Go `Time.UnmarshalText` (strict RFC 3339: `parseStrictRFC3339`, whose fallback through
// `time.Parse` accepts nothing the fast path rejects).
//
// Tar times are created by the reference with `time.Unix`, i.e. in the process's LOCAL zone, so the text
// depends on the builder's TZ (Pitfall P1): use `formatTarTime`.

export interface GoTime {
  /** Unix seconds (UTC instant). */
  sec: number;
  /** Nanoseconds, 0..999999999. */
  nsec: number;
  /** Zone offset in seconds east of UTC that the text was written in. */
  offset: number;
}

/** Text of Go's zero `time.Time` (what the reference reads an unparsable mod_time as). */
export const GO_ZERO_TIME_TEXT = "0001-01-01T00:00:00Z";

/** Unix seconds of 0001-01-01T00:00:00Z (Go's zero time). */
export const GO_ZERO_TIME_UNIX = -62135596800;

const SECONDS_PER_DAY = 86400;

/** Days since 1970-01-01 → proleptic Gregorian civil date (H. Hinnant's algorithm; exact for |days| < 2^50). */
function civilFromDays(days: number): { y: number; m: number; d: number } {
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097; // [0, 146096]
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp < 10 ? mp + 3 : mp - 9;
  const y = yoe + era * 400 + (m <= 2 ? 1 : 0);
  return { y, m, d };
}

/** Proleptic Gregorian civil date → days since 1970-01-01. */
function daysFromCivil(y: number, m: number, d: number): number {
  y -= m <= 2 ? 1 : 0;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (m > 2 ? m - 3 : m + 9) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

function isLeap(y: number): boolean {
  return y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0);
}

function daysIn(month: number, year: number): number {
  if (month === 2) return isLeap(year) ? 29 : 28;
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, "0");
}

/** Normalise (sec, nsec) like Go's `time.Unix`: nsec brought into [0, 1e9). */
function normalize(sec: number, nsec: number): { sec: number; nsec: number } {
  if (nsec < 0 || nsec >= 1e9) {
    const q = Math.floor(nsec / 1e9);
    sec += q;
    nsec -= q * 1e9;
  }
  return { sec, nsec };
}

/**
 * Go `Time.MarshalText` of the instant (sec, nsec) shown in a zone `offsetSeconds` east of UTC.
 * Returns "" where Go's MarshalText fails (year outside [0,9999], zone hour >= 24) or the input is not finite.
 */
export function formatGoTime(sec: number, nsec: number, offsetSeconds: number): string {
  if (!Number.isFinite(sec) || !Number.isFinite(nsec) || !Number.isFinite(offsetSeconds)) return "";
  sec = Math.trunc(sec);
  nsec = Math.trunc(nsec);
  offsetSeconds = Math.trunc(offsetSeconds);
  ({ sec, nsec } = normalize(sec, nsec));
  const local = sec + offsetSeconds;
  if (!Number.isSafeInteger(local)) return "";
  const days = Math.floor(local / SECONDS_PER_DAY);
  let rem = local - days * SECONDS_PER_DAY;
  const { y, m, d } = civilFromDays(days);
  if (y < 0 || y > 9999) return "";
  const hh = Math.floor(rem / 3600);
  rem -= hh * 3600;
  const mm = Math.floor(rem / 60);
  const ss = rem - mm * 60;
  let out = `${pad(y, 4)}-${pad(m, 2)}-${pad(d, 2)}T${pad(hh, 2)}:${pad(mm, 2)}:${pad(ss, 2)}`;
  if (nsec !== 0) out += "." + pad(nsec, 9).replace(/0+$/, "");
  if (offsetSeconds === 0) return out + "Z";
  let zone = Math.trunc(offsetSeconds / 60); // minutes, truncated toward zero as Go's integer division
  let sign = "+";
  if (zone < 0) {
    sign = "-";
    zone = -zone;
  }
  const zh = Math.floor(zone / 60);
  if (zh >= 24) return ""; // "timezone hour outside of range [0,23]"
  return `${out}${sign}${pad(zh, 2)}:${pad(zone % 60, 2)}`;
}

/**
 * Offset (seconds east of UTC) of the process's local time zone at the given instant — Go's `time.Local`
 * (the TZ environment variable; unset ⇒ /etc/localtime; "" ⇒ UTC). Seconds-precise (LMT offsets such as
 * America/Los_Angeles before 1883, −7:52:58, are kept). Instants outside JS Date's range give 0.
 */
export function localOffsetSeconds(unixSec: number): number {
  if (!Number.isFinite(unixSec)) return 0;
  const ms = Math.floor(unixSec) * 1000;
  const dt = new Date(ms);
  if (Number.isNaN(dt.getTime())) return 0;
  const asUtc = new Date(0);
  asUtc.setUTCFullYear(dt.getFullYear(), dt.getMonth(), dt.getDate());
  asUtc.setUTCHours(dt.getHours(), dt.getMinutes(), dt.getSeconds(), dt.getMilliseconds());
  const off = asUtc.getTime() - ms;
  if (Number.isNaN(off)) {
    const m = dt.getTimezoneOffset();
    return Number.isNaN(m) ? 0 : -m * 60;
  }
  return Math.round(off / 1000);
}

/** `time.Unix(sec, nsec).MarshalText()` as the reference's ztoc builder writes it (local zone). */
export function formatTarTime(sec: number, nsec = 0): string {
  if (!Number.isFinite(sec) || !Number.isFinite(nsec)) return "";
  const n = normalize(Math.trunc(sec), Math.trunc(nsec));
  return formatGoTime(n.sec, n.nsec, localOffsetSeconds(n.sec));
}

/** Same rendering in UTC (what the reference writes when running with TZ=UTC). */
export function formatUtcTime(sec: number, nsec = 0): string {
  return formatGoTime(sec, nsec, 0);
}

const textEncoder = new TextEncoder();

/**
 * Go `Time.UnmarshalText` (strict RFC 3339). Returns null where Go returns an error.
 * Accepts the text as a string (UTF-8 encoded first) or raw bytes.
 */
export function parseGoTimeText(text: string | Uint8Array): GoTime | null {
  const key = memoKey(text);
  if (key === undefined) return parseGoTimeTextOnce(text);
  let t = parsedTexts.get(key);
  if (t === undefined) t = remember(parsedTexts, key, parseGoTimeTextOnce(text));
  return t;
}

/*
 * A layer's TOC repeats a few hundred distinct modification times over tens of thousands of
 * entries, and mounting one parses each entry's time twice (canonical text, then the node's
 * attributes): both are remembered per text. Results are frozen, since they are shared.
 */
const MEMO_LIMIT = 4096;
const parsedTexts = new Map<string, GoTime | null>();
const canonicalTexts = new Map<string, string>();

function remember<V>(memo: Map<string, V>, key: string, value: V): V {
  if (memo.size >= MEMO_LIMIT) memo.clear();
  memo.set(key, value);
  return value;
}

/**
 * "s" + the text, or "b" + its bytes one char each (the two forms of one text parse alike only
 * when it is ASCII); undefined when too long to be a time.
 */
function memoKey(text: string | Uint8Array): string | undefined {
  if (text.length > 64) return undefined;
  if (typeof text === "string") return `s${text}`;
  return `b${String.fromCharCode.apply(null, text as unknown as number[])}`;
}

function parseGoTimeTextOnce(text: string | Uint8Array): GoTime | null {
  const s = typeof text === "string" ? textEncoder.encode(text) : text;
  if (s.length < 19) return null;
  let ok = true;
  const parseUint = (from: number, to: number, min: number, max: number): number => {
    let x = 0;
    for (let i = from; i < to; i++) {
      const c = s[i]!;
      if (c < 0x30 || c > 0x39) {
        ok = false;
        return min;
      }
      x = x * 10 + (c - 0x30);
    }
    if (x < min || x > max) {
      ok = false;
      return min;
    }
    return x;
  };
  const year = parseUint(0, 4, 0, 9999);
  const month = parseUint(5, 7, 1, 12);
  const day = parseUint(8, 10, 1, daysIn(month, year));
  const hour = parseUint(11, 13, 0, 23);
  const min = parseUint(14, 16, 0, 59);
  const sec = parseUint(17, 19, 0, 59);
  if (!ok || s[4] !== 0x2d || s[7] !== 0x2d || s[10] !== 0x54 || s[13] !== 0x3a || s[16] !== 0x3a) return null;
  let i = 19;
  const isDigit = (k: number) => k < s.length && s[k]! >= 0x30 && s[k]! <= 0x39;
  let nsec = 0;
  if (s.length - i >= 2 && s[i] === 0x2e && isDigit(i + 1)) {
    let n = i + 2;
    while (n < s.length && isDigit(n)) n++;
    // parseNanoseconds: at most 9 digits are significant (the rest are truncated)
    const end = Math.min(n, i + 10);
    let digits = 0;
    for (let k = i + 1; k < end; k++) {
      nsec = nsec * 10 + (s[k]! - 0x30);
      digits++;
    }
    for (; digits < 9; digits++) nsec *= 10;
    i = n;
  }
  let offset = 0;
  const restLen = s.length - i;
  if (!(restLen === 1 && s[i] === 0x5a)) {
    if (restLen !== 6) return null;
    const hr = parseUint(i + 1, i + 3, 0, 23);
    const mm = parseUint(i + 4, i + 6, 0, 59);
    const sign = s[i];
    if (!ok || !((sign === 0x2d || sign === 0x2b) && s[i + 3] === 0x3a)) return null;
    offset = (hr * 60 + mm) * 60;
    if (sign === 0x2d) offset = -offset;
  }
  const unix = daysFromCivil(year, month, day) * SECONDS_PER_DAY + hour * 3600 + min * 60 + sec - offset;
  return Object.freeze({ sec: unix, nsec, offset });
}

/**
 * What the reference stores after reading `text` back and marshalling it again: the canonical rendering of
 * the parsed time in its own offset, or the zero time's text when the text does not parse.
 */
export function canonicalGoTimeText(text: string | Uint8Array): string {
  const key = memoKey(text);
  let out = key === undefined ? undefined : canonicalTexts.get(key);
  if (out === undefined) {
    const t = parseGoTimeTextOnce(text);
    out = t ? formatGoTime(t.sec, t.nsec, t.offset) : GO_ZERO_TIME_TEXT;
    if (key !== undefined) remember(canonicalTexts, key, out);
  }
  return out;
}
