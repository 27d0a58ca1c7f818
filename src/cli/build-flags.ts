// Flags shared by the index-building commands (create, convert), with the reference's defaults.
import { readFile } from "node:fs/promises";
import { type Command, Option } from "commander";
import { DefaultMinLayerSize, DefaultSpanSize } from "../formats/soci-index.js";
import { DefaultVerificationChunkSize, DefaultVerificationSpanSize } from "../formats/layer-verification.js";
import { parsePlatform } from "../formats/platform.js";
import type { BuildOptions } from "../indexer/index-builder.js";
import type { PlatformChoice } from "../store/image-manifests.js";

/** urfave/cli slice flags: repeatable, and each value split on commas. */
export const collect = (v: string, prev: string[] = []) => [...prev, ...v.split(",")];

function int64(name: string) {
  return (v: string) => {
    if (!/^-?\d+$/.test(v.trim())) throw new Error(`invalid value "${v}" for flag --${name}`);
    return Number(v);
  };
}

export function addBuildFlags(cmd: Command): Command {
  return cmd
    .option("--span-size <bytes>", "span size of the ztocs", int64("span-size"), DefaultSpanSize)
    .option(
      "--min-layer-size <bytes>",
      "layers smaller than this get no ztoc",
      int64("min-layer-size"),
      DefaultMinLayerSize,
    )
    .option("--optimizations <list>", "experimental optimizations: xattr", collect, [] as string[])
    .option("-f, --force", "rebuild ztocs even when the artifacts database has one", false)
    .option("-p, --platform <platform>", "platform to index (repeatable)", collect, [] as string[])
    .option("--all-platforms", "index every platform of the image", false)
    .option("--prefetch-file <path>", "file to prefetch when the image is pulled (repeatable)", collect, [] as string[])
    .addOption(new Option("--prefetch-files-json <path>", "JSON array of files to prefetch"))
    .option(
      "--chunk-verification",
      `also write a verification artifact per layer (chunk digests: lazy reads fetch and verify less than a span; the span size defaults to ${DefaultVerificationSpanSize} then)`,
      false,
    )
    .option(
      "--chunk-size <bytes>",
      "chunk size of the verification artifact",
      int64("chunk-size"),
      DefaultVerificationChunkSize,
    );
}

export interface BuildFlags {
  spanSize: number;
  minLayerSize: number;
  optimizations: string[];
  force: boolean;
  platform: string[];
  allPlatforms: boolean;
  prefetchFile: string[];
  prefetchFilesJson?: string;
  chunkVerification: boolean;
  chunkSize: number;
}

/** The options of a build; `cmd` tells whether `--span-size` was given (`--chunk-verification` changes its default). */
export async function buildOptionsFrom(f: BuildFlags, cmd?: Command): Promise<BuildOptions & PlatformChoice> {
  for (const o of f.optimizations) {
    if (o !== "xattr") throw new Error(`optimization ${o} is not a valid optimization [xattr]`);
  }
  if (f.spanSize < 0) throw new Error(`invalid span size ${f.spanSize}`);
  const prefetch = f.prefetchFile.map((p) => p.trim()).filter((p) => p !== "");
  if (f.prefetchFilesJson) {
    const list = JSON.parse(await readFile(f.prefetchFilesJson, "utf8")) as unknown;
    if (!Array.isArray(list) || !list.every((x) => typeof x === "string")) {
      throw new Error(`${f.prefetchFilesJson}: expected a JSON array of strings`);
    }
    prefetch.push(...list);
  }
  const spanSize =
    f.chunkVerification && cmd?.getOptionValueSource("spanSize") !== "cli" ? DefaultVerificationSpanSize : f.spanSize;
  return {
    spanSize,
    ...(f.chunkVerification ? { verificationChunkSize: f.chunkSize } : {}),
    minLayerSize: f.minLayerSize,
    xattrOptimization: f.optimizations.includes("xattr"),
    force: f.force,
    prefetchFiles: prefetch,
    platforms: f.platform.map((p) => parsePlatform(p)),
    allPlatforms: f.allPlatforms,
  };
}
