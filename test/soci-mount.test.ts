// `soci mount` end to end: a three-layer image (deletions and an opaque directory across layers,
// one layer too small for a ztoc) converted with `soci convert`, pushed to a real registry, mounted
// lazily by a `soci mount` process, and compared byte for byte with `umoci unpack` of the same image.
// The mount is served by a child process, so this test may read it with ordinary async fs calls.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, link, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { startRegistry, type RegistryServer } from "./helpers/registry-server.js";
import { mountsUnder } from "./helpers/soci-daemon.js";

const run = promisify(execFile);
const soci = new URL("../bin/soci.js", import.meta.url).pathname;
let registry: RegistryServer;
let dir = "";
let root = "";

interface Node {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeMs: number;
  target?: string;
  sha256?: string;
  nlink: number;
}

/** Every path under `top` with its metadata and content digest (skipping the FUSE state dir). */
async function walk(top: string): Promise<Map<string, Node>> {
  const out = new Map<string, Node>();
  const visit = async (rel: string): Promise<void> => {
    const names = (await readdir(join(top, rel))).sort();
    for (const name of names) {
      const p = rel ? `${rel}/${name}` : name;
      const full = join(top, p);
      const st = await lstat(full);
      const n: Node = {
        type: st.isDirectory()
          ? "dir"
          : st.isFile()
            ? "reg"
            : st.isSymbolicLink()
              ? "symlink"
              : st.isCharacterDevice()
                ? "char"
                : st.isFIFO()
                  ? "fifo"
                  : "other",
        mode: st.mode & 0o7777,
        uid: st.uid,
        gid: st.gid,
        size: st.isDirectory() ? 0 : st.size,
        // A directory that a layer holds only implicitly (as the parent of a changed file) has no
        // attributes in that layer's ztoc; overlayfs shows the top layer's copy, so its mtime is the
        // zero time while `umoci unpack` keeps an earlier layer's. The reference behaves the same.
        mtimeMs: st.isDirectory() ? 0 : Math.floor(st.mtimeMs),
        nlink: st.isDirectory() ? 0 : st.nlink,
      };
      if (n.type === "symlink") n.target = await readlink(full);
      if (n.type === "reg")
        n.sha256 = createHash("sha256")
          .update(await readFile(full))
          .digest("hex");
      out.set(p, n);
      if (n.type === "dir") await visit(p);
    }
  };
  await visit("");
  return out;
}

async function umoci(args: string[]): Promise<void> {
  await run("umoci", args);
}

/** A `soci mount` child process; resolves once it printed its "mounted" line. */
function startMount(args: string[]): Promise<{ proc: ChildProcess; stdout: () => string; stderr: () => string }> {
  const proc = spawn("node", [soci, "--root", root, "mount", "--plain-http", ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  proc.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    proc.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("mounted ")) resolve({ proc, stdout: () => out, stderr: () => err });
    });
    proc.on("exit", (code) => reject(new Error(`soci mount exited ${code}: ${err}`)));
  });
}

function exited(proc: ChildProcess): Promise<number | null> {
  return proc.exitCode !== null ? Promise.resolve(proc.exitCode) : new Promise((r) => proc.once("exit", (c) => r(c)));
}

async function fuseMounts(): Promise<string[]> {
  return (await readFile("/proc/mounts", "utf8"))
    .split("\n")
    .filter((l) => l.includes("fuse.rawBridge") && l.includes(root));
}

beforeAll(async () => {
  registry = await startRegistry();
  dir = await mkdtemp(join(tmpdir(), "soci-mount-"));
  root = join(dir, "root");
  const layout = join(dir, "image");
  const bundle = join(dir, "bundle");
  const rootfs = join(bundle, "rootfs");
  await umoci(["init", "--layout", layout]);
  await umoci(["new", "--image", `${layout}:latest`]);
  await umoci(["unpack", "--image", `${layout}:latest`, bundle]);
  // layer 1 (large: indexed)
  for (const d of ["etc", "data", "keep", "gone", "opq/sub", "bin"]) await mkdir(join(rootfs, d), { recursive: true });
  await writeFile(join(rootfs, "etc/app.conf"), "version=1\n");
  await writeFile(
    join(rootfs, "data/big.bin"),
    Buffer.concat([randomBytes(3 << 20), Buffer.alloc(2 << 20, "abcdefgh")]),
  );
  for (let i = 0; i < 300; i++) await writeFile(join(rootfs, `keep/f${i}.txt`), `file ${i}\n`.repeat(i));
  await writeFile(join(rootfs, "gone/x"), "deleted later\n");
  await writeFile(join(rootfs, "opq/old1"), "old\n");
  await writeFile(join(rootfs, "opq/sub/old2"), "old\n");
  await writeFile(join(rootfs, "bin/tool"), "#!/bin/sh\necho hi\n", { mode: 0o4755 });
  await symlink("../etc/app.conf", join(rootfs, "bin/conf-link"));
  await link(join(rootfs, "keep/f10.txt"), join(rootfs, "keep/hard10.txt"));
  // umoci diffs against the bundle's unpacked image, so each new layer starts from a fresh unpack
  const repack = async () => {
    await umoci(["repack", "--image", `${layout}:latest`, bundle]);
    await rm(bundle, { recursive: true, force: true });
    await umoci(["unpack", "--image", `${layout}:latest`, bundle]);
  };
  await repack();
  // layer 2 (small: no ztoc) — a deletion and an opaque replacement
  await rm(join(rootfs, "gone/x"));
  await rm(join(rootfs, "opq"), { recursive: true });
  await mkdir(join(rootfs, "opq"));
  await writeFile(join(rootfs, "opq/new"), "new\n");
  await writeFile(join(rootfs, "small.txt"), "small\n");
  await repack();
  // layer 3 (large: indexed) — overwrite and a new big file
  await writeFile(join(rootfs, "etc/app.conf"), "version=3\n");
  await writeFile(join(rootfs, "data/big2.bin"), randomBytes(3 << 20));
  await rm(join(rootfs, "keep/f5.txt"));
  await umoci(["repack", "--image", `${layout}:latest`, bundle]);
  await umoci(["unpack", "--image", `${layout}:latest`, join(dir, "truth")]);
  await run("skopeo", [
    "copy",
    "--dest-tls-verify=false",
    `oci:${layout}:latest`,
    `docker://${registry.host}/src/img:latest`,
  ]);
  await run("node", [
    soci,
    "--root",
    join(dir, "convert-root"),
    "convert",
    "--plain-http",
    "--min-layer-size",
    String(1 << 20),
    "--span-size",
    String(256 << 10),
    `${registry.host}/src/img:latest`,
    `${registry.host}/dst/img:soci`,
  ]);
}, 180_000);

afterAll(async () => {
  // whatever a failed run left mounted under the test's directory (deepest first)
  for (const m of await mountsUnder(dir).catch(() => [])) await run("umount", ["-l", m]).catch(() => undefined);
  await registry?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("soci mount", () => {
  it("mounts a converted image lazily and it equals umoci unpack of the same image", async () => {
    const mnt = join(dir, "mnt");
    const m = await startMount([`${registry.host}/dst/img:soci`, mnt]);
    try {
      expect(m.stdout()).toMatch(/\(2 lazy, 1 local layers\)/);
      expect(await fuseMounts()).toHaveLength(2);
      const [got, want] = await Promise.all([walk(mnt), walk(join(dir, "truth", "rootfs"))]);
      expect([...got.keys()]).toEqual([...want.keys()]);
      for (const [p, w] of want) expect({ p, ...got.get(p)! }).toEqual({ p, ...w });
      expect(got.has("gone/x")).toBe(false);
      expect([...got.keys()].filter((p) => p.startsWith("opq/"))).toEqual(["opq/new"]);
    } finally {
      await run("node", [soci, "--root", root, "unmount", mnt]);
    }
    expect(await exited(m.proc)).toBe(0);
    expect(await fuseMounts()).toHaveLength(0);
    expect((await readFile("/proc/mounts", "utf8")).includes(mnt)).toBe(false);
  }, 120_000);

  it("a second mount reuses the cached artifacts and unpacked layer, and SIGTERM unmounts cleanly", async () => {
    const mnt = join(dir, "mnt");
    const m = await startMount([`${registry.host}/dst/img:soci`, mnt]);
    expect(await readFile(join(mnt, "etc/app.conf"), "utf8")).toBe("version=3\n");
    // a second soci mount on a live mountpoint is refused and leaves the first one intact
    const twice = await run("node", [
      soci,
      "--root",
      root,
      "mount",
      "--plain-http",
      `${registry.host}/dst/img:soci`,
      mnt,
    ]).catch((e: { code: number; stderr: string }) => e);
    expect((twice as { code: number }).code).toBe(1);
    expect((twice as { stderr: string }).stderr).toMatch(/is already mounted by soci mount \(pid \d+\)/);
    expect(await readFile(join(mnt, "etc/app.conf"), "utf8")).toBe("version=3\n");
    m.proc.kill("SIGTERM");
    expect(await exited(m.proc)).toBe(0);
    expect(await fuseMounts()).toHaveLength(0);
  }, 60_000);

  it("soci unmount finds a mount made with another --root from the mount table", async () => {
    const mnt = join(dir, "mnt-other-root");
    const unmount = (args: string[]) =>
      run("node", [soci, ...args, "unmount", mnt]).then(
        (r) => ({ code: 0, stderr: r.stderr }),
        (e: { code: number; stderr: string }) => e,
      );
    // with the default root and with an unrelated one: the serving process stops, nothing is left
    for (const args of [[], ["--root", join(dir, "elsewhere")]]) {
      const m = await startMount([`${registry.host}/dst/img:soci`, mnt]);
      expect(await fuseMounts()).toHaveLength(2);
      expect(await unmount(args)).toMatchObject({ code: 0, stderr: "" });
      expect(await exited(m.proc)).toBe(0);
      expect(await fuseMounts()).toHaveLength(0);
      expect(await mountsUnder(mnt)).toEqual([]);
    }
    // a killed `soci mount` leaves dead FUSE layers and the overlay: found and removed the same way
    const m = await startMount([`${registry.host}/dst/img:soci`, mnt]);
    m.proc.kill("SIGKILL");
    await exited(m.proc);
    expect(await fuseMounts()).toHaveLength(2);
    expect(await unmount(["--root", join(dir, "elsewhere")])).toMatchObject({ code: 0, stderr: "" });
    expect(await fuseMounts()).toHaveLength(0);
    expect(await mountsUnder(mnt)).toEqual([]);
    await expect(readdir(join(root, "mounts"))).resolves.toEqual([]);
    expect(existsSync(join(dir, "elsewhere"))).toBe(false);
  }, 120_000);

  it("soci unmount refuses what soci mount did not mount, and leaves it mounted", async () => {
    const other = join(dir, "not-soci");
    await mkdir(other, { recursive: true });
    const unmount = () =>
      run("node", [soci, "--root", root, "unmount", other]).then(
        () => ({ code: 0, stderr: "" }),
        (e: { code: number; stderr: string }) => e,
      );
    expect(await unmount()).toMatchObject({ code: 1, stderr: `soci: ${other}: not a soci mount\n` });
    await run("mount", ["-t", "tmpfs", "tmpfs", other]);
    try {
      expect(await unmount()).toMatchObject({
        code: 1,
        stderr: `soci: ${other} is mounted, but not by soci mount: no state for it under ${root} nor in the mount table\n`,
      });
      expect(await mountsUnder(other)).toEqual([other]);
    } finally {
      await run("umount", [other]);
    }
  }, 60_000);

  it("an image without a SOCI index mounts with every layer local; a missing image fails clearly", async () => {
    const mnt = join(dir, "mnt-plain");
    const m = await startMount([`${registry.host}/src/img:latest`, mnt]);
    expect(m.stdout()).toMatch(/\(0 lazy, 3 local layers\)/);
    expect(await readFile(join(mnt, "opq/new"), "utf8")).toBe("new\n");
    await run("node", [soci, "--root", root, "unmount", mnt]);
    expect(await exited(m.proc)).toBe(0);
    const missing = await run("node", [
      soci,
      "--root",
      root,
      "mount",
      "--plain-http",
      `${registry.host}/nope/img:latest`,
      mnt,
    ]).catch((e: { code: number; stderr: string }) => e);
    expect((missing as { code: number }).code).toBe(1);
    expect((missing as { stderr: string }).stderr).toMatch(/^soci: .*(not found|unknown)/i);
  }, 60_000);
});
