// A realistic layer-like corpus: a tar of system files from /usr and its `gzip -6` form,
// generated once and cached under the bench directory.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import {
  accessSync,
  constants,
  createReadStream,
  existsSync,
  mkdirSync,
  openSync,
  closeSync,
  type Dirent,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { benchDir, corpusMB } from "./env.js";

export interface Corpus {
  tarPath: string;
  gzPath: string;
  tarSize: number;
  gzSize: number;
  tarSha256: string;
  files: number;
  /** True when the cached files were reused. */
  cached: boolean;
}

interface Manifest {
  mb: number;
  files: number;
  tarSize: number;
  gzSize: number;
  tarSha256: string;
  createdAt: string;
}

/** Top-level trees sampled for the corpus; bytes are balanced between them (executables, libraries, headers, data). */
const ROOTS = ["/usr/bin", "/usr/sbin", "/usr/lib", "/usr/libexec", "/usr/include", "/usr/share"];
/** Files larger than this are skipped so that a handful of huge libraries cannot dominate the mix. */
const MAX_FILE = 32 << 20;

/** Returns the cached corpus of `mb` MB (10^6 bytes) of tar, generating it first if needed. */
export async function ensureCorpus(
  mb = corpusMB(),
  dir = benchDir(),
  log: (line: string) => void = console.error,
): Promise<Corpus> {
  mkdirSync(dir, { recursive: true });
  const base = join(dir, `usr-${mb}mb`);
  const tarPath = `${base}.tar`;
  const gzPath = `${base}.tar.gz`;
  const manifestPath = `${base}.json`;

  const cached = readManifest(manifestPath);
  if (cached && sizeOf(tarPath) === cached.tarSize && sizeOf(gzPath) === cached.gzSize) {
    return { tarPath, gzPath, ...pick(cached), cached: true };
  }

  log(`corpus: generating ${mb} MB of /usr files in ${dir} (once) ...`);
  const files = collectFiles(mb * 1e6);
  const listPath = `${base}.list`;
  // NUL-separated, relative to / so that tar stores "usr/..." without warnings.
  writeFileSync(listPath, files.map((f) => f.slice(1) + "\0").join(""));

  const tarTmp = `${tarPath}.tmp`;
  const tarCode = await run("tar", ["-c", "-f", tarTmp, "--null", "--no-recursion", "-C", "/", "-T", listPath]);
  if (tarCode !== 0 && tarCode !== 1) throw new Error(`tar exited with ${tarCode}`); // 1: a file changed while read
  renameSync(tarTmp, tarPath);

  // Plain single-member gzip at level 6, no name or timestamp in the header (like a typical layer).
  const gzTmp = `${gzPath}.tmp`;
  const fd = openSync(gzTmp, "w");
  try {
    const gzCode = await run("gzip", ["-6", "-n", "-c", tarPath], fd);
    if (gzCode !== 0) throw new Error(`gzip exited with ${gzCode}`);
  } finally {
    closeSync(fd);
  }
  renameSync(gzTmp, gzPath);

  const manifest: Manifest = {
    mb,
    files: files.length,
    tarSize: sizeOf(tarPath),
    gzSize: sizeOf(gzPath),
    tarSha256: await sha256File(tarPath),
    createdAt: new Date().toISOString(),
  };
  writeFileSync(manifestPath, JSON.stringify(manifest, null, 2) + "\n");
  return { tarPath, gzPath, ...pick(manifest), cached: false };
}

/** sha256 (hex) of a sequence of byte chunks taken as one stream. */
export function sha256(parts: Uint8Array | Iterable<Uint8Array>): string {
  const h = createHash("sha256");
  if (parts instanceof Uint8Array) h.update(parts);
  else for (const p of parts) h.update(p);
  return h.digest("hex");
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return h.digest("hex");
}

/** Picks regular files from ROOTS (sorted depth-first walk), always from the root with the fewest bytes so far. */
function collectFiles(targetBytes: number): string[] {
  const walkers = ROOTS.filter((r) => existsSync(r)).map((r) => ({ it: walk(r), bytes: 0, done: false }));
  const picked: string[] = [];
  let total = 0;
  while (total < targetBytes) {
    const w = walkers.filter((x) => !x.done).sort((a, b) => a.bytes - b.bytes)[0];
    if (!w) throw new Error(`corpus: only ${total} bytes of files under ${ROOTS.join(", ")}`);
    const next = w.it.next();
    if (next.done) {
      w.done = true;
      continue;
    }
    picked.push(next.value.path);
    w.bytes += next.value.size;
    total += next.value.size;
  }
  return picked;
}

function* walk(dir: string): Generator<{ path: string; size: number }> {
  let entries: Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return; // unreadable directory
  }
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    const path = join(dir, e.name);
    if (e.isDirectory()) {
      yield* walk(path);
    } else if (e.isFile()) {
      const size = sizeOf(path);
      if (size >= 0 && size <= MAX_FILE && readable(path)) yield { path, size };
    }
  }
}

function run(cmd: string, args: string[], stdout: number | "inherit" = "inherit"): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", stdout, "inherit"] });
    child.on("error", reject);
    child.on("close", (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return -1;
  }
}

function readable(path: string): boolean {
  try {
    accessSync(path, constants.R_OK);
    return true;
  } catch {
    return false;
  }
}

function readManifest(path: string): Manifest | undefined {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as Manifest;
  } catch {
    return undefined;
  }
}

function pick(m: Manifest) {
  return { tarSize: m.tarSize, gzSize: m.gzSize, tarSha256: m.tarSha256, files: m.files };
}
