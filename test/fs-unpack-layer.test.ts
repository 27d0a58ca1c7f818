// The local layer unpacker against real tools: GNU tar's extraction of the same layer (plus the
// overlay whiteout conversion containerd does) is the ground truth, gzip -6 / pigz / plain tar are
// the inputs, and a real overlayfs mount checks the whiteouts and the opaque directory.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { access, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { removeStaleUnpacks, unpackLayer, unpackLayers, UnpackError } from "../src/fs/unpack-layer.js";
import { archive, entry, pax } from "./helpers/tar-build.js";
import {
  buildLowerTree,
  buildRealisticTree,
  comparable,
  dumpTree,
  gnuTar,
  gnuUntar,
  overlayConverted,
  run,
} from "./helpers/unpack-fixtures.js";

const sha256 = (b: Uint8Array) => "sha256:" + createHash("sha256").update(b).digest("hex");
const fileStream = (p: string, highWaterMark = 64 * 1024) => createReadStream(p, { highWaterMark });
async function* bytes(b: Uint8Array, chunk = 7919): AsyncIterable<Uint8Array> {
  for (let i = 0; i < b.length; i += chunk) yield b.subarray(i, i + chunk);
}
const exists = (p: string) =>
  access(p).then(
    () => true,
    () => false,
  );
// (Buffer.equals: vitest's deep equality walks big buffers byte by byte, for tens of seconds.)
const sameFile = async (a: string, b: string) => (await readFile(a)).equals(await readFile(b));

let work: string;
let tarPath: string, gzPath: string, pigzPath: string;
let tarBytes: Buffer, gzBytes: Buffer, pigzBytes: Buffer;
let smallTar: Buffer, smallGz: Buffer; // usr/bin only, for failures that need a whole pass
let expected: ReturnType<typeof comparable>;
let entryCount = 0;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "unpack-layer-"));
  const src = join(work, "src");
  await mkdir(src);
  entryCount = await buildRealisticTree(src);
  tarPath = join(work, "layer.tar");
  await gnuTar(src, tarPath);
  await run("sh", ["-c", `gzip -6 -n -c '${tarPath}' > '${tarPath}.gz'`]);
  gzPath = `${tarPath}.gz`;
  // pigz, and several gzip members: the tar cut in three, each part compressed on its own.
  tarBytes = await readFile(tarPath);
  const cuts = [0, Math.floor(tarBytes.length / 3) + 123, Math.floor((2 * tarBytes.length) / 3) + 7, tarBytes.length];
  const members: Buffer[] = [];
  for (let i = 0; i < 3; i++) {
    const part = join(work, `part${i}`);
    await writeFile(part, tarBytes.subarray(cuts[i], cuts[i + 1]));
    await run("pigz", ["-6", "-n", "-p", "2", part]);
    members.push(await readFile(`${part}.gz`));
  }
  pigzBytes = Buffer.concat(members);
  pigzPath = join(work, "layer.pigz.gz");
  await writeFile(pigzPath, pigzBytes);
  gzBytes = await readFile(gzPath);
  await run("sh", [
    "-c",
    `tar --format=posix --numeric-owner -cf '${work}/small.tar' -C '${src}' usr/bin && gzip -6 -n -k '${work}/small.tar'`,
  ]);
  smallTar = await readFile(join(work, "small.tar"));
  smallGz = await readFile(join(work, "small.tar.gz"));

  const ref = join(work, "ref");
  await gnuUntar(tarPath, ref);
  expected = comparable(overlayConverted(await dumpTree(ref)));
}, 300_000);

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

/** Unpacks into a fresh directory under the work dir and returns the comparable dump. */
async function unpackAndDump(
  source: AsyncIterable<Uint8Array>,
  name: string,
  opts: Parameters<typeof unpackLayer>[2] = {},
) {
  const dir = join(work, "out", name);
  const result = await unpackLayer(source, dir, opts);
  return { dir, result, dump: comparable(await dumpTree(dir)) };
}

describe("unpackLayer: realistic layers vs GNU tar", () => {
  test("the fixture is realistic", () => {
    expect(entryCount).toBeGreaterThan(3000);
    expect(tarBytes.length).toBeGreaterThan(8 << 20);
    expect(expected.linkGroups.length).toBe(2);
    expect(expected.entries.some((l) => l.includes("trusted.overlay.opaque=79"))).toBe(true);
  });

  test("gzip -6 layer: same tree as tar -x plus overlay whiteouts; digests and sizes", async () => {
    const { dir, result, dump } = await unpackAndDump(fileStream(gzPath), "gzip", {
      compression: "gzip",
      digest: sha256(gzBytes),
      diffId: sha256(tarBytes),
    });
    expect(result).toEqual({
      diffId: sha256(tarBytes),
      digest: sha256(gzBytes),
      size: gzBytes.length,
      uncompressedSize: tarBytes.length,
      warnings: [],
    });
    expect(dump.entries).toEqual(expected.entries);
    expect(dump.linkGroups).toEqual(expected.linkGroups);
    // No work directories left beside it.
    expect((await readdir(join(work, "out"))).filter((n) => n.includes(".unpack-"))).toEqual([]);
    expect((await stat(dir)).mode & 0o7777).toBe(0o755);
  });

  test("pigz multi-member layer (auto-detected), odd chunk sizes", async () => {
    const { result, dump } = await unpackAndDump(bytes(pigzBytes, 4093), "pigz", { diffId: sha256(tarBytes) });
    expect(result.digest).toBe(sha256(pigzBytes));
    expect(dump.entries).toEqual(expected.entries);
    expect(dump.linkGroups).toEqual(expected.linkGroups);
  });

  test("uncompressed layer, explicit and auto-detected: digest equals diff id", async () => {
    const a = await unpackAndDump(fileStream(tarPath, 1 << 20), "plain", {
      compression: "uncompressed",
      diffId: sha256(tarBytes),
    });
    expect(a.result.digest).toBe(sha256(tarBytes));
    expect(a.result.size).toBe(tarBytes.length);
    expect(a.dump.entries).toEqual(expected.entries);
    const b = await unpackAndDump(fileStream(tarPath, 1000), "plain-auto", { digest: sha256(tarBytes) });
    expect(b.dump.entries).toEqual(expected.entries);
    expect(b.dump.linkGroups).toEqual(expected.linkGroups);
  });
});

describe("unpackLayer: overlay semantics", () => {
  test("stacked under a real overlayfs: whiteouts and the opaque directory hide the lower layer", async () => {
    const base = join(work, "overlay");
    const lower = join(base, "lower");
    const merged = join(base, "merged");
    await mkdir(merged, { recursive: true });
    await buildLowerTree(lower);
    const upper = join(base, "layer");
    await unpackLayer(fileStream(gzPath), upper, { diffId: sha256(tarBytes) });
    await run("mount", ["-t", "overlay", "overlay", "-o", `ro,lowerdir=${upper}:${lower}`, merged]);
    try {
      expect(await exists(join(merged, "gone"))).toBe(false);
      expect(await exists(join(merged, "etc/removed-dir"))).toBe(false);
      expect(await exists(join(merged, "etc/removed-dir/x"))).toBe(false);
      expect(await exists(join(merged, "usr/lib/pkg3/nested-gone"))).toBe(false);
      expect((await readdir(join(merged, "opaque"))).sort()).toEqual(["new-file"]);
      expect((await readdir(join(merged, "etc"))).sort()).toEqual(["kept-in-layer", "kept-lower"]);
      expect(await readFile(join(merged, "usr/lib/pkg3/lower-kept"), "utf8")).toBe("visible\n");
      expect(await readFile(join(merged, "usr/lib/lower-only/file"), "utf8")).toBe("visible\n");
      expect(await readFile(join(merged, "hard/sub/c"), "utf8")).toBe("shared inode\n");
      expect(await sameFile(join(merged, "big/random.bin"), join(work, "src/big/random.bin"))).toBe(true);
      // Whiteout device nodes are not visible as files either.
      expect((await readdir(merged)).includes("gone")).toBe(false);
    } finally {
      await run("umount", [merged]);
    }
  });

  test("user.overlay.opaque when asked, and the opaque marker before or after its directory", async () => {
    const layer = archive(
      entry({ name: "early/.wh..wh..opq" }),
      entry({ name: "early/", typeflag: "5", mode: 0o755 }),
      entry({ name: "late/", typeflag: "5", mode: 0o711 }),
      entry({ name: "late/.wh..wh..opq" }),
      entry({ name: "late/f" }, "x"),
    );
    for (const ns of ["user", "trusted"] as const) {
      const dir = join(work, "out", `opaque-${ns}`);
      await unpackLayer(bytes(layer), dir, { opaqueXattr: ns });
      for (const d of ["early", "late"]) {
        const { stdout } = await run("getfattr", ["-h", "-d", "-m", "-", "-e", "text", join(dir, d)]);
        expect(stdout).toContain(`${ns}.overlay.opaque="y"`);
        expect(stdout).not.toContain(`${ns === "user" ? "trusted" : "user"}.overlay.opaque`);
      }
      expect(await readdir(join(dir, "late"))).toEqual(["f"]);
      expect((await stat(join(dir, "late"))).mode & 0o7777).toBe(0o711);
    }
  });

  test("later entries replace earlier ones: non-dir replaces, dir over dir merges, never written through", async () => {
    const layer = archive(
      entry({ name: "a/", typeflag: "5", mode: 0o755 }),
      entry({ name: "a/f" }, "one"),
      entry({ name: "a/f" }, "two"),
      entry({ name: "h", typeflag: "1", linkname: "a/f" }),
      entry({ name: "a/f" }, "three"),
      pax([["SCHILY.xattr.user.one", "1"]]),
      entry({ name: "d/", typeflag: "5", mode: 0o700 }),
      entry({ name: "d/keep" }, "kept"),
      pax([["SCHILY.xattr.user.two", "2"]]),
      entry({ name: "d/", typeflag: "5", mode: 0o750, uid: 7, gid: 8 }),
      entry({ name: "s", typeflag: "2", linkname: "a/f" }),
      entry({ name: "s" }, "replaced symlink"),
      entry({ name: "x" }, "a file first"),
      entry({ name: "x/", typeflag: "5" }),
      entry({ name: "x/inside" }, "in"),
      entry({ name: "y/", typeflag: "5" }),
      entry({ name: "y/c" }, "c"),
      entry({ name: "y" }, "now a file"),
      entry({ name: "ldir", typeflag: "2", linkname: "a" }),
      entry({ name: "ldir/through" }, "via a relative symlink inside the layer"),
      entry({ name: "z/q" }, "q"),
      entry({ name: "z/.wh.q", uid: 3, gid: 4 }),
      pax([["SCHILY.xattr.user.kept", "by the other name"]]),
      entry({ name: "orig" }, "inode with an attribute"),
      entry({ name: "other-name", typeflag: "1", linkname: "orig" }),
      entry({ name: "orig" }, "a new inode"),
      entry({ name: "./", typeflag: "5", mode: 0o700 }),
    );
    const dir = join(work, "out", "replace");
    await unpackLayer(bytes(layer, 512), dir);
    const t = await dumpTree(dir);
    const get = (p: string) => t.get(p)!;
    expect(await readFile(join(dir, "a/f"), "utf8")).toBe("three");
    expect(await readFile(join(dir, "h"), "utf8")).toBe("two"); // linked to the inode "three" replaced
    expect(get("a/f").nlink).toBe(1);
    expect(get("d")).toMatchObject({
      type: "dir",
      mode: 0o750,
      uid: 7,
      gid: 8,
      xattrs: { "user.one": "31", "user.two": "32" },
    });
    expect(await readFile(join(dir, "d/keep"), "utf8")).toBe("kept");
    expect(get("s").type).toBe("file");
    expect(await readFile(join(dir, "s"), "utf8")).toBe("replaced symlink");
    expect(get("x").type).toBe("dir");
    expect(get("y").type).toBe("file");
    expect(t.has("y/c")).toBe(false);
    expect(await readFile(join(dir, "a/through"), "utf8")).toBe("via a relative symlink inside the layer");
    expect(get("ldir").type).toBe("symlink");
    expect(get("z/q")).toMatchObject({ type: "char", rdev: "0:0", mode: 0, uid: 3, gid: 4 });
    expect((await stat(dir)).mode & 0o7777).toBe(0o755); // "./" leaves the root alone
    expect(get("other-name").xattrs).toEqual({ "user.kept": Buffer.from("by the other name").toString("hex") });
    expect(get("orig").xattrs).toEqual({});
  });
});

describe("unpackLayer: hostile layers", () => {
  const cases: [string, Uint8Array, RegExp][] = [
    [
      "dot-dot name",
      archive(entry({ name: "../x-escaped" }, "bad")),
      /entry name "\.\.\/x-escaped" escapes the layer root/,
    ],
    ["dot-dot in the middle", archive(entry({ name: "a/../../x-escaped" }, "bad")), /escapes the layer root/],
    [
      "absolute name",
      archive(entry({ name: "/etc/x-soci-unpack-test" }, "bad")),
      /absolute entry name "\/etc\/x-soci-unpack-test"/,
    ],
    [
      "PAX path escaping",
      archive(pax([["path", "../pax-escaped"]]), entry({ name: "innocent" }, "bad")),
      /"\.\.\/pax-escaped" escapes/,
    ],
    [
      "write through an absolute symlink",
      archive(
        entry({ name: "evil", typeflag: "2", linkname: "/etc" }),
        entry({ name: "evil/x-soci-unpack-test" }, "bad"),
      ),
      /entry "evil\/x-soci-unpack-test" goes through symlink "evil" -> "\/etc", which points outside the layer/,
    ],
    [
      "write through a climbing symlink",
      archive(entry({ name: "up", typeflag: "2", linkname: "../../.." }), entry({ name: "up/x-escaped" }, "bad")),
      /goes through symlink "up" -> "\.\.\/\.\.\/\.\.", which points outside/,
    ],
    [
      "symlink chain leading out",
      archive(
        entry({ name: "d/", typeflag: "5" }),
        entry({ name: "d/l1", typeflag: "2", linkname: "../l2" }),
        entry({ name: "l2", typeflag: "2", linkname: "d/../.." }),
        entry({ name: "d/l1/x-escaped" }, "bad"),
      ),
      /goes through symlink "l2" -> "d\/\.\.\/\.\.", which points outside/,
    ],
    [
      "symlink loop",
      archive(
        entry({ name: "l1", typeflag: "2", linkname: "l2" }),
        entry({ name: "l2", typeflag: "2", linkname: "l1" }),
        entry({ name: "l1/x" }, "bad"),
      ),
      /entry "l1\/x": too many levels of symbolic links/,
    ],
    [
      "hardlink out of the layer",
      archive(entry({ name: "h", typeflag: "1", linkname: "../../etc/passwd" })),
      /hardlink target "\.\.\/\.\.\/etc\/passwd" escapes/,
    ],
    [
      "hardlink to an absolute path",
      archive(entry({ name: "h", typeflag: "1", linkname: "/etc/passwd" })),
      /absolute hardlink target "\/etc\/passwd"/,
    ],
    [
      "hardlink through a symlink out",
      archive(
        entry({ name: "e", typeflag: "2", linkname: "/etc" }),
        entry({ name: "h", typeflag: "1", linkname: "e/passwd" }),
      ),
      /entry "h" goes through symlink "e" -> "\/etc"/,
    ],
    [
      "hardlink to nothing",
      archive(entry({ name: "h", typeflag: "1", linkname: "nothere" })),
      /entry "h": hardlink target "nothere" does not exist in the layer/,
    ],
    [
      "hardlink to a directory",
      archive(entry({ name: "d/", typeflag: "5" }), entry({ name: "h", typeflag: "1", linkname: "d" })),
      /hardlink target "d" is a directory/,
    ],
    ["whiteout of the parent", archive(entry({ name: "a/.wh.." })), /entry "a\/\.wh\.\.": invalid whiteout name/],
    [
      "file under a file",
      archive(entry({ name: "f" }, "x"), entry({ name: "f/g" }, "y")),
      /entry "f\/g": "f" is not a directory/,
    ],
  ];

  test.each(cases)("%s: clear error naming the entry, nothing written anywhere", async (name, layer, message) => {
    const box = join(work, "hostile", name.replace(/\W+/g, "-"));
    const parent = join(box, "parent");
    await mkdir(parent, { recursive: true });
    const err = await unpackLayer(bytes(layer), join(parent, "layer")).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(UnpackError);
    expect((err as Error).message).toMatch(message);
    expect((err as UnpackError).entry).toBeTruthy();
    expect(await readdir(parent)).toEqual([]);
    expect(await readdir(box)).toEqual(["parent"]);
    expect(await exists(join(box, "x-escaped"))).toBe(false);
    expect(await exists("/etc/x-soci-unpack-test")).toBe(false);
    expect(await exists(join(work, "hostile", "x-escaped"))).toBe(false);
  });

  test("device entries without root: clear error naming the entry", async () => {
    const box = await mkdtemp(join(tmpdir(), "unpack-nonroot-")); // outside the 0700 work dir
    await run("chmod", ["777", box]);
    try {
      const layerFile = join(box, "layer.tar");
      await writeFile(
        layerFile,
        archive(
          entry({ name: "dev/", typeflag: "5", uid: 65534, gid: 65534 }),
          entry({ name: "dev/fifo", typeflag: "6", uid: 65534, gid: 65534 }),
          entry({ name: "dev/sda", typeflag: "4", devmajor: 8, devminor: 0, uid: 65534, gid: 65534 }),
        ),
      );
      const script = `
      import { createReadStream } from "node:fs";
      import { unpackLayer } from ${JSON.stringify(join(process.cwd(), "src/fs/unpack-layer.ts"))};
      unpackLayer(createReadStream(${JSON.stringify(layerFile)}), ${JSON.stringify(join(box, "out"))})
        .then(() => console.log("unpacked"), (e) => console.log("error: " + e.message));`;
      const { stdout } = await run(
        "setpriv",
        [
          "--reuid=65534",
          "--regid=65534",
          "--clear-groups",
          process.execPath,
          "--import",
          "tsx",
          "--input-type=module",
          "-e",
          script,
        ],
        {
          cwd: process.cwd(),
        },
      );
      expect(stdout.trim()).toBe(
        `error: unpacking layer ${join(box, "out")}: entry "dev/sda": creating block device 8:0 needs root`,
      );
      expect((await readdir(box)).sort()).toEqual(["layer.tar"]);
    } finally {
      await rm(box, { recursive: true, force: true });
    }
  });
});

describe("unpackLayer: verification and failures leave nothing behind", () => {
  const expectFailure = async (
    source: AsyncIterable<Uint8Array>,
    name: string,
    opts: Parameters<typeof unpackLayer>[2],
    message: RegExp,
  ) => {
    const parent = join(work, "fail", name);
    await mkdir(parent, { recursive: true });
    await expect(unpackLayer(source, join(parent, "layer"), opts)).rejects.toThrow(message);
    expect(await readdir(parent)).toEqual([]);
  };

  test("wrong diff id", async () => {
    const wrong = "sha256:" + "0".repeat(64);
    await expectFailure(
      fileStream(gzPath),
      "diffid",
      { diffId: wrong },
      new RegExp(`diff id mismatch: expected ${wrong}, got ${sha256(tarBytes)}`),
    );
  });

  test("wrong layer digest", async () => {
    const wrong = "sha256:" + "1".repeat(64);
    await expectFailure(
      bytes(smallGz),
      "digest",
      { digest: wrong, diffId: sha256(smallTar) },
      new RegExp(`layer digest mismatch: expected ${wrong}, got ${sha256(smallGz)}`),
    );
  });

  test("malformed expected digests are refused before anything is read", async () => {
    await expectFailure(bytes(gzBytes), "bad-expect", { diffId: "sha256:xyz" }, /invalid expected diffId "sha256:xyz"/);
    await expectFailure(bytes(gzBytes), "bad-expect2", { digest: "md5:00" }, /invalid expected digest "md5:00"/);
  });

  test("truncated gzip", async () => {
    await expectFailure(
      bytes(gzBytes.subarray(0, gzBytes.length >> 1), 65536),
      "trunc-gz",
      {},
      /gzip stream is truncated/,
    );
    await expectFailure(
      bytes(smallGz.subarray(0, smallGz.length - 4)),
      "trunc-gz-trailer",
      {},
      /gzip stream is truncated/,
    );
  });

  test("corrupt gzip: a flipped byte, trailing garbage", async () => {
    const flipped = Buffer.from(smallGz);
    flipped[flipped.length >> 1] ^= 0x55;
    await expectFailure(
      bytes(flipped, 65536),
      "flipped",
      {},
      /corrupt gzip stream|gzip stream is truncated|corrupt tar/,
    );
    await expectFailure(
      bytes(Buffer.concat([smallGz, Buffer.from("garbage!")]), 65536),
      "garbage",
      {},
      /corrupt gzip stream: trailing garbage after gzip member/,
    );
  });

  test("truncated and corrupt tar", async () => {
    await expectFailure(
      bytes(tarBytes.subarray(0, 5_000_000), 65536),
      "trunc-tar",
      { compression: "uncompressed" },
      /corrupt tar: unexpected EOF/,
    );
    const bad = Buffer.from(tarBytes.subarray(0, 1 << 20));
    bad.fill(0x41, 0, 512);
    await expectFailure(bytes(bad, 65536), "bad-tar", {}, /corrupt tar: archive\/tar: invalid tar header/);
  });

  test("GNU sparse files (tar --sparse) are refused by name", async () => {
    const src = join(work, "sparse-src");
    await mkdir(src, { recursive: true });
    await run("sh", [
      "-c",
      `printf start > '${src}/holes' && truncate -s 8M '${src}/holes' && printf end >> '${src}/holes'`,
    ]);
    await run("tar", ["--sparse", "--format=posix", "-cf", join(work, "sparse.tar"), "-C", src, "holes"]);
    await expectFailure(
      fileStream(join(work, "sparse.tar")),
      "sparse",
      {},
      /entry "holes": GNU sparse files are not supported/,
    );
  });

  test("zstd is refused by name; an empty blob is an empty layer", async () => {
    const zstd = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0]);
    await expectFailure(bytes(zstd), "zstd", {}, /zstd-compressed layers are not supported/);
    const dir = join(work, "out", "empty-blob");
    const r = await unpackLayer(bytes(Buffer.alloc(0)), dir);
    expect(r).toMatchObject({ size: 0, uncompressedSize: 0, diffId: sha256(Buffer.alloc(0)) });
    expect(await readdir(dir)).toEqual([]);
  });

  test("a target that is not empty is refused; an empty one is used (owner and mode kept)", async () => {
    const parent = join(work, "targets");
    await mkdir(join(parent, "full"), { recursive: true });
    await writeFile(join(parent, "full/x"), "x");
    const unread = fileStream(tarPath);
    await expect(unpackLayer(unread, join(parent, "full"))).rejects.toThrow(/full exists and is not empty/);
    await new Promise((r) => setImmediate(r));
    expect(unread.destroyed).toBe(true); // the source it will not read is released
    await mkdir(join(parent, "empty"), { mode: 0o750 });
    await run("chown", ["12:34", join(parent, "empty")]);
    await unpackLayer(bytes(archive(entry({ name: "f" }, "y"))), join(parent, "empty"));
    const st = await stat(join(parent, "empty"));
    expect([st.mode & 0o7777, st.uid, st.gid]).toEqual([0o750, 12, 34]);
    expect(await readFile(join(parent, "empty/f"), "utf8")).toBe("y");
    expect((await readdir(parent)).sort()).toEqual(["empty", "full"]);
  });

  test("abort: before the start and in the middle", async () => {
    const parent = join(work, "fail", "abort");
    await mkdir(parent, { recursive: true });
    await expect(unpackLayer(bytes(gzBytes), join(parent, "a"), { signal: AbortSignal.abort() })).rejects.toThrow(
      /aborted/,
    );
    const ac = new AbortController();
    let n = 0;
    async function* slow() {
      for await (const c of bytes(gzBytes, 32768)) {
        if (++n === 100) ac.abort();
        yield c;
      }
    }
    const err = await unpackLayer(slow(), join(parent, "b"), { signal: ac.signal }).catch((e: Error) => e);
    expect((err as Error).name).toBe("AbortError");
    expect(n).toBeLessThan(110);
    // A source that stalls: the abort does not wait for its next chunk.
    const stalled = async function* () {
      yield gzBytes.subarray(0, 100_000);
      await new Promise(() => {});
    };
    const ac2 = new AbortController();
    setTimeout(() => ac2.abort(), 200);
    await expect(unpackLayer(stalled(), join(parent, "c"), { signal: ac2.signal })).rejects.toThrow(/aborted/);
    expect(await readdir(parent)).toEqual([]);
  });
});

test("removeStaleUnpacks: a killed unpack's work directory goes, everything else stays", async () => {
  const parent = join(work, "stale");
  await mkdir(parent, { recursive: true });
  // A real unpack killed mid-way (SIGKILL) leaves its work directory beside the target.
  const script = `
    import { unpackLayer } from ${JSON.stringify(join(process.cwd(), "src/fs/unpack-layer.ts"))};
    async function* src() { yield (await import("node:fs")).readFileSync(${JSON.stringify(gzPath)}).subarray(0, 200000); console.log("started"); await new Promise(() => {}); }
    unpackLayer(src(), ${JSON.stringify(join(parent, "layer"))});`;
  const { spawn } = await import("node:child_process");
  const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
    cwd: process.cwd(),
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on("data", (d: Buffer) => d.toString().includes("started") && resolve());
    child.on("close", (code) => reject(new Error(`child exited (${code}) before the unpack started`)));
  });
  child.kill("SIGKILL");
  await new Promise((r) => child.on("close", r));
  await mkdir(join(parent, "layer-done"));
  await writeFile(join(parent, ".hidden.unpack-notours"), "x");
  const left = await readdir(parent);
  expect(left.filter((n) => n.startsWith(".layer.unpack-"))).toHaveLength(1);
  expect(await removeStaleUnpacks(parent)).toEqual(left.filter((n) => n.startsWith(".layer.unpack-")));
  expect((await readdir(parent)).sort()).toEqual([".hidden.unpack-notours", "layer-done"]);
  expect(await removeStaleUnpacks(join(work, "does-not-exist"))).toEqual([]);
});

describe("unpackLayers", () => {
  test("several layers in parallel, results in job order", async () => {
    const parent = join(work, "many");
    const jobs = [gzPath, pigzPath, tarPath].map((p, i) => ({
      source: () => fileStream(p),
      dir: join(parent, `l${i}`),
      opts: { diffId: sha256(tarBytes) },
    }));
    const results = await unpackLayers(jobs, { concurrency: 3 });
    expect(results.map((r) => r.digest)).toEqual([sha256(gzBytes), sha256(pigzBytes), sha256(tarBytes)]);
    expect(comparable(await dumpTree(join(parent, "l1"))).entries).toEqual(expected.entries);
    for (const i of [0, 2])
      expect(await sameFile(join(parent, `l${i}`, "big/random.bin"), join(work, "src/big/random.bin"))).toBe(true);
  });

  test("the first failure aborts the layers still in progress", async () => {
    const parent = join(work, "many-fail");
    const small = archive(entry({ name: "f" }, "x"));
    const jobs = [
      { source: () => fileStream(gzPath, 16384), dir: join(parent, "big1") },
      { source: () => bytes(small), dir: join(parent, "bad"), opts: { diffId: "sha256:" + "2".repeat(64) } },
      { source: () => fileStream(pigzPath, 16384), dir: join(parent, "big2") },
    ];
    await expect(unpackLayers(jobs, { concurrency: 3 })).rejects.toThrow(/diff id mismatch/);
    expect(await readdir(parent)).toEqual([]);
  });
});

// What a first unpack in a fresh process (a daemon's first pull) waits for: warmUnpacker() parks
// the I/O thread ahead of it, so that unpack starts no thread of its own.
test("warmUnpacker: the first unpack of a process reuses the parked I/O thread", async () => {
  const layerFile = join(work, "small.tar");
  const threadsStarted = async (warm: boolean) => {
    const out = join(work, `warm-${warm}`);
    const script = `
      import { readdirSync } from "node:fs";
      import { readFile } from "node:fs/promises";
      import { unpackLayer, warmUnpacker } from ${JSON.stringify(join(process.cwd(), "src/fs/unpack-layer.ts"))};
      const threads = () => readdirSync("/proc/self/task").length;
      const layer = await readFile(${JSON.stringify(layerFile)}); // libuv's pool threads start here
      if (${warm}) await warmUnpacker();
      const before = threads();
      await unpackLayer([layer], ${JSON.stringify(out)});
      console.log(threads() - before);`;
    // a file, not -e: the I/O thread inherits the process's flags, and --input-type would fail it
    const scriptFile = join(work, `warm-${warm}.mts`);
    await writeFile(scriptFile, script);
    const { stdout } = await run(process.execPath, ["--import", "tsx", scriptFile], { cwd: process.cwd() });
    expect((await readdir(join(out, "usr/bin"))).sort()).toEqual((await readdir(join(work, "ref/usr/bin"))).sort());
    await rm(out, { recursive: true, force: true });
    return Number(stdout.trim());
  };
  expect(await threadsStarted(false)).toBeGreaterThan(0); // the I/O thread, started on the unpack's clock
  expect(await threadsStarted(true)).toBe(0);
});

test("throughput vs tar -xzf (logged, not asserted)", async () => {
  const t0 = performance.now();
  await unpackLayer(fileStream(gzPath, 1 << 20), join(work, "speed", "ours"), { diffId: sha256(tarBytes) });
  const ours = performance.now() - t0;
  const t1 = performance.now();
  await gnuUntar(gzPath, join(work, "speed", "tar"));
  const tar = performance.now() - t1;
  const mb = tarBytes.length / 1e6;
  console.log(
    `unpack ${mb.toFixed(1)} MB tar (${entryCount} entries, gzip -6): unpackLayer ${ours.toFixed(0)} ms (${(mb / (ours / 1000)).toFixed(1)} MB/s), ` +
      `tar -xzf ${tar.toFixed(0)} ms (${(mb / (tar / 1000)).toFixed(1)} MB/s)`,
  );
  expect(comparable(await dumpTree(join(work, "speed", "ours"))).entries).toEqual(expected.entries);
});
