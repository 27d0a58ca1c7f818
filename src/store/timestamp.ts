// Creation times of artifacts with Go `time.Time` (nanosecond) precision. Stored as fixed-width UTC
// RFC 3339 strings with 9 fractional digits, so text order is time order; Go's zero time
// (`0001-01-01T00:00:00Z`) marks "unknown" and prints as `n/a` in `soci index list`.

const NS_PER_S = 1_000_000_000n;
const NS_PER_MS = 1_000_000n;
const TIMESTAMP_RE =
  /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;
// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999999Z in ns since the Unix epoch
const MIN_NS = -62135596800n * NS_PER_S;
const MAX_NS = 253402300800n * NS_PER_S - 1n;

export const ZERO_TIMESTAMP = "0001-01-01T00:00:00.000000000Z";

// Wall clock at ms resolution, refined with the monotonic clock so consecutive calls in one
// process are strictly increasing (newest-first listings need distinct times).
const clockBase = BigInt(Date.now()) * NS_PER_MS - process.hrtime.bigint();
let lastNow = 0n;

export function nowNs(): bigint {
  let ns = process.hrtime.bigint() + clockBase;
  if (ns <= lastNow) ns = lastNow + 1n;
  lastNow = ns;
  return ns;
}

export function nowTimestamp(): string {
  return nsToTimestamp(nowNs());
}

export function nsToTimestamp(ns: bigint): string {
  if (ns < MIN_NS || ns > MAX_NS) throw new RangeError(`time out of range: ${ns}ns`);
  let sec = ns / NS_PER_S;
  let frac = ns % NS_PER_S;
  if (frac < 0n) {
    frac += NS_PER_S;
    sec -= 1n;
  }
  const iso = new Date(Number(sec) * 1000).toISOString(); // YYYY-MM-DDTHH:MM:SS.000Z for years 1..9999
  return `${iso.slice(0, 19)}.${frac.toString().padStart(9, "0")}Z`;
}

/** Parses an RFC 3339 time (any offset, up to 9 fractional digits) to ns since the Unix epoch. */
export function timestampToNs(ts: string): bigint {
  const m = TIMESTAMP_RE.exec(ts);
  if (!m) throw new RangeError(`invalid timestamp ${JSON.stringify(ts)}`);
  const [, y, mo, d, h, mi, s, frac = "", , sign, oh, om] = m;
  const date = new Date(0);
  // setUTCFullYear, unlike Date.UTC, does not map years 0..99 to 1900..1999
  date.setUTCFullYear(Number(y), Number(mo) - 1, Number(d));
  date.setUTCHours(Number(h), Number(mi), Number(s), 0);
  if (
    date.getUTCFullYear() !== Number(y) ||
    date.getUTCMonth() !== Number(mo) - 1 ||
    date.getUTCDate() !== Number(d) ||
    Number(h) > 23 ||
    Number(mi) > 59 ||
    Number(s) > 59
  ) {
    throw new RangeError(`invalid timestamp ${JSON.stringify(ts)}`);
  }
  let ns = BigInt(date.getTime()) * NS_PER_MS + BigInt(frac.padEnd(9, "0"));
  if (sign) {
    const offset = BigInt(Number(oh) * 3600 + Number(om) * 60) * NS_PER_S;
    ns = sign === "+" ? ns - offset : ns + offset;
  }
  return ns;
}

/** Canonical stored form of a time given as RFC 3339 text, a Date, or ns since the Unix epoch. */
export function normalizeTimestamp(t: string | Date | bigint): string {
  if (typeof t === "bigint") return nsToTimestamp(t);
  if (t instanceof Date) {
    const ms = t.getTime();
    if (Number.isNaN(ms)) throw new RangeError("invalid Date");
    return nsToTimestamp(BigInt(ms) * NS_PER_MS);
  }
  return nsToTimestamp(timestampToNs(t));
}

export function isZeroTimestamp(ts: string): boolean {
  return timestampToNs(ts) === MIN_NS;
}

/** Millisecond Date (sub-millisecond digits are truncated). */
export function timestampToDate(ts: string): Date {
  const ns = timestampToNs(ts);
  const ms = ns >= 0n ? ns / NS_PER_MS : -((-ns + NS_PER_MS - 1n) / NS_PER_MS);
  return new Date(Number(ms));
}

/** Go `time.RFC3339Nano` of the UTC time: trailing zeros of the fraction dropped. */
export function formatRfc3339Nano(ts: string): string {
  const canonical = nsToTimestamp(timestampToNs(ts));
  const frac = canonical.slice(20, 29).replace(/0+$/, "");
  return `${canonical.slice(0, 19)}${frac ? "." + frac : ""}Z`;
}
