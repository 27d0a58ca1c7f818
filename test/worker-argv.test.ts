import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { workerExecArgv } from "../src/wasm/worker-argv.js";

describe("worker threads' Node options", () => {
  const dir = mkdtempSync(join(tmpdir(), "worker-argv-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("drop module loader hooks and V8 options, keep diagnostics and resolution options", () => {
    expect(
      workerExecArgv([
        "--import",
        "tsx",
        "--expose-gc",
        "--require=./a.cjs",
        "-r",
        "b",
        "--loader",
        "c",
        "--experimental-loader=d",
        "--max-old-space-size=100",
        "--conditions=dev",
        "-C",
        "test",
        "--enable-source-maps",
      ]),
    ).toEqual(["--conditions=dev", "-C", "test", "--enable-source-maps"]);
  });

  it("keep a hook the parent process was started with out of the pools' workers", () => {
    // the hook records each thread it runs in; a process started as the daemon is (V8 options,
    // which a worker's execArgv must not repeat) indexes a small layer on both pools
    const marker = join(dir, "loaded");
    const hook = join(dir, "hook.mjs");
    writeFileSync(
      hook,
      `import { appendFileSync } from "node:fs"; import { threadId } from "node:worker_threads";
       appendFileSync(${JSON.stringify(marker)}, threadId + "\\n");`,
    );
    const root = new URL("../dist/", import.meta.url);
    const gz = new URL("./vectors/layer-b.tar.gz", import.meta.url);
    const script = `
      const { BuildPool } = await import(${JSON.stringify(new URL("indexer/pool.js", root).href)});
      const { InflatePool } = await import(${JSON.stringify(new URL("wasm/pool.js", root).href)});
      const { readFileSync } = await import("node:fs");
      const bytes = readFileSync(new URL(${JSON.stringify(gz.href)}));
      const build = new BuildPool({ threads: 1 });
      const inflate = new InflatePool({ threads: 1 });
      await build.buildZtoc(bytes, { spanSize: 1 << 20, compression: "gzip" });
      await inflate.gunzip(bytes);
      await build.destroy();
      await inflate.destroy();`;
    execFileSync(process.execPath, [
      "--max-semi-space-size=2",
      "--expose-gc",
      "--enable-source-maps",
      "--import",
      pathToFileURL(hook).href,
      "--input-type=module",
      "-e",
      script,
    ]);
    expect(readFileSync(marker, "utf8").trim().split("\n")).toEqual(["0"]);
  });
});
