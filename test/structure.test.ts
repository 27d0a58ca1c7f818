// The shape of src/: each folder is one concept, and imports flow one way, from the shells down to
// the formats (README "Map of the code"). A new import against the flow fails here, naming the file.
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const SRC = fileURLToPath(new URL("../src/", import.meta.url));

/** Lower layers first; folders of one layer do not import each other. */
const LAYERS: string[][] = [
  ["errors", "version.ts", "types"],
  ["wasm"],
  ["formats"],
  ["log"],
  ["store"],
  ["registry", "containerd"],
  ["indexer", "fs"],
  ["fuse-host"],
  ["snapshotter", "pull"],
  ["cri"],
  ["daemon", "demo"],
  ["cli"],
  ["index.ts"],
];
const rank = new Map(LAYERS.flatMap((names, i) => names.map((n) => [n, i] as const)));

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );
}

const topOf = (file: string) => relative(SRC, file).split("/")[0]!;
const IMPORT = /(?:from|import)\s*\(?\s*["'](\.{1,2}\/[^"']+)["']/g;

function importsAgainstTheFlow(): string[] {
  const bad: string[] = [];
  for (const file of sources(SRC)) {
    const from = topOf(file);
    for (const m of readFileSync(file, "utf8").matchAll(IMPORT)) {
      const target = normalize(join(dirname(file), m[1]!));
      if (!target.startsWith(SRC)) continue;
      const to = topOf(target).replace(/\.js$/, ".ts");
      if (to === from) continue;
      const a = rank.get(from);
      const b = rank.get(to);
      if (a === undefined || b === undefined) bad.push(`${relative(SRC, file)}: ${from} or ${to} has no layer`);
      else if (b >= a) bad.push(`${relative(SRC, file)} imports ${m[1]} (${from} → ${to})`);
    }
  }
  return bad;
}

describe("structure of src/", () => {
  it("every folder has a layer", () => {
    const tops = new Set(sources(SRC).map(topOf));
    expect([...tops].filter((t) => !rank.has(t))).toEqual([]);
  });

  it("imports flow one way: shells → snapshotter → fs | indexer → registry/containerd → store → formats", () => {
    expect(importsAgainstTheFlow()).toEqual([]);
  });

  it("the lazy-loading path (fs/, snapshotter/, containerd/) does not load the index builder; fs/ not containerd/", () => {
    const uses = (dir: string, re: RegExp) =>
      sources(join(SRC, dir))
        .filter((f) => re.test(readFileSync(f, "utf8")))
        .map((f) => relative(SRC, f));
    expect(["fs", "snapshotter", "containerd"].flatMap((d) => uses(d, /from "(\.\.\/)+indexer\//))).toEqual([]);
    expect(uses("fs", /from "(\.\.\/)+containerd\//)).toEqual([]);
  });
});
