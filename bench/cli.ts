// The whole CLI: `soci convert --standalone` of a one-layer image, process start to output
// written, against node:zlib streaming gunzip of that layer alone (in this process, 1 MiB
// chunks) and C zlib (`gzip -dc > /dev/null`), alternating, in the same run.
//
//   npm run bench:cli          (npm run build && tsx bench/cli.ts)
//   SOCI_BENCH_RUNS=3 npx tsx bench/cli.ts
//
// The layer is /usr/bin + /usr/include as one `gzip -6` tar (cached in the bench directory); the
// image is an OCI layout directory (config, manifest, the layer); the output an OCI archive.
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  createReadStream,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import { createGunzip } from "node:zlib";
import { benchDir, benchRuns } from "./lib/env.js";
import { median } from "./lib/timing.js";
import { commandLine, fmt, machineInfo, mb, table, writeResults } from "./lib/report.js";

const CHUNK = 1 << 20;
const root = join(fileURLToPath(import.meta.url), "..", "..");
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

function layerFile(): string {
  const dir = join(benchDir(), "cli");
  mkdirSync(dir, { recursive: true });
  const gz = join(dir, "usr-bin-include.tar.gz");
  if (!existsSync(gz)) {
    console.error("cli: making the layer (tar of /usr/bin and /usr/include, gzip -6), once ...");
    execFileSync("sh", ["-c", `tar -cf - -C / usr/bin usr/include 2>/dev/null | gzip -6 -n > '${gz}.tmp'`]);
    renameSync(`${gz}.tmp`, gz);
  }
  return gz;
}

/** An OCI layout with one image whose single layer is `gz` (hard-linked in). */
function layout(gz: string): string {
  const dir = join(benchDir(), "cli", "image");
  rmSync(dir, { recursive: true, force: true });
  const blobs = join(dir, "blobs", "sha256");
  mkdirSync(blobs, { recursive: true });
  const put = (b: Uint8Array) => {
    const d = sha(b);
    writeFileSync(join(blobs, d), b);
    return { digest: `sha256:${d}`, size: b.length };
  };
  const layerDigest = createHash("sha256");
  for (const c of [readFileSync(gz)]) layerDigest.update(c);
  const ld = layerDigest.digest("hex");
  execFileSync("ln", ["-f", gz, join(blobs, ld)]);
  const diffId = execFileSync("sh", ["-c", `gzip -dc '${gz}' | sha256sum`])
    .toString()
    .split(" ")[0];
  const config = put(
    Buffer.from(
      JSON.stringify({
        architecture: "amd64",
        os: "linux",
        rootfs: { type: "layers", diff_ids: [`sha256:${diffId}`] },
        config: {},
      }),
    ),
  );
  const manifest = put(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
        layers: [
          {
            mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
            digest: `sha256:${ld}`,
            size: statSync(gz).size,
          },
        ],
      }),
    ),
  );
  writeFileSync(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  writeFileSync(
    join(dir, "index.json"),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [
        {
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          ...manifest,
          annotations: { "org.opencontainers.image.ref.name": "latest" },
        },
      ],
    }),
  );
  return dir;
}

async function zlibStream(gz: string): Promise<number> {
  const t = performance.now();
  await pipeline(createReadStream(gz, { highWaterMark: CHUNK }), createGunzip({ chunkSize: CHUNK }), async (src) => {
    for await (const _ of src) void _;
  });
  return performance.now() - t;
}

function timed(cmd: string, args: string[]): number {
  const t = performance.now();
  const r = spawnSync(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
  const ms = performance.now() - t;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr.toString()}`);
  return ms;
}

async function main(): Promise<void> {
  const runs = benchRuns();
  const gz = layerFile();
  const image = layout(gz);
  const out = join(benchDir(), "cli", "out.tar");
  console.log(`machine: ${JSON.stringify(machineInfo())}`);
  console.log(`command: ${commandLine()}`);
  console.log(`layer:   ${mb(statSync(gz).size)} gzip -6 of /usr/bin + /usr/include`);
  const soci = () => {
    rmSync(out, { force: true });
    execFileSync("sync");
    return timed(process.execPath, [
      join(root, "bin", "soci.js"),
      "convert",
      "--standalone",
      "--min-layer-size",
      "0",
      image,
      out,
    ]);
  };
  const z: number[] = [];
  const c: number[] = [];
  const s: number[] = [];
  for (let i = 0; i < runs + 1; i++) {
    const a = await zlibStream(gz);
    const b = timed("sh", ["-c", `gzip -dc '${gz}' > /dev/null`]);
    const d = soci();
    if (i > 0) {
      z.push(a);
      c.push(b);
      s.push(d);
    }
  }
  rmSync(out, { force: true });
  const mz = median(z);
  const row = (name: string, ms: number[]) => [name, fmt(median(ms) / 1000, 2), `${fmt(mz / median(ms), 2)}x`];
  console.log("");
  console.log(
    table(
      ["what", "median s", "÷ zlib stream"],
      [
        row("node:zlib stream gunzip of the layer (anchor)", z),
        row("gzip -dc (C zlib)", c),
        row("soci convert --standalone (whole CLI)", s),
      ],
    ),
  );
  console.log(`\nper run (zlib ÷ soci): ${s.map((x, i) => fmt(z[i]! / x, 2)).join(" ")}`);
  console.log("target: soci convert --standalone at least as fast as node:zlib stream gunzip (≥ 1.00x)");
  writeResults("cli", { runs, layerBytes: statSync(gz).size, zlibMs: z, gzipMs: c, sociMs: s });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
