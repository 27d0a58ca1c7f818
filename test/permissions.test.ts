// Files keep the permissions the image declares, for every local user and every path to them: an
// image with root-only (0600, and a 0700 directory), world-readable and user-owned files is mounted
// by `soci mount` under an operator-made 0755 `--root`, and run by containerd on a lazily pulled
// copy. A real unprivileged user (created here, removed after) and a container process that drops
// to 65534:65534 (busybox chpst) read the 0644 files and list the 0755 directories, and are refused
// the root-only files through the overlay, straight from the FUSE layer and from the unpacked layer;
// root reads everything.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { startRegistry, type RegistryServer } from "./helpers/registry-server.js";
import { startContainerd, type Containerd } from "./helpers/containerd.js";
import { fuseMountsUnder, SOCI_BIN, spawnDaemon, unmountAllUnder, type SociDaemon } from "./helpers/soci-daemon.js";
import { archive, entry } from "./helpers/tar-build.js";
import { RegistryClient } from "../src/registry/client.js";

const run = promisify(execFile);
const sha256 = (b: Uint8Array) => `sha256:${createHash("sha256").update(b).digest("hex")}`;
const NOBODY = 65534;

let dir = "";
let registry: RegistryServer;
let image = "";
/** The unprivileged user made for this test, and its uid (which owns `etc/user-only`). */
let user = "";
let uid = 0;

async function freeUid(): Promise<number> {
  const used = new Set(
    (await readFile("/etc/passwd", "utf8")).split("\n").map((l) => Number(l.split(":")[2] ?? Number.NaN)),
  );
  for (let u = 62001; u < 63000; u++) if (!used.has(u)) return u;
  throw new Error("no free uid in 62001..62999");
}

/**
 * Layer 1 (indexed, served by FUSE): a busybox shell, /etc with a 0644, a root 0600, a 0600 file of
 * the test user and one of nobody, a 0700 root directory, and a file whose parents have no entries
 * (implicit directories). Layer 2 (too small for a ztoc: unpacked locally): a 0644 and a 0600 file.
 */
function layers(): Uint8Array[] {
  const file = (name: string, data: string, mode: number, owner = 0) =>
    entry({ name, typeflag: "0", mode, uid: owner, gid: owner }, data);
  const dirEntry = (name: string, mode: number) => entry({ name, typeflag: "5", mode });
  const busybox = new Uint8Array(readFileSync("/bin/busybox"));
  return [
    archive(
      dirEntry("bin/", 0o755),
      entry({ name: "bin/busybox", typeflag: "0", mode: 0o755 }, busybox),
      ...["sh", "cat", "ls", "chpst", "id"].map((t) =>
        entry({ name: `bin/${t}`, typeflag: "2", linkname: "busybox", mode: 0o777 }),
      ),
      dirEntry("etc/", 0o755),
      file("etc/public", "public\n", 0o644),
      file("etc/secret", "root secret\n", 0o600),
      file("etc/user-only", "user secret\n", 0o600, uid),
      file("etc/nobody-only", "nobody secret\n", 0o600, NOBODY),
      dirEntry("private/", 0o700),
      file("private/inner", "inner\n", 0o644),
      file("implicit/deep/file", "implicit\n", 0o644),
    ),
    archive(
      dirEntry("local/", 0o755),
      file("local/public", "local public\n", 0o644),
      file("local/secret", "local secret\n", 0o600),
    ),
  ];
}

/** Pushes the image as `ref`; `runAs` becomes its config's `User` (a Dockerfile's `USER`). */
async function pushImage(ref: string, runAs?: string): Promise<void> {
  const client = new RegistryClient({ plainHttp: true });
  const tars = layers();
  const descs = [];
  for (const tar of tars) {
    const gz = gzipSync(tar);
    const desc = { digest: sha256(gz), size: gz.length, mediaType: "application/vnd.oci.image.layer.v1.tar+gzip" };
    await client.pushBlob(ref, gz, desc);
    descs.push(desc);
  }
  const config = Buffer.from(
    JSON.stringify({
      architecture: "amd64",
      os: "linux",
      config: { Cmd: ["/bin/sh"], Env: ["PATH=/bin"], ...(runAs ? { User: runAs } : {}) },
      rootfs: { type: "layers", diff_ids: tars.map(sha256) },
    }),
  );
  const configDesc = {
    digest: sha256(config),
    size: config.length,
    mediaType: "application/vnd.oci.image.config.v1+json",
  };
  await client.pushBlob(ref, config, configDesc);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: configDesc,
      layers: descs,
    }),
  );
  await client.pushManifest(ref, manifest, "application/vnd.oci.image.manifest.v1+json", ref.split(":").pop()!);
  await client.close();
}

/** Runs `args` as the test user: its output, or "denied" when it fails (with the reason in stderr). */
async function asUser(args: string[]): Promise<string> {
  return run("runuser", ["-u", user, "--", ...args]).then(
    (r) => r.stdout,
    (e: { stderr?: string }) => `denied: ${e.stderr ?? ""}`,
  );
}

/** A `soci mount` child process; resolves once it printed its "mounted" line. */
function startMount(root: string, ref: string, mnt: string): Promise<ChildProcess> {
  const proc = spawn("node", [SOCI_BIN, "--root", root, "mount", "--plain-http", ref, mnt], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  proc.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    proc.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("mounted ")) resolve(proc);
    });
    proc.on("exit", (code) => reject(new Error(`soci mount exited ${code}: ${err}`)));
  });
}

beforeAll(async () => {
  // traversable by every user, as the directories an operator makes (mkdtemp makes 0700)
  dir = await mkdtemp(join(tmpdir(), "soci-perm-"));
  await chmod(dir, 0o755);
  registry = await startRegistry();
  uid = await freeUid();
  user = `soci-perm-${uid}`;
  await run("useradd", [
    "--no-create-home",
    "--shell",
    "/usr/sbin/nologin",
    "--uid",
    String(uid),
    "--user-group",
    user,
  ]);
  // the same layers twice: run as root, and with `User: 65534:65534` in the config
  for (const [tag, runAs] of [
    ["latest", undefined],
    ["nobody", `${NOBODY}:${NOBODY}`],
  ] as const) {
    await pushImage(`${registry.host}/perm/img:${tag}`, runAs);
    await run("node", [
      SOCI_BIN,
      "--root",
      join(dir, "convert-root"),
      "convert",
      "--plain-http",
      "--min-layer-size",
      "100000",
      `${registry.host}/perm/img:${tag}`,
      `${registry.host}/perm/img:${tag}-soci`,
    ]);
  }
  image = `${registry.host}/perm/img:latest-soci`;
}, 120_000);

afterAll(async () => {
  await unmountAllUnder(dir).catch(() => undefined);
  await registry?.stop();
  if (user) await run("userdel", [user]).catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
}, 60_000);

describe("permissions through soci mount", () => {
  it("an unprivileged user sees exactly the image's permissions, on every path; root reads all", async () => {
    const root = join(dir, "mount-root");
    await mkdir(root);
    await chmod(root, 0o755); // operator-made
    const mnt = join(dir, "mnt");
    const m = await startMount(root, image, mnt);
    try {
      // through the overlay: 0755 directories listed, 0644 files and the user's own 0600 file read
      expect(await asUser(["ls", mnt])).toBe("bin\netc\nimplicit\nlocal\nprivate\n");
      expect(await asUser(["ls", join(mnt, "etc")])).toBe("nobody-only\npublic\nsecret\nuser-only\n");
      expect(await asUser(["cat", join(mnt, "etc/public")])).toBe("public\n");
      expect(await asUser(["cat", join(mnt, "etc/user-only")])).toBe("user secret\n");
      expect(await asUser(["cat", join(mnt, "implicit/deep/file")])).toBe("implicit\n");
      expect(await asUser(["cat", join(mnt, "local/public")])).toBe("local public\n");
      // … and refused what is not theirs
      for (const p of ["etc/secret", "etc/nobody-only", "private/inner", "local/secret"])
        expect(await asUser(["cat", join(mnt, p)])).toMatch(/^denied: .*Permission denied/);
      expect(await asUser(["ls", join(mnt, "private")])).toMatch(/^denied: .*Permission denied/);
      // root reads everything
      expect(await readFile(join(mnt, "etc/secret"), "utf8")).toBe("root secret\n");
      expect(await readFile(join(mnt, "local/secret"), "utf8")).toBe("local secret\n");

      // the state under the root: 0700 whatever the root's mode, so the layers are out of reach
      for (const d of ["mounts", "layers", "spancache"]) expect((await stat(join(root, d))).mode & 0o777).toBe(0o700);
      const [stateDir] = await readdir(join(root, "mounts"));
      const lazyLayer = join(root, "mounts", stateDir!, "layers", "0");
      const [localLayer] = await readdir(join(root, "layers"));
      expect(await fuseMountsUnder(root)).toEqual([lazyLayer]);
      for (const p of [join(lazyLayer, "etc/secret"), join(root, "layers", localLayer!, "local/secret")])
        expect(await asUser(["cat", p])).toMatch(/^denied: .*Permission denied/);
      // and the FUSE layer itself enforces the modes (default_permissions), should the directories
      // above it ever be opened up
      await chmod(join(root, "mounts"), 0o755);
      await chmod(join(root, "mounts", stateDir!), 0o755);
      await chmod(join(root, "mounts", stateDir!, "layers"), 0o755);
      expect(await asUser(["cat", join(lazyLayer, "etc/public")])).toBe("public\n");
      expect(await asUser(["cat", join(lazyLayer, "etc/user-only")])).toBe("user secret\n");
      expect(await asUser(["cat", join(lazyLayer, "etc/secret")])).toMatch(/^denied: .*Permission denied/);
      expect(await asUser(["ls", join(lazyLayer, "private")])).toMatch(/^denied: .*Permission denied/);
    } finally {
      m.kill("SIGTERM");
      await new Promise((r) => (m.exitCode !== null ? r(null) : m.once("exit", r)));
    }
  }, 120_000);
});

describe("permissions in a container on a lazily pulled image", () => {
  let ctd: Containerd | undefined;
  let daemon: SociDaemon | undefined;

  afterAll(async () => {
    await ctd?.stop().catch(() => undefined);
    await daemon?.stop("SIGINT").catch(() => undefined);
  }, 60_000);

  it("a process that drops to 65534:65534 reads 0644 files and is refused root's 0600 files; root reads both", async () => {
    const root = join(dir, "daemon-root");
    // an operator-made root whose snapshot directory was left world-traversable
    await mkdir(join(root, "snapshotter", "snapshots"), { recursive: true });
    for (const d of [root, join(root, "snapshotter"), join(root, "snapshotter", "snapshots")]) await chmod(d, 0o755);
    const sock = join(dir, "soci.sock");
    await writeFile(join(dir, "config.toml"), "[background_fetch]\ndisable = true\n");
    daemon = spawnDaemon({ address: sock, root, config: join(dir, "config.toml") });
    await daemon.ready;
    ctd = await startContainerd({ proxyPlugins: { soci: { address: sock } } });
    const pull = (ref: string) =>
      run("ctr-remote", ["--address", ctd!.socket, "images", "rpull", "--plain-http", "--snapshotter", "soci", ref]);
    const nobodyImage = `${registry.host}/perm/img:nobody-soci`;
    await pull(image);
    await pull(nobodyImage);
    const fuse = await fuseMountsUnder(root);
    expect(fuse).toHaveLength(1); // the busybox/etc layer is lazy (shared by both images); the small one was unpacked
    expect((await stat(join(root, "snapshotter", "snapshots"))).mode & 0o777).toBe(0o700);
    const runIn = async (ref: string, id: string, script: string) =>
      (
        await ctd!.ctr([
          "run",
          "--rm",
          "--snapshotter",
          "soci",
          "--runc-root",
          join(dir, "runc"),
          ref,
          id,
          "/bin/sh",
          "-c",
          script,
        ])
      ).stdout;

    // each command's stdout and stderr on one line
    const cat = (p: string) => `echo "${p}: $(cat ${p} 2>&1)"`;
    const asNobody = await runIn(
      nobodyImage,
      "perm-nobody",
      [
        "id -u",
        "ls / /etc 2>&1",
        ...["/etc/public", "/etc/nobody-only", "/implicit/deep/file", "/local/public"].map(cat),
        ...["/etc/secret", "/etc/user-only", "/private/inner", "/local/secret"].map(cat),
        'echo "/private: $(ls /private 2>&1)"',
      ].join("; "),
    );
    // (what the runtime adds to / left out)
    const runtimeDirs = new Set(["dev", "proc", "run", "sys"]);
    expect(asNobody.split("\n").filter((l) => !runtimeDirs.has(l))).toEqual([
      String(NOBODY),
      "/:",
      "bin",
      "etc",
      "implicit",
      "local",
      "private",
      "",
      "/etc:",
      "nobody-only",
      "public",
      "secret",
      "user-only",
      "/etc/public: public",
      "/etc/nobody-only: nobody secret",
      "/implicit/deep/file: implicit",
      "/local/public: local public",
      "/etc/secret: cat: can't open '/etc/secret': Permission denied",
      "/etc/user-only: cat: can't open '/etc/user-only': Permission denied",
      "/private/inner: cat: can't open '/private/inner': Permission denied",
      "/local/secret: cat: can't open '/local/secret': Permission denied",
      "/private: ls: can't open '/private': Permission denied",
      "",
    ]);
    expect(
      await runIn(image, "perm-root", "id -u; cat /etc/secret /etc/nobody-only /private/inner /local/secret"),
    ).toBe("0\nroot secret\nnobody secret\ninner\nlocal secret\n");
    // the FUSE layer refuses the unprivileged user directly too
    expect(await asUser(["cat", join(fuse[0]!, "etc/secret")])).toMatch(/^denied: .*Permission denied/);
  }, 180_000);
});
