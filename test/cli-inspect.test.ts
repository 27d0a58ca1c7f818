// soci index|ztoc|prefetch inspection commands and rebuild-db, run as child processes against a
// temporary root populated with the golden vectors; plus the Go text/tabwriter emulation.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ContentStore } from "../src/store/content-store.js";
import { ArtifactsDb, type ArtifactEntryInput } from "../src/store/artifacts-db.js";
import { ZERO_TIMESTAMP } from "../src/store/timestamp.js";
import {
  AlignRight,
  Debug,
  DiscardEmptyColumns,
  FilterHTML,
  formatSociTable,
  StripEscape,
  TabWriter,
  TextSink,
} from "../src/cli/tables.js";
import { createdAgo, goDuration, roundDuration } from "../src/cli/commands/inspect.js";
import { parseGoDigest } from "../src/cli/local-store.js";
import { sociChild, sociInProcess } from "./helpers/soci-cli.js";

const V = new URL("./vectors/", import.meta.url).pathname;

// Commands run in this process (helpers/soci-cli.ts); the tests marked "child process" spawn
// bin/soci.js to prove its wiring: exit statuses, stderr, binary stdout, the environment (TZ).
const cli = sociInProcess;

// ------------------------------------------------------------------------------------------------
// Fixtures: the golden vectors (docs/formats.md §7.2)

const vectors = readFileSync(join(V, "index_vectors.txt"), "utf8").split("\n");
const docAfter = (heading: string) => {
  const i = vectors.indexOf(heading);
  if (i < 0) throw new Error(`no ${heading}`);
  return Buffer.from(vectors[i + 1]!);
};
const CONFIG = docAfter("== image config (input)");
const MANIFEST = docAfter("== original image manifest (input, Docker schema2)");
const PREFETCH = docAfter("== prefetch artifact");
const INDEX_V1 = docAfter("== SOCI index manifest v1 (soci create), subject = original manifest");
const INDEX_V1_PREFETCH = docAfter("== SOCI index manifest v1 with a prefetch layer");
const INDEX_V2 = docAfter("== SOCI index manifest v2 (soci convert)");
const OCI_INDEX = docAfter("== converted OCI image index (new image target)");
const ZTOC = readFileSync(join(V, "za4096.ztoc"));
const LAYER = readFileSync(join(V, "layer-a.tar.gz"));
const LAYER_TAR = readFileSync(join(V, "layer.tar"));

const D = {
  ztoc: "sha256:7c12f4087882f71fb0ce84553efe617e92839d14ab2bcedcabfd32d34083d3ad",
  layer: "sha256:6c2c6c487e30cf19f4a01ff221076074a9c7ddade2ed727b7e7dfbcaad1cc067",
  manifest: "sha256:475dcee0b9e48eb4138968110b6da065e04245b6088844e00e12a42073db8030",
  config: "sha256:620f887bb2fcc349ae9214bf94f3d166ede096c7088e46ca442826425e5a9a99",
  prefetch: "sha256:fae7e200f7ac3515abf897d7c407ef9bac9b5b2e736de1b1f733339ecec84dee",
  indexV1: "sha256:826bbba15c837d19321807633e9f5b28b13c6e6bf27d6ce949e8f7676a236acc",
  indexV1Prefetch: "sha256:bfb9dd06a4a776fc9712f2a15deeb76c004af9ec726e87275561c8ca9909a21e",
  indexV2: "sha256:9750632ef31706fb3cc4ceee3ac818e386a162558554a5cb8ca3226a8e33fce2",
  ociIndex: "sha256:706aa66124dd83085d8082aa7ffe90d2b6ab07bf64d7c826b2afca4d228e3a68",
  missing: "sha256:" + "ab".repeat(32),
};
const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const V1 = "application/vnd.amazon.soci.index.v1+json";
const V2 = "application/vnd.amazon.soci.index.v2+json";

let tmp = "";
let n = 0;
const newRoot = () => join(tmp, `root${n++}`);

async function populate(root: string, blobs: Buffer[], entries: ArtifactEntryInput[]): Promise<void> {
  const cs = await ContentStore.open(join(root, "content"));
  for (const b of blobs) await cs.put(b);
  const db = ArtifactsDb.open(join(root, "artifacts.db"));
  db.putMany(entries);
  db.close();
}

const HOUR = 3600_000;
const ztocEntry: ArtifactEntryInput = {
  digest: D.ztoc,
  size: ZTOC.length,
  type: "soci_layer",
  ociDigest: D.layer,
  location: D.layer,
  mediaType: "application/octet-stream",
  spanSize: 4096,
  createdAt: "2024-01-02T03:04:05Z",
};
const indexV1Created = Date.now() - 7 * HOUR - 23 * 60_000;
const indexV1Entry: ArtifactEntryInput = {
  digest: D.indexV1,
  size: INDEX_V1.length,
  type: "soci_index",
  ociDigest: D.manifest,
  imageDigest: D.manifest,
  location: D.manifest,
  platform: "linux/amd64",
  mediaType: OCI_MANIFEST,
  artifactType: V1,
  createdAt: new Date(indexV1Created),
};

/** Seconds of a Go duration text `XhYmZs ago`. */
function agoSeconds(s: string): number {
  const m = /^(?:(\d+)h)?(?:(\d+)m)?(\d+)s ago$/.exec(s);
  if (!m) throw new Error(`not a duration: ${s}`);
  return Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3]);
}
const indexV2Entry: ArtifactEntryInput = {
  digest: D.indexV2,
  size: INDEX_V2.length,
  type: "soci_index",
  ociDigest: "sha256:646fa30ae24721a9f5448ceeb37e6b461b8a5f02500a9a8679098fa625706ecf",
  imageDigest: D.ociIndex,
  location: D.manifest,
  platform: "linux/amd64",
  mediaType: OCI_MANIFEST,
  artifactType: V2,
  createdAt: ZERO_TIMESTAMP,
};
const prefetchEntry: ArtifactEntryInput = {
  digest: D.prefetch,
  size: PREFETCH.length,
  type: "soci_prefetch",
  ociDigest: D.layer,
  mediaType: "application/vnd.amazon.soci.prefetch.v1+json",
  createdAt: "2024-01-02T03:04:05.5Z",
};

let root = "";
const soc = (args: string[], env: Record<string, string> = {}) =>
  cli(["--root", root, "--content-store", "soci", ...args], env);
const socChild = (args: string[], env: Record<string, string> = {}) =>
  sociChild(["--root", root, "--content-store", "soci", ...args], env);

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "soci-inspect-"));
  root = newRoot();
  await populate(
    root,
    [ZTOC, LAYER, INDEX_V1, INDEX_V2, PREFETCH, MANIFEST, CONFIG, OCI_INDEX],
    [ztocEntry, indexV1Entry, indexV2Entry, prefetchEntry],
  );
});

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

// ------------------------------------------------------------------------------------------------
// tabwriter

/** Go string literal bytes: `\xff` is the raw byte 0xff, everything else UTF-8. */
const goBytes = (s: string) =>
  Buffer.concat(
    s.split("\xff").flatMap((p, i) => (i === 0 ? [Buffer.from(p)] : [Buffer.from([0xff]), Buffer.from(p)])),
  );

// From Go's text/tabwriter tests: [name, minwidth, tabwidth, padding, padchar, flags, src, expected]
type Case = [string, number, number, number, string, number, string, string];
const goCases: Case[] = [
  ["1a", 8, 0, 1, ".", 0, "", ""],
  ["1a debug", 8, 0, 1, ".", Debug, "", ""],
  ["1b esc stripped", 8, 0, 1, ".", StripEscape, "\xff\xff", ""],
  ["1b esc", 8, 0, 1, ".", 0, "\xff\xff", "\xff\xff"],
  ["1c esc stripped", 8, 0, 1, ".", StripEscape, "\xff\t\xff", "\t"],
  ["1c esc", 8, 0, 1, ".", 0, "\xff\t\xff", "\xff\t\xff"],
  ["1d esc stripped", 8, 0, 1, ".", StripEscape, '\xff"foo\t\n\tbar"\xff', '"foo\t\n\tbar"'],
  ["1d esc", 8, 0, 1, ".", 0, '\xff"foo\t\n\tbar"\xff', '\xff"foo\t\n\tbar"\xff'],
  ["1e esc stripped", 8, 0, 1, ".", StripEscape, "abc\xff\tdef", "abc\tdef"],
  ["1e esc", 8, 0, 1, ".", 0, "abc\xff\tdef", "abc\xff\tdef"],
  ["2", 8, 0, 1, ".", 0, "\n\n\n", "\n\n\n"],
  ["3", 8, 0, 1, ".", 0, "a\nb\nc", "a\nb\nc"],
  ["4a", 8, 0, 1, ".", 0, "\t", ""],
  ["4b", 8, 0, 1, ".", AlignRight, "\t", ""],
  ["5", 8, 0, 1, ".", 0, "*\t*", "*.......*"],
  ["5b", 8, 0, 1, ".", 0, "*\t*\n", "*.......*\n"],
  ["5c", 8, 0, 1, ".", 0, "*\t*\t", "*.......*"],
  ["5c debug", 8, 0, 1, ".", Debug, "*\t*\t", "*.......|*"],
  ["5d", 8, 0, 1, ".", AlignRight, "*\t*\t", ".......**"],
  ["6", 8, 0, 1, ".", 0, "\t\n", "........\n"],
  ["7a", 8, 0, 1, ".", 0, "a) foo", "a) foo"],
  ["7b", 8, 0, 1, " ", 0, "b) foo\tbar", "b) foo  bar"],
  ["7c", 8, 0, 1, ".", 0, "c) foo\tbar\t", "c) foo..bar"],
  ["7d", 8, 0, 1, ".", 0, "d) foo\tbar\n", "d) foo..bar\n"],
  ["7e", 8, 0, 1, ".", 0, "e) foo\tbar\t\n", "e) foo..bar.....\n"],
  ["7f", 8, 0, 1, ".", FilterHTML, "f) f&lt;o\t<b>bar</b>\t\n", "f) f&lt;o..<b>bar</b>.....\n"],
  [
    "7g",
    8,
    0,
    1,
    ".",
    FilterHTML,
    "g) f&lt;o\t<b>bar</b>\t non-terminated entity &amp",
    "g) f&lt;o..<b>bar</b>..... non-terminated entity &amp",
  ],
  [
    "7g debug",
    8,
    0,
    1,
    ".",
    FilterHTML | Debug,
    "g) f&lt;o\t<b>bar</b>\t non-terminated entity &amp",
    "g) f&lt;o..|<b>bar</b>.....| non-terminated entity &amp",
  ],
  ["8", 8, 0, 1, "*", 0, "Hello, world!\n", "Hello, world!\n"],
  ["9a", 1, 0, 0, ".", 0, "1\t2\t3\t4\n11\t222\t3333\t44444\n", "1.2..3...4\n11222333344444\n"],
  [
    "9b",
    1,
    0,
    0,
    ".",
    FilterHTML,
    "1\t2<!---\f--->\t3\t4\n11\t222\t3333\t44444\n",
    "1.2<!---\f--->..3...4\n11222333344444\n",
  ],
  ["9c", 1, 0, 0, ".", 0, "1\t2\t3\t4\f11\t222\t3333\t44444\n", "1234\n11222333344444\n"],
  ["9c debug", 1, 0, 0, ".", Debug, "1\t2\t3\t4\f11\t222\t3333\t44444\n", "1|2|3|4\n---\n11|222|3333|44444\n"],
  ["10a", 5, 0, 0, ".", 0, "1\t2\t3\t4\n", "1....2....3....4\n"],
  ["10b", 5, 0, 0, ".", 0, "1\t2\t3\t4\t\n", "1....2....3....4....\n"],
  [
    "11",
    8,
    0,
    1,
    ".",
    0,
    "本\tb\tc\naa\t本本本\tcccc\tddddd\naaa\tbbbb\n",
    "本.......b.......c\naa......本本本.....cccc....ddddd\naaa.....bbbb\n",
  ],
  [
    "12a",
    8,
    0,
    1,
    " ",
    AlignRight,
    "a\tè\tc\t\naa\tèèè\tcccc\tddddd\t\naaa\tèèèè\t\n",
    "       a       è       c\n      aa     èèè    cccc   ddddd\n     aaa    èèèè\n",
  ],
  ["12b", 2, 0, 0, " ", 0, "a\tb\tc\naa\tbbb\tcccc\naaa\tbbbb\n", "a  b  c\naa bbbcccc\naaabbbb\n"],
  [
    "12c",
    8,
    0,
    1,
    "_",
    0,
    "a\tb\tc\naa\tbbb\tcccc\naaa\tbbbb\n",
    "a_______b_______c\naa______bbb_____cccc\naaa_____bbbb\n",
  ],
  [
    "13a",
    4,
    0,
    1,
    "-",
    0,
    "4444\t日本語\t22\t1\t333\n999999999\t22\n7\t22\n\t\t\t88888888\n\n666666\t666666\t666666\t4444\n1\t1\t999999999\t0000000000\n",
    "4444------日本語-22--1---333\n999999999-22\n7---------22\n------------------88888888\n\n666666-666666-666666----4444\n1------1------999999999-0000000000\n",
  ],
  [
    "13b",
    4,
    0,
    3,
    ".",
    0,
    "4444\t333\t22\t1\t333\n999999999\t22\n7\t22\n\t\t\t88888888\n\n666666\t666666\t666666\t4444\n1\t1\t999999999\t0000000000\n",
    "4444........333...22...1...333\n999999999...22\n7...........22\n....................88888888\n\n666666...666666...666666......4444\n1........1........999999999...0000000000\n",
  ],
  [
    "13c",
    8,
    8,
    1,
    "\t",
    FilterHTML,
    "4444\t333\t22\t1\t333\n999999999\t22\n7\t22\n\t\t\t88888888\n\n666666\t666666\t666666\t4444\n1\t1\t<font color=red attr=日本語>999999999</font>\t0000000000\n",
    "4444\t\t333\t22\t1\t333\n999999999\t22\n7\t\t22\n\t\t\t\t88888888\n\n666666\t666666\t666666\t\t4444\n1\t1\t<font color=red attr=日本語>999999999</font>\t0000000000\n",
  ],
  [
    "14",
    1,
    0,
    2,
    " ",
    AlignRight,
    ".0\t.3\t2.4\t-5.1\t\n23.0\t12345678.9\t2.4\t-989.4\t\n5.1\t12.0\t2.4\t-7.0\t\n.0\t0.0\t332.0\t8908.0\t\n.0\t-.3\t456.4\t22.1\t\n.0\t1.2\t44.4\t-13.3\t\t",
    "    .0          .3    2.4    -5.1\n  23.0  12345678.9    2.4  -989.4\n   5.1        12.0    2.4    -7.0\n    .0         0.0  332.0  8908.0\n    .0         -.3  456.4    22.1\n    .0         1.2   44.4   -13.3",
  ],
  [
    "14 debug",
    1,
    0,
    2,
    " ",
    AlignRight | Debug,
    ".0\t.3\t2.4\t-5.1\t\n23.0\t12345678.9\t2.4\t-989.4\t\n5.1\t12.0\t2.4\t-7.0\t\n.0\t0.0\t332.0\t8908.0\t\n.0\t-.3\t456.4\t22.1\t\n.0\t1.2\t44.4\t-13.3\t\t",
    "    .0|          .3|    2.4|    -5.1|\n  23.0|  12345678.9|    2.4|  -989.4|\n   5.1|        12.0|    2.4|    -7.0|\n    .0|         0.0|  332.0|  8908.0|\n    .0|         -.3|  456.4|    22.1|\n    .0|         1.2|   44.4|   -13.3|",
  ],
  ["15a", 4, 0, 0, ".", 0, "a\t\tb", "a.......b"],
  ["15b", 4, 0, 0, ".", DiscardEmptyColumns, "a\t\tb", "a.......b"],
  ["15c", 4, 0, 0, ".", DiscardEmptyColumns, "a\v\vb", "a...b"],
  ["15d", 4, 0, 0, ".", AlignRight | DiscardEmptyColumns, "a\v\vb", "...ab"],
  [
    "16a",
    100,
    100,
    0,
    "\t",
    0,
    "a\tb\t\td\na\tb\t\td\te\na\na\tb\tc\td\na\tb\tc\td\te\n",
    "a\tb\t\td\na\tb\t\td\te\na\na\tb\tc\td\na\tb\tc\td\te\n",
  ],
  [
    "16b",
    100,
    100,
    0,
    "\t",
    DiscardEmptyColumns,
    "a\vb\v\vd\na\vb\v\vd\ve\na\na\vb\vc\vd\na\vb\vc\vd\ve\n",
    "a\tb\td\na\tb\td\te\na\na\tb\tc\td\na\tb\tc\td\te\n",
  ],
  [
    "16b debug",
    100,
    100,
    0,
    "\t",
    DiscardEmptyColumns | Debug,
    "a\vb\v\vd\na\vb\v\vd\ve\na\na\vb\vc\vd\na\vb\vc\vd\ve\n",
    "a\t|b\t||d\na\t|b\t||d\t|e\na\na\t|b\t|c\t|d\na\t|b\t|c\t|d\t|e\n",
  ],
  [
    "16c",
    100,
    100,
    0,
    "\t",
    DiscardEmptyColumns,
    "a\tb\t\td\na\tb\t\td\te\na\na\tb\tc\td\na\tb\tc\td\te\n",
    "a\tb\t\td\na\tb\t\td\te\na\na\tb\tc\td\na\tb\tc\td\te\n",
  ],
  [
    "16c debug",
    100,
    100,
    0,
    "\t",
    DiscardEmptyColumns | Debug,
    "a\tb\t\td\na\tb\t\td\te\na\na\tb\tc\td\na\tb\tc\td\te\n",
    "a\t|b\t|\t|d\na\t|b\t|\t|d\t|e\na\na\t|b\t|c\t|d\na\t|b\t|c\t|d\t|e\n",
  ],
];

describe("tabwriter (Go text/tabwriter emulation)", () => {
  for (const [name, minwidth, tabwidth, padding, padchar, flags, src, expected] of goCases) {
    it(`Go case ${name}, written at once, byte by byte and in Fibonacci slices`, () => {
      const bytes = goBytes(src);
      const splits: number[][] = [[bytes.length], Array(bytes.length).fill(1)];
      const fib: number[] = [];
      for (let i = 0, d = 0; i < bytes.length; ) {
        fib.push(d);
        i += d;
        d++;
        if (i + d > bytes.length) d = bytes.length - i;
      }
      splits.push(fib);
      for (const sizes of splits) {
        const sink = new TextSink();
        const w = new TabWriter(sink.write, minwidth, tabwidth, padding, padchar, flags);
        let at = 0;
        for (const size of sizes) {
          w.write(bytes.subarray(at, at + size));
          at += size;
        }
        w.flush();
        expect(Buffer.from(sink.bytes()).equals(goBytes(expected)), `${name}: ${JSON.stringify(sink.text())}`).toBe(
          true,
        );
      }
    });
  }

  it("soci tables: minwidth 8, padding 4, spaces, every cell (the last too) padded", () => {
    expect(
      formatSociTable([
        ["A", "BB"],
        ["ccc", ""],
      ]),
    ).toBe("A       BB      \nccc             \n");
    // a cell wider than minwidth - padding widens its column
    expect(
      formatSociTable([
        ["A", "BB"],
        ["ccccc", ""],
      ]),
    ).toBe("A        BB      \nccccc            \n");
    const d = "sha256:" + "0".repeat(64);
    expect(
      formatSociTable([
        ["DIGEST", "SIZE", "LAYER DIGEST"],
        [d, "200520", d],
      ]),
    ).toBe(
      "DIGEST" +
        " ".repeat(69) +
        "SIZE" +
        " ".repeat(6) +
        "LAYER DIGEST" +
        " ".repeat(63) +
        "\n" +
        d +
        "    " +
        "200520    " +
        d +
        "    \n",
    );
    // header only
    expect(formatSociTable([["DIGEST", "LAYER DIGEST", "SPANS", "CREATED"]])).toBe(
      "DIGEST    LAYER DIGEST    SPANS    CREATED    \n",
    );
    // widths count runes, not bytes
    expect(
      formatSociTable([
        ["é", "x"],
        ["ab", "y"],
      ]),
    ).toBe("é       x       \nab      y       \n");
  });
});

describe("Go helpers", () => {
  it("Duration.String and Round(time.Second)", () => {
    const s = 1_000_000_000n;
    expect(goDuration(0n)).toBe("0s");
    expect(goDuration(s)).toBe("1s");
    expect(goDuration(65n * s)).toBe("1m5s");
    expect(goDuration((7n * 3600n + 23n * 60n) * s)).toBe("7h23m0s");
    expect(goDuration(360000n * s)).toBe("100h0m0s");
    expect(goDuration(1_500_000_000n)).toBe("1.5s");
    expect(goDuration(250_000_000n)).toBe("250ms");
    expect(goDuration(1_500n)).toBe("1.5µs");
    expect(goDuration(7n)).toBe("7ns");
    expect(goDuration(-5n * s)).toBe("-5s");
    expect(roundDuration(1_499_999_999n, s)).toBe(s);
    expect(roundDuration(1_500_000_000n, s)).toBe(2n * s);
    expect(roundDuration(-1_500_000_000n, s)).toBe(-2n * s);
    expect(roundDuration(-1_400_000_000n, s)).toBe(-s);
    expect(createdAgo(ZERO_TIMESTAMP)).toBe("n/a");
    expect(createdAgo("2024-01-01T00:00:00Z", BigInt(Date.parse("2024-01-01T07:23:00.4Z")) * 1_000_000n)).toBe(
      "7h23m0s ago",
    );
  });

  it("digest.Parse messages", () => {
    expect(parseGoDigest(D.ztoc)).toBe(D.ztoc);
    expect(() => parseGoDigest("")).toThrow("invalid checksum digest format");
    expect(() => parseGoDigest("sha256")).toThrow("invalid checksum digest format");
    expect(() => parseGoDigest("sha256:abc")).toThrow("invalid checksum digest length");
    expect(() => parseGoDigest("sha256:" + "G".repeat(64))).toThrow("invalid checksum digest format");
    expect(() => parseGoDigest("md5:abc")).toThrow("unsupported digest algorithm");
    expect(() => parseGoDigest("MD5:abc")).toThrow("invalid checksum digest format");
  });
});

// ------------------------------------------------------------------------------------------------
// ztoc

describe("soci ztoc", () => {
  it("info prints exactly the reference's output (V1) (child process)", async () => {
    const r = await socChild(["ztoc", "info", D.ztoc]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(readFileSync(join(V, "za4096.info.json"), "utf8"));
  });

  it("info refuses an index digest (child process), unknown digests and bad digests", async () => {
    const ix = await socChild(["ztoc", "info", D.indexV1]);
    expect(ix).toMatchObject({
      code: 1,
      stdout: "",
      stderr:
        "soci: the provided digest belongs to a SOCI index. Use `soci index info` to get the detailed information about it\n",
    });
    const unknown = await soc(["ztoc", "info", D.missing]);
    expect(unknown).toMatchObject({
      code: 1,
      stderr: `soci: couldn't retrieve artifact for ${D.missing}, not found\n`,
    });
    expect((await soc(["ztoc", "info", "nope"])).stderr).toBe("soci: invalid checksum digest format\n");
    expect((await soc(["ztoc", "info"])).stderr).toBe("soci: invalid checksum digest format\n");
  });

  it("get-file prints the file plus a newline (child process); hard links are followed, multi-span files extracted", async () => {
    const hello = LAYER_TAR.subarray(1024, 1024 + 3000);
    const r = await socChild(["ztoc", "get-file", D.ztoc, "app/hello.txt"]);
    expect(r.stderr).toBe("");
    expect(r.out.equals(Buffer.concat([hello, Buffer.from("\n")]))).toBe(true);
    const hard = await soc(["ztoc", "get-file", D.ztoc, "app/hardlink"]);
    expect(hard.out.equals(Buffer.concat([hello, Buffer.from("\n")]))).toBe(true);
    const big = await soc(["ztoc", "get-file", D.ztoc, "app/big.txt"]);
    expect(big.out.equals(Buffer.concat([LAYER_TAR.subarray(6656, 6656 + 6160), Buffer.from("\n")]))).toBe(true);
    const cafe = await soc(["ztoc", "get-file", D.ztoc, "app/café.txt"]);
    expect(cafe.out.equals(Buffer.concat([LAYER_TAR.subarray(20992, 20994), Buffer.from("\n")]))).toBe(true);
    expect((await soc(["ztoc", "get-file", D.ztoc, "app/empty"])).stdout).toBe("\n");
  });

  it("get-file -o writes the file with permission bits 0", async () => {
    const out = join(tmp, "hello.out");
    const r = await soc(["ztoc", "get-file", "-o", out, D.ztoc, "app/hello.txt"]);
    expect(r).toMatchObject({ code: 0, stdout: "", stderr: "" });
    expect((await stat(out)).mode & 0o777).toBe(0);
    await chmod(out, 0o600);
    expect((await readFile(out)).equals(LAYER_TAR.subarray(1024, 4024))).toBe(true);
  });

  it("get-file errors: argument count, missing file, symlinks followed by their (relative) link name", async () => {
    expect(await soc(["ztoc", "get-file", D.ztoc])).toMatchObject({
      code: 1,
      stderr: "soci: please provide both a ztoc digest and a filename to extract\n",
    });
    expect((await soc(["ztoc", "get-file", D.ztoc, "app/nope"])).stderr).toBe(
      "soci: file app/nope does not exist in metadata\n",
    );
    expect((await soc(["ztoc", "get-file", D.ztoc, "app/link"])).stderr).toBe(
      "soci: file hello.txt does not exist in metadata\n",
    );
  });

  it("list: table, digest filter, quiet", async () => {
    const r = await soc(["ztoc", "list"]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe(
      formatSociTable([
        ["DIGEST", "SIZE", "LAYER DIGEST"],
        [D.ztoc, "200520", D.layer],
      ]),
    );
    expect(r.stdout.split("\n")[0]).toBe("DIGEST" + " ".repeat(69) + "SIZE      LAYER DIGEST" + " ".repeat(63));
    expect((await soc(["ztoc", "ls", "-q"])).stdout).toBe(`${D.ztoc}\n`);
    expect((await soc(["ztoc", "ls", "--ztoc-digest", D.missing])).stdout).toBe("DIGEST    SIZE    LAYER DIGEST    \n");
  });

  it("list --image-ref resolves a manifest digest in the content store", async () => {
    expect((await soc(["ztoc", "ls", "-q", "--image-ref", D.manifest])).stdout).toBe(`${D.ztoc}\n`);
    expect((await soc(["ztoc", "ls", "-q", "--image-ref", `example.com/app@${D.manifest}`])).stdout).toBe(
      `${D.ztoc}\n`,
    );
    const none = await soc(["ztoc", "ls", "--image-ref", D.manifest, "--ztoc-digest", D.missing]);
    expect(none).toMatchObject({
      code: 1,
      stderr: "soci: the specified ztoc doesn't exist or is not associated with the specified image\n",
    });
    const unknown = await soc(["ztoc", "ls", "--image-ref", "docker.io/library/busybox:latest"]);
    expect(unknown).toMatchObject({ code: 1, stderr: 'soci: image "docker.io/library/busybox:latest": not found\n' });
  });

  it("the containerd content store needs a reachable containerd (child process); unknown stores are refused", async () => {
    const r = await sociChild([
      "--root",
      root,
      "--content-store",
      "containerd",
      "--address",
      join(root, "no-containerd.sock"),
      "ztoc",
      "info",
      D.ztoc,
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^soci: containerd at .*no-containerd\.sock is not reachable/);
    const bad = await cli(["--root", root, "--content-store", "nfs", "ztoc", "info", D.ztoc]);
    expect(bad.stderr).toBe("soci: unknown content store type: nfs; must be one of [soci containerd]\n");
  });

  it("read-only commands create nothing: a missing root is an error, an empty one an empty database", async () => {
    const fresh = join(newRoot(), "nested");
    const readOnly = [
      ["ztoc", "info", D.ztoc],
      ["ztoc", "list"],
      ["ztoc", "get-file", D.ztoc, "a.txt"],
      ["index", "list"],
      ["index", "info", D.indexV1],
      ["prefetch", "list"],
      ["prefetch", "info", D.prefetch],
    ];
    for (const args of readOnly) {
      const r = await cli(["--root", fresh, "--content-store", "soci", ...args]);
      expect({ args, ...r, out: undefined }).toMatchObject({
        args,
        code: 1,
        stdout: "",
        stderr: `soci: root directory ${fresh} does not exist (nothing was created with this --root; give the one the SOCI artifacts are in)\n`,
      });
      await expect(stat(join(fresh, ".."))).rejects.toThrow(/ENOENT/);
    }
    // an existing empty root reads as an empty database (bbolt's messages) and stays empty
    const empty = newRoot();
    await mkdir(empty);
    const info = await cli(["--root", empty, "--content-store", "soci", "ztoc", "info", D.ztoc]);
    expect(info).toMatchObject({ code: 1, stderr: "soci: soci_artifacts not found\n" });
    const list = await cli(["--root", empty, "--content-store", "soci", "index", "list", "-q"]);
    expect(list).toMatchObject({ code: 0, stdout: "", stderr: "" });
    expect(await readdir(empty)).toEqual([]);
  });

  it("a command that writes creates a missing root (0700) and its database (0600), as the reference does", async () => {
    const fresh = join(newRoot(), "nested");
    const r = await cli(["--root", fresh, "--content-store", "soci", "index", "rm", D.indexV1]);
    expect(r).toMatchObject({ code: 1, stderr: "soci: soci_artifacts not found\n" });
    expect((await stat(fresh)).mode & 0o777).toBe(0o700);
    expect((await stat(join(fresh, "artifacts.db"))).mode & 0o777).toBe(0o600);
  });
});

// ------------------------------------------------------------------------------------------------
// index

describe("soci index", () => {
  it("list: newest first, exact table, zero time as n/a", async () => {
    const before = Date.now();
    const r = await soc(["index", "list"]);
    const after = Date.now();
    expect(r.stderr).toBe("");
    const lines = r.stdout.split("\n");
    const created = /(\S+ ago)\s*$/.exec(lines[1]!)?.[1] ?? "";
    expect(agoSeconds(created)).toBeGreaterThanOrEqual(Math.round((before - indexV1Created) / 1000));
    expect(agoSeconds(created)).toBeLessThanOrEqual(Math.round((after - indexV1Created) / 1000));
    expect(created).toMatch(/^7h\d+m\d+s ago$/);
    expect(r.stdout).toBe(
      formatSociTable([
        ["DIGEST", "SIZE", "IMAGE REF", "PLATFORM", "MEDIA TYPE", "MANIFEST VERSION", "CREATED"],
        [D.indexV1, "887", "", "linux/amd64", OCI_MANIFEST, "v1", created],
        [D.indexV2, "714", "", "linux/amd64", OCI_MANIFEST, "v2", "n/a"],
      ]),
    );
    // the CREATED column's width follows the "…ago" text, whose length varies with the clock
    expect(lines[0]).toBe(
      "DIGEST" +
        " ".repeat(69) +
        "SIZE    IMAGE REF    PLATFORM       MEDIA TYPE" +
        " ".repeat(36) +
        "MANIFEST VERSION    " +
        "CREATED".padEnd(Math.max(7, created.length) + 4),
    );
    expect((await soc(["index", "ls", "-q"])).stdout).toBe(`${D.indexV1}\n${D.indexV2}\n`);
  });

  it("list filters by platform and by image ref", async () => {
    expect((await soc(["index", "ls", "-q", "-p", "linux/amd64"])).stdout).toBe(`${D.indexV1}\n${D.indexV2}\n`);
    expect((await soc(["index", "ls", "-q", "--platform", "linux/arm64"])).stdout).toBe("");
    expect((await soc(["index", "ls", "-q", "--ref", D.manifest])).stdout).toBe(`${D.indexV1}\n`);
    const wrong = await soc(["index", "ls", "-q", "--ref", D.manifest, "-p", "linux/arm64"]);
    expect(wrong.stdout).toBe(`${D.indexV1}\n`); // a single manifest (no platform in its descriptor) matches any platform
    const unknown = await soc(["index", "ls", "--ref", D.missing]);
    expect(unknown).toMatchObject({ code: 1, stderr: `soci: image "${D.missing}": not found\n` });
    // an OCI index: children are matched by platform
    const noMatch = await soc(["index", "ls", "--ref", D.ociIndex, "-p", "linux/arm64"]);
    expect(noMatch).toMatchObject({ code: 1, stderr: "soci: image manifest for platform linux/arm64: not found\n" });
  });

  it("info prints the stored index re-indented (json.Indent, 2 spaces) plus a newline", async () => {
    const r = await soc(["index", "info", D.indexV1]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe(JSON.stringify(JSON.parse(INDEX_V1.toString()), null, 2) + "\n");
  });

  it("info rejects a ztoc digest with the reference's message", async () => {
    const r = await soc(["index", "info", D.ztoc]);
    expect(r).toMatchObject({
      code: 1,
      stdout: "",
      stderr:
        'soci: the provided digest is of ztoc not SOCI index. Use "soci ztoc info" command to get detailed info of ztoc\n',
    });
    expect((await soc(["index", "info", D.missing])).stderr).toBe(
      `soci: couldn't retrieve artifact for ${D.missing}, not found\n`,
    );
  });

  it("rm removes index entries only; ztocs and blobs stay", async () => {
    const r2 = newRoot();
    await populate(
      r2,
      [ZTOC, LAYER, INDEX_V1, INDEX_V2, OCI_INDEX, MANIFEST, CONFIG],
      [ztocEntry, indexV1Entry, indexV2Entry],
    );
    const s = (args: string[]) => cli(["--root", r2, "--content-store", "soci", ...args]);
    expect(await s(["index", "rm", D.ztoc])).toMatchObject({
      code: 1,
      stderr: `soci: the digest ${D.ztoc} does not correspond to an index\n`,
    });
    expect(await s(["index", "rm", D.missing])).toMatchObject({
      code: 1,
      stderr: `soci: the index of the digest ${D.missing} doesn't exist\n`,
    });
    expect(await s(["index", "rm", "--ref", D.manifest, D.indexV1])).toMatchObject({
      code: 1,
      stderr: "soci: please provide either index digests or image ref, but not both\n",
    });
    expect(await s(["index", "rm", D.indexV1])).toMatchObject({ code: 0, stdout: "", stderr: "" });
    expect((await s(["index", "ls", "-q"])).stdout).toBe(`${D.indexV2}\n`);
    expect((await s(["ztoc", "ls", "-q"])).stdout).toBe(`${D.ztoc}\n`);
    // --ref: the index entries whose image digest is the image's target
    expect(await s(["index", "remove", "--ref", D.ociIndex])).toMatchObject({ code: 0, stderr: "" });
    expect((await s(["index", "ls", "-q"])).stdout).toBe("");
    expect((await s(["ztoc", "ls", "-q"])).stdout).toBe(`${D.ztoc}\n`);
    const cs = await ContentStore.open(join(r2, "content"));
    for (const d of [D.indexV1, D.indexV2, D.ztoc]) expect(await cs.exists(d)).toBe(true);
  });
});

// ------------------------------------------------------------------------------------------------
// prefetch

describe("soci prefetch", () => {
  it("list: table with total spans, N/A when the artifact is unreadable", async () => {
    const r2 = newRoot();
    const broken = { ...prefetchEntry, digest: D.missing, createdAt: ZERO_TIMESTAMP };
    await populate(r2, [PREFETCH], [prefetchEntry, broken]);
    const r = await cli(["--root", r2, "--content-store", "soci", "prefetch", "list"]);
    expect(r.stderr).toBe("");
    const created = /(\S+ ago)\s*$/.exec(r.stdout.split("\n")[2]!)?.[1] ?? "";
    expect(created).toMatch(/^\d+h\d+m\d+s ago$/);
    expect(r.stdout).toBe(
      formatSociTable([
        ["DIGEST", "LAYER DIGEST", "SPANS", "CREATED"],
        [D.missing, D.layer, "N/A", "n/a"],
        [D.prefetch, D.layer, "3", created],
      ]),
    );
  });

  it("list --json: Go json.Encoder with two-space indent; RFC 3339 times in the local zone", async () => {
    const utc = await soc(["prefetch", "list", "--json"], { TZ: "UTC" });
    expect(utc.stdout).toBe(
      "[\n  {\n" +
        `    "Digest": "${D.prefetch}",\n` +
        `    "LayerDigest": "${D.layer}",\n` +
        '    "TotalSpans": 3,\n' +
        '    "CreatedAt": "2024-01-02T03:04:05.5Z"\n' +
        "  }\n]\n",
    );
    const la = await socChild(["prefetch", "ls", "--json"], { TZ: "America/Los_Angeles" }); // TZ reaches the child
    expect(la.stdout).toContain('"CreatedAt": "2024-01-01T19:04:05.5-08:00"');
    const empty = newRoot();
    await populate(empty, [], [ztocEntry]);
    expect((await cli(["--root", empty, "--content-store", "soci", "prefetch", "list", "--json"])).stdout).toBe(
      "null\n",
    );
  });

  it("info: summary, spans and optional raw JSON", async () => {
    const text =
      `Digest:        ${D.prefetch}\n` +
      "Version:       1.0\n" +
      "Span Ranges:   1\n" +
      `Layer Digest:  ${D.layer}\n` +
      "Size:          66 bytes\n" +
      "Created:       2024-01-02 03:04:05\n" +
      "\n" +
      "Prefetch Spans:\n" +
      "  [0] StartSpan: 0, EndSpan: 2 (covers 3 spans)\n" +
      "\n" +
      "Total spans to prefetch: 3\n";
    const r = await soc(["prefetch", "info", D.prefetch], { TZ: "UTC" });
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe(text);
    const j = await soc(["prefetch", "info", "--json", D.prefetch], { TZ: "UTC" });
    expect(j.stdout).toBe(text + "\nRaw JSON:\n" + JSON.stringify(JSON.parse(PREFETCH.toString()), null, 2) + "\n");
  });

  it("info: priorities, and refuses other artifact types", async () => {
    const r2 = newRoot();
    const withPriority = Buffer.from(
      '{"version":"1.0","prefetch_spans":[{"start_span":1,"end_span":1},{"start_span":4,"end_span":7,"priority":2}]}',
    );
    const cs = await ContentStore.open(join(r2, "content"));
    const { digest, size } = await cs.put(withPriority);
    await populate(r2, [], [{ ...prefetchEntry, digest, size }, ztocEntry]);
    const r = await cli(["--root", r2, "--content-store", "soci", "prefetch", "info", digest], { TZ: "UTC" });
    expect(r.stdout).toContain(
      "Prefetch Spans:\n" +
        "  [0] StartSpan: 1, EndSpan: 1 (covers 1 spans)\n" +
        "  [1] StartSpan: 4, EndSpan: 7 (covers 4 spans)\n" +
        "      Priority: 2\n" +
        "\nTotal spans to prefetch: 5\n",
    );
    expect(r.stdout).toContain("Span Ranges:   2\n");
    const z = await cli(["--root", r2, "--content-store", "soci", "prefetch", "info", D.ztoc]);
    expect(z).toMatchObject({
      code: 1,
      stderr: "soci: the provided digest is not a prefetch artifact (type: soci_layer)\n",
    });
  });
});

// ------------------------------------------------------------------------------------------------
// rebuild-db

describe("soci rebuild-db", () => {
  it("drops entries without content and rediscovers v1 indexes (never v2)", async () => {
    const r2 = newRoot();
    const stale: ArtifactEntryInput = { ...ztocEntry, digest: D.missing };
    await populate(r2, [ZTOC, LAYER, INDEX_V1, INDEX_V2, MANIFEST, CONFIG, Buffer.from("{}")], [stale]);
    const r = await cli(["--root", r2, "--content-store", "soci", "rebuild-db"]);
    expect(r).toMatchObject({ code: 0, stdout: "", stderr: "" });
    const db = ArtifactsDb.open(join(r2, "artifacts.db"));
    const all = db.all();
    db.close();
    expect(all.map((e) => e.digest).sort()).toEqual([D.ztoc, D.indexV1].sort());
    const ix = all.find((e) => e.digest === D.indexV1)!;
    expect(ix).toMatchObject({
      type: "soci_index",
      size: INDEX_V1.length,
      ociDigest: D.manifest,
      imageDigest: D.manifest,
      location: D.manifest,
      platform: "linux/amd64",
      mediaType: OCI_MANIFEST,
      artifactType: V1,
    });
    expect(Date.now() - Date.parse(ix.createdAt)).toBeLessThan(60_000);
    expect(all.find((e) => e.digest === D.ztoc)).toMatchObject({
      type: "soci_layer",
      size: ZTOC.length,
      ociDigest: D.layer,
      location: D.layer,
      mediaType: "application/octet-stream",
      spanSize: 4096,
    });
    // and the rediscovered ztoc is usable
    const info = await cli(["--root", r2, "--content-store", "soci", "ztoc", "info", D.ztoc]);
    expect(info.stdout).toBe(readFileSync(join(V, "za4096.info.json"), "utf8"));
  });

  it("without the subject manifest the platform stays empty; prefetch descriptors become soci_layer entries", async () => {
    const r2 = newRoot();
    await populate(r2, [INDEX_V1_PREFETCH, PREFETCH, ZTOC], []);
    expect(await cli(["--root", r2, "--content-store", "soci", "rebuild-db"])).toMatchObject({ code: 0, stderr: "" });
    const db = ArtifactsDb.open(join(r2, "artifacts.db"));
    const byDigest = new Map(db.all().map((e) => [e.digest, e]));
    db.close();
    expect(byDigest.get(D.indexV1Prefetch)).toMatchObject({ type: "soci_index", platform: "", artifactType: V1 });
    expect(byDigest.get(D.prefetch)).toMatchObject({
      type: "soci_layer",
      mediaType: "application/octet-stream",
      spanSize: 0,
      ociDigest: D.layer,
      size: 66,
    });
  });

  it("a span size annotation that is not an integer aborts", async () => {
    const r2 = newRoot();
    const bad = Buffer.from(
      INDEX_V1.toString().replace('"com.amazon.soci.span-size":"4096"', '"com.amazon.soci.span-size":"4k"'),
    );
    await populate(r2, [bad], []);
    const r = await cli(["--root", r2, "--content-store", "soci", "rebuild-db"]);
    expect(r).toMatchObject({
      code: 1,
      stderr: `soci: failed to add new artifacts to db: failed to parse span size from annotations for layer  ${D.ztoc}: strconv.ParseInt: parsing "4k": invalid syntax\n`,
    });
  });
});
