// The index builder reproduces the reference's ztocs (vectors V1–V5) and its TOC extracts every
// file of real layers exactly as GNU tar does.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile, mkdir, readdir, lstat } from "node:fs/promises";
import { createHash } from "node:crypto";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LayerIndexer } from "../src/indexer/layer-indexer.js";
import { BuildPool } from "../src/indexer/pool.js";
import { extractFile, metadataEntry } from "../src/indexer/extract-file.js";
import { decodeZtoc } from "../src/formats/ztoc.js";

const run = promisify(execFile);
const V = new URL("./vectors/", import.meta.url);
const vec = (name: string) => readFileSync(new URL(name, V));
const sha = (b: Uint8Array) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

const VECTORS = [
  { input: "layer-a.tar.gz", compression: "gzip", span: 4096, ztoc: "za4096.ztoc" },
  { input: "layer-a.tar.gz", compression: "gzip", span: 4194304, ztoc: "zadef.ztoc" },
  { input: "layer-b.tar.gz", compression: "gzip", span: 4096, ztoc: "zb4096.ztoc" },
  { input: "layer.tar", compression: "uncompressed", span: 4096, ztoc: "zt4096.ztoc" },
  { input: "layer.tar", compression: "uncompressed", span: 4194304, ztoc: "ztdef.ztoc" },
] as const;

function index(bytes: Uint8Array, compression: "gzip" | "uncompressed", spanSize: number, chunk = bytes.length) {
  const ix = new LayerIndexer({ spanSize, compression });
  for (let i = 0; i < bytes.length; i += chunk) ix.push(bytes.subarray(i, i + chunk));
  return ix.finish();
}

describe("ztoc builder against the reference's vectors", () => {
  for (const v of VECTORS) {
    it(`${v.input} span ${v.span} → ${v.ztoc}`, () => {
      const want = vec(v.ztoc);
      for (const chunk of [1 << 30, 1, 100, 4096]) {
        const r = index(vec(v.input), v.compression, v.span, chunk);
        expect(Buffer.from(r.bytes).equals(want), `chunk ${chunk}`).toBe(true);
        expect(r.digest).toBe(sha(want));
      }
    });
  }

  it("is independent of the host time zone (UTC text, as the reference writes in UTC)", async () => {
    // the built module (`pretest:unit` builds dist/): plain node starts faster than through tsx
    const script = `
      import { readFileSync } from "node:fs";
      import { LayerIndexer } from "${new URL("../dist/indexer/layer-indexer.js", import.meta.url).pathname}";
      const ix = new LayerIndexer({ spanSize: 4096, compression: "uncompressed" });
      ix.push(readFileSync("${new URL("layer.tar", V).pathname}"));
      console.log(ix.finish().digest, new Date(0).getTimezoneOffset());`;
    const { stdout } = await run("node", ["--input-type=module", "-e", script], {
      env: { ...process.env, TZ: "America/Los_Angeles" },
    });
    expect(stdout.trim()).toBe(`${sha(vec("zt4096.ztoc"))} 480`);
  });

  it("builds on the worker pool with the same bytes", async () => {
    const pool = new BuildPool({ threads: 2 });
    try {
      const results = await Promise.all(
        VECTORS.map((v) => pool.buildZtoc(vec(v.input), { spanSize: v.span, compression: v.compression })),
      );
      results.forEach((r, i) => {
        expect(Buffer.from(r.bytes).equals(vec(VECTORS[i]!.ztoc))).toBe(true);
      });
    } finally {
      await pool.destroy();
    }
  });

  it("reads every file of layer.tar back through the ztoc", async () => {
    const gz = vec("layer-a.tar.gz");
    const tar = vec("layer.tar");
    const z = decodeZtoc(index(gz, "gzip", 4096).bytes);
    for (const e of z.toc) {
      const got = await extractFile(z, e, async (a, b) => gz.subarray(a, b));
      expect(
        Buffer.from(got).equals(tar.subarray(e.uncompressedOffset, e.uncompressedOffset + e.uncompressedSize)),
      ).toBe(true);
    }
  });
});

describe("ztoc builder on real layers", () => {
  let dir = "";
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "soci-layer-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function makeLayer(): Promise<string> {
    // a slice of real system files plus hardlinks, symlinks and awkward names
    const root = join(dir, "rootfs");
    await mkdir(join(root, "usr"), { recursive: true });
    await run("cp", ["-a", "/usr/share/perl", join(root, "usr/")]).catch(() => {});
    await run("cp", ["-a", "/usr/lib/x86_64-linux-gnu/perl-base", join(root, "usr/")]).catch(() => {});
    await writeFile(join(root, "big.bin"), createHash("sha512").update("x").digest().toString("hex").repeat(200_000));
    await run("ln", ["-f", join(root, "big.bin"), join(root, "big-hardlink")]);
    await run("ln", ["-sf", "big.bin", join(root, "big-symlink")]);
    await writeFile(join(root, "caf\u00e9 \u2603.txt"), "unicode name");
    await writeFile(join(root, "empty"), "");
    const tarPath = join(dir, "layer.tar");
    await run("tar", ["-C", root, "--format=posix", "-cf", tarPath, "."]);
    return tarPath;
  }

  it("every regular file read through the ztoc equals GNU tar's extraction (gzip -6 and pigz)", async () => {
    const tarPath = await makeLayer();
    const out = join(dir, "extracted");
    await mkdir(out);
    await run("tar", ["-C", out, "-xf", tarPath]);
    await run("gzip", ["-6", "-k", "-f", tarPath]);
    const variants = [["gzip -6", await readFile(`${tarPath}.gz`)]] as [string, Buffer][];
    const pigz = await run("sh", ["-c", `pigz -6 -b 128 -c ${tarPath} > ${tarPath}.pigz.gz`]).then(
      () => true,
      () => false,
    );
    if (pigz) variants.push(["pigz", await readFile(`${tarPath}.pigz.gz`)]);
    expect(variants.length).toBe(process.env.CI ? 2 : variants.length); // CI installs pigz
    for (const [label, gz] of variants) {
      const r = index(gz, "gzip", 1 << 20, 1 << 16);
      const again = index(gz, "gzip", 1 << 20);
      expect(again.digest, `${label}: deterministic`).toBe(r.digest);
      const z = decodeZtoc(r.bytes);
      let checked = 0;
      for (const e of z.toc) {
        if (e.type !== "reg") continue;
        const name = Buffer.from(e.name).toString("utf8");
        const onDisk = await readFile(join(out, name));
        const got = await extractFile(z, metadataEntry(z, e.name), async (a, b) => gz.subarray(a, b));
        expect(Buffer.from(got).equals(onDisk), `${label}: ${name}`).toBe(true);
        checked++;
      }
      expect(checked).toBeGreaterThan(100);
    }
  });

  it("lists every path GNU tar extracted", async () => {
    const tarPath = join(dir, "layer.tar");
    const z = decodeZtoc(index(await readFile(tarPath), "uncompressed", 1 << 20).bytes);
    const names = new Set(
      z.toc.map((e) => Buffer.from(e.name).toString("utf8").replace(/^\.\//, "").replace(/\/$/, "")),
    );
    async function walk(d: string, rel: string): Promise<void> {
      for (const n of await readdir(d)) {
        const p = rel ? `${rel}/${n}` : n;
        expect(names.has(p), p).toBe(true);
        if ((await lstat(join(d, n))).isDirectory()) await walk(join(d, n), p);
      }
    }
    await walk(join(dir, "extracted"), "");
  });
});

describe("ztoc builder on bad layers", () => {
  it("reports the reference's errors for corrupt gzip and tar, and PAX global headers", async () => {
    const gz = vec("layer-a.tar.gz");
    expect(() => index(gz.subarray(0, 500), "gzip", 4096)).toThrow(/unexpected end of compressed data/);
    const flipped = Buffer.from(gz);
    flipped[300] ^= 0x55;
    expect(() => index(flipped, "gzip", 4096)).toThrow();
    const tar = Buffer.from(vec("layer.tar"));
    tar[600] ^= 0xff; // inside the second header: checksum no longer matches
    expect(() => index(tar, "uncompressed", 4096)).toThrow(
      "error while reading tar header: archive/tar: invalid tar header",
    );
    // a PAX global header ('g') in front of the archive
    const g = Buffer.alloc(1024);
    g.write("pax_global_header", 0);
    g.write("0000644\0", 100);
    g.write("00000000024\0", 124); // 20 bytes of records
    g[156] = "g".charCodeAt(0);
    g.write("ustar\x0000", 257);
    g.write("        ", 148);
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += g[i]!;
    g.write(sum.toString(8).padStart(6, "0") + "\0 ", 148);
    g.write("20 comment=hi there\n", 512);
    const withGlobal = Buffer.concat([g, vec("layer.tar")]);
    expect(() => index(withGlobal, "uncompressed", 4096)).toThrow("unsupported input tar entry 'g'");
    // hostile names are recorded as-is, never interpreted
    const evil = Buffer.from(vec("layer.tar"));
    evil.write("../../etc/x\0", 0);
    let s2 = 0;
    evil.write("        ", 148);
    for (let i = 0; i < 512; i++) s2 += evil[i]!;
    evil.write(s2.toString(8).padStart(6, "0") + "\0 ", 148);
    const z = decodeZtoc(index(evil, "uncompressed", 4096).bytes);
    expect(Buffer.from(z.toc[0]!.name).toString()).toBe("../../etc/x");
  });
});
