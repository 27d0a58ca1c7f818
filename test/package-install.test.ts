// The npm package as a user gets it: `npm pack` of a copy of the checkout (its prepack builds from
// clean sources), the tarball's exact contents, `npm install -g --prefix` of the tarball with the
// native dependencies' install scripts, then the installed executables run from outside the
// checkout: versions, `soci convert --standalone`, `soci create` + `ztoc list|info|get-file`, the
// daemon's `config default`, and the .proto files and WASM loaded from the installed package.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chmod,
  copyFile,
  mkdir,
  mkdtemp,
  readFile,
  readdir,
  realpath,
  rm,
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ContentStore } from "../src/store/content-store.js";
import { digestOf } from "../src/store/digest.js";
import { tarLayer } from "./helpers/test-image.js";

const run = promisify(execFile);
const REPO = fileURLToPath(new URL("..", import.meta.url));
const PKG = JSON.parse(await readFile(join(REPO, "package.json"), "utf8")) as {
  name: string;
  version: string;
  bin: Record<string, string>;
};
/** The dependencies whose install scripts the package needs (the only native ones). */
const NATIVE = ["better-sqlite3", "fuse-native"];

let tmp = "";
let packed: string[] = [];
let tarball = "";
let prefix = "";
let installed = "";
/** A directory outside the checkout: every installed command runs there. */
let work = "";

/** The files of the checkout as a clone has them: tracked, plus new files git does not ignore. */
async function checkoutFiles(): Promise<string[]> {
  const { stdout } = await run("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], {
    cwd: REPO,
    maxBuffer: 64 << 20,
  });
  const files: string[] = [];
  for (const f of stdout.split("\0").filter(Boolean)) {
    if (
      await stat(join(REPO, f)).then(
        (s) => s.isFile(),
        () => false,
      )
    )
      files.push(f); // deleted, not yet committed
  }
  return files;
}

/**
 * better-sqlite3's install script (prebuild-install) looks for `<name>-v<version>-node-v<abi>-linux-x64.tar.gz`
 * in `npm_config_better_sqlite3_local_prebuilds` before downloading one. This machine reaches no
 * prebuild host, so without it the script compiles SQLite (about a minute and a half here; `npm ci`
 * in .ci/run exercises that path). The prebuild given is the addon the checkout's install built, so
 * the installed package runs the same code; if the resolved version differs, the script compiles.
 * (npm warns that it does not know this setting; prebuild-install reads it from the environment.)
 */
async function betterSqlitePrebuild(dir: string): Promise<void> {
  const mod = join(REPO, "node_modules", "better-sqlite3");
  const { version } = JSON.parse(await readFile(join(mod, "package.json"), "utf8")) as { version: string };
  const name = `better-sqlite3-v${version}-node-v${process.versions.modules}-${process.platform}-${process.arch}.tar.gz`;
  await mkdir(dir, { recursive: true });
  await run("tar", ["-czf", join(dir, name), "-C", mod, "build/Release/better_sqlite3.node"]);
}

/** A one-layer OCI image layout: a few small files and 1 MiB of random data (several 64 KiB spans). */
async function writeLayout(dir: string): Promise<{ hello: string; random: Buffer; layer: Buffer }> {
  const hello = `hello from ${randomBytes(8).toString("hex")}\n`;
  const random = randomBytes(1 << 20);
  const tar = tarLayer([
    { path: "app", type: "dir" },
    { path: "app/hello.txt", type: "file", data: hello },
    { path: "app/random.bin", type: "file", data: random },
    { path: "app/link", type: "symlink", target: "hello.txt" },
  ]);
  const layer = gzipSync(tar);
  const config = Buffer.from(
    JSON.stringify({
      architecture: "amd64",
      os: "linux",
      config: {},
      rootfs: { type: "layers", diff_ids: [digestOf(tar)] },
    }),
  );
  const desc = (mediaType: string, b: Uint8Array) => ({ mediaType, digest: digestOf(b), size: b.length });
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: desc("application/vnd.oci.image.config.v1+json", config),
      layers: [desc("application/vnd.oci.image.layer.v1.tar+gzip", layer)],
    }),
  );
  await mkdir(join(dir, "blobs", "sha256"), { recursive: true });
  for (const b of [layer, config, manifest])
    await writeFile(join(dir, "blobs", "sha256", digestOf(b).slice("sha256:".length)), b);
  await writeFile(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  await writeFile(
    join(dir, "index.json"),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          ...desc("application/vnd.oci.image.manifest.v1+json", manifest),
          annotations: { "org.opencontainers.image.ref.name": "latest" },
        },
      ],
    }),
  );
  return { hello, random, layer };
}

/** Runs an installed executable from `work`, with the prefix's bin first on PATH. */
async function installedCli(bin: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(join(prefix, "bin", bin), args, {
      cwd: work,
      env: { ...process.env, PATH: `${join(prefix, "bin")}:${process.env.PATH}` },
      maxBuffer: 64 << 20,
    });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "soci-package-"));
  // pack a copy, so that prepack builds from the sources alone (no stale dist/ of the checkout)
  // and the checkout's build/ and dist/ stay untouched while other tests use them
  const copy = join(tmp, "checkout");
  for (const f of await checkoutFiles()) {
    await mkdir(dirname(join(copy, f)), { recursive: true });
    await copyFile(join(REPO, f), join(copy, f));
  }
  await symlink(join(REPO, "node_modules"), join(copy, "node_modules"));
  const pack = await run("npm", ["pack", "--json", "--pack-destination", tmp], { cwd: copy, maxBuffer: 64 << 20 });
  // prepack's output (the build) comes first on stdout; the JSON report is the last thing printed
  const report = JSON.parse(pack.stdout.slice(pack.stdout.lastIndexOf("\n[\n") + 1)) as Array<{
    filename: string;
    files: Array<{ path: string }>;
  }>;
  packed = report[0]!.files.map((f) => f.path).sort();
  tarball = join(tmp, report[0]!.filename);

  prefix = join(tmp, "prefix");
  work = join(tmp, "work");
  await mkdir(work);
  const prebuilds = join(tmp, "prebuilds");
  await betterSqlitePrebuild(prebuilds);
  await run(
    "npm",
    [
      "install",
      "--global",
      "--prefix",
      prefix,
      `--allow-scripts=${NATIVE.join(",")}`,
      "--prefer-offline",
      "--no-audit",
      "--no-fund",
      tarball,
    ],
    { cwd: work, env: { ...process.env, npm_config_better_sqlite3_local_prebuilds: prebuilds }, maxBuffer: 64 << 20 },
  );
  installed = join(prefix, "lib", "node_modules", PKG.name);
}, 600_000);

afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe("npm pack", () => {
  it("ships exactly what runs: dist/ (JS + types of every source), the WASM, the protos and their descriptors, bin/, deploy/, docs/", async () => {
    const files = await checkoutFiles();
    const under = (dir: string) => files.filter((f) => f.startsWith(`${dir}/`));
    const sources = under("src").filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"));
    const compiled = sources.flatMap((f) => {
      const out = `dist/${f.slice("src/".length, -".ts".length)}`;
      return [`${out}.js`, `${out}.d.ts`];
    });
    const expected = [
      "package.json",
      "README.md",
      "LICENSE",
      ...Object.values(PKG.bin).map((b) => relative(".", b)),
      "build/inflate.wasm",
      ...["containerd", "cri-api", "fuse-host"].map((g) => `build/proto/${g}.json`),
      ...under("proto"),
      ...under("deploy"),
      ...under("docs"),
      ...compiled,
    ].sort();
    expect(packed).toEqual(expected);
    // the bits that are loaded by path at run time
    for (const f of ["dist/wasm/worker.js", "dist/indexer/worker.js", "build/proto/cri-api.json"])
      expect(packed).toContain(f);
    expect(packed.filter((f) => /^(src|test|bench|assembly)\/|\.map$/.test(f))).toEqual([]);
  });
});

describe("installed with npm install -g --prefix", () => {
  it("the executables are the installed package's, not the checkout's", async () => {
    for (const [bin, target] of Object.entries(PKG.bin)) {
      const real = await realpath(join(prefix, "bin", bin));
      expect(real).toBe(join(installed, target));
      expect(relative(REPO, real).startsWith("..")).toBe(true);
    }
    expect(relative(REPO, work).startsWith("..")).toBe(true);
    // the native dependencies were installed for the package, with their addons
    for (const dep of NATIVE) expect((await stat(join(installed, "node_modules", dep))).isDirectory()).toBe(true);
    expect(await readdir(join(installed, "node_modules", "better-sqlite3", "build", "Release"))).toContain(
      "better_sqlite3.node",
    );
  });

  it("soci --version and soci-snapshotter-grpc --version print the package version", async () => {
    expect(await installedCli("soci", ["--version"])).toMatchObject({
      code: 0,
      stdout: `soci version ${PKG.version}\n`,
    });
    expect(await installedCli("soci-snapshotter-grpc", ["--version"])).toMatchObject({
      code: 0,
      stdout: `soci-snapshotter-grpc version ${PKG.version}\n`,
    });
  });

  it("soci-snapshotter-grpc config default prints what the checkout's daemon prints", async () => {
    const got = await installedCli("soci-snapshotter-grpc", ["config", "default"]);
    expect(got.code).toBe(0);
    expect(got.stdout).toMatch(/^http_cache_type = ''\n/);
    const want = await run("node", [join(REPO, "bin", "soci-snapshotter-grpc.js"), "config", "default"]);
    expect(got.stdout).toBe(want.stdout);
  });

  it("soci convert --standalone, soci create, ztoc list / info / get-file on an OCI layout", async () => {
    const layout = join(work, "image");
    const { hello, random, layer } = await writeLayout(layout);
    const small = ["--min-layer-size", "0", "--span-size", "65536"];

    const out = join(work, "image-soci");
    const conv = await installedCli("soci", ["convert", "--standalone", "--format", "oci-dir", ...small, layout, out]);
    expect(conv.stderr).toBe("");
    expect(conv.code).toBe(0);
    const converted = conv.stdout.match(/^layer sha256:[0-9a-f]{64} -> ztoc (sha256:[0-9a-f]{64})$/m);
    expect(converted).not.toBeNull();
    const ztoc = converted![1]!;
    expect((await stat(join(out, "blobs", "sha256", ztoc.slice("sha256:".length)))).isFile()).toBe(true);

    // the local store: the same layer and span size give the same ztoc
    const root = join(work, "root");
    const create = await installedCli("soci", ["--root", root, "create", ...small, `oci:${layout}:latest`]);
    expect(create.code, create.stderr).toBe(0);
    const list = await installedCli("soci", ["--root", root, "ztoc", "list", "--quiet"]);
    expect(list).toMatchObject({ code: 0, stdout: `${ztoc}\n` });

    const info = await installedCli("soci", ["--root", root, "ztoc", "info", ztoc]);
    expect(info.code, info.stderr).toBe(0);
    const json = JSON.parse(info.stdout) as {
      version: string;
      num_spans: number;
      files: Array<{ filename: string; size: number; type: string }>;
    };
    expect(json.version).toBe("0.9");
    expect(json.num_spans).toBeGreaterThan(1);
    expect(json.files.find((f) => f.filename === "app/random.bin")).toMatchObject({ size: 1 << 20, type: "reg" });

    // extraction inflates from the spans' checkpoints with the installed WASM; it reads the layer
    // from the local content store, where a pull leaves it (`create` of an OCI layout does not)
    await (await ContentStore.open(join(root, "content"))).put(layer);
    const file = await installedCli("soci", ["--root", root, "ztoc", "get-file", ztoc, "app/hello.txt"]);
    expect(file).toMatchObject({ code: 0, stdout: `${hello}\n` });
    const extracted = join(work, "random.bin");
    const big = await installedCli("soci", [
      "--root",
      root,
      "ztoc",
      "get-file",
      "-o",
      extracted,
      ztoc,
      "app/random.bin",
    ]);
    expect(big.code, big.stderr).toBe(0);
    await chmod(extracted, 0o600); // written with permission bits 0, as the reference does
    expect((await readFile(extracted)).equals(random)).toBe(true);
  });

  it("the .proto files and the WASM load from the installed package", async () => {
    const script = [
      `const { containerdProtos } = await import(${JSON.stringify(join(installed, "dist/containerd/proto.js"))});`,
      `const { imageService } = await import(${JSON.stringify(join(installed, "dist/cri/proto.js"))});`,
      `const { gunzip } = await import(${JSON.stringify(join(installed, "dist/index.js"))});`,
      "const { gzipSync } = await import('node:zlib');",
      "console.log(Object.keys(containerdProtos().services).join(','));",
      "console.log(Object.keys(imageService().service).join(','));",
      "console.log(Buffer.from(gunzip(gzipSync('inflated'))).toString());",
    ].join("\n");
    const r = await run("node", ["--input-type=module", "-e", script], { cwd: work });
    expect(r.stdout).toBe(
      "content,diff,images,leases,namespaces,snapshots\nListImages,ImageStatus,PullImage,RemoveImage,ImageFsInfo\ninflated\n",
    );
  });
});
