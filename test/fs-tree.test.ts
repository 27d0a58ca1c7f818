// The layer tree built from a TOC (docs/snapshotter.md §4.1) and its presentation rules (§4.2), without FUSE.
import { posix } from "node:path";
import { describe, expect, it } from "vitest";
import type { EntryType, FileMetadata } from "../src/formats/toc.js";
import {
  blocksOf,
  buildTree,
  cleanEntryName,
  getXattr,
  inodeOf,
  isOpaqueDir,
  listXattrs,
  lookupChild,
  makedev,
  nodeAttr,
  readDir,
  resolvePath,
  stateDirAttr,
  statFileAttr,
  stateJson,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFREG,
  TreeError,
  whiteoutAttr,
  type LayerTree,
  type TreeNode,
} from "../src/fs/tree.js";
import { GO_ZERO_TIME_UNIX } from "../src/formats/go-time.js";
import type { Ztoc } from "../src/formats/ztoc.js";
import { FS_CACHE_ENTRIES, LayerFs, statArray } from "../src/fs/fuse-layer.js";
import type { LayerFileReader } from "../src/fs/types.js";

const enc = new TextEncoder();
const bytes = (s: string | Uint8Array) => (typeof s === "string" ? enc.encode(s) : s);

function fm(
  name: string | Uint8Array,
  type: EntryType,
  extra: Partial<Omit<FileMetadata, "name" | "linkname" | "xattrs">> & {
    linkname?: string;
    xattrs?: { key: string; value: string | Uint8Array }[];
  } = {},
): FileMetadata {
  const { linkname, xattrs, ...rest } = extra;
  return {
    name: bytes(name),
    type,
    uncompressedOffset: 0,
    uncompressedSize: 0,
    linkname: bytes(linkname ?? ""),
    mode: type === "dir" ? 0o755 : 0o644,
    uid: 0,
    gid: 0,
    uname: new Uint8Array(0),
    gname: new Uint8Array(0),
    modTime: "2023-11-14T22:13:20.123456789Z",
    devmajor: 0,
    devminor: 0,
    xattrs: (xattrs ?? []).map((x) => ({ key: bytes(x.key), value: bytes(x.value) })),
    tarHeaderOffset: 0,
    ...rest,
  };
}

function node(tree: LayerTree, path: string): TreeNode {
  const r = resolvePath(tree, path, "sha256:x.json");
  if (r?.kind !== "node") throw new Error(`${path}: ${JSON.stringify(r)}`);
  return r.node;
}

const names = (n: TreeNode) => readDir(n).map((e) => e.name);

describe("tree construction", () => {
  it("numbers nodes from 1 (root) and creates missing parents after the entry itself, 0755", () => {
    const t = buildTree([fm("a/b/c.txt", "reg", { uncompressedSize: 5, mode: 0o600 })]);
    expect(t.root.id).toBe(1);
    expect(node(t, "/a/b/c.txt").id).toBe(2);
    expect(node(t, "/a/b").id).toBe(3);
    expect(node(t, "/a").id).toBe(4);
    expect(t.count).toBe(4);
    const a = node(t, "/a");
    expect(a.kind).toBe("dir");
    expect(nodeAttr(a).mode).toBe(S_IFDIR | 0o755);
    expect(a.entry).toBeNull();
    expect(a.mtimeSec).toBe(GO_ZERO_TIME_UNIX); // Go's zero time, as the reference
    expect(nodeAttr(t.root).ino).toBe(4); // id + 3
    expect(nodeAttr(node(t, "/a/b/c.txt")).ino).toBe(5);
  });

  it("overwrites a directory in place when it appears again (implicit, repeated)", () => {
    const t = buildTree([
      fm("x/y/f", "reg"),
      fm("x/", "dir", { mode: 0o700, uid: 7 }),
      fm("d/", "dir", { mode: 0o711 }),
      fm("d/sub/", "dir"),
      fm("d/", "dir", { mode: 0o750, gid: 9 }),
    ]);
    const x = node(t, "/x");
    expect(x.id).toBe(4); // created implicitly for x/y/f
    expect(nodeAttr(x).mode).toBe(S_IFDIR | 0o700);
    expect(x.uid).toBe(7);
    const d = node(t, "/d");
    expect(nodeAttr(d).mode).toBe(S_IFDIR | 0o750);
    expect(d.gid).toBe(9);
    expect(names(d)).toEqual(["sub"]); // children kept
    // link counts: 2 + subdirectories, each counted once however often the entry repeats
    expect(d.nlink).toBe(3);
    expect(x.nlink).toBe(3);
    expect(t.root.nlink).toBe(4);
  });

  it("takes the root's attributes from a `./` entry and shows no `.` child", () => {
    const t = buildTree([
      fm("./", "dir", { mode: 0o700, uid: 3, modTime: "2020-01-02T03:04:05.5Z" }),
      fm("./etc/", "dir"),
      fm("./etc/passwd", "reg"),
    ]);
    expect(t.root.id).toBe(1);
    expect(nodeAttr(t.root).mode).toBe(S_IFDIR | 0o700);
    expect(t.root.uid).toBe(3);
    expect(t.root.mtimeSec).toBe(1577934245);
    expect(t.root.mtimeNsec).toBe(500_000_000);
    expect(names(t.root)).toEqual(["etc"]);
    expect(t.root.nlink).toBe(3);
    expect(lookupChild(t.root, ".", true)).toBeNull();
  });

  it("cleans names like path.Clean", () => {
    expect(cleanEntryName("./a//b/./c/")).toBe("a/b/c");
    expect(cleanEntryName("/abs/x")).toBe("abs/x");
    expect(cleanEntryName("a/../b")).toBe("b");
    expect(cleanEntryName("../../x")).toBe("x");
    expect(cleanEntryName("./")).toBe("");
    const t = buildTree([fm("./usr//bin/", "dir"), fm("usr/bin/../lib/x", "reg")]);
    expect(names(node(t, "/usr"))).toEqual(["bin", "lib"]);
  });

  it("cleans every name as path.Clean('/' + name) would, common shapes and odd ones alike", () => {
    // Go's path.Clean("/" + s) equals node's path.posix.normalize("/" + s) but for a trailing slash
    const clean = (s: string) => posix.normalize(`/${s}`).replace(/\/+$/, "").slice(1);
    const parts = ["", ".", "..", "...", ".a", "a.", "a", "bc", "/", "//", "./", "../"];
    let checked = 0;
    for (const a of parts)
      for (const b of parts)
        for (const c of parts) {
          const name = `${a}/${b}${c}`;
          for (const s of [name, `./${name}`, name.slice(1), `${name}/`]) {
            expect(cleanEntryName(s), JSON.stringify(s)).toBe(clean(s));
            checked++;
          }
        }
    expect(checked).toBe(4 * parts.length ** 3);
  });

  it("gives later entries a new implicit directory once a file took the directory's name", () => {
    const t = buildTree([
      fm("a/", "dir"),
      fm("a/x", "reg"),
      fm("a", "reg"), // replaces the directory's name
      fm("a/y", "reg"), // a new implicit directory
      fm("a/z", "reg"),
    ]);
    expect(names(node(t, "/a"))).toEqual(["y", "z"]);
  });

  it("gives hardlinks the target's node and counts the names", () => {
    const t = buildTree([
      fm("bin/busybox", "reg", { uncompressedSize: 10, mode: 0o4755 }),
      fm("sbin/init", "hardlink", { linkname: "bin/busybox" }),
      fm("usr/bin/sh", "hardlink", { linkname: "./sbin/init" }), // through another link name
      fm("bin/other", "reg"),
    ]);
    const a = node(t, "/bin/busybox");
    expect(node(t, "/sbin/init")).toBe(a);
    expect(node(t, "/usr/bin/sh")).toBe(a);
    expect(a.nlink).toBe(3);
    expect(nodeAttr(node(t, "/usr/bin/sh"))).toEqual(nodeAttr(a));
    expect(node(t, "/bin/other").nlink).toBe(1);
    // hardlink entries take no ID of their own: busybox 2, bin 3, sbin 4, usr/bin 5, usr 6, other 7
    expect(node(t, "/bin/other").id).toBe(7);
    expect(readDir(node(t, "/sbin"))[0]!.ino).toBe(inodeOf(a.id));
  });

  it("fails clearly on a hardlink whose target does not exist (yet)", () => {
    expect(() => buildTree([fm("a", "hardlink", { linkname: "missing/file" })])).toThrow(TreeError);
    expect(() => buildTree([fm("a", "hardlink", { linkname: "b" }), fm("b", "reg")])).toThrow(
      /"a" is a hardlink but cannot get link destination "b"/,
    );
  });

  it("lets a later entry of the same name replace the mapping", () => {
    const t = buildTree([fm("f", "reg", { uncompressedSize: 3 }), fm("f", "symlink", { linkname: "target" })]);
    const f = node(t, "/f");
    expect(f.kind).toBe("symlink");
    expect(f.id).toBe(3);
    expect(names(t.root)).toEqual(["f"]);
  });

  it("keeps names with odd bytes: exact for valid UTF-8, U+FFFD for invalid bytes", () => {
    const odd = ["new\nline", "space name", "quote\"'", "café", "🚀", "back\\slash", "tab\t", "-dash"];
    const t = buildTree([
      ...odd.map((n) => fm(`odd/${n}`, "reg")),
      fm(new Uint8Array([0x62, 0xff, 0x2f, 0x63]), "reg"),
    ]);
    const got = names(node(t, "/odd"));
    expect(new Set(got)).toEqual(new Set(odd));
    // sorted bytewise (Go string order)
    expect(got).toEqual([...odd].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))));
    for (const n of odd) expect(node(t, `/odd/${n}`).kind).toBe("reg");
    expect(names(t.root)).toContain("b\ufffd");
    expect(node(t, "/b\ufffd/c").kind).toBe("reg");
  });
});

describe("attributes", () => {
  it("presents type bits from the entry type and permissions with setuid/setgid/sticky from the tar mode", () => {
    const t = buildTree([
      fm("suid", "reg", { mode: 0o104755 }), // type bits in a tar mode are ignored
      fm("sgid", "reg", { mode: 0o2711 }),
      fm("sticky/", "dir", { mode: 0o41777 }),
      fm("all", "reg", { mode: 0o7777 }),
      fm("none", "reg", { mode: 0 }),
      fm("link", "symlink", { linkname: "../some/target", mode: 0o777 }),
      fm("fifo", "fifo", { mode: 0o600 }),
      fm("chr", "char", { devmajor: 1, devminor: 3, mode: 0o666 }),
      fm("blk", "block", { devmajor: 259, devminor: 1000, mode: 0o660 }),
    ]);
    const mode = (p: string) => nodeAttr(node(t, p)).mode;
    expect(mode("/suid")).toBe(S_IFREG | 0o4755);
    expect(mode("/sgid")).toBe(S_IFREG | 0o2711);
    expect(mode("/sticky")).toBe(S_IFDIR | 0o1777);
    expect(mode("/all")).toBe(S_IFREG | 0o7777);
    expect(mode("/none")).toBe(S_IFREG);
    expect(mode("/link")).toBe(S_IFLNK | 0o777);
    expect(mode("/fifo")).toBe(S_IFIFO | 0o600);
    expect(mode("/chr")).toBe(S_IFCHR | 0o666);
    expect(mode("/blk")).toBe(S_IFBLK | 0o660);
    expect(nodeAttr(node(t, "/chr")).rdev).toBe(makedev(1, 3));
    expect(nodeAttr(node(t, "/link")).size).toBe("../some/target".length);
  });

  it("encodes rdev as Linux's makedev, truncated to 32 bits as FUSE carries it", () => {
    // new_encode_dev: minor low byte | major << 8 | (minor & ~0xff) << 12
    expect(makedev(1, 3)).toBe(0x103);
    expect(makedev(8, 0)).toBe(0x800);
    expect(makedev(259, 1000)).toBe((1000 & 0xff) | (259 << 8) | ((1000 & ~0xff) << 12));
    expect(makedev(4000, 300000)).toBe(((300000 & 0xff) | (4000 << 8) | ((300000 & ~0xff) << 12)) >>> 0);
    // and the kernel's new_decode_dev gives the numbers back
    const d = makedev(4000, 300000);
    expect((d & 0xfff00) >>> 8).toBe(4000);
    expect((d & 0xff) | ((d >>> 12) & 0xfff00)).toBe(300000);
  });

  it("reports sizes, 512-byte blocks of 4 KiB, uid/gid, nanosecond mtimes and link counts", () => {
    const t = buildTree([
      fm("f", "reg", { uncompressedSize: 4097, uid: 3000000, gid: 65534, modTime: "2021-06-01T12:00:00.000000001Z" }),
      fm("e", "reg"),
      fm("z", "reg", { modTime: "not a time" }),
    ]);
    const a = nodeAttr(node(t, "/f"));
    expect(a).toMatchObject({
      size: 4097,
      blocks: 16,
      blksize: 4096,
      uid: 3000000,
      gid: 65534,
      nlink: 1,
      mtimeSec: 1622548800,
      mtimeNsec: 1,
    });
    expect(nodeAttr(node(t, "/e"))).toMatchObject({ size: 0, blocks: 0 });
    expect(nodeAttr(node(t, "/z")).mtimeSec).toBe(GO_ZERO_TIME_UNIX);
    expect(blocksOf(1)).toBe(8);
    expect(blocksOf(8192)).toBe(16);
  });

  it("has reserved inodes and fixed attributes for the state dir and its file", () => {
    expect(stateDirAttr()).toMatchObject({
      ino: 1,
      mode: S_IFDIR | 0o500,
      nlink: 1,
      uid: 0,
      gid: 0,
      size: 0,
      mtimeSec: 0,
    });
    expect(statFileAttr(120)).toMatchObject({ ino: 2, mode: S_IFREG | 0o400, nlink: 1, size: 120 });
    expect(inodeOf(1, 2)).toBe(2 * 2 ** 32 + 4);
  });
});

describe("readdir and lookup with overlay whiteouts", () => {
  const t = buildTree([
    fm("etc/", "dir"),
    fm("etc/passwd", "reg"),
    fm("etc/.wh.removed.conf", "reg", { modTime: "2022-02-02T02:02:02.2Z", uid: 5, mode: 0o644 }),
    fm("etc/.wh.shadowed", "reg"),
    fm("etc/shadowed", "reg", { uncompressedSize: 4 }),
    fm(".wh.top", "reg"),
    fm("opt/app/", "dir"),
    fm("opt/app/.wh..wh..opq", "reg"),
    fm("opt/app/x", "reg"),
    fm("opt/plain/", "dir"),
    fm(".wh.", "reg"), // a whiteout of nothing
  ]);

  it("hides .wh. names and presents each whiteout as a char device unless a real entry exists", () => {
    expect(names(node(t, "/etc"))).toEqual(["passwd", "removed.conf", "shadowed"]);
    const ents = readDir(node(t, "/etc"));
    expect(ents.find((e) => e.name === "removed.conf")).toMatchObject({ mode: S_IFCHR });
    expect(ents.find((e) => e.name === "shadowed")).toMatchObject({ mode: S_IFREG | 0o644 });
    expect(names(t.root)).toEqual(["etc", "opt", "top"]);
    expect(names(node(t, "/opt/app"))).toEqual(["x"]);
  });

  it("looks up whiteouts as char 0:0 with perm 0, root owner and the .wh. entry's mtime", () => {
    const etc = node(t, "/etc");
    expect(lookupChild(etc, ".wh.removed.conf", false)).toBeNull();
    expect(lookupChild(etc, ".wh..wh..opq", false)).toBeNull();
    const r = lookupChild(etc, "removed.conf", false);
    expect(r?.kind).toBe("whiteout");
    const a = whiteoutAttr((r as { node: TreeNode }).node);
    expect(a).toMatchObject({
      mode: S_IFCHR,
      rdev: 0,
      uid: 0,
      gid: 0,
      size: 0,
      nlink: 1,
      blocks: 0,
      mtimeSec: 1643767322,
      mtimeNsec: 200_000_000,
    });
    expect(a.ino).toBe(readDir(etc).find((e) => e.name === "removed.conf")!.ino);
    expect(lookupChild(etc, "shadowed", false)).toMatchObject({ kind: "node" });
    expect(lookupChild(etc, "nothing", false)).toBeNull();
    expect(resolvePath(t, "/top", "s.json")?.kind).toBe("whiteout");
    expect(resolvePath(t, "/top/below", "s.json")).toBeNull();
  });

  it("marks a directory holding .wh..wh..opq opaque through the configured xattr", () => {
    const app = node(t, "/opt/app");
    expect(isOpaqueDir(app)).toBe(true);
    expect(isOpaqueDir(node(t, "/opt/plain"))).toBe(false);
    expect(listXattrs(app)).toEqual(["trusted.overlay.opaque"]);
    expect(Buffer.from(getXattr(app, "trusted.overlay.opaque")!).toString()).toBe("y");
    expect(getXattr(app, "user.overlay.opaque")).toBeUndefined();
    expect(listXattrs(app, "user.overlay.opaque")).toEqual(["user.overlay.opaque"]);
    expect(Buffer.from(getXattr(app, "user.overlay.opaque", "user.overlay.opaque")!).toString()).toBe("y");
    expect(listXattrs(node(t, "/opt/plain"))).toEqual([]);
  });

  it("serves the state directory at the root only, unlisted", () => {
    expect(resolvePath(t, "/.soci-snapshotter", "sha256:ab.json")).toEqual({ kind: "state-dir" });
    expect(resolvePath(t, "/.soci-snapshotter/sha256:ab.json", "sha256:ab.json")).toEqual({ kind: "stat-file" });
    expect(resolvePath(t, "/.soci-snapshotter/other.json", "sha256:ab.json")).toBeNull();
    expect(resolvePath(t, "/etc/.soci-snapshotter", "sha256:ab.json")).toBeNull();
    expect(names(t.root)).not.toContain(".soci-snapshotter");
    const shadow = buildTree([fm(".soci-snapshotter/x", "reg"), fm("d/.soci-snapshotter/y", "reg")]);
    expect(resolvePath(shadow, "/.soci-snapshotter/x", "s.json")).toBeNull(); // the state dir wins at the root
    expect(resolvePath(shadow, "/d/.soci-snapshotter/y", "s.json")?.kind).toBe("node");
  });

  it("only descends directories", () => {
    expect(resolvePath(t, "/etc/passwd/x", "s.json")).toBeNull();
    expect(resolvePath(t, "//etc//passwd", "s.json")?.kind).toBe("node");
    expect(resolvePath(t, "/", "s.json")).toEqual({ kind: "node", node: t.root });
  });
});

describe("extended attributes", () => {
  it("exposes SCHILY.xattr.* records only, prefix stripped, binary values intact, names sorted", () => {
    const bin = new Uint8Array([0, 1, 0xff, 0xfe, 0]);
    const t = buildTree([
      fm("f", "reg", {
        xattrs: [
          { key: "SCHILY.xattr.user.z", value: "last" },
          { key: "SCHILY.xattr.security.capability", value: bin },
          { key: "SCHILY.xattr.user.empty", value: "" },
          { key: "mtime", value: "1700000000.5" },
          { key: "atime", value: "1700000000.5" },
          { key: "LIBARCHIVE.xattr.user.other", value: "x" },
        ],
      }),
    ]);
    const f = node(t, "/f");
    expect(listXattrs(f)).toEqual(["security.capability", "user.empty", "user.z"]);
    expect(getXattr(f, "security.capability")).toEqual(bin);
    expect(getXattr(f, "user.empty")).toEqual(new Uint8Array(0));
    expect(getXattr(f, "mtime")).toBeUndefined();
    expect(getXattr(f, "user.other")).toBeUndefined();
  });
});

describe("state file", () => {
  it("is json.Marshal of the state plus a newline", () => {
    expect(stateJson({ digest: "sha256:ab", size: 200, fetchedSize: 50 })).toBe(
      '{"digest":"sha256:ab","size":200,"fetchedSize":50,"fetchedPercent":25}\n',
    );
    expect(stateJson({ digest: "sha256:ab", size: 3, fetchedSize: 1, error: 'file.Read: <boom> & "x"' })).toBe(
      '{"error":"file.Read: \\u003cboom\\u003e \\u0026 \\"x\\"","digest":"sha256:ab","size":3,"fetchedSize":1,"fetchedPercent":33.33333333333333}\n',
    );
    expect(stateJson({ digest: "d", size: 3, fetchedSize: 3, error: "" })).toBe(
      '{"digest":"d","size":3,"fetchedSize":3,"fetchedPercent":100}\n',
    );
    expect(stateJson({ digest: "d", size: 1e12, fetchedSize: 1 })).toBe(
      '{"digest":"d","size":1000000000000,"fetchedSize":1,"fetchedPercent":1e-10}\n',
    );
    expect(() => stateJson({ digest: "d", size: 0, fetchedSize: 0 })).toThrow(/unsupported value/);
  });
});

describe("a mounted layer's lookup caches", () => {
  it("stay within their bound while every file of a large tree is looked up, listed and stat'ed, with right answers", () => {
    const dirs = 40;
    const perDir = Math.ceil((FS_CACHE_ENTRIES * 3) / dirs);
    const entries = [];
    for (let d = 0; d < dirs; d++) {
      entries.push(fm(`d${d}/`, "dir"));
      for (let f = 0; f < perDir; f++) entries.push(fm(`d${d}/f${f}`, "reg", { uncompressedSize: d * 100_000 + f }));
    }
    const tree = buildTree(entries);
    const unused = new Proxy({} as LayerFileReader, {
      get: (_t, key) => {
        throw new Error(`the reader is not used by lookups (${String(key)})`);
      },
    });
    const fs = new LayerFs({
      mountpoint: "/unused",
      ztoc: { toc: entries } as Ztoc,
      digest: "sha256:x",
      reader: unused,
      tree,
    });
    for (let d = 0; d < dirs; d++) {
      const [err, names] = fs.readdir(`/d${d}`);
      expect(err).toBe(0);
      expect(names.length).toBe(perDir + 2);
      for (let f = 0; f < perDir; f++) {
        const r = fs.resolve(`/d${d}/f${f}`);
        expect(r?.kind).toBe("node");
        const st = fs.stat(r!);
        expect(Array.from(st)).toEqual(Array.from(statArray(nodeAttr(node(tree, `d${d}/f${f}`)))));
      }
      expect(fs.cachedEntries).toBeLessThanOrEqual(3 * FS_CACHE_ENTRIES);
    }
    expect(fs.cachedEntries).toBeGreaterThan(0);
  });
});
