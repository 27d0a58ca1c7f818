// Layers the unpack benchmarks share, built once under the bench directory.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { buildRealisticTree, gnuTar } from "../../test/helpers/unpack-fixtures.js";
import { benchDir } from "./env.js";

/** The unpacker tests' realistic tree as a gzip -6 layer (~21 MB tar, ~3 200 entries); returns its path. */
export async function fixtureLayer(): Promise<string> {
  const dir = join(benchDir(), "unpack-fixture");
  const gz = join(dir, "layer.tar.gz");
  if (existsSync(gz)) return gz;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, "src"), { recursive: true });
  await buildRealisticTree(join(dir, "src"));
  await gnuTar(join(dir, "src"), join(dir, "layer.tar"));
  execFileSync("sh", ["-c", `gzip -6 -n -c '${dir}/layer.tar' > '${gz}.tmp' && mv '${gz}.tmp' '${gz}'`]);
  rmSync(join(dir, "src"), { recursive: true, force: true });
  return gz;
}
