// Realistic container layers for filesystem tests, with GNU tar as the ground truth.
//
//   const fx = await buildLayerFixture();            // needs root (devices, owners, trusted.* xattrs)
//   fx.variants.gzip / .pigz / .tar                  // blob path, digest, size, compression
//   fx.tarPath, fx.diffId                            // the uncompressed tar and its digest
//   fx.extractDir                                    // `tar -xpf` of the layer (whiteout files as they are in the tar)
//   await walkTree(fx.extractDir)                    // JSON dump made by a child process
//   await fx.cleanup()
//
// The tree (built by a Python child from a seed) looks like a small distribution: thousands of small
// files under /usr, /etc, /var…, relative/absolute/dangling symlinks, hardlink groups across
// directories, user.* (binary, empty, 3000-byte) and trusted.* xattrs (also on a directory and a
// symlink), char/block devices (incl. major > 255 and minor > 255), a fifo, setuid/setgid/sticky modes,
// odd uids/gids (one beyond the 7-digit octal field, stored as PAX), sub-second mtimes everywhere,
// odd but valid UTF-8 names, a 200-byte name and a deep path, empty files and dirs, a few MB-sized
// files of random, compressible and mixed data, overlay whiteouts `.wh.<name>` (one shadowed by a
// real entry of the same name) and an opaque directory (`.wh..wh..opq`).
// It is archived with `tar --format=posix --xattrs --xattrs-include='*' --numeric-owner` and
// compressed with `gzip -6`, and with pigz as a multi-member gzip stream (independent-block and
// normal members, plus an empty member).
//
// Everything that touches a FUSE mount (walkTree, readRanges) runs in a child process so that the
// test process, which may be the one serving the mount, never blocks on it.
import { execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

export type LayerVariantName = "gzip" | "pigz" | "tar";

export interface LayerVariant {
  name: LayerVariantName;
  /** The blob on disk. */
  path: string;
  compression: "gzip" | "uncompressed";
  mediaType: string;
  /** sha256 of the blob ("sha256:…"): the layer digest. */
  digest: string;
  size: number;
}

export interface LayerFixture {
  /** Scratch directory holding everything below (removed by cleanup). */
  workDir: string;
  /** The tree as created (before archiving). */
  sourceDir: string;
  /** The uncompressed tar. */
  tarPath: string;
  /** sha256 of the tar ("sha256:…"). */
  diffId: string;
  variants: Record<LayerVariantName, LayerVariant>;
  /** GNU tar's extraction of the tar (as root: owners, modes, devices, xattrs, sub-second mtimes). */
  extractDir: string;
  /** Paths (relative, no leading "./") the test can rely on; see FIXTURE_PATHS. */
  paths: typeof FIXTURE_PATHS;
  cleanup(): Promise<void>;
}

export interface LayerFixtureOptions {
  /** Parent for the scratch directory (default os.tmpdir()). */
  parent?: string;
  seed?: number;
  /** Number of small files (default 3000). */
  smallFiles?: number;
  /** Skip the pigz variant (it is still listed, pointing at the gzip blob). */
  noPigz?: boolean;
}

/** Paths of interest in every fixture layer. */
export const FIXTURE_PATHS = {
  /** Whiteouts as stored in the tar, and the names they hide. */
  whiteouts: [
    { file: ".wh.toplevel", hides: "toplevel" },
    { file: "etc/.wh.removed.conf", hides: "etc/removed.conf" },
    { file: "usr/share/.wh.doc", hides: "usr/share/doc" },
    { file: "var/.wh.shadowed", hides: "var/shadowed" },
  ],
  /** `var/shadowed` exists as a real file too: the real entry wins. */
  shadowedWhiteout: "var/shadowed",
  opaqueDir: "opt/app",
  hardlinkGroups: [
    ["usr/bin/busybox", "bin/busybox-sh", "sbin/busybox-init", "usr/sbin/busybox-x"],
    ["usr/bin/perl", "usr/bin/perl5.36"],
    ["usr/lib/libbig.so", "usr/lib/libbig.so.1"],
  ],
  largeFiles: ["usr/lib/libbig.so", "usr/share/data/big.txt", "var/lib/mixed.bin", "opt/app/blob.bin"],
  symlinks: {
    relative: "lib64",
    absolute: "etc/localtime",
    dangling: "usr/lib/dangling",
    longTarget: "usr/share/odd/long-link",
  },
  devices: [
    { path: "dev/null", type: "char", major: 1, minor: 3 },
    { path: "dev/zero", type: "char", major: 1, minor: 5 },
    { path: "dev/big", type: "char", major: 4000, minor: 300000 },
    { path: "dev/sda", type: "block", major: 8, minor: 0 },
    { path: "dev/nvme0n1p9", type: "block", major: 259, minor: 1000 },
  ],
  fifo: "run/initctl",
  xattrFile: "usr/bin/ping",
  emptyFile: "etc/empty.conf",
  emptyDir: "var/empty",
  setuid: "usr/bin/sudo",
  setgid: "usr/bin/wall",
  sticky: "tmp",
  bigUid: "srv/bigid",
} as const;

const GENERATOR = String.raw`
import os, sys, random, stat
root, seed, nsmall = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(seed)
WORDS = ("the of and to in is that for it as with was on be by at this from or have an they which one you were "
         "all we can her has there been if more when will would who so no config value path include library "
         "module function return error system user group file directory mount layer span inflate").split()
def text(n):
    out = []
    size = 0
    while size < n:
        w = rnd.choice(WORDS)
        out.append(w)
        size += len(w) + 1
        if rnd.random() < 0.08:
            out.append("\n"); size += 1
    return (" ".join(out)).encode()[:n]
def rbytes(n):
    return rnd.randbytes(n)
def content(n):
    return rbytes(n) if rnd.random() < 0.2 else text(n)
def P(rel):
    return os.path.join(root, rel)
def mkdirs(rel, mode=0o755, uid=0, gid=0):
    p = P(rel)
    os.makedirs(p, exist_ok=True)
    os.chown(p, uid, gid)
    os.chmod(p, mode)
def put(rel, data=b"", mode=0o644, uid=0, gid=0):
    p = P(rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(data)
    os.chown(p, uid, gid)
    os.chmod(p, mode)  # after chown, which clears setuid/setgid
def link(target, rel):
    p = P(rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    os.link(P(target), p)
def symlink(target, rel, uid=0, gid=0):
    p = P(rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    os.symlink(target, p)
    os.chown(p, uid, gid, follow_symlinks=False)
def dev(rel, kind, major, minor, mode=0o666):
    p = P(rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    os.mknod(p, mode | (stat.S_IFCHR if kind == "char" else stat.S_IFBLK), os.makedev(major, minor))
    os.chmod(p, mode)

os.makedirs(root, exist_ok=True)
os.chmod(root, 0o755)
for d in ["bin", "sbin", "usr/bin", "usr/sbin", "usr/lib/x86_64-linux-gnu", "usr/include/linux", "usr/share/man",
          "etc/apt/sources.list.d", "var/lib/dpkg/info", "var/cache/apt", "var/log", "srv", "home", "opt/app/sub", "dev", "run"]:
    mkdirs(d)
mkdirs("tmp", 0o1777)
mkdirs("root", 0o700)
mkdirs("var/mail", 0o2775, 0, 8)
mkdirs("var/empty", 0o555)
mkdirs("mnt")
mkdirs("home/user", 0o750, 1000, 1000)

# thousands of small files in system-like places
places = ["usr/lib/python3.11/%s" % m for m in ("json", "email", "asyncio", "http", "xml/dom", "urllib", "unittest")]
places += ["usr/share/locale/%s/LC_MESSAGES" % l for l in ("de", "fr", "ja", "pt_BR", "zh_CN", "ru")]
places += ["usr/share/man/man%d" % i for i in range(1, 9)]
places += ["usr/include/linux", "usr/include/sys", "usr/lib/x86_64-linux-gnu/perl5", "var/lib/dpkg/info",
           "etc/ssl/certs", "etc/default", "usr/share/zoneinfo/Europe", "usr/share/zoneinfo/America", "usr/share/doc-base"]
exts = [".py", ".mo", ".gz", ".h", ".list", ".md5sums", ".pem", ".conf", ""]
for i in range(nsmall):
    d = rnd.choice(places)
    r = rnd.random()
    n = 0 if r < 0.03 else int(rnd.expovariate(1 / 1500)) if r < 0.9 else rnd.randint(4096, 70000)
    put("%s/f%05d%s" % (d, i, rnd.choice(exts)), content(n), rnd.choice([0o644, 0o644, 0o755, 0o600, 0o444]))

# large files: random, compressible, mixed
put("usr/lib/libbig.so", rbytes(5 * 1024 * 1024 + 12345), 0o755)
put("usr/share/data/big.txt", text(5 * 1024 * 1024 + 777))
mixed = b"".join(rbytes(rnd.randint(1000, 200000)) if k % 2 else text(rnd.randint(1000, 200000)) for k in range(30))
put("var/lib/mixed.bin", mixed[: 3 * 1024 * 1024 + 5])
put("opt/app/blob.bin", rbytes(2 * 1024 * 1024 + 1))
put("opt/app/config.yaml", text(3000))
put("opt/app/sub/nested.txt", text(100))

# hardlinks: several names across directories, two in one directory, one to a large file
put("usr/bin/busybox", rbytes(300000) + text(200000), 0o755)
link("usr/bin/busybox", "bin/busybox-sh")
link("usr/bin/busybox", "sbin/busybox-init")
link("usr/bin/busybox", "usr/sbin/busybox-x")
put("usr/bin/perl", text(40000), 0o755)
link("usr/bin/perl", "usr/bin/perl5.36")
link("usr/lib/libbig.so", "usr/lib/libbig.so.1")

# symlinks
symlink("usr/lib", "lib64")
symlink("/usr/share/zoneinfo/UTC", "etc/localtime")
symlink("../nonexistent/file", "usr/lib/dangling")
symlink("busybox", "usr/bin/sh", 1000, 1000)
symlink("../" * 40 + "x" * 60, "usr/share/odd/long-link")

# special modes and owners
put("usr/bin/sudo", text(5000), 0o4755)
put("usr/bin/wall", text(3000), 0o2755, 0, 5)
put("usr/bin/noperm", text(10), 0o000)
put("usr/bin/allbits", text(10), 0o7777)
put("etc/shadow", text(700), 0o640, 0, 42)
put("home/user/.profile", text(800), 0o644, 1000, 1000)
put("srv/nobody", text(50), 0o644, 65534, 65534)
put("srv/bigid", text(60), 0o644, 3000000, 4000000)

# empty files and dirs
put("etc/empty.conf")
put("var/log/empty.log", b"", 0o600)

# devices and a fifo
dev("dev/null", "char", 1, 3)
dev("dev/zero", "char", 1, 5)
dev("dev/big", "char", 4000, 300000, 0o600)
dev("dev/sda", "block", 8, 0, 0o660)
dev("dev/nvme0n1p9", "block", 259, 1000, 0o660)
os.mkfifo(P("run/initctl"), 0o600)

# xattrs
put("usr/bin/ping", text(4000), 0o755)
os.setxattr(P("usr/bin/ping"), "user.caps", bytes([1, 0, 0, 2, 0x20, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xfe, 0]))
os.setxattr(P("usr/bin/ping"), "trusted.test.key", b"trusted value")
os.setxattr(P("usr/bin/ping"), "user.empty", b"")
os.setxattr(P("usr/bin/ping"), "user.long", rbytes(3000))
os.setxattr(P("etc"), "user.dir", b"directory xattr")
os.setxattr(P("lib64"), "trusted.link", b"on a symlink", follow_symlinks=False)

# odd names (valid UTF-8), a long name, a deep path
for name in ["space name.txt", "quote\"'.txt", "new\nline", "caf\u00e9-\u00fcn\u00efc\u00f8d\u00e9.txt", "emoji-\U0001F680.txt",
             "back\\slash", "-dash", "tab\there", "percent%20", "x" * 200]:
    put("usr/share/odd/" + name, text(rnd.randint(0, 300)))
put("/".join("d%02d" % i for i in range(30)) + "/deep.txt", text(100))

# overlay whiteouts and an opaque directory, as an OCI layer stores them
put(".wh.toplevel", b"", 0o600)
put("etc/.wh.removed.conf")
put("usr/share/.wh.doc")
put("var/.wh.shadowed")
put("var/shadowed", b"the upper version\n")
put("opt/app/.wh..wh..opq")

# sub-second mtimes everywhere (children before their directory)
base = 1600000000
for dirpath, dirnames, filenames in os.walk(root, topdown=False):
    for name in filenames + dirnames:
        p = os.path.join(dirpath, name)
        t = (base + rnd.randint(0, 100000000)) * 10**9 + rnd.randint(0, 10**9 - 1)
        os.utime(p, ns=(t, t), follow_symlinks=False)
t = (base + 12345) * 10**9 + 987654321
os.utime(root, ns=(t, t))
`;

const WALKER = `
import os, sys, json, hashlib, stat
root, do_hash = sys.argv[1], sys.argv[2] == "1"
out = {}
groups = {}
def kind(m):
    if stat.S_ISDIR(m): return "dir"
    if stat.S_ISREG(m): return "reg"
    if stat.S_ISLNK(m): return "symlink"
    if stat.S_ISCHR(m): return "char"
    if stat.S_ISBLK(m): return "block"
    if stat.S_ISFIFO(m): return "fifo"
    if stat.S_ISSOCK(m): return "socket"
    return "unknown"
def visit(rel):
    p = os.path.join(root, rel) if rel != "." else root
    try:
        st = os.lstat(p)
    except OSError as e:
        out[rel] = {"error": e.errno}
        return
    e = {"type": kind(st.st_mode), "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid,
         "size": st.st_size, "mtimeNs": str(st.st_mtime_ns), "mtimeMs": st.st_mtime_ns // 1000000, "nlink": st.st_nlink,
         "ino": st.st_ino, "rdevMajor": os.major(st.st_rdev), "rdevMinor": os.minor(st.st_rdev), "xattrs": {}}
    if e["type"] == "symlink":
        e["target"] = os.readlink(p)
    try:
        for n in sorted(os.listxattr(p, follow_symlinks=False)):
            try:
                e["xattrs"][n] = os.getxattr(p, n, follow_symlinks=False).hex()
            except OSError as x:
                e["xattrs"][n] = "error:%d" % x.errno
    except OSError as x:
        e["xattrError"] = x.errno
    if e["type"] == "reg" and do_hash:
        try:
            h = hashlib.sha256()
            with open(p, "rb") as f:
                while True:
                    b = f.read(1 << 20)
                    if not b: break
                    h.update(b)
            e["sha256"] = h.hexdigest()
        except OSError as x:
            e["readError"] = x.errno
    if e["type"] != "dir":
        groups.setdefault((st.st_dev, st.st_ino), []).append(rel)
    out[rel] = e
visit(".")
for dirpath, dirnames, filenames in os.walk(root):
    for name in sorted(dirnames + filenames):
        visit(os.path.relpath(os.path.join(dirpath, name), root))
for paths in groups.values():
    g = sorted(paths)[0]
    for q in paths:
        out[q]["inodeGroup"] = g
sys.stdout.write(json.dumps(out))
`;

const RANGE_READER = `
import os, sys, json, hashlib
from concurrent.futures import ThreadPoolExecutor
reqs = json.load(sys.stdin)
threads = int(sys.argv[1])
def one(r):
    try:
        fd = os.open(r["path"], os.O_RDONLY | (os.O_DIRECT if r.get("direct") else 0))
        try:
            data = os.pread(fd, r["length"], r["offset"])
        finally:
            os.close(fd)
        res = {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        if r.get("hex"):
            res["hex"] = data.hex()
        return res
    except OSError as e:
        return {"error": e.errno}
with ThreadPoolExecutor(max_workers=threads) as ex:
    res = list(ex.map(one, reqs))
sys.stdout.write(json.dumps(res))
`;

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command asynchronously (never blocking the event loop); rejects on a non-zero exit unless `allowFail`. */
export function runCommand(
  cmd: string,
  args: string[],
  opts: { input?: string | Buffer; timeoutMs?: number; allowFail?: boolean; env?: NodeJS.ProcessEnv } = {},
): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      args,
      {
        maxBuffer: 512 * 1024 * 1024,
        timeout: opts.timeoutMs ?? 120_000,
        killSignal: "SIGKILL",
        env: opts.env,
        encoding: "utf8",
      },
      (err, stdout, stderr) => {
        const code = err
          ? typeof (err as { code?: unknown }).code === "number"
            ? (err as { code: number }).code
            : -1
          : 0;
        const r = { code, stdout, stderr: stderr + (err && code === -1 ? `\n${err.message}` : "") };
        if (code !== 0 && !opts.allowFail)
          reject(new Error(`${cmd} ${args.join(" ").slice(0, 200)} failed (${code}): ${r.stderr.slice(0, 2000)}`));
        else resolve(r);
      },
    );
    if (opts.input !== undefined) child.stdin!.end(opts.input);
  });
}

/** Pipes `input` through a command and returns its stdout bytes. */
function pipeThrough(cmd: string, args: string[], input: Uint8Array): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    let err = "";
    child.stdout.on("data", (c: Buffer) => out.push(c));
    child.stderr.on("data", (c: Buffer) => (err += c.toString()));
    child.on("error", reject);
    child.on("close", (code) =>
      code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`${cmd} exited ${code}: ${err}`)),
    );
    child.stdin.end(input);
  });
}

const sha256 = (b: Uint8Array) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

async function variant(
  name: LayerVariantName,
  path: string,
  compression: "gzip" | "uncompressed",
): Promise<LayerVariant> {
  const bytes = await readFile(path);
  return {
    name,
    path,
    compression,
    mediaType:
      compression === "gzip" ? "application/vnd.oci.image.layer.v1.tar+gzip" : "application/vnd.oci.image.layer.v1.tar",
    digest: sha256(bytes),
    size: bytes.length,
  };
}

/** Builds the source tree, the tar and its compressed variants, and GNU tar's extraction. Needs root. */
export async function buildLayerFixture(opts: LayerFixtureOptions = {}): Promise<LayerFixture> {
  const workDir = await mkdtemp(join(opts.parent ?? tmpdir(), "layer-fixture-"));
  const sourceDir = join(workDir, "src");
  const extractDir = join(workDir, "extract");
  const tarPath = join(workDir, "layer.tar");
  try {
    await runCommand("python3", ["-c", GENERATOR, sourceDir, String(opts.seed ?? 1), String(opts.smallFiles ?? 3000)]);
    await runCommand("tar", [
      "--format=posix",
      "--xattrs",
      "--xattrs-include=*",
      "--numeric-owner",
      "--sort=name",
      "-C",
      sourceDir,
      "-cf",
      tarPath,
      ".",
    ]);
    const tar = await readFile(tarPath);

    const gzPath = join(workDir, "layer.tar.gz");
    await writeFile(gzPath, await pipeThrough("gzip", ["-6", "-n", "-c"], tar));

    const pigzPath = join(workDir, "layer.pigz.tar.gz");
    if (opts.noPigz) {
      await writeFile(pigzPath, await readFile(gzPath));
    } else {
      // several gzip members split at arbitrary (not block-aligned) offsets, one of them made of
      // independently compressed blocks, with an empty member between two others
      const cut1 = Math.floor(tar.length * 0.35) + 123;
      const cut2 = Math.floor(tar.length * 0.7) + 777;
      const members = await Promise.all([
        pipeThrough("pigz", ["-6", "-n", "-c"], tar.subarray(0, cut1)),
        pipeThrough("pigz", ["-6", "-n", "-c"], new Uint8Array(0)),
        pipeThrough("pigz", ["-6", "-n", "-i", "-b", "64", "-c"], tar.subarray(cut1, cut2)),
        pipeThrough("pigz", ["-6", "-n", "-c", "-p", "2"], tar.subarray(cut2)),
      ]);
      await writeFile(pigzPath, Buffer.concat(members));
    }

    await mkdir(extractDir);
    await runCommand("tar", ["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf", tarPath, "-C", extractDir]);

    const fx: LayerFixture = {
      workDir,
      sourceDir,
      tarPath,
      diffId: sha256(tar),
      variants: {
        gzip: await variant("gzip", gzPath, "gzip"),
        pigz: await variant("pigz", pigzPath, "gzip"),
        tar: await variant("tar", tarPath, "uncompressed"),
      },
      extractDir,
      paths: FIXTURE_PATHS,
      cleanup: () => rm(workDir, { recursive: true, force: true }),
    };
    return fx;
  } catch (e) {
    await rm(workDir, { recursive: true, force: true }).catch(() => undefined);
    throw e;
  }
}

/**
 * A directory to stack *below* a fixture layer in an overlay: it holds what the fixture's whiteouts
 * and opaque directory must hide, and some files that stay visible. Returns what to expect.
 */
export async function buildLowerDir(dir: string): Promise<{ hidden: string[]; visible: string[]; shadowed: string }> {
  const files: [string, string][] = [
    ["toplevel", "hidden by /.wh.toplevel\n"],
    ["etc/removed.conf", "hidden by etc/.wh.removed.conf\n"],
    ["usr/share/doc/readme", "hidden with its directory by usr/share/.wh.doc\n"],
    ["var/shadowed", "the lower version\n"],
    ["opt/app/lower-only.txt", "hidden by the opaque opt/app\n"],
    ["opt/app/sub/lower-nested.txt", "hidden by the opaque opt/app\n"],
    ["etc/lower-visible.conf", "visible through the layer\n"],
    ["lower-only-dir/file", "visible\n"],
  ];
  for (const [p, text] of files) {
    await mkdir(join(dir, p, ".."), { recursive: true });
    await writeFile(join(dir, p), text);
  }
  return {
    hidden: ["toplevel", "etc/removed.conf", "usr/share/doc", "opt/app/lower-only.txt", "opt/app/sub/lower-nested.txt"],
    visible: ["etc/lower-visible.conf", "lower-only-dir/file"],
    shadowed: "var/shadowed",
  };
}

export interface TreeEntry {
  type: "dir" | "reg" | "symlink" | "char" | "block" | "fifo" | "socket" | "unknown";
  /** Permission bits with setuid/setgid/sticky (07777). */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** mtime in nanoseconds (decimal string: too large for a JS number). */
  mtimeNs: string;
  /** mtime truncated to milliseconds. */
  mtimeMs: number;
  nlink: number;
  ino: number;
  rdevMajor: number;
  rdevMinor: number;
  target?: string;
  /** Hex-encoded values by name. */
  xattrs: Record<string, string>;
  xattrError?: number;
  /** Hex sha256 of the content (regular files, when hashing). */
  sha256?: string;
  readError?: number;
  /** Non-directories: the (sorted) first path sharing this inode. */
  inodeGroup?: string;
  /** lstat failed with this errno. */
  error?: number;
}

/** Path (relative, "." for the root) → entry. */
export type TreeDump = Record<string, TreeEntry>;

/**
 * lstat, readlink, xattrs and (optionally) sha256 of every entry below `dir`, gathered by a Python
 * child process: safe to point at a FUSE mount served by this process.
 */
export async function walkTree(dir: string, opts: { hash?: boolean; timeoutMs?: number } = {}): Promise<TreeDump> {
  const r = await runCommand("python3", ["-c", WALKER, dir, opts.hash === false ? "0" : "1"], {
    timeoutMs: opts.timeoutMs ?? 300_000,
  });
  return JSON.parse(r.stdout) as TreeDump;
}

export interface RangeRequest {
  path: string;
  offset: number;
  length: number;
  /** Open with O_DIRECT (FUSE then passes the exact range to the filesystem). */
  direct?: boolean;
  /** Return the bytes too (hex). */
  hex?: boolean;
}

export interface RangeResult {
  length?: number;
  sha256?: string;
  hex?: string;
  error?: number;
}

/** pread()s of the requested ranges in a child process with `threads` concurrent readers. */
export async function readRanges(
  reqs: RangeRequest[],
  opts: { threads?: number; timeoutMs?: number } = {},
): Promise<RangeResult[]> {
  const r = await runCommand("python3", ["-c", RANGE_READER, String(opts.threads ?? 8)], {
    input: JSON.stringify(reqs),
    timeoutMs: opts.timeoutMs ?? 300_000,
  });
  return JSON.parse(r.stdout) as RangeResult[];
}

/** Size of a file (helper for tests that compare against the extraction). */
export async function fileSize(path: string): Promise<number> {
  return (await stat(path)).size;
}
