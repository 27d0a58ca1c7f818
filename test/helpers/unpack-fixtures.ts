// A realistic layer tree for the unpacker tests (system-like directories with thousands of files,
// links, xattrs, devices, odd owners and times, awkward names, whiteouts), GNU tar around it, and a
// dumper that records everything a layer comparison needs.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { link, lstat, mkdir, readdir, readFile, readlink, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { prng } from "./span-layers.js";

export const run = promisify(execFile);
const B = (s: string) => Buffer.from(s, "latin1"); // binary-string paths (any byte)

function textish(seed: number, n: number): Buffer {
  const words = ["lorem", "ipsum", "layer", "overlay", "span", "ztoc", "gzip", "tar", "soci", "digest", "\n"];
  const r = prng(seed, n);
  const parts: string[] = [];
  let len = 0;
  for (let i = 0; len < n; i++) {
    const w = words[r[i % n]! % words.length]!;
    parts.push(w + " ");
    len += w.length + 1;
  }
  return Buffer.from(parts.join("").slice(0, n));
}

async function touch(path: string, when: string): Promise<void> {
  await run("touch", ["-h", "-d", when, "--", path]);
}
async function xattr(path: string, name: string, hex: string): Promise<void> {
  await run("setfattr", ["-h", "-n", name, "-v", "0x" + hex, "--", path]);
}

/**
 * Builds the layer's contents under `dir`. Directory mtimes are set last (creating entries inside
 * a directory changes its mtime). Returns the number of entries created.
 */
export async function buildRealisticTree(dir: string): Promise<number> {
  let n = 0;
  const dirTimes: [string, string][] = [];
  const mk = async (rel: string, mode = 0o755, when?: string) => {
    const p = join(dir, rel);
    await mkdir(p, { recursive: true });
    await run("chmod", [mode.toString(8), p]);
    if (when) dirTimes.push([p, when]);
    n++;
  };
  const file = async (rel: string, data: Buffer | string, mode = 0o644, when?: string) => {
    const p = join(dir, rel);
    await writeFile(p, data);
    await run("chmod", [mode.toString(8), p]);
    if (when) await touch(p, when);
    n++;
  };

  // System-like bulk: 60 packages × 50 files, sizes 0..6 KB, ns mtimes from the filesystem.
  await mk("usr", 0o755, "@1600000000.5");
  await mk("usr/lib", 0o755, "@1600000001");
  await mk("usr/share/doc", 0o755);
  for (let p = 0; p < 60; p++) {
    await mk(`usr/lib/pkg${p}`, 0o755, `@${1600000100 + p}.${String(p * 7919).padStart(9, "0")}`);
    const writes: Promise<void>[] = [];
    for (let f = 0; f < 50; f++) {
      const seed = p * 1000 + f + 1;
      const size = f % 10 === 0 ? 0 : (seed * 2654435761) % 6000;
      const data = f % 3 === 0 ? prng(seed, size) : textish(seed, size);
      writes.push(writeFile(join(dir, `usr/lib/pkg${p}/file-${f}.dat`), data));
    }
    await Promise.all(writes);
    n += 50;
    await symlink(`file-1.dat`, join(dir, `usr/lib/pkg${p}/current`));
    n++;
  }
  await file("usr/share/doc/README", "read me\n", 0o644, "@1234567890.123456789");

  await mk("usr/bin");
  for (let i = 0; i < 20; i++) await file(`usr/bin/tool${i}`, prng(i + 77, 3000 + i), 0o755);
  await file("usr/bin/su", prng(5, 4000), 0o4755);
  await file("usr/bin/wall", prng(6, 2000), 0o2755);
  await run("chown", ["0:5", join(dir, "usr/bin/wall")]);
  await run("chmod", ["2755", join(dir, "usr/bin/wall")]);
  await symlink("usr/bin", join(dir, "bin"));
  n++;

  // A few MB of large files: incompressible, text, and zeros.
  await mk("big");
  await file("big/random.bin", prng(42, 4 << 20));
  await file("big/text.log", textish(43, 2 << 20), 0o640, "@1700000000.999999999");
  await file("big/zeros.img", Buffer.alloc(1 << 20), 0o600);

  // Hardlinks across directories.
  await mk("hard");
  await mk("hard/sub");
  await file("hard/a", "shared inode\n", 0o644, "@1650000000.25");
  await link(join(dir, "hard/a"), join(dir, "hard/b"));
  await link(join(dir, "hard/a"), join(dir, "hard/sub/c"));
  await file("hard/x", prng(9, 10000), 0o755);
  await link(join(dir, "hard/x"), join(dir, "hard/y"));
  n += 3;

  // Extended attributes, binary values and trusted.* included; a capability on a file whose owner
  // is not root (chown clears security.capability, so order matters).
  await mk("xattr");
  await file("xattr/plain", "attrs\n");
  await xattr(join(dir, "xattr/plain"), "user.comment", Buffer.from("hello world").toString("hex"));
  await xattr(join(dir, "xattr/plain"), "user.binary", "00ff0a0d3d2200017f80");
  await xattr(join(dir, "xattr/plain"), "trusted.secret", "deadbeef00");
  await xattr(join(dir, "xattr/plain"), "user.empty", "");
  await mk("xattr/dir");
  await xattr(join(dir, "xattr/dir"), "user.dirattr", "0102");
  await file("xattr/cap-root", prng(11, 500), 0o755);
  await xattr(join(dir, "xattr/cap-root"), "security.capability", "0100000200040000000000000000000000000000");
  await file("xattr/cap-user", prng(12, 500), 0o750);
  await run("chown", ["1000:1000", join(dir, "xattr/cap-user")]);
  await xattr(join(dir, "xattr/cap-user"), "security.capability", "0100000200300000000000000000000000000000");
  await symlink("plain", join(dir, "xattr/link"));
  await xattr(join(dir, "xattr/link"), "trusted.onlink", "6c");
  n += 1;

  // Devices and fifos with odd modes and owners.
  await mk("dev");
  await run("mknod", ["-m", "666", join(dir, "dev/null"), "c", "1", "3"]);
  await run("mknod", ["-m", "660", join(dir, "dev/sda"), "b", "8", "0"]);
  await run("chown", ["0:6", join(dir, "dev/sda")]);
  await run("mknod", ["-m", "620", join(dir, "dev/tty9"), "c", "4", "9"]);
  await run("chown", ["0:5", join(dir, "dev/tty9")]);
  await run("mkfifo", ["-m", "644", join(dir, "dev/fifo")]);
  await run("mkfifo", ["-m", "600", join(dir, "dev/pipe-user")]);
  await run("chown", ["1000:1000", join(dir, "dev/pipe-user")]);
  n += 5;

  // Special permission bits and odd owners.
  await mk("tmp", 0o1777);
  await mk("srv/shared", 0o2775);
  await run("chown", ["0:50", join(dir, "srv/shared")]);
  await run("chmod", ["2775", join(dir, "srv/shared")]);
  await mk("home/user", 0o700);
  await file("home/user/.profile", "export PS1='$ '\n", 0o600);
  await run("chown", ["-R", "1000:1000", join(dir, "home/user")]);
  await mk("odd");
  await file("odd/nobody", "n\n", 0o444);
  await run("chown", ["65534:65534", join(dir, "odd/nobody")]);
  await file("odd/huge-ids", "h\n", 0o4711);
  await run("chown", ["4000000000:3999999999", join(dir, "odd/huge-ids")]);
  await run("chmod", ["4711", join(dir, "odd/huge-ids")]);
  await file("odd/sticky-file", "s\n", 0o1644);
  await file("odd/no-perms", "z\n", 0o000);

  // Times: sub-second, epoch, before the epoch, far future.
  await mk("times");
  await file("times/ns", "t\n", 0o644, "@1600000000.123456789");
  await file("times/us", "t\n", 0o644, "@1600000000.123456");
  await file("times/epoch", "t\n", 0o644, "@0");
  await file("times/before-epoch", "t\n", 0o644, "@-86400.75");
  await file("times/future", "t\n", 0o644, "@4102444800.999999999");
  await symlink("ns", join(dir, "times/link"));
  await touch(join(dir, "times/link"), "@1500000000.000001");
  n++;

  // Awkward names and link targets.
  await mk("names");
  for (const name of ["with space", "ünïcödé", "a=b", "new\nline", "tab\there", "back\\slash", "x".repeat(200)]) {
    await file(`names/${name}`, name);
  }
  await writeFile(Buffer.concat([B(join(dir, "names")), B("/raw-\xff\xfe-bytes")]), "raw");
  n++;
  const deep = "d".repeat(90) + "/" + "e".repeat(90) + "/" + "f".repeat(90);
  await mk(`names/${deep}`);
  await file(`names/${deep}/leaf-with-a-long-path`, "deep\n");
  await mk("links");
  await symlink("t".repeat(150), join(dir, "links/long-target"));
  await symlink("/nonexistent/target", join(dir, "links/dangling"));
  await symlink("/usr/bin/tool1", join(dir, "links/absolute"));
  await symlink("../usr/lib", join(dir, "links/relative"));
  n += 4;

  await mk("empty-dir", 0o750);
  await file("empty-file", "");

  // Whiteouts: a file, a directory, and an opaque directory with new contents.
  await file(".wh.gone", "", 0o600);
  await mk("etc");
  await file("etc/kept-in-layer", "k\n");
  await file("etc/.wh.removed-dir", "", 0o644);
  await mk("opaque", 0o755, "@1610000000.5");
  await file("opaque/.wh..wh..opq", "", 0o644);
  await file("opaque/new-file", "new\n");
  await file("usr/lib/pkg3/.wh.nested-gone", "");

  for (const [p, when] of dirTimes.reverse()) await touch(p, when);
  return n;
}

/** Files a lower layer holds that the layer's whiteouts and opaque dir must hide (or not). */
export async function buildLowerTree(dir: string): Promise<void> {
  for (const d of ["etc/removed-dir/sub", "opaque/sub", "usr/lib/pkg3", "usr/lib/lower-only"])
    await mkdir(join(dir, d), { recursive: true });
  await writeFile(join(dir, "gone"), "should be hidden\n");
  await writeFile(join(dir, "etc/removed-dir/x"), "hidden\n");
  await writeFile(join(dir, "etc/removed-dir/sub/y"), "hidden\n");
  await writeFile(join(dir, "etc/kept-lower"), "visible\n");
  await writeFile(join(dir, "opaque/old"), "hidden by opaque\n");
  await writeFile(join(dir, "opaque/sub/old2"), "hidden by opaque\n");
  await writeFile(join(dir, "usr/lib/pkg3/nested-gone"), "hidden\n");
  await writeFile(join(dir, "usr/lib/pkg3/lower-kept"), "visible\n");
  await writeFile(join(dir, "usr/lib/lower-only/file"), "visible\n");
}

/** GNU tar, PAX format with every xattr and numeric owners: the layer as a person would make it. */
export async function gnuTar(src: string, out: string): Promise<void> {
  await run("tar", ["--format=posix", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-cf", out, "-C", src, "."]);
}

export async function gnuUntar(tarFile: string, dest: string): Promise<void> {
  await mkdir(dest, { recursive: true });
  await run("tar", ["-xpf", tarFile, "--xattrs", "--xattrs-include=*", "--numeric-owner", "-C", dest]);
}

// ---- tree dump --------------------------------------------------------------------------------

export interface DumpEntry {
  type: "file" | "dir" | "symlink" | "char" | "block" | "fifo" | "socket";
  mode: number; // permission and special bits
  uid: number;
  gid: number;
  mtimeNs: bigint;
  size: number;
  link?: string; // symlink target, hex
  rdev?: string; // "major:minor"
  sha256?: string;
  xattrs: Record<string, string>; // name -> hex
  ino: bigint;
  nlink: number;
}

/** Every entry below `root` keyed by its relative path (a binary string), plus xattrs via getfattr. */
export async function dumpTree(root: string): Promise<Map<string, DumpEntry>> {
  const out = new Map<string, DumpEntry>();
  const rootB = Buffer.from(root);
  const walk = async (rel: string) => {
    const full = rel === "" ? rootB : Buffer.concat([rootB, B("/" + rel)]);
    const names = await readdir(full, { encoding: "buffer" });
    for (const nb of names) {
      const r = rel === "" ? nb.toString("latin1") : `${rel}/${nb.toString("latin1")}`;
      const p = Buffer.concat([rootB, B("/" + r)]);
      const st = await lstat(p, { bigint: true });
      const fmt = Number(st.mode) & 0o170000;
      const type = (
        {
          0o100000: "file",
          0o040000: "dir",
          0o120000: "symlink",
          0o020000: "char",
          0o060000: "block",
          0o010000: "fifo",
          0o140000: "socket",
        } as const
      )[fmt]!;
      const e: DumpEntry = {
        type,
        mode: Number(st.mode) & 0o7777,
        uid: Number(st.uid),
        gid: Number(st.gid),
        mtimeNs: st.mtimeNs,
        size: type === "dir" ? 0 : Number(st.size),
        xattrs: {},
        ino: st.ino,
        nlink: Number(st.nlink),
      };
      if (type === "symlink") e.link = (await readlink(p, { encoding: "buffer" })).toString("hex");
      if (type === "char" || type === "block") e.rdev = `${Number(st.rdev) >> 8}:${Number(st.rdev) & 0xff}`;
      if (type === "file")
        e.sha256 = createHash("sha256")
          .update(await readFile(p))
          .digest("hex");
      out.set(r, e);
      if (type === "dir") await walk(r);
    }
  };
  await walk("");
  // getfattr -R: one process for the whole tree, physical walk, symlinks not followed.
  const { stdout } = await run("getfattr", ["-R", "-P", "-h", "-d", "-m", "-", "-e", "hex", "--absolute-names", root], {
    maxBuffer: 64 << 20,
    encoding: "latin1",
  });
  let cur: string | undefined;
  for (const line of stdout.split("\n")) {
    if (line.startsWith("# file: ")) {
      const path = unquote(line.slice(8));
      const prefix = B(root).toString("latin1");
      cur = path === prefix ? "" : path.slice(prefix.length + 1);
    } else if (line.includes("=") && cur !== undefined) {
      const eq = line.indexOf("=");
      const name = unquote(line.slice(0, eq));
      const value = line.slice(eq + 1);
      const target = out.get(cur); // the root itself is not compared
      if (target) target.xattrs[name] = value.startsWith("0x") ? value.slice(2) : value;
    }
  }
  return out;
}

// getfattr's \ooo escapes back to a binary string.
function unquote(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/**
 * What containerd's overlay conversion makes of an extracted layer: `.wh.X` becomes a 0:0 char
 * device X (mode 0, the whiteout's owner), `.wh..wh..opq` becomes `<ns>.overlay.opaque=y` on its dir.
 */
export function overlayConverted(
  tree: Map<string, DumpEntry>,
  ns: "trusted" | "user" = "trusted",
): Map<string, DumpEntry> {
  const out = new Map(tree);
  for (const [rel, e] of tree) {
    const slash = rel.lastIndexOf("/");
    const parent = slash < 0 ? "" : rel.slice(0, slash);
    const base = rel.slice(slash + 1);
    if (!base.startsWith(".wh.")) continue;
    out.delete(rel);
    if (base === ".wh..wh..opq") {
      if (parent !== "") {
        const d = out.get(parent)!;
        out.set(parent, { ...d, xattrs: { ...d.xattrs, [`${ns}.overlay.opaque`]: "79" } });
      }
      continue;
    }
    const target = (parent === "" ? "" : parent + "/") + base.slice(4);
    out.set(target, {
      type: "char",
      mode: 0,
      uid: e.uid,
      gid: e.gid,
      mtimeNs: -1n,
      size: 0,
      rdev: "0:0",
      xattrs: {},
      ino: -1n,
      nlink: 1,
    });
  }
  return out;
}

/**
 * The tree as comparable lines. mtimes are compared to the microsecond (Node's utimes keeps no
 * more); whiteouts' mtimes are not compared (containerd leaves them at creation time); hardlinks
 * are compared as groups of names sharing an inode.
 */
export function comparable(tree: Map<string, DumpEntry>): { entries: string[]; linkGroups: string[] } {
  const entries: string[] = [];
  const byIno = new Map<bigint, string[]>();
  for (const [rel, e] of [...tree].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const whiteout = e.type === "char" && e.rdev === "0:0";
    const us = whiteout ? "-" : String(floorDiv(e.mtimeNs, 1000n));
    const x = Object.entries(e.xattrs)
      .sort()
      .map(([k, v]) => `${k}=${v}`)
      .join(",");
    entries.push(
      [
        JSON.stringify(B(rel).toString("utf8")),
        e.type,
        e.mode.toString(8),
        `${e.uid}:${e.gid}`,
        us,
        e.size,
        e.link ?? "",
        e.rdev ?? "",
        e.sha256 ?? "",
        x,
      ].join(" "),
    );
    if (e.type !== "dir" && e.nlink > 1) byIno.set(e.ino, [...(byIno.get(e.ino) ?? []), rel]);
  }
  const linkGroups = [...byIno.values()].map((g) => g.sort().join(" | ")).sort();
  return { entries, linkGroups };
}

function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a % b !== 0n && a < 0n ? q - 1n : q;
}
