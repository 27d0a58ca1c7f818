// Builds tar archives byte by byte for the reader tests, including malformed ones.

export type Bytes = string | Uint8Array;

/** Strings are taken as binary strings (one char per byte). */
export const b = (s: Bytes): Uint8Array => (typeof s === "string" ? Uint8Array.from(s, (c) => c.charCodeAt(0)) : s);
export const concat = (...parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};
export const zeros = (n: number) => new Uint8Array(n);
export const text = (u: Uint8Array) => Buffer.from(u).toString("latin1");

export interface HeaderSpec {
  name?: Bytes;
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  mtime?: number;
  typeflag?: string | number;
  linkname?: Bytes;
  uname?: Bytes;
  gname?: Bytes;
  devmajor?: number;
  devminor?: number;
  /** USTAR/STAR prefix; for GNU the same bytes land in atime/ctime. */
  prefix?: Bytes;
  format?: "ustar" | "gnu" | "v7" | "star";
  /** Raw bytes written at an offset after the regular fields (before the checksum). */
  raw?: [number, Bytes][];
  /** "signed" stores the signed byte sum; a number stores that (wrong) value. */
  checksum?: "unsigned" | "signed" | number;
  /** Writes the checksum field verbatim from the (unsigned) sum. */
  checksumField?: (sum: number) => Bytes;
}

const octal = (n: number, len: number) => b(n.toString(8).padStart(len - 1, "0") + "\0");

/** A base-256 field: marker bit 0x80, big-endian two's complement. */
export function base256(v: bigint, len: number): Uint8Array {
  const out = new Uint8Array(len);
  let x = BigInt.asUintN(len * 8, v);
  for (let i = len - 1; i >= 0; i--, x >>= 8n) out[i] = Number(x & 0xffn);
  out[0] = out[0]! | 0x80;
  return out;
}

export function header(s: HeaderSpec): Uint8Array {
  const blk = new Uint8Array(512);
  const put = (off: number, v: Bytes) => blk.set(b(v), off);
  const format = s.format ?? "ustar";
  put(0, s.name ?? "file");
  put(100, octal(s.mode ?? 0o644, 8));
  put(108, octal(s.uid ?? 0, 8));
  put(116, octal(s.gid ?? 0, 8));
  put(124, octal(s.size ?? 0, 12));
  put(136, octal(s.mtime ?? 1700000000, 12));
  const t = s.typeflag ?? "0";
  blk[156] = typeof t === "number" ? t : t.charCodeAt(0);
  put(157, s.linkname ?? "");
  if (format !== "v7") {
    put(257, format === "gnu" ? "ustar  \0" : "ustar\x0000");
    put(265, s.uname ?? "");
    put(297, s.gname ?? "");
    put(329, octal(s.devmajor ?? 0, 8));
    put(337, octal(s.devminor ?? 0, 8));
    if (s.prefix !== undefined) put(345, s.prefix);
    if (format === "star") put(508, "tar\0");
  }
  for (const [off, v] of s.raw ?? []) put(off, v);
  let unsigned = 0,
    signed = 0;
  blk.fill(0x20, 148, 156);
  for (const c of blk) {
    unsigned += c;
    signed += c < 0x80 ? c : c - 0x100;
  }
  const sum = s.checksum === "signed" ? signed : typeof s.checksum === "number" ? s.checksum : unsigned;
  put(148, s.checksumField ? s.checksumField(unsigned) : sum.toString(8).padStart(6, "0") + "\0 ");
  return blk;
}

const pad512 = (n: number) => (512 - (n % 512)) % 512;

/** Header plus data plus padding; size defaults to the data's length. */
export function entry(s: HeaderSpec, data: Bytes = ""): Uint8Array {
  const d = b(data);
  return concat(header({ size: d.length, ...s }), d, zeros(pad512(d.length)));
}

/** A PAX body: each record is "<len> <key>=<value>\n" with the right length. */
export function paxBody(records: [Bytes, Bytes][]): Uint8Array {
  return concat(
    ...records.map(([k, v]) => {
      const body = concat(b(" "), b(k), b("="), b(v), b("\n"));
      let n = body.length + 1;
      while (String(n).length + body.length !== n) n++;
      return concat(b(String(n)), body);
    }),
  );
}

export const pax = (records: [Bytes, Bytes][], typeflag = "x", s: HeaderSpec = {}) =>
  entry({ name: "PaxHeaders/file", typeflag, ...s }, paxBody(records));

export const gnuLong = (typeflag: "L" | "K", value: Bytes) =>
  entry({ name: "././@LongLink", typeflag, format: "gnu" }, concat(b(value), zeros(1)));

/** Entries followed by the two zero blocks. */
export const archive = (...parts: Uint8Array[]) => concat(...parts, zeros(1024));
