// The images of `bench/e2e.ts`, built offline and cached as OCI layouts under
// <bench dir>/e2e/<name> (a `ready.json` beside the layout marks a finished build). Every layer has a
// tar entry for each parent directory of what it holds (as `docker build` writes them):
// `ctr-remote image optimize` 0.12 refuses layers without them (`failed to sort tar entries`).
//   small  busybox-static, `sh -c 'echo ready'`
//   numpy  python3 + NumPy (+ SciPy, as a data-science image would carry) from Debian packages
//          (`apt-get download`, `dpkg -x`, .pyc compiled in a chroot), busybox for /bin/sh;
//          workload `python3 -c "import numpy; print('ready')"`; three layers (libraries,
//          the Python standard library, dist-packages)
//   numpy-slim  the same Python packages without the base system, three layers
//   numpy-debian  `debootstrap --variant=minbase bookworm` (layer 1) + `apt-get install
//          python3-numpy python3-scipy` in a chroot (layer 2: what the install added or changed,
//          whiteouts for what it removed); the same workload
//   data   busybox layer + one layer of 3 × N MB files; workload reads 4 KiB of each
import { execFile } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { copyFile, lstat, mkdir, readdir, readlink, rm, symlink, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { promisify } from "node:util";
import {
  sampleData,
  writeBusyboxRootfs,
  writeImageLayout,
  writeLayer,
  type ImageConfig,
  type LayerFile,
  type LayerSource,
} from "../../src/demo/image.js";
import { benchDir } from "./env.js";
import { FailedPreconditionError } from "../../src/errors/errors.js";

const run = promisify(execFile);

export interface BenchImage {
  name: string;
  layout: string;
  tag: string;
  command: string[];
  layers: LayerFile[];
  /** `soci convert --min-layer-size` for this image (undefined: the default, 10 MiB). */
  minLayerSize?: number;
  description: string;
  /** The layout format of the cache entry (LAYOUT_VERSION when it was built). */
  version?: number;
}

/** Bumped when the layers change: 2 = explicit parent directory entries in every layer. */
const LAYOUT_VERSION = 2;

/** Debian bookworm packages of the NumPy image (python3 + numpy + scipy and their run-time libraries). */
export const NUMPY_DEBS = [
  "libc6",
  "libgcc-s1",
  "gcc-12-base",
  "libstdc++6",
  "zlib1g",
  "libexpat1",
  "libffi8",
  "libbz2-1.0",
  "liblzma5",
  "libssl3",
  "libsqlite3-0",
  "libncursesw6",
  "libtinfo6",
  "libreadline8",
  "libuuid1",
  "libcrypt1",
  "libdb5.3",
  "libgdbm6",
  "libgdbm-compat4",
  "libnsl2",
  "libtirpc3",
  "libtirpc-common",
  "media-types",
  "python3.11-minimal",
  "libpython3.11-minimal",
  "libpython3.11-stdlib",
  "python3.11",
  "python3-minimal",
  "python3",
  "libpython3-stdlib",
  "python3-numpy",
  "python3-scipy",
  "libopenblas0",
  "libopenblas0-pthread",
  "libgfortran5",
  "libquadmath0",
  "libgomp1",
];

async function cached(
  name: string,
  build: (dir: string) => Promise<Omit<BenchImage, "layout" | "tag" | "name">>,
  log: (l: string) => void,
): Promise<BenchImage> {
  const dir = join(benchDir(), "e2e", name);
  const marker = join(dir, "ready.json");
  if (existsSync(marker)) {
    const img = JSON.parse(readFileSync(marker, "utf8")) as BenchImage;
    if (img.version === LAYOUT_VERSION) return img;
  }
  log(`e2e: building the ${name} image in ${dir} (cached for later runs)…`);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const img: BenchImage = {
    name,
    layout: join(dir, "layout"),
    tag: "latest",
    ...(await build(dir)),
    version: LAYOUT_VERSION,
  };
  writeFileSync(marker, JSON.stringify(img, null, 2) + "\n");
  return img;
}

async function layoutOf(dir: string, sources: LayerSource[], cfg: ImageConfig): Promise<LayerFile[]> {
  const layers: LayerFile[] = [];
  for (let i = 0; i < sources.length; i++) layers.push(await writeLayer(sources[i]!, join(dir, `layer${i}.tar.gz`)));
  await writeImageLayout(join(dir, "layout"), layers, cfg);
  for (const l of layers) await rm(l.gzPath, { force: true }); // the layout holds them now
  return layers;
}

export function smallImage(log: (l: string) => void): Promise<BenchImage> {
  return cached(
    "small",
    async (dir) => {
      const rootfs = join(dir, "rootfs");
      await writeBusyboxRootfs(rootfs);
      const command = ["/bin/sh", "-c", "echo ready"];
      const layers = await layoutOf(dir, [{ dir: rootfs }], { cmd: command });
      await rm(rootfs, { recursive: true, force: true });
      return { command, layers, minLayerSize: 0, description: "busybox-static, `sh -c 'echo ready'`" };
    },
    log,
  );
}

/** Debian bookworm's minimal system (Priority: required + apt, dependencies resolved, one alternative each): what `FROM debian:bookworm` brings. */
export const DEBIAN_BASE_DEBS = [
  "adduser",
  "apt",
  "base-files",
  "base-passwd",
  "bash",
  "bsdutils",
  "coreutils",
  "dash",
  "debconf",
  "debian-archive-keyring",
  "debianutils",
  "diffutils",
  "dpkg",
  "e2fsprogs",
  "findutils",
  "gcc-12-base",
  "gpgv",
  "grep",
  "gzip",
  "hostname",
  "init-system-helpers",
  "libacl1",
  "libapt-pkg6.0",
  "libattr1",
  "libaudit-common",
  "libaudit1",
  "libblkid1",
  "libbz2-1.0",
  "libc-bin",
  "libc6",
  "libcap-ng0",
  "libcap2",
  "libcom-err2",
  "libcrypt1",
  "libdb5.3",
  "libdebconfclient0",
  "libext2fs2",
  "libffi8",
  "libgcc-s1",
  "libgcrypt20",
  "libgdbm-compat4",
  "libgdbm6",
  "libgmp10",
  "libgnutls30",
  "libgpg-error0",
  "libhogweed6",
  "libidn2-0",
  "liblocale-gettext-perl",
  "liblz4-1",
  "liblzma5",
  "libmd0",
  "libmount1",
  "libnettle8",
  "libp11-kit0",
  "libpam-modules",
  "libpam-modules-bin",
  "libpam-runtime",
  "libpam0g",
  "libpcre2-8-0",
  "libseccomp2",
  "libselinux1",
  "libsemanage-common",
  "libsemanage2",
  "libsepol2",
  "libsmartcols1",
  "libss2",
  "libstdc++6",
  "libsystemd0",
  "libtasn1-6",
  "libtinfo6",
  "libudev1",
  "libunistring2",
  "libuuid1",
  "libxxhash0",
  "libzstd1",
  "login",
  "logsave",
  "mawk",
  "mount",
  "ncurses-base",
  "ncurses-bin",
  "passwd",
  "perl-base",
  "sed",
  "sensible-utils",
  "sysvinit-utils",
  "tar",
  "tzdata",
  "usr-is-merged",
  "util-linux",
  "util-linux-extra",
  "zlib1g",
];

async function downloadDebs(pkgs: string[], log: (l: string) => void): Promise<string> {
  const debs = join(benchDir(), "e2e-debs");
  await mkdir(debs, { recursive: true });
  const have = new Set((await readdir(debs)).map((f) => f.split("_")[0]!));
  const missing = pkgs.filter((p) => !have.has(p));
  if (missing.length) {
    log(`e2e: apt-get download ${missing.join(" ")}`);
    await run("apt-get", ["download", ...missing], { cwd: debs, maxBuffer: 16 << 20 }).catch(
      (e: Error & { stderr?: string }) => {
        throw new Error(`apt-get download failed (run apt-get update first?): ${e.stderr?.trim() || e.message}`);
      },
    );
  }
  return debs;
}

async function extractDebs(pkgs: string[], rootfs: string, log: (l: string) => void): Promise<void> {
  const debs = await downloadDebs(pkgs, log);
  await mkdir(rootfs, { recursive: true });
  for (const f of (await readdir(debs)).filter((f) => f.endsWith(".deb") && pkgs.includes(f.split("_")[0]!))) {
    await run("dpkg", ["-x", join(debs, f), rootfs]);
  }
}

/** Every path below `root`, relative, `./`-prefixed, sorted. */
async function walk(root: string): Promise<string[]> {
  const out: string[] = [];
  const visit = async (rel: string) => {
    for (const e of await readdir(join(root, rel), { withFileTypes: true })) {
      const p = `${rel}/${e.name}`;
      out.push(p);
      if (e.isDirectory()) await visit(p);
    }
  };
  await visit(".");
  return out.sort();
}

/** `paths` (`./`-prefixed) plus every parent directory of them below `.`, sorted: a layer listed with `--no-recursion` then carries its parents' entries. */
function withParents(paths: string[]): string[] {
  const all = new Set(paths);
  for (const p of paths) for (let d = dirname(p); d !== "." && d !== "/"; d = dirname(d)) all.add(d);
  return [...all].sort();
}

/** What the packages' maintainer scripts would do for python3 + numpy, then .pyc files (compiled in a chroot). */
async function finishPythonRootfs(rootfs: string): Promise<void> {
  const lib = join(rootfs, "usr/lib/x86_64-linux-gnu");
  for (const so of ["libblas.so.3", "liblapack.so.3", "libopenblas.so.0"])
    await symlink(`openblas-pthread/${so}`, join(lib, so));
  await writeFile(join(rootfs, "etc/ld.so.conf"), "include /etc/ld.so.conf.d/*.conf\n");
  await run("ldconfig", ["-r", rootfs]);
  await run(
    "chroot",
    [rootfs, "/usr/bin/python3", "-m", "compileall", "-q", "/usr/lib/python3.11", "/usr/lib/python3/dist-packages"],
    { maxBuffer: 64 << 20 },
  ).catch(() => undefined); // a few test modules do not compile; the rest is written
  const check = await run("chroot", [rootfs, "/usr/bin/python3", "-c", "import numpy; print('ready')"]);
  if (check.stdout.trim() !== "ready") throw new Error(`numpy rootfs: ${check.stdout}${check.stderr}`);
}

const NUMPY_COMMAND = ["/usr/bin/python3", "-c", "import numpy; print('ready')"];

/**
 * The NumPy image as a Dockerfile would make it: `FROM debian:bookworm` (the minimal system, one
 * layer) + `RUN apt-get install python3-numpy python3-scipy` (one layer: python3, its standard
 * library, numpy, scipy, OpenBLAS, .pyc files).
 */
export function numpyImage(log: (l: string) => void): Promise<BenchImage> {
  return cached(
    "numpy",
    async (dir) => {
      const rootfs = join(dir, "rootfs");
      await extractDebs(DEBIAN_BASE_DEBS, rootfs, log);
      if (!existsSync(join(rootfs, "bin/sh"))) await symlink("dash", join(rootfs, "bin/sh"));
      const base = new Set(await walk(rootfs));
      await extractDebs(
        NUMPY_DEBS.filter((p) => !DEBIAN_BASE_DEBS.includes(p)),
        rootfs,
        log,
      );
      await finishPythonRootfs(rootfs);
      const added = (await walk(rootfs)).filter((p) => !base.has(p));
      const lists = [join(dir, "base-layer.list"), join(dir, "python-layer.list")];
      await writeFile(lists[0]!, ["."].concat([...base]).join("\n") + "\n");
      await writeFile(lists[1]!, withParents(added).join("\n") + "\n");
      const layers = await layoutOf(
        dir,
        lists.map((l) => ({ dir: rootfs, paths: ["--no-recursion", "--verbatim-files-from", "-T", l] })),
        { cmd: NUMPY_COMMAND },
      );
      await rm(rootfs, { recursive: true, force: true });
      return {
        command: NUMPY_COMMAND,
        layers,
        description:
          "Debian bookworm minimal system + python3.11, NumPy 1.24, SciPy 1.10 (apt), `python3 -c \"import numpy; print('ready')\"`",
      };
    },
    log,
  );
}

/** Python + NumPy + SciPy and their libraries only (no base system), busybox for /bin/sh, in three layers. */
export function numpySlimImage(log: (l: string) => void): Promise<BenchImage> {
  return cached(
    "numpy-slim",
    async (dir) => {
      const rootfs = join(dir, "rootfs");
      await extractDebs(NUMPY_DEBS, rootfs, log);
      await writeBusyboxRootfs(rootfs, ["sh"]);
      await finishPythonRootfs(rootfs);
      const parents = ["--no-recursion", "./usr", "./usr/lib", "--recursion"];
      const layers = await layoutOf(
        dir,
        [
          { dir: rootfs, exclude: ["./usr/lib/python3.11", "./usr/lib/python3"] },
          { dir: rootfs, paths: [...parents, "./usr/lib/python3.11"] },
          { dir: rootfs, paths: [...parents, "./usr/lib/python3"] },
        ],
        { cmd: NUMPY_COMMAND },
      );
      await rm(rootfs, { recursive: true, force: true });
      return {
        command: NUMPY_COMMAND,
        layers,
        description:
          "python3.11 + NumPy + SciPy and their libraries only (Debian packages, no base system), busybox /bin/sh; layers: libraries, stdlib, dist-packages",
      };
    },
    log,
  );
}

/** A path's identity for the before/after comparison of a chroot install (a rewritten file gets a new inode or ctime). */
async function signatures(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const p of await walk(root)) {
    const st = await lstat(join(root, p));
    const target = st.isSymbolicLink() ? await readlink(join(root, p)) : "";
    out.set(p, `${st.mode}:${st.uid}:${st.gid}:${st.size}:${st.ino}:${st.ctimeMs}:${target}`);
  }
  return out;
}

const CHROOT_APT = ["-o", "Acquire::Check-Valid-Until=false", "-o", "Acquire::Check-Date=false", "-q"];

/**
 * A Debian image as `FROM debian:bookworm` + `RUN apt-get install python3-numpy python3-scipy` builds
 * it: `debootstrap --variant=minbase` (layer 1), then apt in a chroot; layer 2 holds what the install
 * added or changed (with their parent directories) and a whiteout for each path it removed.
 */
export function numpyDebianImage(log: (l: string) => void): Promise<BenchImage> {
  return cached(
    "numpy-debian",
    async (dir) => {
      const rootfs = join(dir, "rootfs");
      if (!existsSync("/usr/sbin/debootstrap")) {
        log("e2e: apt-get install debootstrap");
        await run("apt-get", ["install", "-y", "-q", "debootstrap"], { maxBuffer: 16 << 20 });
      }
      log("e2e: debootstrap --variant=minbase bookworm (a few minutes)");
      await run("debootstrap", ["--variant=minbase", "bookworm", rootfs, "http://deb.debian.org/debian"], {
        maxBuffer: 64 << 20,
      });
      // as Debian's container images ship it: no package lists or apt caches, an empty /dev, no resolv.conf
      await run("chroot", [rootfs, "apt-get", "clean"]);
      const clearAptState = async () => {
        await rm(join(rootfs, "var/lib/apt/lists"), { recursive: true, force: true });
        await mkdir(join(rootfs, "var/lib/apt/lists/partial"), { recursive: true });
        for (const f of await readdir(join(rootfs, "var/cache/apt")))
          if (f.endsWith(".bin")) await rm(join(rootfs, "var/cache/apt", f));
        await rm(join(rootfs, "etc/resolv.conf"), { force: true });
      };
      await clearAptState();
      for (const f of await readdir(join(rootfs, "dev"))) await rm(join(rootfs, "dev", f), { recursive: true });
      // layer 1 is the tree as debootstrap left it, written before the install changes some of its files
      const base = await writeLayer({ dir: rootfs }, join(dir, "layer0.tar.gz"));
      const before = await signatures(rootfs);
      // the install needs DNS, /proc and /dev; all three are gone again before the diff
      await copyFile("/etc/resolv.conf", join(rootfs, "etc/resolv.conf"));
      await run("mount", ["-t", "proc", "proc", join(rootfs, "proc")]);
      await run("mount", ["--bind", "/dev", join(rootfs, "dev")]);
      try {
        const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive", LC_ALL: "C" };
        log("e2e: apt-get install python3-numpy python3-scipy in the chroot");
        await run("chroot", [rootfs, "apt-get", ...CHROOT_APT, "update"], { env, maxBuffer: 64 << 20 });
        await run(
          "chroot",
          [
            rootfs,
            "apt-get",
            ...CHROOT_APT,
            "install",
            "-y",
            "--no-install-recommends",
            "python3-numpy",
            "python3-scipy",
          ],
          { env, maxBuffer: 64 << 20 },
        );
        await run("chroot", [rootfs, "apt-get", "clean"], { env });
      } finally {
        await run("umount", [join(rootfs, "dev")]);
        await run("umount", [join(rootfs, "proc")]);
      }
      await clearAptState();
      const check = await run("chroot", [rootfs, ...NUMPY_COMMAND]);
      if (check.stdout.trim() !== "ready")
        throw new FailedPreconditionError(`numpy-debian rootfs: ${check.stdout}${check.stderr}`);

      const after = await signatures(rootfs);
      const changed = [...after]
        .filter(([p, sig]) => before.get(p) !== sig && p !== "./etc/resolv.conf")
        .map(([p]) => p);
      // a removed path whose parent survives gets a whiteout; under a removed directory the directory's covers it
      const removed = [...before.keys()].filter((p) => !after.has(p) && after.has(dirname(p)));
      for (const p of removed) {
        const wh = join(dirname(p), `.wh.${basename(p)}`);
        await writeFile(join(rootfs, wh), "");
        changed.push(wh);
      }
      const list = join(dir, "install-layer.list");
      await writeFile(list, withParents(changed).join("\n") + "\n");
      const layers = [
        base,
        await writeLayer(
          { dir: rootfs, paths: ["--no-recursion", "--verbatim-files-from", "-T", list] },
          join(dir, "layer1.tar.gz"),
        ),
      ];
      await writeImageLayout(join(dir, "layout"), layers, { cmd: NUMPY_COMMAND });
      for (const l of layers) await rm(l.gzPath, { force: true });
      await rm(rootfs, { recursive: true, force: true });
      return {
        command: NUMPY_COMMAND,
        layers,
        description:
          "debootstrap --variant=minbase bookworm + `apt-get install --no-install-recommends python3-numpy python3-scipy` in a chroot (two layers), `python3 -c \"import numpy; print('ready')\"`",
      };
    },
    log,
  );
}

export function dataImage(fileMB: number, log: (l: string) => void): Promise<BenchImage> {
  return cached(
    `data-${fileMB}`,
    async (dir) => {
      const base = join(dir, "base");
      await writeBusyboxRootfs(base);
      const rootfs = join(dir, "rootfs");
      await mkdir(join(rootfs, "data"), { recursive: true });
      for (let i = 0; i < 3; i++) {
        await writeFile(join(rootfs, "data", `notes-${i}.txt`), `file ${i}\n`);
        await writeFile(join(rootfs, "data", `big-${i}.bin`), sampleData(fileMB << 20));
      }
      const script =
        'for f in /data/big-0.bin /data/big-1.bin /data/big-2.bin; do head -c 4096 "$f" > /dev/null || exit 1; done; echo ready';
      const command = ["/bin/sh", "-c", script];
      const layers = await layoutOf(dir, [{ dir: base }, { dir: rootfs }], { cmd: command });
      await rm(base, { recursive: true, force: true });
      await rm(rootfs, { recursive: true, force: true });
      return { command, layers, description: `3 × ${fileMB} MiB files (≈2:1 gzip), the workload reads 4 KiB of each` };
    },
    log,
  );
}
