import { afterEach, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import * as flatbuffers from "flatbuffers";
import {
  alignToTarBlock,
  BUILD_TOOL_IDENTIFIER,
  decodeZtoc,
  encodeZtoc,
  goJsonString,
  ZTOC_VERSION,
  ZtocError,
  ztocInfoJson,
  type Ztoc,
} from "../src/formats/ztoc.js";
import { formatTarTime, parseGoTimeText } from "../src/formats/go-time.js";
import type { EntryType, FileMetadata } from "../src/formats/toc.js";
import { GzipZinfo } from "../src/formats/gzip-zinfo.js";
import { TarZinfo } from "../src/formats/tar-zinfo.js";

const V = new URL("./vectors/", import.meta.url);
const vec = (name: string) => new Uint8Array(readFileSync(new URL(name, V)));
const sha = (b: Uint8Array) => `sha256:${createHash("sha256").update(b).digest("hex")}`;
const hex = (h: string) => new Uint8Array(Buffer.from(h, "hex"));
const enc = (s: string) => new TextEncoder().encode(s);

interface JsonFile {
  name_hex: string;
  type: string;
  uncompressed_offset: number;
  uncompressed_size: number;
  tar_header_offset: number;
  linkname: string;
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  mod_time: string;
  devmajor: number;
  devminor: number;
  pax_hex: Record<string, string>;
}
interface JsonVector {
  algorithm: string;
  span_size: number;
  compressed_archive_size: number;
  uncompressed_archive_size: number;
  max_span_id: number;
  span_digests: string[];
  zinfo_blob_file: string;
  files: JsonFile[];
}

const savedTz = process.env.TZ;
afterEach(() => {
  if (savedTz === undefined) delete process.env.TZ;
  else process.env.TZ = savedTz;
});

function fileFromJson(f: JsonFile, modTime = (t: string) => t): FileMetadata {
  return {
    name: hex(f.name_hex),
    type: f.type as EntryType,
    uncompressedOffset: f.uncompressed_offset,
    uncompressedSize: f.uncompressed_size,
    linkname: enc(f.linkname),
    mode: f.mode,
    uid: f.uid,
    gid: f.gid,
    uname: enc(f.uname),
    gname: enc(f.gname),
    modTime: modTime(f.mod_time),
    devmajor: f.devmajor,
    devminor: f.devminor,
    // deliberately reversed: the encoder must sort keys bytewise itself
    xattrs: Object.entries(f.pax_hex)
      .map(([k, v]) => ({ key: enc(k), value: hex(v) }))
      .reverse(),
    tarHeaderOffset: f.tar_header_offset,
  };
}

function ztocFromJson(jsonName: string, modTime?: (t: string) => string): Ztoc {
  const j = JSON.parse(Buffer.from(vec(jsonName)).toString()) as JsonVector;
  const gzip = j.algorithm === "gzip";
  return {
    version: ZTOC_VERSION,
    buildToolIdentifier: BUILD_TOOL_IDENTIFIER,
    compressedArchiveSize: j.compressed_archive_size,
    uncompressedArchiveSize: j.uncompressed_archive_size,
    toc: j.files.map((f) => fileFromJson(f, modTime)),
    compressionAlgorithm: gzip ? "gzip" : "uncompressed",
    maxSpanId: j.max_span_id,
    spanDigests: j.span_digests,
    checkpoints: gzip ? vec(j.zinfo_blob_file) : new TarZinfo(j.span_size, j.compressed_archive_size).toBlob(),
  };
}

const VECTORS = [
  {
    ztoc: "za4096.ztoc",
    json: "a4096.json",
    digest: "sha256:7c12f4087882f71fb0ce84553efe617e92839d14ab2bcedcabfd32d34083d3ad",
    size: 200520,
  },
  {
    ztoc: "zadef.ztoc",
    json: "adef.json",
    digest: "sha256:a6d168f065a49ad892f65ef13531a33f940486581c052250bd98637837082f63",
    size: 36192,
  },
  {
    ztoc: "zb4096.ztoc",
    json: "b4096.json",
    digest: "sha256:358f867d0acd5ed48bd4ad7134db3c26390c9f64608851e82ebc2a8e7b497bc1",
    size: 200520,
  },
  {
    ztoc: "zt4096.ztoc",
    json: "t4096.json",
    digest: "sha256:a08b78c69e9786004d0c62e913780a4dd1a20dd74b376841e897314229622c12",
    size: 3928,
  },
  {
    ztoc: "ztdef.ztoc",
    json: "tdef.json",
    digest: "sha256:f65dfae965197b3d3a5549525163edad69d16ecc7cc9e149214a608a6a28779a",
    size: 3448,
  },
] as const;

function v0(): Ztoc {
  const zero: FileMetadata = {
    name: new Uint8Array(0),
    type: "" as EntryType,
    uncompressedOffset: 0,
    uncompressedSize: 0,
    linkname: new Uint8Array(0),
    mode: 0,
    uid: 0,
    gid: 0,
    uname: new Uint8Array(0),
    gname: new Uint8Array(0),
    modTime: "0001-01-01T00:00:00Z",
    devmajor: 0,
    devminor: 0,
    xattrs: [],
    tarHeaderOffset: 0,
  };
  return {
    version: "0.9",
    buildToolIdentifier: "AWS SOCI CLI",
    compressedArchiveSize: 2000000,
    uncompressedArchiveSize: 2500000,
    toc: [zero, { ...zero }],
    compressionAlgorithm: "",
    maxSpanId: 3,
    spanDigests: [],
    checkpoints: new Uint8Array(1 << 16),
  };
}

describe("encodeZtoc reproduces the reference bytes", () => {
  for (const v of VECTORS) {
    it(`${v.ztoc} (${v.json})`, () => {
      const out = encodeZtoc(ztocFromJson(v.json));
      expect(out.length).toBe(v.size);
      expect(sha(out)).toBe(v.digest);
      expect(Buffer.from(out).equals(Buffer.from(vec(v.ztoc)))).toBe(true);
    });
  }

  it("V6: V4 built under TZ=America/Los_Angeles", () => {
    process.env.TZ = "America/Los_Angeles";
    const local = (t: string) => {
      const p = parseGoTimeText(t)!;
      return formatTarTime(p.sec, p.nsec);
    };
    const z = ztocFromJson("t4096.json", local);
    expect(new Set(z.toc.map((e) => e.modTime))).toEqual(
      new Set(["2023-11-14T14:13:20-08:00", "2023-11-14T14:13:20.123456789-08:00", "1969-12-31T16:00:00-08:00"]),
    );
    const out = encodeZtoc(z);
    expect(out.length).toBe(3992);
    expect(sha(out)).toBe("sha256:494a4f7f76d6a9220325e62000d478f319d0372e4c083ff916da922aab4d43f6");
    // read back: the offsets survive the round trip
    expect(Buffer.from(encodeZtoc(decodeZtoc(out))).equals(Buffer.from(out))).toBe(true);
    expect(decodeZtoc(out).toc[0]!.modTime).toBe("2023-11-14T14:13:20-08:00");
  });

  it("V0: TestWriteZtoc", () => {
    const out = encodeZtoc(v0());
    expect(out.length).toBe(65928);
    expect(sha(out)).toBe("sha256:eba28fdf50b1b57543f57dd051b2468c1d4f57b64d2006c75aa4de1d03e6c7ec");
    const back = decodeZtoc(out);
    expect(back.compressionAlgorithm).toBe("gzip"); // absent ⇒ gzip
    expect(back.toc).toHaveLength(2);
    expect(back.toc[0]!.modTime).toBe("0001-01-01T00:00:00Z");
    expect(back.maxSpanId).toBe(3);
    expect(back.spanDigests).toEqual([]);
  });

  it("rejects algorithms the schema does not define", () => {
    expect(() => encodeZtoc({ ...v0(), compressionAlgorithm: "zstd" })).toThrow(
      /compression algorithm not defined in flatbuf: zstd/,
    );
    expect(() => encodeZtoc({ ...v0(), compressionAlgorithm: "Gzip" })).toThrow(ZtocError);
  });

  it("rejects non-integer numbers", () => {
    expect(() => encodeZtoc({ ...v0(), compressedArchiveSize: 1.5 })).toThrow(ZtocError);
  });
});

describe("decodeZtoc", () => {
  it("entries share their repeated owner names instead of each keeping a view of the ztoc", () => {
    const bytes = vec("za4096.ztoc");
    const z = decodeZtoc(bytes);
    const owned = z.toc.filter((e) => e.uname.length > 0);
    expect(owned.length).toBeGreaterThan(1);
    const first = new Map<string, Uint8Array>();
    for (const e of owned) {
      const key = Buffer.from(e.uname).toString("latin1");
      const seen = first.get(key);
      if (seen) expect(e.uname).toBe(seen);
      else first.set(key, e.uname);
      expect(e.uname.buffer).not.toBe(bytes.buffer);
      expect(e.gname.buffer).not.toBe(bytes.buffer);
    }
    expect(first.size).toBeLessThan(owned.length);
  });

  for (const v of VECTORS) {
    it(`reads ${v.ztoc} back to the same model and bytes`, () => {
      const bytes = vec(v.ztoc);
      const want = ztocFromJson(v.json);
      const got = decodeZtoc(bytes);
      expect(got.version).toBe("0.9");
      expect(got.buildToolIdentifier).toBe(BUILD_TOOL_IDENTIFIER);
      expect(got.compressedArchiveSize).toBe(want.compressedArchiveSize);
      expect(got.uncompressedArchiveSize).toBe(25600);
      expect(got.compressionAlgorithm).toBe(want.compressionAlgorithm);
      expect(got.maxSpanId).toBe(want.maxSpanId);
      expect(got.spanDigests).toEqual(want.spanDigests);
      expect(Buffer.from(got.checkpoints).equals(Buffer.from(want.checkpoints))).toBe(true);
      const sortKeys = (e: FileMetadata) => ({
        ...e,
        xattrs: [...e.xattrs].sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key))),
      });
      expect(got.toc).toEqual(want.toc.map(sortKeys)); // includes tarHeaderOffset
      expect(Buffer.from(encodeZtoc(got)).equals(Buffer.from(bytes))).toBe(true);
    });
  }

  it("rejects a non-ztoc", () => {
    expect(() => decodeZtoc(enc("this is not a ztoc"))).toThrow(ZtocError);
    expect(() => decodeZtoc(enc("this is not a ztoc"))).toThrow(/^cannot unmarshal ztoc: /);
    expect(() => decodeZtoc(new Uint8Array(0))).toThrow(/^cannot unmarshal ztoc: /);
    expect(() => decodeZtoc(new Uint8Array(3))).toThrow(/^cannot unmarshal ztoc: /);
  });

  it("requires the TOC and CompressionInfo tables (Go dereferences them)", () => {
    const b = new flatbuffers.Builder(64);
    const v = b.createString("0.9");
    b.startObject(6);
    b.addFieldOffset(0, v, 0);
    b.finish(b.endObject());
    expect(() => decodeZtoc(b.asUint8Array().slice())).toThrow(/^cannot unmarshal ztoc: /);
  });

  const entry = (name: string, offset: number, size: number): FileMetadata => ({
    name: enc(name),
    type: "reg",
    uncompressedOffset: offset,
    uncompressedSize: size,
    linkname: new Uint8Array(0),
    mode: 0o644,
    uid: 0,
    gid: 0,
    uname: new Uint8Array(0),
    gname: new Uint8Array(0),
    modTime: "2023-11-14T22:13:20Z",
    devmajor: 0,
    devminor: 0,
    xattrs: [],
    tarHeaderOffset: 0,
  });
  const withToc = (toc: FileMetadata[]): Ztoc => ({ ...v0(), toc, checkpoints: new Uint8Array(4) });

  it("sorts entries and recomputes TarHeaderOffset (ztoc_marshaler_test.go:39-115)", () => {
    for (const order of [
      [entry("file1", 1024, 500), entry("file2", 2048, 1000)],
      [entry("file2", 2048, 1000), entry("file1", 1024, 500)],
    ]) {
      const got = decodeZtoc(encodeZtoc(withToc(order)));
      expect(got.toc.map((e) => Buffer.from(e.name).toString())).toEqual(["file1", "file2"]);
      expect(got.toc.map((e) => e.tarHeaderOffset)).toEqual([0, 1536]);
    }
  });

  it("rejects overlapping entries (ztoc_marshaler_test.go:117-162)", () => {
    const bytes = encodeZtoc(withToc([entry("file1", 1024, 500), entry("file2", 1024, 500)]));
    expect(() => decodeZtoc(bytes)).toThrow(ZtocError);
    expect(() => decodeZtoc(bytes)).toThrow(/^invalid toc entry$/);
  });

  it("sorts many entries like Go's sort.Slice and keeps equal zero-size entries", () => {
    const toc: FileMetadata[] = [];
    for (let i = 0; i < 300; i++) toc.push(entry(`f${i}`, 512 * (((i * 7919) % 300) + 1), i % 3 === 0 ? 0 : 100));
    const got = decodeZtoc(encodeZtoc(withToc(toc)));
    const offs = got.toc.map((e) => e.uncompressedOffset);
    expect(offs).toEqual([...offs].sort((a, b) => a - b));
    expect(got.toc[0]!.tarHeaderOffset).toBe(0);
    for (let i = 1; i < got.toc.length; i++) {
      const p = got.toc[i - 1]!;
      expect(got.toc[i]!.tarHeaderOffset).toBe(alignToTarBlock(p.uncompressedOffset + p.uncompressedSize));
    }
  });

  it("sorts adversarial orders with many duplicate offsets", () => {
    let s = 7;
    const rnd = () => {
      s = (s * 1103515245 + 12345) % 2147483648;
      return s / 2147483648;
    };
    const n = 1500;
    const orders: number[][] = [
      Array.from({ length: n }, (_, i) => n - i), // descending
      Array.from({ length: n }, (_, i) => (i < n / 2 ? i : n - i)), // organ pipe
      Array.from({ length: n }, () => Math.floor(rnd() * 40)), // heavy duplicates
      Array.from({ length: n }, (_, i) => (i % 97 === 0 ? 0 : i)), // nearly sorted
      Array.from({ length: n }, (_, i) => (i * 7919) % 61),
    ];
    for (const keys of orders) {
      const toc = keys.map((k, i) => entry(`f${i}`, 512 * (k + 1), 0));
      const got = decodeZtoc(encodeZtoc(withToc(toc)));
      const offs = got.toc.map((e) => e.uncompressedOffset);
      expect(offs).toEqual(keys.map((k) => 512 * (k + 1)).sort((a, b) => a - b));
      expect(new Set(got.toc.map((e) => Buffer.from(e.name).toString())).size).toBe(n);
    }
  });

  it("canonicalizes mod_time and reads unparsable times as the zero time", () => {
    const e1 = { ...entry("a", 1024, 0), modTime: "2023-11-14T22:13:20.500Z" };
    const e2 = { ...entry("b", 2048, 0), modTime: "not a time" };
    const e3 = { ...entry("c", 3072, 0), modTime: "2023-11-14T22:13:20+00:00" };
    const got = decodeZtoc(encodeZtoc(withToc([e1, e2, e3])));
    expect(got.toc.map((e) => e.modTime)).toEqual([
      "2023-11-14T22:13:20.5Z",
      "0001-01-01T00:00:00Z",
      "2023-11-14T22:13:20Z",
    ]);
  });

  it("keeps raw bytes of names, link names and PAX values", () => {
    const e = {
      ...entry("x", 1024, 0),
      name: new Uint8Array([0x61, 0xff, 0x00, 0x62]),
      linkname: new Uint8Array([0xc3, 0x28]),
      xattrs: [
        { key: enc("SCHILY.xattr.security.capability"), value: new Uint8Array([1, 0, 0, 2, 0, 0x20, 0, 0]) },
        { key: enc("SCHILY.xattr.a"), value: new Uint8Array(0) },
      ],
    };
    const got = decodeZtoc(encodeZtoc(withToc([e])));
    expect(Array.from(got.toc[0]!.name)).toEqual([0x61, 0xff, 0x00, 0x62]);
    expect(Array.from(got.toc[0]!.linkname)).toEqual([0xc3, 0x28]);
    expect(got.toc[0]!.xattrs.map((x) => Buffer.from(x.key).toString())).toEqual([
      "SCHILY.xattr.a",
      "SCHILY.xattr.security.capability",
    ]);
    expect(Array.from(got.toc[0]!.xattrs[1]!.value)).toEqual([1, 0, 0, 2, 0, 0x20, 0, 0]);
  });

  it("names unknown compression algorithms like Go's enum String()", () => {
    const bytes = vec("zt4096.ztoc").slice();
    // find the algorithm byte (2) of CompressionInfo and change it
    const z = decodeZtoc(bytes);
    expect(z.compressionAlgorithm).toBe("uncompressed");
    const b = new flatbuffers.Builder(64);
    const cp = b.createByteVector(new Uint8Array(0));
    b.startVector(4, 0, 4);
    const sd = b.endVector();
    b.startObject(4);
    b.addFieldOffset(2, sd, 0);
    b.addFieldOffset(3, cp, 0);
    b.addFieldInt8(0, -3, 1);
    const ci = b.endObject();
    b.startVector(4, 0, 4);
    const md = b.endVector();
    b.startObject(1);
    b.addFieldOffset(0, md, 0);
    const toc = b.endObject();
    b.startObject(6);
    b.addFieldOffset(4, toc, 0);
    b.addFieldOffset(5, ci, 0);
    b.finish(b.endObject());
    const got = decodeZtoc(b.asUint8Array().slice());
    expect(got.compressionAlgorithm).toBe("compressionalgorithm(-3)");
    expect(got.version).toBe("");
    expect(got.toc).toEqual([]);
    expect(() => encodeZtoc(got)).toThrow(/compression algorithm not defined/);
  });

  it("survives random, mutated and truncated buffers (errors only, bounded time)", () => {
    let s = 0x9e3779b9;
    const rnd = () => {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      return (s >>> 0) / 4294967296;
    };
    const bases = [
      vec("zt4096.ztoc"),
      vec("ztdef.ztoc"),
      encodeZtoc(v0()).subarray(0, 2048),
      enc("this is not a ztoc"),
    ];
    let ok = 0;
    let failed = 0;
    const t0 = Date.now();
    const attempt = (buf: Uint8Array) => {
      const start = Date.now();
      try {
        const z = decodeZtoc(buf);
        ok++;
        // whatever decodes must be internally consistent
        expect(Array.isArray(z.toc)).toBe(true);
      } catch (err) {
        if (!(err instanceof ZtocError)) throw err;
        failed++;
      }
      expect(Date.now() - start).toBeLessThan(2000);
    };
    for (let i = 0; i < 4000; i++) {
      const base = bases[i % bases.length]!;
      const kind = i % 4;
      let buf: Uint8Array;
      if (kind === 0) {
        buf = new Uint8Array(Math.floor(rnd() * 256));
        for (let k = 0; k < buf.length; k++) buf[k] = Math.floor(rnd() * 256);
      } else if (kind === 1) {
        buf = base.slice(0, Math.floor(rnd() * base.length));
      } else {
        buf = base.slice();
        const flips = 1 + Math.floor(rnd() * (kind === 2 ? 4 : 32));
        for (let k = 0; k < flips; k++) {
          const at = Math.floor(rnd() * buf.length);
          buf[at] = kind === 2 ? buf[at]! ^ (1 << Math.floor(rnd() * 8)) : Math.floor(rnd() * 256);
        }
      }
      attempt(buf);
    }
    // the whole vector files, mutated (fewer: they are big)
    const big = [vec("za4096.ztoc"), vec("zadef.ztoc")];
    for (let i = 0; i < 200; i++) {
      const buf = big[i % 2]!.slice();
      const at = Math.floor(rnd() * Math.min(buf.length, 4096));
      buf[buf.length - 1 - at] = Math.floor(rnd() * 256);
      attempt(buf);
    }
    expect(ok + failed).toBe(4200);
    expect(failed).toBeGreaterThan(0);
    expect(Date.now() - t0).toBeLessThan(60_000);
  });

  it("refuses aliasing bombs instead of hanging", () => {
    // a TOC vector whose 20000 slots all point at one FileMetadata with a 20000-slot xattr vector
    const n = 20000;
    const b = new flatbuffers.Builder(1 << 20);
    const k = b.createString("k");
    const v = b.createString("v");
    b.startObject(2);
    b.addFieldOffset(0, k, 0);
    b.addFieldOffset(1, v, 0);
    const x = b.endObject();
    b.startVector(4, n, 4);
    for (let i = 0; i < n; i++) b.addOffset(x);
    const xv = b.endVector();
    b.startObject(14);
    b.addFieldOffset(13, xv, 0);
    const md = b.endObject();
    b.startVector(4, n, 4);
    for (let i = 0; i < n; i++) b.addOffset(md);
    const mdv = b.endVector();
    b.startObject(1);
    b.addFieldOffset(0, mdv, 0);
    const toc = b.endObject();
    b.startObject(6);
    b.addFieldOffset(4, toc, 0);
    b.finish(b.endObject());
    // the decoder's work budget stops it (without it: 400 million PAX records), not a clock
    expect(() => decodeZtoc(b.asUint8Array().slice())).toThrow(/^cannot unmarshal ztoc: .*too many aliased elements/);
  });
});

describe("soci ztoc info", () => {
  it("matches za4096.info.json byte for byte", () => {
    const bytes = vec("za4096.ztoc");
    const z = decodeZtoc(bytes);
    const zinfo = GzipZinfo.fromBlob(z.checkpoints);
    const out = ztocInfoJson(z, bytes.length, zinfo);
    expect(out).toBe(Buffer.from(vec("za4096.info.json")).toString("utf8"));
    expect(sha(enc(out))).toBe("sha256:6690a602e83a38a140837509d8bb2b563015dfd512d43b637ae122d1e9422083");
  });

  it("works with a TarZinfo and prints null for an empty TOC", () => {
    const z = decodeZtoc(vec("zt4096.ztoc"));
    const info = JSON.parse(ztocInfoJson(z, 3928, TarZinfo.fromBlob(z.checkpoints))) as {
      span_size: number;
      num_spans: number;
      num_files: number;
    };
    expect(info).toMatchObject({ span_size: 4096, num_spans: 7, num_files: 15 });
    const empty = ztocInfoJson({ ...v0(), toc: [] }, 1, { spanSize: 4, spanForOffset: () => 0 });
    expect(empty).toContain('  "files": null\n}\n');
  });

  it("escapes strings like Go's encoding/json", () => {
    expect(goJsonString(enc('a"b\\c'))).toBe('"a\\"b\\\\c"');
    expect(goJsonString(enc("<&>"))).toBe('"\\u003c\\u0026\\u003e"');
    expect(goJsonString(new Uint8Array([8, 9, 10, 12, 13, 1, 0x1f, 0x7f]))).toBe('"\\b\\t\\n\\f\\r\\u0001\\u001f\x7f"');
    expect(goJsonString(enc("café \u2028\u2029 😀"))).toBe('"café \\u2028\\u2029 😀"');
    expect(goJsonString(new Uint8Array([0x61, 0xff, 0xc3, 0x28, 0xed, 0xa0, 0x80]))).toBe(
      '"a\\ufffd\\ufffd(\\ufffd\\ufffd\\ufffd"',
    );
    expect(goJsonString(enc("\ufffd"))).toBe('"\ufffd"');
  });
});
