// The lazy filesystem against a slow link: a one-layer image holding 3 files of 200 MB and small
// files between them, converted with `soci convert`, served by the real registry behind a proxy
// that models 100 Mbit/s and 20 ms RTT, and mounted with `soci mount` (a separate process, so this
// one can read the mount with ordinary async fs calls).
//   (a) cold: first 4 KiB of each 200 MB file vs downloading the whole layer through the same link
//   (b) warm: sequential read of a 200 MB file through FUSE (spans cached) vs the same file on disk
//   (c) cold: bytes fetched ÷ bytes read for 20 random small files
//
//   npm run bench:fs          (npm run build && tsx bench/fs.ts)
//   SOCI_BENCH_FS_MB=50 npx tsx bench/fs.ts      (smaller files for a quick look)
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, existsSync } from "node:fs";
import { mkdir, mkdtemp, open, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { ContentStore } from "../src/store/content-store.js";
import {
  marshalManifest,
  MediaTypeImageConfig,
  MediaTypeImageLayerGzip,
  MediaTypeImageManifest,
} from "../src/formats/oci.js";
import { startRegistry } from "../test/helpers/registry-server.js";
import { benchDir, envInt } from "./lib/env.js";
import { sha256File } from "./lib/corpus.js";
import { commandLine, fmt, machineInfo, mb, table, writeResults } from "./lib/report.js";
import { startShapingProxy } from "./lib/shaping-proxy.js";

const run = promisify(execFile);
const soci = new URL("../bin/soci.js", import.meta.url).pathname;
const FILE_MB = envInt("SOCI_BENCH_FS_MB", 200);
const SMALL = 20;
const LINK = { rttMs: 20, bitsPerSecond: 100e6 };

/** Text-like data that compresses about 2:1, like binaries and libraries do. */
function fileData(seed: number, size: number): Buffer {
  const out = Buffer.alloc(size);
  const words = Array.from({ length: 512 }, (_, i) =>
    createHash("sha256")
      .update(`${seed}/${i}`)
      .digest("hex")
      .slice(0, 3 + (i % 9)),
  );
  let o = 0;
  let x = seed * 2654435761;
  while (o < size) {
    x = (x * 1103515245 + 12345) >>> 0;
    if (x % 7 === 0) {
      const r = randomBytes(Math.min(64, size - o));
      r.copy(out, o);
      o += r.length;
    } else {
      o += out.write(words[x % 512]! + " ", o);
    }
  }
  return out;
}

interface Layer {
  dir: string;
  gz: string;
  tar: string;
  big: string[];
  small: string[];
}

/** The layer's files and its tar/tar.gz, cached between runs. */
async function ensureLayer(): Promise<Layer> {
  const base = join(benchDir(), `fs-${FILE_MB}`);
  const dir = join(base, "rootfs");
  const layer: Layer = { dir, gz: join(base, "layer.tar.gz"), tar: join(base, "layer.tar"), big: [], small: [] };
  const names: string[] = [];
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < SMALL / 3 + 1 && layer.small.length < SMALL; j++) {
      const n = `app/conf${i}/small-${j}.txt`;
      layer.small.push(n);
      names.push(n);
    }
    layer.big.push(`app/data/big-${i}.bin`);
    names.push(`app/data/big-${i}.bin`);
  }
  if (existsSync(layer.gz)) return layer;
  console.error(`building the ${3 * FILE_MB} MB layer in ${base} (cached for later runs)…`);
  await rm(base, { recursive: true, force: true });
  for (const n of names) {
    await mkdir(join(dir, n, ".."), { recursive: true });
    const size = n.includes("big-") ? FILE_MB << 20 : 1000 + ((n.length * 7919) % 9000);
    await writeFile(join(dir, n), fileData(names.indexOf(n) + 1, size));
  }
  // tar in the order above so small files sit between the big ones
  const dirs = [
    ...new Set(
      names.flatMap((n) =>
        n
          .split("/")
          .slice(0, -1)
          .map((_, i, parts) => parts.slice(0, i + 1).join("/")),
      ),
    ),
  ].sort();
  await run("tar", [
    "--format=posix",
    "--numeric-owner",
    "-C",
    dir,
    "-cf",
    layer.tar,
    "--no-recursion",
    ...dirs,
    ...names,
  ]);
  await run("sh", ["-c", `gzip -6 -c '${layer.tar}' > '${layer.gz}.tmp' && mv '${layer.gz}.tmp' '${layer.gz}'`], {
    maxBuffer: 1 << 20,
  });
  return layer;
}

function startMount(root: string, ref: string, mnt: string): Promise<ChildProcess> {
  const proc = spawn("node", [soci, "--root", root, "mount", "--plain-http", ref, mnt], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let err = "";
  proc.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    proc.stdout!.on("data", (d: Buffer) => {
      if (d.toString().includes("mounted ")) resolve(proc);
    });
    proc.on("exit", (code) => reject(new Error(`soci mount exited ${code}: ${err}`)));
  });
}

async function stopMount(proc: ChildProcess): Promise<void> {
  const done = new Promise((r) => proc.once("exit", r));
  proc.kill("SIGTERM");
  await done;
}

async function readHead(path: string, n: number): Promise<number> {
  const fh = await open(path, "r");
  try {
    const { bytesRead } = await fh.read(Buffer.alloc(n), 0, n, 0);
    return bytesRead;
  } finally {
    await fh.close();
  }
}

async function readAll(path: string): Promise<number> {
  let n = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) n += (chunk as Buffer).length;
  return n;
}

async function dropCaches(): Promise<void> {
  await run("sync");
  await writeFile("/proc/sys/vm/drop_caches", "3\n").catch(() =>
    console.error("(could not drop the page cache: not root?)"),
  );
}

async function timed<T>(f: () => Promise<T>): Promise<[number, T]> {
  const t = performance.now();
  const v = await f();
  return [(performance.now() - t) / 1000, v];
}

async function main(): Promise<void> {
  const layer = await ensureLayer();
  const work = await mkdtemp(join(tmpdir(), "soci-bench-fs-"));
  const registry = await startRegistry();
  const proxy = await startShapingProxy(registry.host, LINK);
  try {
    const layout = join(work, "image");
    const store = await ContentStore.open(layout);
    const info = await store.put(createReadStream(layer.gz, { highWaterMark: 1 << 20 }));
    const config = Buffer.from(
      JSON.stringify({
        architecture: "amd64",
        os: "linux",
        rootfs: { type: "layers", diff_ids: [`sha256:${await sha256File(layer.tar)}`] },
        config: {},
      }),
    );
    const cfg = await store.put(config);
    const manifest = marshalManifest({
      schemaVersion: 2,
      mediaType: MediaTypeImageManifest,
      config: { mediaType: MediaTypeImageConfig, ...cfg },
      layers: [{ mediaType: MediaTypeImageLayerGzip, ...info }],
    });
    const mdesc = {
      mediaType: MediaTypeImageManifest,
      digest: `sha256:${createHash("sha256").update(manifest).digest("hex")}`,
      size: manifest.length,
    };
    await store.putDescriptor(mdesc, manifest);
    await store.tag(mdesc, "latest");
    await run("skopeo", [
      "copy",
      "--dest-tls-verify=false",
      `oci:${layout}:latest`,
      `docker://${registry.host}/bench/fs:latest`,
    ]);
    await run(
      "node",
      [
        soci,
        "--root",
        join(work, "convert-root"),
        "convert",
        "--plain-http",
        `${registry.host}/bench/fs:latest`,
        `${registry.host}/bench/fs:soci`,
      ],
      { maxBuffer: 16 << 20 },
    );
    const ref = `${proxy.host}/bench/fs:soci`;

    console.log(`machine: ${JSON.stringify(machineInfo())}`);
    console.log(`command: ${commandLine()}`);
    console.log(
      `layer:   3 × ${FILE_MB} MB + ${SMALL} small files, ${mb(info.size)} gzip; link ${LINK.bitsPerSecond / 1e6} Mbit/s, ${LINK.rttMs} ms RTT`,
    );

    // (a) the whole layer through the link, then a cold mount reading 4 KiB of each big file
    const [fullS] = await timed(async () => {
      const res = await fetch(`http://${proxy.host}/v2/bench/fs/blobs/${info.digest}`);
      let n = 0;
      for await (const c of res.body!) n += (c as Uint8Array).length;
      if (n !== info.size) throw new Error(`downloaded ${n} of ${info.size} bytes`);
    });
    const mnt = join(work, "mnt");
    const rootA = join(work, "root-a");
    const [mountS, procA] = await timed(() => startMount(rootA, ref, mnt));
    proxy.resetCounters();
    const [headsS] = await timed(async () => {
      for (const b of layer.big) await readHead(join(mnt, b), 4096);
    });
    const headBytes = proxy.downstreamBytes();

    // (b) warm sequential read: fetch the file once, drop the page cache, time the second read
    const target = join(mnt, layer.big[1]!);
    const [coldS, size] = await timed(() => readAll(target));
    await dropCaches();
    const [warmS] = await timed(() => readAll(target));
    await dropCaches();
    const [diskS] = await timed(() => readAll(join(layer.dir, layer.big[1]!)));
    await stopMount(procA);
    if ((await stat(join(layer.dir, layer.big[1]!))).size !== size) throw new Error("size mismatch through the mount");
    // (c) 20 small files in random order, on a fresh mount with empty caches
    const procC = await startMount(join(work, "root-c"), ref, mnt);
    proxy.resetCounters();
    let smallBytes = 0;
    const order = [...layer.small].sort(() => Math.random() - 0.5);
    const [smallS] = await timed(async () => {
      for (const s of order) smallBytes += (await readFile(join(mnt, s))).length;
    });
    const smallFetched = proxy.downstreamBytes();
    await stopMount(procC);

    const ratioA = headsS / fullS;
    const warm = size / 1e6 / warmS;
    console.log("");
    console.log(
      table(
        ["measurement", "value"],
        [
          ["(a) download the whole layer", `${fmt(fullS, 2)} s`],
          ["(a) soci mount (index + ztoc + FUSE)", `${fmt(mountS, 2)} s`],
          [
            "(a) first 4 KiB of 3 big files, cold",
            `${fmt(headsS, 3)} s (${mb(headBytes)} fetched) = ${fmt(100 * ratioA, 2)}% of the download`,
          ],
          ["(b) cold sequential read of one big file", `${fmt(size / 1e6 / coldS)} MB/s`],
          ["(b) warm sequential read through FUSE", `${fmt(warm)} MB/s`],
          ["(b) same file on local disk (page cache dropped)", `${fmt(size / 1e6 / diskS)} MB/s`],
          [
            "(c) 20 small files cold",
            `${fmt(smallS, 2)} s, ${mb(smallFetched)} fetched for ${smallBytes} bytes read = ${fmt(smallFetched / smallBytes, 0)}×`,
          ],
        ],
      ),
    );
    console.log(
      `\ntargets: (a) ≤ 5% → ${fmt(100 * ratioA, 2)}% ${ratioA <= 0.05 ? "PASS" : "MISS"}; (b) ≥ 300 MB/s → ${fmt(warm)} ${warm >= 300 ? "PASS" : "MISS"}; (c) reported (span size 4 MiB: each small file costs at most its span)`,
    );
    writeResults("fs", {
      fileMB: FILE_MB,
      gz: info.size,
      fullS,
      mountS,
      headsS,
      headBytes,
      ratioA,
      coldMBs: size / 1e6 / coldS,
      warmMBs: warm,
      diskMBs: size / 1e6 / diskS,
      smallS,
      smallBytes,
      smallFetched,
    });
  } finally {
    await run("sh", ["-c", `grep -o '${work}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l`]).catch(
      () => undefined,
    );
    await proxy.stop();
    await registry.stop();
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
