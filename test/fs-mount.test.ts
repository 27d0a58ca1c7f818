// One layer mounted through real FUSE from its ztoc, compared with GNU tar's extraction of the same
// layer: every name, type, mode, owner, mtime (ms), size, symlink target, hardlink group and link
// count, device number, xattr and byte; overlay whiteouts and the opaque directory; read-only
// errors; the state file; random-offset reads; failing and hanging reads; stacking under overlayfs;
// dead-mount detection and recovery. Needs root and /dev/fuse.
//
// Deadlock hazard and how it is avoided: this test process *serves* the FUSE mounts (fuse-native
// hands every request to our event loop, and the file-backed reader reads the layer blob through
// libuv's threadpool). If this same process also read the mount — synchronously, or through
// fs.promises whose calls occupy the 4 threadpool threads while they wait for the kernel — the
// requests would wait for an event loop / threadpool that is itself waiting on them. So every access
// to a mount happens in a child process (Python, via async execFile: walkTree, readRanges, and small
// scripts); this process only touches the mount table (/proc) and the tar extraction on local disk.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
import { createHash } from "node:crypto";
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { join, posix } from "node:path";
import { LayerIndexer } from "../src/indexer/layer-indexer.js";
import { decodeZtoc, type Ztoc } from "../src/formats/ztoc.js";
import { zinfoOf } from "../src/formats/zinfo.js";
import {
  mountLayer,
  mountStatus,
  isMountAlive,
  unmountPath,
  mountsAt,
  type MountedLayer,
} from "../src/fs/fuse-layer.js";
import { cleanEntryName, resolvePath, stateJson, type LayerTree } from "../src/fs/tree.js";
import type { FileMetadata } from "../src/formats/toc.js";
import type { LayerFileReader } from "../src/fs/types.js";
import { FileLayerReader } from "./helpers/file-layer-reader.js";
import { createLayerReader } from "../src/fs/layer-reader.js";
import { FileBlobFetcher } from "../src/fs/blob-fetcher.js";
import { SpanCache } from "../src/fs/span-cache.js";
import { InflatePool } from "../src/wasm/pool.js";
import {
  buildLayerFixture,
  buildLowerDir,
  readRanges,
  runCommand,
  walkTree,
  type LayerFixture,
  type LayerVariantName,
  type RangeRequest,
  type TreeDump,
  type TreeEntry,
} from "./helpers/layer-fixtures.js";

const canMount = process.getuid?.() === 0 && existsSync("/dev/fuse");
const EIO = 5;
const ENOENT = 2;
const EROFS = 30;

const SPAN_SIZES: Record<LayerVariantName, number> = { gzip: 128 * 1024, pigz: 64 * 1024, tar: 200_000 };

/** What the mount must show for a tar extraction: `.wh.X` → char 0:0 `X` (unless a real `X` exists), `.wh.*` hidden, `.wh..wh..opq` → opaque xattr. */
function expectedMountView(dump: TreeDump, opaqueXattr = "trusted.overlay.opaque"): TreeDump {
  const out: TreeDump = {};
  for (const [p, e] of Object.entries(dump)) out[p] = { ...e, xattrs: { ...e.xattrs } };
  for (const [p, e] of Object.entries(dump)) {
    const base = posix.basename(p);
    if (!base.startsWith(".wh.")) continue;
    const dir = posix.dirname(p);
    delete out[p];
    if (base === ".wh..wh..opq") {
      out[dir]!.xattrs[opaqueXattr] = "79";
      continue;
    }
    const name = base.slice(4);
    const target = dir === "." ? name : `${dir}/${name}`;
    if (name === "" || dump[target]) continue;
    out[target] = {
      type: "char",
      mode: 0,
      uid: 0,
      gid: 0,
      size: 0,
      mtimeNs: e.mtimeNs,
      mtimeMs: e.mtimeMs,
      nlink: 1,
      ino: 0,
      rdevMajor: 0,
      rdevMinor: 0,
      xattrs: {},
      inodeGroup: target,
    };
  }
  return out;
}

/** The attributes compared between a mount and the extraction. */
function comparable(e: TreeEntry) {
  return {
    type: e.type,
    mode: e.mode.toString(8),
    uid: e.uid,
    gid: e.gid,
    mtimeMs: e.mtimeMs,
    nlink: e.nlink,
    size: e.type === "dir" ? undefined : e.size,
    target: e.target,
    rdev: e.type === "char" || e.type === "block" ? `${e.rdevMajor}:${e.rdevMinor}` : undefined,
    xattrs: e.xattrs,
    sha256: e.sha256,
    inodeGroup: e.inodeGroup,
    errors: [e.error, e.readError, e.xattrError].filter((x) => x !== undefined),
  };
}

function diffTrees(want: TreeDump, got: TreeDump): string[] {
  const problems: string[] = [];
  const w = new Set(Object.keys(want));
  const g = new Set(Object.keys(got));
  for (const p of w) if (!g.has(p)) problems.push(`missing in mount: ${JSON.stringify(p)}`);
  for (const p of g) if (!w.has(p)) problems.push(`unexpected in mount: ${JSON.stringify(p)}`);
  for (const p of w) {
    if (!g.has(p)) continue;
    const a = JSON.stringify(comparable(want[p]!));
    const b = JSON.stringify(comparable(got[p]!));
    if (a !== b) problems.push(`${JSON.stringify(p)}:\n  want ${a}\n  got  ${b}`);
  }
  return problems;
}

function indexLayer(bytes: Uint8Array, compression: "gzip" | "uncompressed", spanSize: number): Ztoc {
  const ix = new LayerIndexer({ spanSize, compression });
  for (let i = 0; i < bytes.length; i += 1 << 20) ix.push(bytes.subarray(i, i + (1 << 20)));
  // decode the serialized ztoc, as the snapshotter gets it
  return decodeZtoc(ix.finish().bytes);
}

/** The TOC entry holding a path's bytes (through hardlinks), found via the mounted tree. */
const entryNamed = (tree: LayerTree, path: string): FileMetadata => {
  const r = resolvePath(tree, `/${path}`, "");
  if (r?.kind !== "node" || !r.node.entry || r.node.kind !== "reg") throw new Error(`no regular file ${path}`);
  return r.node.entry;
};

const hex = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** A python one-off in a child process; returns its parsed JSON stdout. */
async function py<T>(script: string, ...args: string[]): Promise<T> {
  const r = await runCommand("python3", ["-c", script, ...args], { timeoutMs: 60_000 });
  return JSON.parse(r.stdout) as T;
}

describe.skipIf(!canMount)("a layer mounted through FUSE from its ztoc", () => {
  let fx: LayerFixture;
  let extraction: TreeDump;
  let expected: TreeDump;
  const cleanups: (() => Promise<unknown>)[] = [];
  const ztocs = new Map<LayerVariantName, Ztoc>();

  beforeAll(async () => {
    fx = await buildLayerFixture();
    extraction = await walkTree(fx.extractDir);
    expected = expectedMountView(extraction);
  }, 300_000);

  afterAll(async () => {
    for (const c of cleanups.reverse()) await c().catch((e: unknown) => console.error("cleanup:", e));
    await fx?.cleanup();
  }, 120_000);

  async function ztocFor(name: LayerVariantName): Promise<Ztoc> {
    let z = ztocs.get(name);
    if (!z) {
      const v = fx.variants[name];
      z = indexLayer(await readFile(v.path), v.compression, SPAN_SIZES[name]);
      ztocs.set(name, z);
    }
    return z;
  }

  async function mountVariant(
    name: LayerVariantName,
    extra: Partial<Parameters<typeof mountLayer>[0]> = {},
    wrap?: (r: FileLayerReader) => LayerFileReader,
  ) {
    const v = fx.variants[name];
    const ztoc = await ztocFor(name);
    const reader = await FileLayerReader.open(v.path, ztoc, v.digest);
    cleanups.push(() => reader.close());
    const mountpoint = join(fx.workDir, `mnt-${name}-${cleanups.length}`);
    await mkdir(mountpoint, { recursive: true });
    const mounted = await mountLayer({
      mountpoint,
      ztoc,
      digest: v.digest,
      reader: wrap ? wrap(reader) : reader,
      ...extra,
    });
    cleanups.push(() => mounted.unmount());
    return { v, ztoc, reader, mountpoint, mounted };
  }

  for (const name of ["gzip", "pigz", "tar"] as const) {
    describe(`${name} layer`, () => {
      let m: Awaited<ReturnType<typeof mountVariant>>;
      beforeAll(async () => {
        m = await mountVariant(name);
      }, 120_000);

      it("shows the same tree as GNU tar's extraction, byte for byte", async () => {
        // the layer spans many spans, and files cross span boundaries
        expect(m.ztoc.maxSpanId).toBeGreaterThan(100);
        const got = await walkTree(m.mountpoint);
        expect(diffTrees(expected, got)).toEqual([]);
        expect(Object.keys(got).length).toBeGreaterThan(3000);
        expect(got["."]!.ino).toBe(4); // use_ino: root id 1 + 3
        const busybox = got["usr/bin/busybox"]!;
        expect(busybox.nlink).toBe(4);
        for (const p of fx.paths.hardlinkGroups[0]) expect(got[p]!.ino).toBe(busybox.ino);
      }, 120_000);

      it("answers random-offset reads (concurrent, across span boundaries, 1 byte, past EOF) with the source bytes", async () => {
        const zinfo = zinfoOf(m.ztoc);
        const files = [...fx.paths.largeFiles, "usr/bin/busybox", "usr/bin/perl", "usr/bin/ping", "etc/empty.conf"];
        let seed = 12345;
        const rand = (n: number) => {
          seed = (seed * 1103515245 + 12345) & 0x7fffffff;
          return seed % Math.max(1, n);
        };
        const reqs: RangeRequest[] = [];
        const want: Buffer[] = [];
        for (const f of files) {
          const content = await readFile(join(fx.extractDir, f));
          const e = entryNamed(m.mounted.tree, f);
          const size = content.length;
          expect(e.uncompressedSize).toBe(size);
          const add = (offset: number, length: number) => {
            offset = Math.max(0, offset);
            reqs.push({ path: join(m.mountpoint, f), offset, length, direct: reqs.length % 2 === 0 });
            want.push(content.subarray(Math.min(offset, size), Math.min(size, offset + length)));
          };
          for (let i = 0; i <= zinfo.maxSpanId; i++) {
            const fo = zinfo.startUncompressedOffset(i) - e.uncompressedOffset;
            if (fo <= 0 || fo >= size) continue;
            add(fo - 1, 2);
            add(fo, 1);
            add(fo - 5000, 10_000);
          }
          for (let i = 0; i < 25; i++) add(rand(size), 1 + rand(300_000));
          for (let i = 0; i < 10; i++) add(rand(size), 1);
          add(size, 10);
          add(size + 12345, 10);
          add(size - 3, 100);
          add(0, 0);
          add(0, size + 10);
        }
        expect(reqs.length).toBeGreaterThan(300);
        // four child processes with sixteen reader threads each, all at once
        const parts = [0, 1, 2, 3].map((k) => reqs.filter((_, i) => i % 4 === k));
        const results = await Promise.all(parts.map((p) => readRanges(p, { threads: 16 })));
        const mismatches: string[] = [];
        parts.forEach((p, k) => {
          p.forEach((r, j) => {
            const i = j * 4 + k;
            const got = results[k]![j]!;
            if (got.error !== undefined || got.length !== want[i]!.length || got.sha256 !== hex(want[i]!)) {
              mismatches.push(
                `${r.path}@${r.offset}+${r.length}${r.direct ? " (direct)" : ""}: ${JSON.stringify(got)} want ${want[i]!.length} bytes`,
              );
            }
          });
        });
        expect(mismatches).toEqual([]);
      }, 120_000);
    });
  }

  describe("presentation details (gzip layer)", () => {
    let m: Awaited<ReturnType<typeof mountVariant>>;
    beforeAll(async () => {
      m = await mountVariant("gzip", { statfsDir: "/tmp" });
    }, 120_000);

    it("is listed in /proc/mounts as `soci <mountpoint> fuse.rawBridge`", async () => {
      const mounts = await readFile("/proc/mounts", "utf8");
      expect(mounts.split("\n").some((l) => l.startsWith(`soci ${m.mountpoint} fuse.rawBridge `))).toBe(true);
      expect((await mountsAt(m.mountpoint))[0]).toMatchObject({ fstype: "fuse.rawBridge", source: "soci" });
      expect(m.mounted.options).toContain("use_ino");
      expect(await mountStatus(m.mountpoint)).toBe("alive");
      expect(await isMountAlive(m.mountpoint)).toBe(true);
    });

    it("hides whiteout files, shows char 0:0 whiteouts, and marks the opaque directory", async () => {
      const got = await py<Record<string, unknown>>(
        `
import os, sys, json, stat
m = sys.argv[1]
out = {}
def err(f):
    try:
        f(); return 0
    except OSError as e:
        return e.errno
out["top"] = sorted(os.listdir(m))
out["etc"] = sorted(os.listdir(m + "/etc"))
out["var"] = sorted(os.listdir(m + "/var"))
out["app"] = sorted(os.listdir(m + "/opt/app"))
out["lstat_wh"] = err(lambda: os.lstat(m + "/etc/.wh.removed.conf"))
out["lstat_opq"] = err(lambda: os.lstat(m + "/opt/app/.wh..wh..opq"))
st = os.lstat(m + "/etc/removed.conf")
out["wh"] = [stat.S_ISCHR(st.st_mode), stat.S_IMODE(st.st_mode), os.major(st.st_rdev), os.minor(st.st_rdev), st.st_uid, st.st_size]
out["shadowed"] = open(m + "/var/shadowed").read()
out["opaque"] = os.getxattr(m + "/opt/app", "trusted.overlay.opaque").decode()
out["opaque_list"] = os.listxattr(m + "/opt/app")
out["plain_list"] = os.listxattr(m + "/opt")
out["enoent"] = [err(lambda: os.lstat(m + "/nonexistent")), err(lambda: os.lstat(m + "/etc/nonexistent/x")), err(lambda: open(m + "/nope"))]
out["nodata"] = err(lambda: os.getxattr(m + "/usr/bin/ping", "user.absent"))
out["state_in_listing"] = ".soci-snapshotter" in os.listdir(m)
print(json.dumps(out))`,
        m.mountpoint,
      );
      expect(got.top).not.toContain(".wh.toplevel");
      expect(got.top).toContain("toplevel");
      expect(got.etc).toContain("removed.conf");
      expect((got.etc as string[]).some((n) => n.startsWith(".wh."))).toBe(false);
      expect((got.var as string[]).filter((n) => n === "shadowed")).toHaveLength(1);
      expect(got.app).toEqual(["blob.bin", "config.yaml", "sub"]);
      expect(got.lstat_wh).toBe(ENOENT);
      expect(got.lstat_opq).toBe(ENOENT);
      expect(got.wh).toEqual([true, 0, 0, 0, 0, 0]);
      expect(got.shadowed).toBe("the upper version\n");
      expect(got.opaque).toBe("y");
      expect(got.opaque_list).toEqual(["trusted.overlay.opaque"]);
      expect(got.plain_list).toEqual([]);
      expect(got.enoent).toEqual([ENOENT, ENOENT, ENOENT]);
      expect(got.nodata).toBe(61);
      expect(got.state_in_listing).toBe(false);
    });

    it("refuses every write with EROFS", async () => {
      const got = await py<Record<string, number>>(
        `
import os, sys, json
m = sys.argv[1]
EROFS = 30
f = m + "/usr/bin/perl"
def err(fn):
    try:
        fn(); return 0
    except OSError as e:
        return e.errno
print(json.dumps({
  "open_w": err(lambda: os.open(f, os.O_WRONLY)),
  "open_rw": err(lambda: os.open(f, os.O_RDWR)),
  "create": err(lambda: os.open(m + "/etc/new-file", os.O_WRONLY | os.O_CREAT, 0o644)),
  "mkdir": err(lambda: os.mkdir(m + "/newdir")),
  "mknod": err(lambda: os.mkfifo(m + "/newfifo")),
  "unlink": err(lambda: os.unlink(f)),
  "rmdir": err(lambda: os.rmdir(m + "/var/empty")),
  "rename": err(lambda: os.rename(f, m + "/usr/bin/perl2")),
  "link": err(lambda: os.link(f, m + "/usr/bin/perl3")),
  "symlink": err(lambda: os.symlink("x", m + "/newlink")),
  "chmod": err(lambda: os.chmod(f, 0o777)),
  "chown": err(lambda: os.chown(f, 1, 1)),
  "truncate": err(lambda: os.truncate(f, 0)),
  "utime": err(lambda: os.utime(f, (1, 1))),
  "setxattr": err(lambda: os.setxattr(f, "user.x", b"1")),
  "removexattr": err(lambda: os.removexattr(m + "/usr/bin/ping", "user.caps")),
  "access_w": EROFS if not os.access(f, os.W_OK) else 0,
  "access_r": EROFS if os.access(f, os.R_OK) else 0,
}))`,
        m.mountpoint,
      );
      for (const [op, errno] of Object.entries(got)) expect([op, errno]).toEqual([op, EROFS]);
    });

    it("serves the state directory and a state file matching the reader's state", async () => {
      const got = await py<Record<string, unknown>>(
        `
import os, sys, json, stat
m, name = sys.argv[1], sys.argv[2]
d = os.lstat(m + "/.soci-snapshotter")
f = os.lstat(m + "/.soci-snapshotter/" + name)
print(json.dumps({
  "dir": [oct(d.st_mode), d.st_ino, d.st_uid, d.st_nlink],
  "file": [oct(f.st_mode), f.st_ino, f.st_uid, f.st_nlink, f.st_size],
  "list": os.listdir(m + "/.soci-snapshotter"),
  "text": open(m + "/.soci-snapshotter/" + name).read(),
  "other": os.path.exists(m + "/.soci-snapshotter/other.json"),
}))`,
        m.mountpoint,
        `${m.v.digest}.json`,
      );
      expect(got.dir).toEqual(["0o40500", 1, 0, 1]);
      const text = got.text as string;
      expect(text).toBe(stateJson(m.reader.state()));
      expect(text).toMatch(
        /^\{"digest":"sha256:[0-9a-f]{64}","size":\d+,"fetchedSize":\d+,"fetchedPercent":[0-9.e-]+\}\n$/,
      );
      const st = JSON.parse(text) as { size: number; fetchedSize: number; fetchedPercent: number };
      expect(st.size).toBe(m.v.size);
      expect(st.fetchedPercent).toBe((st.fetchedSize / st.size) * 100);
      expect(got.file).toEqual(["0o100400", 2, 0, 1, Buffer.byteLength(text)]);
      expect(got.list).toEqual([`${m.v.digest}.json`]);
      expect(got.other).toBe(false);
    });

    it("reports statfs of the configured directory (namelen 255)", async () => {
      const got = await py<number[]>(
        `import os, sys, json; s = os.statvfs(sys.argv[1]); t = os.statvfs("/tmp"); print(json.dumps([s.f_bsize, s.f_blocks, s.f_namemax, t.f_bsize, t.f_blocks]))`,
        m.mountpoint,
      );
      expect(got[0]).toBe(got[3]);
      expect(got[1]).toBe(got[4]);
      expect(got[2]).toBe(255);
    });
  });

  it.runIf(canMount)(
    "honours disabled xattrs, the user.overlay.opaque flavour, and statfs without a directory",
    async () => {
      const plain = await mountVariant("gzip", { disableXattrs: true });
      const user = await mountVariant("gzip", { opaqueXattr: "user.overlay.opaque" });
      const script = `
import os, sys, json
a, b = sys.argv[1], sys.argv[2]
def err(fn):
    try:
        return fn()
    except OSError as e:
        return e.errno
s = os.statvfs(b)
print(json.dumps({
  "disabled_list": err(lambda: os.listxattr(a + "/usr/bin/ping")),
  "disabled_get": err(lambda: os.getxattr(a + "/opt/app", "trusted.overlay.opaque")),
  "disabled_set": err(lambda: os.setxattr(a + "/usr/bin/ping", "user.x", b"1")),
  "user_get": err(lambda: os.getxattr(b + "/opt/app", "user.overlay.opaque").decode()),
  "user_trusted": err(lambda: os.getxattr(b + "/opt/app", "trusted.overlay.opaque")),
  "user_list": os.listxattr(b + "/opt/app"),
  "statfs": [s.f_bsize, s.f_frsize, s.f_blocks, s.f_bfree, s.f_files, s.f_namemax],
}))`;
      const got = await py<Record<string, unknown>>(script, plain.mountpoint, user.mountpoint);
      // ENOSYS from the filesystem: the kernel stops asking and reports EOPNOTSUPP; a write is
      // refused by the read-only mount before it gets there
      expect(got).toEqual({
        disabled_list: 95,
        disabled_get: 95,
        disabled_set: 30,
        user_get: "y",
        user_trusted: 61,
        user_list: ["user.overlay.opaque"],
        statfs: [4096, 4096, 0, 0, 0, 255],
      });
    },
    60_000,
  );

  it.runIf(canMount)("refuses a ztoc whose tree cannot be built, leaving nothing mounted", async () => {
    const v = fx.variants.gzip;
    const good = await ztocFor("gzip");
    const bad: Ztoc = {
      ...good,
      toc: [
        ...good.toc,
        {
          ...good.toc[good.toc.length - 1]!,
          type: "hardlink",
          name: new TextEncoder().encode("x"),
          linkname: new TextEncoder().encode("no/such/file"),
        },
      ],
    };
    const reader = await FileLayerReader.open(v.path, good, v.digest);
    cleanups.push(() => reader.close());
    const mountpoint = join(fx.workDir, "mnt-bad");
    await mkdir(mountpoint, { recursive: true });
    await expect(mountLayer({ mountpoint, ztoc: bad, digest: v.digest, reader })).rejects.toThrow(
      /"x" is a hardlink but cannot get link destination "no\/such\/file"/,
    );
    expect(await mountsAt(mountpoint)).toEqual([]);
  });

  it.runIf(canMount)(
    "serves the same tree through the daemon's span manager (LayerReader over the blob file)",
    async () => {
      const v = fx.variants.pigz;
      const ztoc = await ztocFor("pigz");
      const pool = new InflatePool({ threads: 2 });
      cleanups.push(() => pool.destroy());
      const fetcher = new FileBlobFetcher(v.path, v.digest, v.size);
      cleanups.push(() => fetcher.close());
      const reader = await createLayerReader({
        ztoc,
        digest: v.digest,
        fetcher,
        cache: new SpanCache({ root: join(fx.workDir, "spancache") }),
        inflater: pool,
      });
      const mountpoint = join(fx.workDir, "mnt-span-manager");
      await mkdir(mountpoint, { recursive: true });
      const mounted = await mountLayer({ mountpoint, ztoc, digest: v.digest, reader });
      cleanups.push(() => mounted.unmount());
      expect(diffTrees(expected, await walkTree(mountpoint))).toEqual([]);
      const text = (await runCommand("cat", [join(mountpoint, ".soci-snapshotter", `${v.digest}.json`)])).stdout;
      expect(text).toBe(stateJson(reader.state()));
    },
    120_000,
  );

  it.runIf(canMount)(
    "answers EIO (never a hang or wrong bytes) when the reader fails or stalls, and records it in the state file",
    async () => {
      const failing = "usr/bin/perl";
      const stalling = "usr/bin/sudo";
      const m = await mountVariant("gzip", { operationTimeoutMs: 1500 }, (base) => ({
        read(e, off, len) {
          const n = cleanEntryName(e.name);
          if (n === failing) return Promise.reject(new Error("injected span failure"));
          if (n === stalling) return new Promise<Uint8Array>(() => {});
          if (n === "usr/bin/wall") return base.read(e, off, len).then((b) => b.subarray(0, Math.max(0, b.length - 1))); // short answer
          return base.read(e, off, len);
        },
        state: () => base.state(),
        noteError: (err) => base.noteError(err),
      }));
      const t0 = Date.now();
      const [r] = await Promise.all([
        readRanges(
          [
            { path: join(m.mountpoint, failing), offset: 0, length: 100 },
            { path: join(m.mountpoint, stalling), offset: 0, length: 100 },
            { path: join(m.mountpoint, "usr/bin/wall"), offset: 0, length: 100 },
            { path: join(m.mountpoint, "usr/bin/ping"), offset: 0, length: 4000 },
          ],
          { threads: 4 },
        ),
      ]);
      const elapsed = Date.now() - t0;
      expect(r![0]).toEqual({ error: EIO });
      expect(r![1]).toEqual({ error: EIO });
      expect(r![2]).toEqual({ error: EIO });
      expect(r![3]!.sha256).toBe(hex(await readFile(join(fx.extractDir, "usr/bin/ping"))));
      expect(elapsed).toBeGreaterThanOrEqual(1400);
      expect(elapsed).toBeLessThan(20_000);
      const text = (await runCommand("cat", [join(m.mountpoint, ".soci-snapshotter", `${m.v.digest}.json`)])).stdout;
      expect(text).toMatch(/^\{"error":"file\.Read: /);
      expect(m.reader.state().error).toMatch(/^file\.Read: /);
    },
    60_000,
  );

  it.runIf(canMount)(
    "stacks under overlayfs: whiteouts hide lower files, the opaque directory hides lower contents",
    async () => {
      const m = await mountVariant("gzip");
      const base = join(fx.workDir, "overlay");
      const lower = join(base, "lower");
      const upper = join(base, "upper");
      const work = join(base, "work");
      const merged = join(base, "merged");
      for (const d of [lower, upper, work, merged]) await mkdir(d, { recursive: true });
      const expect_ = await buildLowerDir(lower);
      await runCommand("mount", [
        "-t",
        "overlay",
        "overlay",
        "-o",
        `lowerdir=${m.mountpoint}:${lower},upperdir=${upper},workdir=${work}`,
        merged,
      ]);
      cleanups.push(() => unmountPath(merged));

      const tree = await walkTree(merged);
      for (const p of expect_.hidden) expect(tree[p], p).toBeUndefined();
      for (const p of expect_.visible) expect(tree[p]?.type, p).toBe("reg");
      expect(
        Object.keys(tree)
          .filter((p) => p.startsWith("opt/app/"))
          .sort(),
      ).toEqual(["opt/app/blob.bin", "opt/app/config.yaml", "opt/app/sub", "opt/app/sub/nested.txt"]);
      expect(Object.keys(tree).some((p) => posix.basename(p).startsWith(".wh."))).toBe(false);
      const shadow = await readRanges([{ path: join(merged, expect_.shadowed), offset: 0, length: 100, hex: true }]);
      expect(Buffer.from(shadow[0]!.hex!, "hex").toString()).toBe("the upper version\n");
      // the layer's own files come through unchanged (content via FUSE)
      for (const p of ["usr/lib/libbig.so", "usr/bin/busybox", "etc/shadow"])
        expect(tree[p]?.sha256, p).toBe(extraction[p]!.sha256);

      // writing copies up into the upper dir and leaves the layer untouched
      await runCommand("sh", [
        "-c",
        `printf appended >> "${merged}/opt/app/config.yaml" && rm "${merged}/usr/bin/perl"`,
      ]);
      const after = await walkTree(merged, { hash: true });
      expect(after["usr/bin/perl"]).toBeUndefined();
      expect(after["opt/app/config.yaml"]!.size).toBe(extraction["opt/app/config.yaml"]!.size + "appended".length);
      const layerView = await walkTree(m.mountpoint);
      expect(layerView["opt/app/config.yaml"]!.sha256).toBe(extraction["opt/app/config.yaml"]!.sha256);
      expect(layerView["usr/bin/perl"]!.type).toBe("reg");
      await unmountPath(merged);
      expect(await mountsAt(merged)).toEqual([]);
    },
    120_000,
  );

  it.runIf(canMount)(
    "unmounts cleanly, and detects and replaces a dead mount (transport endpoint is not connected)",
    async () => {
      const m = await mountVariant("tar");
      await m.mounted.unmount();
      await m.mounted.unmount(); // idempotent
      expect(await mountStatus(m.mountpoint)).toBe("unmounted");

      // a FUSE server that dies leaves a dead mount behind
      const dead = join(fx.workDir, "dead");
      await mkdir(dead, { recursive: true });
      const script = `
      const Fuse = require(${JSON.stringify(createRequire(import.meta.url).resolve("fuse-native"))});
      const f = new Fuse(${JSON.stringify(dead)}, { getattr: (p, cb) => cb(0, { mode: 0o40755, size: 0, mtime: 0, atime: 0, ctime: 0 }) }, { fsname: "soci", subtype: "rawBridge" });
      f.mount((e) => { if (e) { console.error(e); process.exit(1); } console.log("mounted"); });
      setInterval(() => {}, 1000);`;
      const child = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "inherit"] });
      await new Promise<void>((resolve, reject) => {
        child.stdout.on("data", (d: Buffer) => d.toString().includes("mounted") && resolve());
        child.on("exit", (code) => reject(new Error(`fuse child exited ${code}`)));
      });
      child.kill("SIGKILL");
      await new Promise((r) => child.once("exit", r));
      cleanups.push(() => unmountPath(dead));
      const stat = await runCommand("stat", [dead], { allowFail: true });
      expect(stat.stderr).toMatch(/Transport endpoint is not connected/);
      expect(await mountStatus(dead)).toBe("dead");
      expect(await isMountAlive(dead)).toBe(false);

      // mounting a layer there recovers the mountpoint
      const v = fx.variants.tar;
      const ztoc = await ztocFor("tar");
      const reader = await FileLayerReader.open(v.path, ztoc, v.digest);
      cleanups.push(() => reader.close());
      const mounted: MountedLayer = await mountLayer({ mountpoint: dead, ztoc, digest: v.digest, reader });
      cleanups.push(() => mounted.unmount());
      expect(await mountStatus(dead)).toBe("alive");
      expect((await mountsAt(dead)).length).toBe(1);
      const r = await readRanges([{ path: join(dead, "usr/bin/perl"), offset: 0, length: 1 << 20 }]);
      expect(r[0]!.sha256).toBe(hex(await readFile(join(fx.extractDir, "usr/bin/perl"))));
      await mounted.unmount();
      expect(await mountStatus(dead)).toBe("unmounted");
      // and a live mount is not silently replaced
      const again = await mountLayer({ mountpoint: dead, ztoc, digest: v.digest, reader });
      cleanups.push(() => again.unmount());
      await expect(mountLayer({ mountpoint: dead, ztoc, digest: v.digest, reader })).rejects.toThrow(
        /already a mountpoint/,
      );
    },
    60_000,
  );
});
