import { beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { readFileSync } from "node:fs";

const run = promisify(execFile);
const root = new URL("..", import.meta.url).pathname;
const version = (JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string })
  .version;

async function cli(bin: string, args: string[]) {
  try {
    const r = await run("node", [`${root}bin/${bin}.js`, ...args]);
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

describe("executables", () => {
  // child processes run side by side; `soci --help` is read by two tests
  const soci: { help: ReturnType<typeof cli> } = { help: Promise.resolve({ code: -1, stdout: "", stderr: "" }) };
  beforeAll(() => {
    soci.help = cli("soci", ["--help"]);
  });

  for (const bin of ["soci", "soci-snapshotter-grpc"]) {
    it(`${bin} answers --version and --help`, async () => {
      const [v, h] = await Promise.all([cli(bin, ["--version"]), bin === "soci" ? soci.help : cli(bin, ["--help"])]);
      expect(v.code).toBe(0);
      expect(v.stdout.trim()).toBe(`${bin} version ${version}`);
      expect(h.code).toBe(0);
      expect(h.stdout).toContain(`Usage: ${bin}`);
    });
  }

  it("soci lists the reference's commands", async () => {
    const h = await soci.help;
    for (const c of ["create", "convert", "push", "rebuild-db", "index", "ztoc", "prefetch", "mount"])
      expect(h.stdout).toContain(c);
  });

  it("soci mount of an unreachable registry fails clearly; the daemon prints its default config", async () => {
    const [r, d] = await Promise.all([
      cli("soci", [
        "--root",
        "/tmp/soci-cli-test-root",
        "mount",
        "--plain-http",
        "127.0.0.1:1/x:y",
        "/tmp/soci-cli-test-mnt",
      ]),
      cli("soci-snapshotter-grpc", ["config", "default"]),
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^soci: .*127\.0\.0\.1:1/);
    expect(d.code).toBe(0);
    expect(d.stdout).toMatch(/^http_cache_type = ''\n/);
  });

  it("soci demo describes its options and refuses a bad size (the full run is test/demo.test.ts)", async () => {
    const [h, bad] = await Promise.all([cli("soci", ["demo", "--help"]), cli("soci", ["demo", "--size-mb", "0"])]);
    expect(h.stdout).toContain("--size-mb");
    expect(h.stdout).toContain("--no-install");
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/must be a positive number/);
  });
});
