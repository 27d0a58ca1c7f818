// stargz-snapshotter beside ours in bench/e2e.ts: its daemon built from Debian's Go sources
// (bench/stargz/main.go), started per run as containerd's proxy snapshotter `stargz`, and the
// eStargz copies of each bench image made with ctr-remote (cached as OCI layouts).
import { execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { copyFile, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { type Cleanup, unmountUnder } from "../../src/demo/cleanup.js";
import { stopProcess } from "../../src/demo/services.js";
import { startBenchContainerd } from "./containerd.js";
import type { BenchImage } from "./e2e-images.js";
import { benchDir } from "./env.js";
import { CanceledError, DeadlineExceededError, UnavailableError } from "../../src/errors/errors.js";

const run = promisify(execFile);

export const CTR_REMOTE_BIN = process.env.CTR_REMOTE_BIN || "/usr/bin/ctr-remote";
const GOCODE = "/usr/share/gocode";
const STARGZ_SRC = join(GOCODE, "src/github.com/containerd/stargz-snapshotter");
const MAIN_GO = fileURLToPath(new URL("../stargz/main.go", import.meta.url));

export type StargzBuild = { bin: string } | { unavailable: string };

/**
 * Builds bench/stargz/main.go into <bench dir>/stargz/stargz-bench (GOPATH mode against
 * /usr/share/gocode; rebuilt when main.go or the Go version changes), or says why it cannot.
 */
export async function buildStargzDaemon(log: (l: string) => void): Promise<StargzBuild> {
  const go = await run("go", ["version"]).catch(() => undefined);
  if (!go) return { unavailable: "no Go toolchain (apt-get install golang-go)" };
  if (!existsSync(join(STARGZ_SRC, "service")))
    return { unavailable: "no stargz sources (apt-get install golang-github-containerd-stargz-snapshotter-dev)" };
  if (!existsSync(CTR_REMOTE_BIN)) return { unavailable: `no ${CTR_REMOTE_BIN} (apt-get install stargz-snapshotter)` };
  const dir = join(benchDir(), "stargz");
  const bin = join(dir, "stargz-bench");
  const stamp = createHash("sha256").update(readFileSync(MAIN_GO)).update(go.stdout).digest("hex");
  if (existsSync(bin) && (await readFile(`${bin}.stamp`, "utf8").catch(() => "")) === stamp) return { bin };
  log("e2e: building the stargz daemon from Debian's Go sources (≈ 1–2 min the first time)…");
  const pkg = join(dir, "gopath/src/stargz-bench");
  await mkdir(pkg, { recursive: true });
  await copyFile(MAIN_GO, join(pkg, "main.go"));
  // service/resolver/cri.go needs k8s.io/cri-api, which Debian does not package; nothing here uses it
  const overlay = join(dir, "overlay.json");
  await writeFile(overlay, JSON.stringify({ Replace: { [join(STARGZ_SRC, "service/resolver/cri.go")]: "" } }));
  try {
    await run("go", ["build", "-overlay", overlay, "-o", bin, "."], {
      cwd: pkg,
      env: {
        ...process.env,
        GO111MODULE: "off",
        GOPATH: `${join(dir, "gopath")}:${GOCODE}`,
        GOCACHE: join(dir, "gocache"),
        GOFLAGS: "",
      },
      maxBuffer: 16 << 20,
    });
  } catch (e) {
    const err = e as Error & { stderr?: string };
    return { unavailable: `go build failed: ${(err.stderr || err.message).trim().split("\n").slice(-5).join(" | ")}` };
  }
  await writeFile(`${bin}.stamp`, stamp);
  return { bin };
}

export interface StargzDaemon {
  pid: number;
  socket: string;
  dir: string;
  log(): string;
  stop(): Promise<void>;
}

/** The stargz daemon in `dir`, resolving `registries` (host:port) over plain HTTP; resolves once it serves. */
export async function startStargzDaemon(
  bin: string,
  dir: string,
  cleanup: Cleanup,
  registries: string[],
): Promise<StargzDaemon> {
  await mkdir(dir, { recursive: true });
  const socket = join(dir, "stargz.sock");
  const config = join(dir, "config.toml");
  // loopback hosts get http anyway (docker.MatchLocalhost); the mirror entries say it for any host
  await writeFile(
    config,
    registries
      .map((h) => `[[resolver.host.${JSON.stringify(h)}.mirrors]]\nhost = ${JSON.stringify(h)}\ninsecure = true\n`)
      .join("\n"),
  );
  const child = spawn(bin, ["--address", socket, "--root", join(dir, "root"), "--config", config], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  const keep = (d: Buffer) => (out = (out + d.toString()).slice(-(256 << 10)));
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  const stop = cleanup.add("stargz daemon", async () => {
    await stopProcess(child, "SIGTERM");
    await unmountUnder(dir);
    await rm(dir, { recursive: true, force: true });
  });
  const deadline = Date.now() + 30_000;
  while (!out.includes("stargz-bench serving on")) {
    if (cleanup.aborted) throw new CanceledError("interrupted while starting the stargz daemon");
    if (child.exitCode !== null || child.signalCode !== null)
      throw new UnavailableError(`stargz daemon exited:\n${out}`);
    if (Date.now() > deadline) throw new DeadlineExceededError(`stargz daemon did not start within 30 s:\n${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { pid: child.pid!, socket, dir, log: () => out, stop };
}

/** The tags `stargzCopies` pushes beside <name>:latest. */
export const ESGZ_TAG = "esgz";
export const ESGZ_OPT_TAG = "esgz-opt";

export interface StargzCopies {
  /** Sum of the layers' compressed sizes, eStargz and optimized eStargz. */
  esgzBytes: number;
  optBytes: number;
  /** Seconds ctr-remote took (0 when the copies came from the cache). */
  convertSeconds: number;
  optimizeSeconds: number;
}

const skopeoCopy = (src: string, dst: string) =>
  run("skopeo", ["copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false", "--preserve-digests", src, dst], {
    maxBuffer: 16 << 20,
  });

async function layerBytes(registry: string, repo: string, tag: string): Promise<number> {
  const r = await fetch(`http://${registry}/v2/${repo}/manifests/${tag}`, {
    headers: { accept: "application/vnd.oci.image.manifest.v1+json" },
  });
  if (!r.ok) throw new UnavailableError(`GET manifest ${repo}:${tag}: ${r.status}`);
  const m = (await r.json()) as { layers: Array<{ size: number }> };
  return m.layers.reduce((a, l) => a + l.size, 0);
}

/**
 * Pushes `<registry>/bench/<name>:esgz` (`ctr-remote image convert --estargz --oci`) and `:esgz-opt`
 * (`ctr-remote image optimize --oci`, the image's workload as entrypoint and args) made from the
 * `:latest` already pushed there. The results are kept as OCI layouts under <bench dir>/e2e/<name>/
 * stargz, keyed by the source layout's manifest, and pushed unchanged from there on later runs.
 */
export async function stargzCopies(
  img: BenchImage,
  registry: string,
  work: string,
  cleanup: Cleanup,
  log: (l: string) => void,
): Promise<StargzCopies> {
  const repo = `bench/${img.name}`;
  const src = `${registry}/${repo}:latest`;
  const cacheDir = join(benchDir(), "e2e", img.name, "stargz");
  const key = JSON.parse(await readFile(join(img.layout, "index.json"), "utf8")).manifests[0].digest as string;
  const meta = join(cacheDir, "copies.json");
  const cached = existsSync(meta)
    ? (JSON.parse(await readFile(meta, "utf8")) as StargzCopies & { key: string })
    : undefined;
  if (cached?.key === key) {
    for (const tag of [ESGZ_TAG, ESGZ_OPT_TAG])
      await skopeoCopy(`oci:${join(cacheDir, "layout")}:${tag}`, `docker://${registry}/${repo}:${tag}`);
    return { ...cached, convertSeconds: 0, optimizeSeconds: 0 };
  }
  log(`e2e: ctr-remote convert + optimize ${img.name} (cached for later runs)…`);
  const c = await startBenchContainerd(join(work, `cv-${img.name}`), cleanup);
  try {
    await c.ctr(["images", "pull", "--plain-http", src]);
    let t = performance.now();
    await c.ctr(["images", "convert", "--estargz", "--oci", src, `${registry}/${repo}:${ESGZ_TAG}`], CTR_REMOTE_BIN);
    const convertSeconds = (performance.now() - t) / 1000;
    t = performance.now();
    const [entry, ...args] = img.command;
    await c.ctr(
      [
        "images",
        "optimize",
        "--oci",
        "--entrypoint",
        JSON.stringify([entry]),
        "--args",
        JSON.stringify(args),
        src,
        `${registry}/${repo}:${ESGZ_OPT_TAG}`,
      ],
      CTR_REMOTE_BIN,
    );
    const optimizeSeconds = (performance.now() - t) / 1000;
    for (const tag of [ESGZ_TAG, ESGZ_OPT_TAG])
      await c.ctr(["images", "push", "--plain-http", `${registry}/${repo}:${tag}`]);
    await rm(cacheDir, { recursive: true, force: true });
    await mkdir(cacheDir, { recursive: true });
    for (const tag of [ESGZ_TAG, ESGZ_OPT_TAG])
      await skopeoCopy(`docker://${registry}/${repo}:${tag}`, `oci:${join(cacheDir, "layout")}:${tag}`);
    const copies: StargzCopies = {
      esgzBytes: await layerBytes(registry, repo, ESGZ_TAG),
      optBytes: await layerBytes(registry, repo, ESGZ_OPT_TAG),
      convertSeconds,
      optimizeSeconds,
    };
    await writeFile(meta, `${JSON.stringify({ ...copies, key }, null, 2)}\n`);
    return copies;
  } finally {
    await c.stop();
  }
}
