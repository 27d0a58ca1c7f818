// Registry-to-registry conversion against the cost of just moving the bytes: `soci convert` of a
// multi-layer image (≥ 300 MB compressed, /usr files) from one loopback registry to another,
// compared in the same run with `skopeo copy` of the same image between the same registries.
//
//   npm run bench:convert          (npm run build && tsx bench/convert.ts)
//   SOCI_BENCH_LAYERS=100,50 npx tsx bench/convert.ts
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
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
import { ensureCorpus, sha256File } from "./lib/corpus.js";
import { commandLine, fmt, machineInfo, mb, table, writeResults } from "./lib/report.js";

const run = promisify(execFile);
const soci = new URL("../bin/soci.js", import.meta.url).pathname;
const layerMBs = (process.env.SOCI_BENCH_LAYERS ?? "400,300,150").split(",").map(Number);

async function timed(f: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await f();
  return (performance.now() - t) / 1000;
}

async function main(): Promise<void> {
  const layers = [];
  for (const m of layerMBs) layers.push(await ensureCorpus(m));
  const gz = layers.reduce((s, l) => s + l.gzSize, 0);
  const work = await mkdtemp(join(tmpdir(), "soci-bench-convert-"));
  const src = await startRegistry();
  const dst = await startRegistry();
  try {
    // the image: the corpus files as gzip layers
    const layout = join(work, "image");
    const store = await ContentStore.open(layout);
    const descs = [];
    const diffIds = [];
    for (const l of layers) {
      const info = await store.put(createReadStream(l.gzPath, { highWaterMark: 1 << 20 }));
      descs.push({ mediaType: MediaTypeImageLayerGzip, digest: info.digest, size: info.size });
      diffIds.push(`sha256:${await sha256File(l.tarPath)}`);
    }
    const config = Buffer.from(
      JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: diffIds }, config: {} }),
    );
    const cfg = await store.put(config);
    const manifest = marshalManifest({
      schemaVersion: 2,
      mediaType: MediaTypeImageManifest,
      config: { mediaType: MediaTypeImageConfig, ...cfg },
      layers: descs,
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
      `docker://${src.host}/bench/app:latest`,
    ]);

    console.log(`machine: ${JSON.stringify(machineInfo())}`);
    console.log(`command: ${commandLine()}`);
    console.log(
      `image:   ${layers.length} layers, ${mb(gz)} compressed, source and destination registries on loopback`,
    );
    const copyS = await timed(() =>
      run("skopeo", [
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        `docker://${src.host}/bench/app:latest`,
        `docker://${dst.host}/copied/app:latest`,
      ]),
    );
    const convertS = await timed(() =>
      run(
        "node",
        [
          soci,
          "convert",
          "--plain-http",
          "--min-layer-size",
          "0",
          `${src.host}/bench/app:latest`,
          `${dst.host}/converted/app:soci`,
        ],
        { maxBuffer: 16 << 20 },
      ),
    );
    const ratio = convertS / copyS;
    console.log("");
    console.log(
      table(
        ["method", "wall s", "MB/s (compressed)", "÷ copy"],
        [
          ["skopeo copy (moving the bytes)", fmt(copyS, 2), fmt(gz / 1e6 / copyS), "1.00x"],
          ["soci convert (download, index, push)", fmt(convertS, 2), fmt(gz / 1e6 / convertS), `${fmt(ratio, 2)}x`],
        ],
      ),
    );
    console.log(`\ntarget: convert wall time ≤ 2× plain copy → ${fmt(ratio, 2)}× ${ratio <= 2 ? "PASS" : "MISS"}`);
    writeResults("convert", { gz, layers: layers.length, copyS, convertS, ratio });
  } finally {
    await src.stop();
    await dst.stop();
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
