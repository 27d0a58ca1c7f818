import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  linkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { goQuoteByte, readTarEntries, TarError, TarReader, type TarEntry } from "../src/formats/tar.js";
import {
  archive,
  b,
  base256,
  concat,
  entry,
  gnuLong,
  header,
  pax,
  paxBody,
  text,
  zeros,
  type HeaderSpec,
} from "./helpers/tar-build.js";

const run = promisify(execFile);
const V = new URL("./vectors/", import.meta.url);

/** A seeded PRNG so random splits are reproducible. */
function rng(seed: number) {
  return () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed / 2 ** 32;
  };
}

function readChunked(bytes: Uint8Array, nextSize: () => number) {
  const entries: TarEntry[] = [];
  const r = new TarReader((e) => entries.push(e));
  for (let at = 0; at < bytes.length; ) {
    const n = Math.max(1, nextSize());
    r.push(bytes.slice(at, at + n));
    at += n;
  }
  return { entries, consumed: r.end() };
}

/** Reads whole and byte by byte (or in odd chunks for big inputs); both must agree. */
function parse(bytes: Uint8Array) {
  const whole = readTarEntries(bytes);
  const small = bytes.length < 65536 ? 1 : 4093;
  expect(readChunked(bytes, () => small)).toEqual(whole);
  return whole;
}

function errorOf(f: () => unknown): TarError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(TarError);
    return e as TarError;
  }
  throw new Error("expected a TarError");
}

/** The error message, identical whole and byte by byte. */
function fail(bytes: Uint8Array): string {
  const whole = errorOf(() => readTarEntries(bytes));
  const small = bytes.length < 65536 ? 1 : 4093;
  expect(errorOf(() => readChunked(bytes, () => small)).message).toBe(whole.message);
  return whole.message;
}

const INVALID = "archive/tar: invalid tar header";
const EOF = "unexpected EOF";
const name = (e: TarEntry) => text(e.name);
const paxOf = (e: TarEntry) => e.pax.map((r) => [text(r.key), text(r.value)]);
const only = (bytes: Uint8Array) => {
  const { entries } = parse(bytes);
  expect(entries).toHaveLength(1);
  return entries[0]!;
};

describe("layer.tar golden TOC (docs/formats.md §7.2)", () => {
  const tar = new Uint8Array(readFileSync(new URL("layer.tar", V)));
  const want = (JSON.parse(readFileSync(new URL("a4096.json", V), "utf8")) as { files: Record<string, unknown>[] })
    .files;
  const hex = (u: Uint8Array) => Buffer.from(u).toString("hex");
  const utcTime = (t: string): [number, number] => {
    const m = /^(.*?)(?:\.(\d+))?Z$/.exec(t)!;
    return [Date.parse(`${m[1]}Z`) / 1000, Number((m[2] ?? "").padEnd(9, "0"))];
  };
  const expected = want.map((f) => {
    const [sec, nsec] = utcTime(f.mod_time as string);
    return {
      name: f.name_hex,
      type: f.type,
      dataOffset: f.uncompressed_offset,
      size: f.uncompressed_size,
      headerOffset: f.tar_header_offset,
      linkname: f.linkname,
      mode: f.mode,
      uid: f.uid,
      gid: f.gid,
      uname: f.uname,
      gname: f.gname,
      mtime: [sec, nsec],
      dev: [f.devmajor, f.devminor],
      pax: Object.entries(f.pax_hex as Record<string, string>).map(([k, v]) => [Buffer.from(k).toString("hex"), v]),
    };
  });
  const actual = (entries: TarEntry[]) =>
    entries.map((e) => ({
      name: hex(e.name),
      type: e.type,
      dataOffset: e.dataOffset,
      size: e.size,
      headerOffset: e.headerOffset,
      linkname: Buffer.from(e.linkname).toString(),
      mode: e.mode,
      uid: e.uid,
      gid: e.gid,
      uname: Buffer.from(e.uname).toString(),
      gname: Buffer.from(e.gname).toString(),
      mtime: [e.mtimeSec, e.mtimeNsec],
      dev: [e.devmajor, e.devminor],
      pax: e.pax.map((r) => [hex(r.key), hex(r.value)]),
    }));

  it("reports every field of all 15 entries and consumes 25600 bytes", () => {
    const { entries, consumed } = readTarEntries(tar);
    expect(entries).toHaveLength(15);
    expect(actual(entries)).toEqual(expected);
    expect(consumed).toBe(25600);
  });

  const whole = readTarEntries(tar);
  for (const size of [1, 7, 511, 512, 513]) {
    it(`gives the same result pushed in ${size}-byte chunks`, () => {
      expect(readChunked(tar, () => size)).toEqual(whole);
    });
  }
  it("gives the same result for random splits", () => {
    for (let seed = 1; seed <= 20; seed++) {
      const r = rng(seed);
      const max = [3, 50, 700, 5000][seed % 4]!;
      expect(readChunked(tar, () => Math.floor(r() * max))).toEqual(whole);
    }
  });
});

describe("archives written by GNU tar", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "tar-test-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const formats = ["gnu", "oldgnu", "posix", "ustar", "v7"] as const;
  type Fmt = (typeof formats)[number];
  const SIZES = [0, 1, 100, 511, 512, 513, 1023, 1024, 1025, 4096, 10000, 65537];

  /** A tree that fits what the format can store, so tar writes every file. */
  async function makeTree(root: string, f: Fmt) {
    const t = join(root, "tree");
    const p = (...parts: string[]) => join(t, ...parts);
    mkdirSync(p("sizes"), { recursive: true });
    for (const n of SIZES) writeFileSync(p("sizes", `s${n}`), randomBytes(n));
    writeFileSync(p("empty"), "");
    mkdirSync(p("emptydir"));
    writeFileSync(p("café-ünï.txt"), "unicode");
    writeFileSync(Buffer.from(`${t}/raw-\xff\xfe`, "latin1"), "not utf-8");
    symlinkSync("sizes/s1", p("sym"));
    symlinkSync("/abs/../hostile", p("hostile-sym"));
    linkSync(p("sizes", "s513"), p("hard"));
    if (f !== "v7") await run("mkfifo", [p("fifo")]);
    if (f === "ustar") {
      // > 100 bytes, stored through the 155-byte prefix
      mkdirSync(p("long", "p".repeat(95)), { recursive: true });
      writeFileSync(p("long", "p".repeat(95), `${"q".repeat(90)}.txt`), randomBytes(700));
    }
    if (f === "gnu" || f === "oldgnu" || f === "posix") {
      const deep = p("long", "x".repeat(120), "y".repeat(150));
      mkdirSync(deep, { recursive: true });
      writeFileSync(join(deep, `${"z".repeat(200)}.bin`), randomBytes(1500)); // > 255 bytes
      writeFileSync(p("long", `${"n".repeat(110)}.txt`), "110"); // > 100 bytes
      symlinkSync(`target/${"t".repeat(150)}`, p("longsym"));
      linkSync(join(deep, `${"z".repeat(200)}.bin`), p("long", "hard-to-long"));
    }
  }

  /** Every path under root/tree as a binary string relative to root. */
  function diskPaths(root: string): Set<string> {
    const out = new Set<string>();
    const walk = (rel: Buffer) => {
      out.add(rel.toString("latin1"));
      const full = Buffer.concat([Buffer.from(`${root}/`), rel]);
      if (!lstatSync(full).isDirectory()) return;
      for (const n of readdirSync(full, { encoding: "buffer" })) walk(Buffer.concat([rel, Buffer.from("/"), n]));
    };
    walk(Buffer.from("tree"));
    return out;
  }

  for (const f of formats) {
    it(`--format=${f}: names, types, links, metadata and data offsets match the files on disk`, async () => {
      const root = mkdtempSync(join(dir, `${f}-`));
      await makeTree(root, f);
      const out = join(root, "out.tar");
      const { stderr } = await run("tar", [`--format=${f}`, "-C", root, "-cf", out, "tree"]);
      expect(stderr).toBe("");
      const tar = new Uint8Array(readFileSync(out));
      const { entries, consumed } = readTarEntries(tar);

      const names = entries.map((e) => name(e).replace(/\/$/, ""));
      expect(new Set(names)).toEqual(diskPaths(root));
      expect(names.length).toBe(new Set(names).size);

      const onDisk = (n: string) =>
        Buffer.concat([Buffer.from(`${root}/`), Buffer.from(n.replace(/\/$/, ""), "latin1")]);
      let next = 0;
      for (const e of entries) {
        const path = onDisk(name(e));
        const st = lstatSync(path, { bigint: true });
        expect(e.headerOffset).toBe(next);
        expect(e.dataOffset).toBeGreaterThan(e.headerOffset);
        expect(e.dataOffset % 512).toBe(0);
        next = Math.ceil((e.dataOffset + e.size) / 512) * 512;
        expect(e.mode & 0o7777).toBe(Number(st.mode & 0o7777n));
        expect([e.uid, e.gid]).toEqual([Number(st.uid), Number(st.gid)]);
        const mtime = paxOf(e).find(([k]) => k === "mtime");
        if (mtime)
          expect([e.mtimeSec, e.mtimeNsec]).toEqual([
            Number(st.mtimeNs / 1000000000n),
            Number(st.mtimeNs % 1000000000n),
          ]);
        else expect([e.mtimeSec, e.mtimeNsec]).toEqual([Number(st.mtimeNs / 1000000000n), 0]);
        switch (e.type) {
          case "reg":
            expect(st.isFile()).toBe(true);
            expect(e.size).toBe(Number(st.size));
            expect(Buffer.from(tar.subarray(e.dataOffset, e.dataOffset + e.size)).equals(readFileSync(path))).toBe(
              true,
            );
            break;
          case "dir":
            expect(st.isDirectory()).toBe(true);
            expect(name(e).endsWith("/")).toBe(true);
            break;
          case "symlink":
            expect(st.isSymbolicLink()).toBe(true);
            expect(Buffer.from(e.linkname).equals(readlinkSync(path, { encoding: "buffer" }))).toBe(true);
            break;
          case "hardlink":
            expect(st.isFile()).toBe(true);
            expect(lstatSync(onDisk(text(e.linkname)), { bigint: true }).ino).toBe(st.ino);
            break;
          case "fifo":
            expect(st.isFIFO()).toBe(true);
            break;
          default:
            throw new Error(`unexpected ${e.type}`);
        }
      }
      expect(entries.filter((e) => e.type === "hardlink").length).toBe(f === "ustar" || f === "v7" ? 1 : 2);
      expect(consumed).toBe(next + 1024); // both zero blocks, not the record padding after them
      expect(tar.length).toBeGreaterThan(consumed);

      const r = rng(f.length);
      expect(readChunked(tar, () => Math.floor(r() * 1500))).toEqual({ entries, consumed });
      expect(readChunked(tar, () => 511)).toEqual({ entries, consumed });
    });
  }
});

describe("hand-built headers", () => {
  describe("numeric fields", () => {
    it("reads base-256 size, uid, gid, mode and mtime", () => {
      const data = randomBytes(600);
      const e = parse(
        archive(
          entry(
            {
              raw: [
                [124, base256(600n, 12)],
                [108, base256(-2n, 8)], // uint32(-2)
                [116, base256(0x1_0000_0007n, 8)], // uint32 keeps the low 32 bits
                [100, base256(0o755n, 8)],
                [136, base256(-1n, 12)],
              ],
            },
            data,
          ),
          entry({ name: "next" }, "x"),
        ),
      ).entries;
      expect(e[0]).toMatchObject({
        size: 600,
        uid: 0xfffffffe,
        gid: 7,
        mode: 0o755,
        mtimeSec: -1,
        mtimeNsec: 0,
        dataOffset: 512,
      });
      expect(name(e[1]!)).toBe("next");
      expect(e[1]!.dataOffset).toBe(512 + 1024 + 512);
    });

    it("rejects a base-256 value that overflows int64", () => {
      expect(fail(archive(header({ raw: [[124, concat(b("\x81"), zeros(11))]] })))).toBe(INVALID);
    });

    it("trims spaces and NULs around octal numbers and stops at an inner NUL", () => {
      const e = parse(
        archive(
          header({
            raw: [
              [124, "  12\0 34\0  "],
              [100, " 644 \0\0"],
            ],
          }),
          b("0123456789"),
          zeros(502),
          entry({ name: "next", raw: [[124, "\0\0\0\0\0\0\0\0\0\0\0\0"]] }),
        ),
      ).entries;
      expect(e[0]).toMatchObject({ size: 10, mode: 0o644 });
      expect(e[1]).toMatchObject({ size: 0, dataOffset: 1536 });
    });

    it("rejects non-octal digits", () => {
      expect(fail(archive(header({ raw: [[124, "00000000008\0"]] })))).toBe(INVALID);
      expect(fail(archive(header({ raw: [[108, "0 1\0"]] })))).toBe(INVALID);
    });

    it("rejects a negative size on a file but not on a header-only type", () => {
      expect(fail(archive(header({ raw: [[124, base256(-1n, 12)]] })))).toBe(INVALID);
      expect(only(archive(header({ name: "d/", typeflag: "5", raw: [[124, base256(-1n, 12)]] })))).toMatchObject({
        size: -1,
      });
    });
  });

  describe("checksum", () => {
    it("rejects a wrong checksum", () => {
      const good = header({});
      const sum = parseInt(text(good.subarray(148, 154)), 8);
      expect(fail(archive(header({ checksum: sum + 1 })))).toBe(INVALID);
      expect(fail(archive(header({ checksumField: () => "zz" })))).toBe(INVALID);
      // any mix of spaces and NULs around the octal digits (8 bytes)
      expect(only(archive(header({ checksumField: (sum) => `${sum.toString(8).padStart(7, " ")}\0` }))).type).toBe(
        "reg",
      );
      expect(only(archive(header({ checksumField: (sum) => `\0${sum.toString(8).padStart(6, " ")} ` }))).type).toBe(
        "reg",
      );
    });

    it("accepts the signed byte sum as well as the unsigned one", () => {
      const spec: HeaderSpec = { name: "caf\xe9", uname: "\xff\xfe" };
      expect(name(only(archive(header({ ...spec, checksum: "signed" }))))).toBe("caf\xe9");
      expect(name(only(archive(header({ ...spec, checksum: "unsigned" }))))).toBe("caf\xe9");
    });
  });

  describe("formats and names", () => {
    it("joins the USTAR prefix", () => {
      expect(name(only(archive(header({ name: "c.txt", prefix: "a/b" }))))).toBe("a/b/c.txt");
    });

    it("uses the 131-byte STAR prefix and parses STAR atime/ctime", () => {
      const star = { format: "star", name: "f", prefix: "s".repeat(131) } as const;
      expect(name(only(archive(header({ ...star, raw: [[476, "00000000001\0"]] }))))).toBe(`${"s".repeat(131)}/f`);
      expect(fail(archive(header({ ...star, raw: [[476, "zz"]] })))).toBe(INVALID);
    });

    it("has no prefix in GNU headers, except Go's fallback for unparsable ASCII atime/ctime", () => {
      expect(name(only(archive(header({ format: "gnu", name: "f", prefix: "00000000001\0" }))))).toBe("f");
      expect(name(only(archive(header({ format: "gnu", name: "f", prefix: "old/go" }))))).toBe("old/go/f");
      expect(name(only(archive(header({ format: "gnu", name: "f", prefix: "caf\xe9" }))))).toBe("f");
    });

    it("ignores the USTAR fields of a V7 header", () => {
      const e = only(
        archive(
          header({
            format: "v7",
            name: "f",
            raw: [
              [265, "root"],
              [297, "wheel"],
              [329, "0000001\0"],
              [345, "pre"],
            ],
          }),
        ),
      );
      expect(e).toMatchObject({ devmajor: 0, devminor: 0 });
      expect([name(e), text(e.uname), text(e.gname)]).toEqual(["f", "", ""]);
    });

    it("parses uname, gname and device numbers of every non-V7 header", () => {
      const e = only(
        archive(header({ typeflag: "3", uname: "u".repeat(32), gname: "g", devmajor: 0o7777777, devminor: 5 })),
      );
      expect(e).toMatchObject({ type: "char", devmajor: 0o7777777, devminor: 5 });
      expect([text(e.uname), text(e.gname)]).toEqual(["u".repeat(32), "g"]);
    });

    it("maps the legacy '\\0' typeflag to a directory or a regular file", () => {
      const { entries } = parse(
        archive(
          header({ name: "legacy-dir/", typeflag: 0, size: 512 }), // a directory: its size field is not skipped
          entry({ name: "legacy-file", typeflag: 0 }, "hello"),
        ),
      );
      expect(entries.map((e) => [name(e), e.type, String.fromCharCode(e.typeflag), e.size])).toEqual([
        ["legacy-dir/", "dir", "5", 512],
        ["legacy-file", "reg", "0", 5],
      ]);
      expect(entries[1]!.dataOffset).toBe(1024);
    });

    it("returns hostile names as they are", () => {
      const { entries } = parse(
        archive(
          entry({ name: "../x" }),
          entry({ name: "/abs" }),
          header({ name: "a/../../b", typeflag: "2", linkname: "/etc/passwd" }),
        ),
      );
      expect(entries.map((e) => [name(e), text(e.linkname)])).toEqual([
        ["../x", ""],
        ["/abs", ""],
        ["a/../../b", "/etc/passwd"],
      ]);
    });

    it("skips no data for header-only types even with a size field, and keeps that size", () => {
      const { entries } = parse(
        archive(header({ name: "hl", typeflag: "1", linkname: "f", size: 1000 }), entry({ name: "next" }, "abc")),
      );
      expect(entries.map((e) => [name(e), e.type, e.size, e.dataOffset, e.headerOffset])).toEqual([
        ["hl", "hardlink", 1000, 512, 0],
        ["next", "reg", 3, 1024, 1536], // the reference's TarHeaderOffset quirk: align(512 + 1000)
      ]);
    });
  });

  describe("GNU long names", () => {
    it("takes L and K bodies up to their first NUL", () => {
      const long = "l".repeat(300);
      const e = only(
        archive(
          gnuLong("L", `${long}\0junk`),
          gnuLong("K", "k".repeat(200)),
          header({ format: "gnu", typeflag: "2", name: "short" }),
        ),
      );
      expect([name(e), text(e.linkname), e.pax]).toEqual([long, "k".repeat(200), []]);
      expect(e.dataOffset).toBe(512 * 5);
    });

    it("lets a GNU long name override a PAX path", () => {
      expect(name(only(archive(pax([["path", "from-pax"]]), gnuLong("L", "from-gnu"), header({ name: "hdr" }))))).toBe(
        "from-gnu",
      );
    });

    it("fails on bodies over 1 MiB and on truncated bodies", () => {
      const big = entry({ typeflag: "L", format: "gnu" }, zeros((1 << 20) + 1));
      expect(fail(archive(big))).toBe("archive/tar: header field too long");
      expect(fail(concat(header({ typeflag: "L", format: "gnu", size: 5000 }), zeros(3000)))).toBe(EOF);
      expect(fail(concat(header({ typeflag: "L", format: "gnu", size: 5 << 20 }), zeros(3000)))).toBe(EOF);
      expect(name(only(archive(entry({ typeflag: "L", format: "gnu" }, zeros(1 << 20)), header({ name: "f" }))))).toBe(
        "f",
      );
    });
  });

  describe("PAX records", () => {
    it("override path, linkpath, size, uid, gid, uname, gname and mtime", () => {
      const records: [string, string][] = [
        ["path", "pax/path"],
        ["linkpath", "pax/link"],
        ["size", "5"],
        ["uid", "123456789"],
        ["gid", "-1"],
        ["uname", "pax-user"],
        ["gname", "pax-group"],
        ["mtime", "1700000000.5"],
      ];
      const { entries } = parse(
        archive(
          pax(records),
          entry({ name: "hdr", linkname: "hl", uid: 1, gid: 2, uname: "u", gname: "g" }, "12345"),
          entry({ name: "next" }),
        ),
      );
      const e = entries[0]!;
      expect([name(e), text(e.linkname), text(e.uname), text(e.gname)]).toEqual([
        "pax/path",
        "pax/link",
        "pax-user",
        "pax-group",
      ]);
      expect(e).toMatchObject({
        size: 5,
        uid: 123456789,
        gid: 0xffffffff,
        mtimeSec: 1700000000,
        mtimeNsec: 500000000,
        dataOffset: 1536,
      });
      expect(paxOf(e)).toEqual([...records].sort(([a], [b]) => (a < b ? -1 : 1)));
      expect(name(entries[1]!)).toBe("next");
      expect(entries[1]!.pax).toEqual([]);
    });

    it("uses the size record to skip data", () => {
      const { entries } = parse(
        archive(pax([["size", "700"]]), header({ size: 0 }), randomBytes(700), zeros(324), entry({ name: "next" })),
      );
      expect(entries.map((e) => [e.size, e.dataOffset])).toEqual([
        [700, 1536],
        [0, 3072],
      ]);
    });

    it("keep header values for empty-valued records but report those records", () => {
      const e = only(
        archive(
          pax([
            ["uname", ""],
            ["path", ""],
            ["mtime", ""],
            ["comment", ""],
          ]),
          header({ name: "hdr", uname: "hdr-user" }),
        ),
      );
      expect([name(e), text(e.uname), e.mtimeSec]).toEqual(["hdr", "hdr-user", 1700000000]);
      expect(paxOf(e)).toEqual([
        ["comment", ""],
        ["mtime", ""],
        ["path", ""],
        ["uname", ""],
      ]);
    });

    it("keep the last of duplicate keys and sort keys bytewise, values as raw bytes", () => {
      const cap = "\x01\x00\x00\x02\x00\x20\x00\x00\xff";
      const e = only(
        archive(
          pax([
            ["b", "1"],
            ["comment", "first"],
            ["\xc3\xa9t\xc3\xa9", "utf-8 key"],
            ["SCHILY.xattr.security.capability", cap],
            ["B", "upper"],
            ["comment", "second"],
            ["SCHILY.xattr.user.foo", "bar"],
          ]),
          header({}),
        ),
      );
      expect(paxOf(e)).toEqual([
        ["B", "upper"],
        ["SCHILY.xattr.security.capability", cap],
        ["SCHILY.xattr.user.foo", "bar"],
        ["b", "1"],
        ["comment", "second"],
        ["\xc3\xa9t\xc3\xa9", "utf-8 key"],
      ]);
    });

    it("parse mtime as sec[.frac] with Go's padding, truncation and negative times", () => {
      const mtime = (v: string) => {
        const e = only(archive(pax([["mtime", v]]), header({})));
        return [e.mtimeSec, e.mtimeNsec];
      };
      expect(mtime("1700000000")).toEqual([1700000000, 0]);
      expect(mtime("1.5")).toEqual([1, 500000000]);
      expect(mtime("1.1234567891")).toEqual([1, 123456789]);
      expect(mtime("1.")).toEqual([1, 0]);
      expect(mtime("+3.000000001")).toEqual([3, 1]);
      expect(mtime("-1.5")).toEqual([-2, 500000000]);
      expect(mtime("-0.25")).toEqual([-1, 750000000]);
      expect(mtime("-7")).toEqual([-7, 0]);
      expect(mtime("-0")).toEqual([0, 0]);
      for (const bad of [".5", "1.5x", "1.-5", "x", "1e3", "9223372036854775808"]) {
        expect(fail(archive(pax([["mtime", bad]]), header({})))).toBe(INVALID);
      }
      expect(fail(archive(pax([["atime", "bad"]]), header({})))).toBe(INVALID);
      expect(fail(archive(pax([["ctime", "1.x"]]), header({})))).toBe(INVALID);
    });

    it("parse uid/gid/size as int64 and keep the low 32 bits of ids", () => {
      const ids = (uid: string) => only(archive(pax([["uid", uid]]), header({ uid: 9 }))).uid;
      expect(ids("4294967296")).toBe(0);
      expect(ids("4294967301")).toBe(5);
      expect(ids("-9223372036854775808")).toBe(0);
      for (const bad of ["abc", "1.0", " 1", "9223372036854775808"])
        expect(fail(archive(pax([["uid", bad]]), header({})))).toBe(INVALID);
      expect(fail(archive(pax([["size", "-1"]]), header({})))).toBe(INVALID);
      expect(only(archive(pax([["size", "-1"]]), header({ name: "d/", typeflag: "5" }))).size).toBe(-1);
    });

    it("reject malformed records", () => {
      const body = (s: string) => archive(entry({ typeflag: "x" }, s), header({}));
      for (const bad of [
        "5 a=b\n",
        "7 a=b\n",
        "6 a=b\r",
        "abc a=b\n",
        "6a=bc\n",
        "6 ab\n\n",
        "5 =x\n",
        "0 a=\n",
        "-6 a=b\n",
        "99 a=b\n",
        "6 a=b\n ",
      ]) {
        expect(fail(body(bad))).toBe(INVALID);
      }
      expect(fail(archive(pax([["path", "a\0b"]]), header({})))).toBe(INVALID);
      expect(fail(archive(pax([["k\0ey", "v"]]), header({})))).toBe(INVALID);
      expect(paxOf(only(body("+08 a=b\n")))).toEqual([["a", "b"]]); // Go's ParseInt takes a sign and leading zeros
      expect(paxOf(only(body("6 a=b\n9 c=d=ee\n")))).toEqual([
        ["a", "b"],
        ["c", "d=ee"],
      ]);
    });

    it("apply only the latest extended header", () => {
      expect(paxOf(only(archive(pax([["a", "1"]]), pax([["b", "2"]]), header({}))))).toEqual([["b", "2"]]);
    });

    it("fail on bodies over 1 MiB and on truncated bodies", () => {
      const big = paxBody([["comment", "c".repeat(1 << 20)]]);
      expect(fail(archive(entry({ typeflag: "x" }, big), header({})))).toBe("archive/tar: header field too long");
      expect(fail(concat(header({ typeflag: "x", size: 100 }), paxBody([["a", "b"]])))).toBe(EOF);
    });

    it("end cleanly when the archive ends after an extended header", () => {
      expect(parse(archive(pax([["path", "x"]])))).toEqual({ entries: [], consumed: 2048 });
    });

    it("fold GNU sparse 0.0 offset/numbytes into GNU.sparse.map and report the real size", () => {
      const { entries } = parse(
        archive(
          pax([
            ["GNU.sparse.size", "100"],
            ["GNU.sparse.numblocks", "2"],
            ["GNU.sparse.offset", "0"],
            ["GNU.sparse.numbytes", "5"],
            ["GNU.sparse.offset", "50"],
            ["GNU.sparse.numbytes", "5"],
          ]),
          entry({ name: "sparse" }, "0123456789"),
          entry({ name: "next" }),
        ),
      );
      expect(paxOf(entries[0]!)).toEqual([
        ["GNU.sparse.map", "0,5,50,5"],
        ["GNU.sparse.numblocks", "2"],
        ["GNU.sparse.size", "100"],
      ]);
      expect(entries.map((e) => [name(e), e.size, e.dataOffset])).toEqual([
        ["sparse", 100, 1536],
        ["next", 0, 2560],
      ]);
      const misordered = pax([
        ["GNU.sparse.numbytes", "5"],
        ["GNU.sparse.offset", "0"],
      ]);
      expect(fail(archive(misordered, header({})))).toBe(INVALID);
      const beyond = pax([
        ["GNU.sparse.size", "4"],
        ["GNU.sparse.numblocks", "1"],
        ["GNU.sparse.map", "0,5"],
      ]);
      expect(fail(archive(beyond, entry({}, "01234")))).toBe(INVALID);
      const miscounted = pax([
        ["GNU.sparse.numblocks", "2"],
        ["GNU.sparse.map", "0,5"],
      ]);
      expect(fail(archive(miscounted, entry({}, "01234")))).toBe(INVALID);
    });

    it("read a GNU sparse 1.0 map from the data: the entry's data starts after it", () => {
      const map = concat(b("2\n0\n3\n9000\n3\n"), zeros(512 - 13));
      const { entries } = parse(
        archive(
          pax([
            ["GNU.sparse.major", "1"],
            ["GNU.sparse.minor", "0"],
            ["GNU.sparse.name", "db/sparse.db"],
            ["GNU.sparse.realsize", "10000"],
          ]),
          entry({ name: "GNUSparseFile.0/sparse.db" }, concat(map, b("abcdef"))),
          entry({ name: "next" }, "n"),
        ),
      );
      expect(entries.map((e) => [name(e), e.size, e.dataOffset, e.headerOffset])).toEqual([
        ["db/sparse.db", 10000, 1536 + 512, 0],
        ["next", 1, 3072, 12288], // align(2048 + 10000): the reference's TarHeaderOffset
      ]);
      const header1x0 = pax([
        ["GNU.sparse.major", "1"],
        ["GNU.sparse.minor", "0"],
        ["GNU.sparse.realsize", "10"],
      ]);
      expect(fail(archive(header1x0, entry({}, "1\n0\n")))).toBe(EOF); // map runs past the entry's data
      expect(fail(archive(header1x0, entry({}, concat(b("1\n0\n11\n"), zeros(509)))))).toBe(INVALID);
      expect(fail(archive(header1x0, entry({}, concat(b("x\n"), zeros(510)))))).toBe(INVALID);
      expect(fail(archive(header1x0, entry({}, zeros((1 << 20) + 512))))).toBe("archive/tar: sparse map too long");
      expect(fail(archive(header1x0, header({ name: "d/", typeflag: "5" })))).toBe(EOF);
    });
  });

  describe("unsupported entries", () => {
    it("reject a PAX global header after parsing it", () => {
      const err = errorOf(() => readTarEntries(archive(pax([["comment", "global"]], "g"), entry({}))));
      expect([err.message, err.kind]).toEqual(["unsupported input tar entry 'g'", "unsupported"]);
      expect(fail(archive(entry({ typeflag: "g" }, "garbage"), entry({})))).toBe(INVALID);
      expect(fail(concat(header({ typeflag: "g", size: 100 }), zeros(10)))).toBe(EOF);
      // an unpacker asks for global headers to be dropped (containerd ignores them)
      const seen: TarEntry[] = [];
      const r = new TarReader((e) => seen.push(e), { skipGlobalHeaders: true });
      r.push(
        archive(pax([["comment", "global"]], "g"), entry({ name: "after" }, "data"), pax([["comment", "again"]], "g")),
      );
      r.end();
      expect(seen.map((e) => text(e.name))).toEqual(["after"]);
    });

    it("reject old GNU sparse files once their map is read", () => {
      const sparse = (s: HeaderSpec) =>
        header({
          format: "gnu",
          typeflag: "S",
          size: 3,
          raw: [
            [386, "00000000000\0"],
            [398, "00000000003\0"],
            [483, "00000010000\0"],
          ],
          ...s,
        });
      expect(fail(archive(sparse({}), entry({}, "abc")))).toBe("unsupported input tar entry 'S'");
      expect(fail(archive(sparse({ format: "ustar" })))).toBe(INVALID);
      expect(fail(concat(sparse({ raw: [[482, "\x01"]] })))).toBe(EOF); // an extension block is missing
      expect(
        fail(
          archive(
            sparse({
              raw: [
                [386, "00000000000\0"],
                [398, "00000000003\0"],
                [483, "00000000002\0"],
              ],
            }),
          ),
        ),
      ).toBe(INVALID);
    });

    it("reject every other typeflag, quoted like Go's %q", () => {
      for (const t of ["7", "V", "M", "D", "A", "N", "I"])
        expect(fail(archive(entry({ typeflag: t })))).toBe(`unsupported input tar entry '${t}'`);
      expect(fail(archive(entry({ typeflag: 0x80 })))).toBe("unsupported input tar entry '\\u0080'");
      expect(goQuoteByte(0x27)).toBe("'\\''");
      expect(goQuoteByte(0x5c)).toBe("'\\\\'");
      expect(goQuoteByte(0x01)).toBe("'\\x01'");
      expect(goQuoteByte(0x0a)).toBe("'\\n'");
      expect(goQuoteByte(0x7f)).toBe("'\\x7f'");
      expect(goQuoteByte(0xad)).toBe("'\\u00ad'");
      expect(goQuoteByte(0xe9)).toBe("'é'");
      expect(goQuoteByte(0x20)).toBe("' '");
    });
  });

  describe("end of archive and truncation", () => {
    const one = entry({ name: "f" }, "hello");

    it("ends cleanly at a header boundary without a marker", () => {
      expect(parse(one).consumed).toBe(1024);
      expect(parse(new Uint8Array(0))).toEqual({ entries: [], consumed: 0 });
    });

    it("counts one zero block followed by the end of the stream", () => {
      expect(parse(concat(one, zeros(512))).consumed).toBe(1536);
    });

    it("counts both zero blocks and none of the record padding after them", () => {
      const { entries, consumed } = parse(concat(one, zeros(10240 - 1024)));
      expect([entries.length, consumed]).toEqual([1, 2048]);
    });

    it("ignores bytes pushed after the marker", () => {
      const r = new TarReader(() => {});
      r.push(archive(one));
      r.push(b("not a tar header at all"));
      r.push(randomBytes(5000));
      expect(r.end()).toBe(2048);
    });

    it("rejects a zero block followed by a non-zero block", () => {
      expect(fail(concat(one, zeros(512), entry({ name: "g" })))).toBe(INVALID);
      expect(fail(concat(one, zeros(512), zeros(100)))).toBe(EOF);
    });

    it("fails on a stream cut inside a header or inside data", () => {
      expect(fail(concat(one, header({}).subarray(0, 300)))).toBe(EOF);
      expect(fail(concat(header({ size: 1000 }), zeros(999)))).toBe(EOF);
    });

    it("ends cleanly on a stream cut inside padding, as Go does", () => {
      const { entries, consumed } = parse(concat(header({ size: 5 }), b("hello"), zeros(100)));
      expect([entries.length, consumed]).toEqual([1, 617]);
    });

    it("keeps failing after an error", () => {
      const r = new TarReader(() => {});
      const first = errorOf(() => r.push(header({ checksum: 1 })));
      expect(errorOf(() => r.push(zeros(512)))).toBe(first);
      expect(errorOf(() => r.end())).toBe(first);
    });

    it("does not accept bytes after end()", () => {
      const r = new TarReader(() => {});
      r.push(one);
      expect(r.end()).toBe(1024);
      expect(() => r.push(zeros(1))).toThrow(/push after end/);
    });

    it("skips large entries without holding them", () => {
      const entries: TarEntry[] = [];
      const r = new TarReader((e) => entries.push(e));
      const size = 3 * 2 ** 30; // 3 GiB of data, pushed as one reused 1 MiB chunk
      r.push(header({ name: "big", raw: [[124, base256(BigInt(size), 12)]] }));
      const chunk = new Uint8Array(1 << 20);
      for (let left = size; left > 0; left -= chunk.length)
        r.push(left >= chunk.length ? chunk : chunk.subarray(0, left));
      r.push(archive(entry({ name: "after" })));
      expect(r.end()).toBe(512 + size + 512 + 1024);
      expect(entries.map((e) => [name(e), e.size, e.dataOffset])).toEqual([
        ["big", size, 512],
        ["after", 0, 512 + size + 512],
      ]);
    });
  });
});

/** Rewrites the checksum of the 512-byte block at off as if it were a header. */
function resign(bytes: Uint8Array, off: number) {
  const blk = bytes.subarray(off, off + 512);
  if (blk.length < 512) return;
  blk.fill(0x20, 148, 156);
  const sum = blk.reduce((n, c) => n + c, 0);
  blk.set(b(`${sum.toString(8).padStart(6, "0")}\0 `), 148);
}

describe("corrupted input", () => {
  it("fails only with TarErrors, identically for any chunking", () => {
    const base = [
      new Uint8Array(readFileSync(new URL("layer.tar", V))),
      archive(
        pax([
          ["path", "p"],
          ["mtime", "1.5"],
          ["GNU.sparse.major", "1"],
          ["GNU.sparse.minor", "0"],
          ["GNU.sparse.realsize", "9"],
        ]),
        entry({}, concat(b("1\n0\n3\n"), zeros(506), b("abc"))),
        gnuLong("L", "long"),
        entry({}, "x"),
      ),
    ];
    const r = rng(7);
    const outcome = (f: () => { entries: TarEntry[]; consumed: number }) => {
      try {
        return f();
      } catch (e) {
        expect(e).toBeInstanceOf(TarError);
        return (e as TarError).message;
      }
    };
    for (let i = 0; i < 2000; i++) {
      const bytes = base[i % base.length]!.slice();
      for (let k = 1 + Math.floor(r() * 4); k > 0; k--) {
        // aim at header blocks most of the time
        const at =
          r() < 0.8
            ? Math.floor(r() * (bytes.length / 512)) * 512 + Math.floor(r() * 512)
            : Math.floor(r() * bytes.length);
        bytes[at] = Math.floor(r() * 256);
        if (r() < 0.5) resign(bytes, at - (at % 512));
      }
      const cut = r() < 0.3 ? bytes.subarray(0, Math.floor(r() * bytes.length)) : bytes;
      const whole = outcome(() => readTarEntries(cut));
      expect(outcome(() => readChunked(cut, () => 1 + Math.floor(r() * 700)))).toEqual(whole);
    }
  });
});
