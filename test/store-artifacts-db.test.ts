import { afterEach, beforeEach, describe, expect, it } from "vitest";
import Database from "better-sqlite3";
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ArtifactsDb, artifactsDbPath, SCHEMA_VERSION, type ArtifactEntry } from "../src/store/artifacts-db.js";
import { ArtifactNotFoundError, NotAnIndexError } from "../src/store/errors.js";
import {
  formatRfc3339Nano,
  isZeroTimestamp,
  normalizeTimestamp,
  nowTimestamp,
  nsToTimestamp,
  timestampToDate,
  timestampToNs,
  ZERO_TIMESTAMP,
} from "../src/store/timestamp.js";

const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const V1 = "application/vnd.amazon.soci.index.v1+json";
const V2 = "application/vnd.amazon.soci.index.v2+json";
const PREFETCH = "application/vnd.amazon.soci.prefetch.v1+json";
const d = (c: string) => "sha256:" + c.repeat(64).slice(0, 64);

let dir: string;
let db: ArtifactsDb;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "store-db-"));
  db = ArtifactsDb.open(artifactsDbPath(dir));
});
afterEach(async () => {
  db.close();
  await rm(dir, { recursive: true, force: true });
});

// The three record kinds §4.3 lists, with the fields each build step writes.
function ztocEntry(digest: string, layer: string, spanSize: number, createdAt: string) {
  return {
    digest,
    size: 200520,
    ociDigest: layer,
    type: "soci_layer" as const,
    location: layer,
    mediaType: "application/octet-stream",
    createdAt,
    spanSize,
  };
}
function prefetchEntry(digest: string, layer: string, createdAt: string) {
  return { digest, size: 61, ociDigest: layer, type: "soci_prefetch" as const, mediaType: PREFETCH, createdAt };
}
function indexEntry(
  digest: string,
  manifest: string,
  image: string,
  artifactType: string,
  createdAt: string,
  platform = "linux/amd64",
) {
  return {
    digest,
    size: 1024,
    ociDigest: manifest,
    imageDigest: image,
    platform,
    type: "soci_index" as const,
    location: manifest,
    mediaType: OCI_MANIFEST,
    artifactType,
    createdAt,
  };
}

describe("artifactsDbPath", () => {
  it("matches ArtifactsDbPath of the reference", () => {
    expect(artifactsDbPath("")).toBe("/var/lib/soci-snapshotter-grpc/artifacts.db");
    expect(artifactsDbPath("/tmp")).toBe("/tmp/artifacts.db");
    expect(artifactsDbPath("/tmp/")).toBe("/tmp/artifacts.db");
  });
});

describe("ArtifactsDb records", () => {
  it("every record kind round trips with all fields", () => {
    const ztoc = ztocEntry(d("a"), d("1"), 4194304, "2024-05-06T07:08:09.123456789Z");
    const prefetch = prefetchEntry(d("b"), d("1"), "2024-05-06T07:08:10Z");
    const index = indexEntry(d("c"), d("2"), d("3"), V1, "2024-05-06T07:08:11.5+02:00", "linux/arm64/v8");
    db.put(ztoc);
    db.put(prefetch);
    db.put(index);
    expect(db.get(ztoc.digest)).toEqual<ArtifactEntry>({ ...ztoc, imageDigest: "", platform: "", artifactType: "" });
    expect(db.get(prefetch.digest)).toEqual<ArtifactEntry>({
      ...prefetch,
      location: "",
      imageDigest: "",
      platform: "",
      artifactType: "",
      spanSize: 0,
      createdAt: "2024-05-06T07:08:10.000000000Z",
    });
    expect(db.get(index.digest)).toEqual<ArtifactEntry>({
      ...index,
      spanSize: 0,
      createdAt: "2024-05-06T05:08:11.500000000Z",
    });
    // the +02:00 index time is the oldest once in UTC
    expect(db.all().map((e) => e.digest)).toEqual([prefetch.digest, ztoc.digest, index.digest]);
  });

  it("put overwrites an existing digest; createdAt defaults to now; sizes up to 2^53 survive", () => {
    const before = timestampToNs(nowTimestamp());
    const e = db.put({ digest: d("a"), size: Number.MAX_SAFE_INTEGER, type: "soci_layer", spanSize: 1 << 22 });
    expect(timestampToNs(e.createdAt)).toBeGreaterThan(before);
    expect(db.get(d("a")).size).toBe(Number.MAX_SAFE_INTEGER);
    db.put({ digest: d("a"), size: 5, type: "soci_layer", createdAt: new Date(0) });
    expect(db.get(d("a"))).toMatchObject({ size: 5, spanSize: 0, createdAt: "1970-01-01T00:00:00.000000000Z" });
    expect(db.all()).toHaveLength(1);
    expect(() => db.put({ digest: d("b"), size: -1, type: "soci_layer" })).toThrow(RangeError);
    expect(() => db.put({ digest: d("b"), size: 1, type: "bogus" as "soci_layer" })).toThrow();
  });

  it("get of an unknown digest is a typed NotFound; find returns undefined", () => {
    const err = (() => {
      try {
        db.get(d("f"));
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(ArtifactNotFoundError);
    expect((err as ArtifactNotFoundError).code).toBe("NotFound");
    expect((err as Error).message).toBe(`couldn't retrieve artifact for ${d("f")}, not found`);
    expect(db.find(d("f"))).toBeUndefined();
  });

  it("listByType is newest first", () => {
    db.put(ztocEntry(d("a"), d("1"), 4194304, "2024-01-01T00:00:00Z"));
    db.put(ztocEntry(d("b"), d("2"), 4194304, "2024-03-01T00:00:00Z"));
    db.put(ztocEntry(d("c"), d("3"), 4194304, "2024-02-01T00:00:00.000000001Z"));
    db.put(prefetchEntry(d("d"), d("1"), "2025-01-01T00:00:00Z"));
    db.put(indexEntry(d("e"), d("4"), d("4"), V1, "2023-01-01T00:00:00Z"));
    expect(db.listByType("soci_layer").map((e) => e.digest)).toEqual([d("b"), d("c"), d("a")]);
    expect(db.listByType("soci_prefetch").map((e) => e.digest)).toEqual([d("d")]);
    expect(db.listByType("soci_index").map((e) => e.digest)).toEqual([d("e")]);
  });

  it("entries written in quick succession with default times keep their order", () => {
    for (const c of "abcdefgh") db.put({ digest: d(c), size: 1, type: "soci_layer" });
    expect(db.listByType("soci_layer").map((e) => e.digest)).toEqual([..."hgfedcba"].map(d));
  });

  it("findZtoc picks the entry for this layer AND span size", () => {
    db.put(ztocEntry(d("a"), d("1"), 4194304, "2024-01-01T00:00:00Z"));
    db.put(ztocEntry(d("b"), d("1"), 65536, "2024-01-02T00:00:00Z"));
    db.put(ztocEntry(d("c"), d("2"), 4194304, "2024-01-03T00:00:00Z"));
    db.put(prefetchEntry(d("d"), d("1"), "2024-01-04T00:00:00Z"));
    db.put(indexEntry(d("e"), d("1"), d("1"), V1, "2024-01-05T00:00:00Z"));
    expect(db.findZtoc(d("1"), 4194304)?.digest).toBe(d("a"));
    expect(db.findZtoc(d("1"), 65536)?.digest).toBe(d("b"));
    expect(db.findZtoc(d("2"), 4194304)?.digest).toBe(d("c"));
    expect(db.findZtoc(d("2"), 65536)).toBeUndefined();
    expect(db.findZtoc(d("9"), 4194304)).toBeUndefined();
    db.put(ztocEntry(d("f"), d("1"), 4194304, "2024-06-01T00:00:00Z"));
    expect(db.findZtoc(d("1"), 4194304)?.digest).toBe(d("f"));
  });

  it("indexesForManifest: newest first, optionally one version (push picks the newest v1)", () => {
    db.put(indexEntry(d("a"), d("1"), d("1"), V1, "2024-01-01T00:00:00Z"));
    db.put(indexEntry(d("b"), d("1"), d("1"), V1, "2024-01-03T00:00:00Z"));
    db.put(indexEntry(d("c"), d("1"), d("9"), V2, "2024-01-04T00:00:00Z"));
    db.put(indexEntry(d("e"), d("2"), d("2"), V1, "2024-01-05T00:00:00Z"));
    db.put(ztocEntry(d("f"), d("1"), 4194304, "2024-01-06T00:00:00Z"));
    expect(db.indexesForManifest(d("1")).map((e) => e.digest)).toEqual([d("c"), d("b"), d("a")]);
    expect(db.indexesForManifest(d("1"), V1)[0]?.digest).toBe(d("b"));
    expect(db.indexesForManifest(d("1"), V2).map((e) => e.digest)).toEqual([d("c")]);
    expect(db.indexesForManifest(d("7"))).toEqual([]);
    expect(db.indexesForImage(d("1")).map((e) => e.digest)).toEqual([d("b"), d("a")]);
    expect(db.indexesForImage(d("9")).map((e) => e.digest)).toEqual([d("c")]);
  });

  it("removeIndex removes only index entries and leaves ztoc rows alone", () => {
    db.put(indexEntry(d("a"), d("1"), d("1"), V1, "2024-01-01T00:00:00Z"));
    db.put(ztocEntry(d("b"), d("2"), 4194304, "2024-01-01T00:00:00Z"));
    db.put(prefetchEntry(d("c"), d("2"), "2024-01-01T00:00:00Z"));
    expect(() => db.removeIndex(d("b"))).toThrow(NotAnIndexError);
    expect(() => db.removeIndex(d("b"))).toThrow(`the digest ${d("b")} does not correspond to an index`);
    expect(() => db.removeIndex(d("c"))).toThrow(NotAnIndexError);
    expect(() => db.removeIndex(d("9"))).toThrow(ArtifactNotFoundError);
    expect(() => db.removeIndex(d("9"))).toThrow(`the index of the digest ${d("9")} doesn't exist`);
    db.removeIndex(d("a"));
    expect(db.find(d("a"))).toBeUndefined();
    expect(
      db
        .all()
        .map((e) => e.digest)
        .sort(),
    ).toEqual([d("b"), d("c")]);
  });

  it("removeIndexesForImage, remove and removeMany", () => {
    db.put(indexEntry(d("a"), d("1"), d("5"), V1, "2024-01-01T00:00:00Z"));
    db.put(indexEntry(d("b"), d("2"), d("5"), V2, "2024-01-02T00:00:00Z"));
    db.put(indexEntry(d("c"), d("3"), d("6"), V1, "2024-01-03T00:00:00Z"));
    db.put({ ...ztocEntry(d("e"), d("2"), 1, "2024-01-01T00:00:00Z"), imageDigest: d("5") });
    expect(db.removeIndexesForImage(d("5")).map((e) => e.digest)).toEqual([d("b"), d("a")]);
    expect(db.all().map((e) => e.digest)).toEqual([d("c"), d("e")]);
    expect(db.remove(d("e"))).toBe(true);
    expect(db.remove(d("e"))).toBe(false);
    db.put(ztocEntry(d("f"), d("2"), 1, "2024-01-01T00:00:00Z"));
    expect(db.removeMany([d("c"), d("f"), d("9")])).toBe(2);
    expect(db.all()).toEqual([]);
  });

  it("updateIndexDigests rebinds a v2 index after convert", () => {
    db.put(indexEntry(d("a"), d("1"), d("1"), V2, "2024-01-01T00:00:00Z"));
    const updated = db.updateIndexDigests(d("a"), { ociDigest: d("7"), imageDigest: d("8") });
    expect(updated).toEqual({
      ...indexEntry(d("a"), d("1"), d("8"), V2, "2024-01-01T00:00:00.000000000Z"),
      ociDigest: d("7"),
      spanSize: 0,
    });
    expect(db.get(d("a"))).toEqual(updated);
    expect(db.indexesForManifest(d("7")).map((e) => e.digest)).toEqual([d("a")]);
    expect(db.indexesForImage(d("8")).map((e) => e.digest)).toEqual([d("a")]);
    expect(() => db.updateIndexDigests(d("9"), { ociDigest: d("7"), imageDigest: d("8") })).toThrow(
      ArtifactNotFoundError,
    );
  });
});

describe("ArtifactsDb file", () => {
  it("is created with mode 0600 (WAL files too), persists across reopen and carries a schema version", async () => {
    const path = artifactsDbPath(dir);
    db.put(ztocEntry(d("a"), d("1"), 4194304, "2024-01-01T00:00:00Z"));
    db.putMany([
      indexEntry(d("b"), d("2"), d("2"), V1, "2024-01-02T00:00:00Z"),
      prefetchEntry(d("c"), d("1"), "2024-01-03T00:00:00Z"),
    ]);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    for (const f of await readdir(dir))
      expect({ f, mode: (await stat(join(dir, f))).mode & 0o777 }).toEqual({ f, mode: 0o600 });
    const snapshot = db.all();
    db.close();
    db.close(); // idempotent

    db = ArtifactsDb.open(path);
    expect(db.all()).toEqual(snapshot);
    expect(db.findZtoc(d("1"), 4194304)?.digest).toBe(d("a"));

    const raw = new Database(path, { readonly: true });
    expect(raw.pragma("journal_mode", { simple: true })).toBe("wal");
    expect(raw.prepare("SELECT version FROM schema_version").all()).toEqual([{ version: SCHEMA_VERSION }]);
    raw.close();
  });

  it("creates a missing parent directory and refuses a newer schema", async () => {
    const nested = join(dir, "x", "y", "artifacts.db");
    const other = ArtifactsDb.open(nested);
    other.close();
    const raw = new Database(nested);
    raw.prepare("UPDATE schema_version SET version = ?").run(SCHEMA_VERSION + 1);
    raw.close();
    expect(() => ArtifactsDb.open(nested)).toThrow(/newer than this program supports/);
  });

  it("two handles on one file see each other's writes", () => {
    const second = ArtifactsDb.open(artifactsDbPath(dir));
    try {
      second.put(ztocEntry(d("a"), d("1"), 4194304, "2024-01-01T00:00:00Z"));
      expect(db.get(d("a")).spanSize).toBe(4194304);
    } finally {
      second.close();
    }
  });
});

describe("timestamps", () => {
  it("normalizes RFC 3339 text, Dates and ns to fixed-width UTC", () => {
    expect(normalizeTimestamp("2023-11-14T22:13:20.000000005Z")).toBe("2023-11-14T22:13:20.000000005Z");
    expect(normalizeTimestamp(1700000000n * 1_000_000_000n + 5n)).toBe("2023-11-14T22:13:20.000000005Z");
    expect(normalizeTimestamp("2023-11-14T23:13:20.1+01:00")).toBe("2023-11-14T22:13:20.100000000Z");
    expect(normalizeTimestamp(new Date(1700000000123))).toBe("2023-11-14T22:13:20.123000000Z");
    expect(normalizeTimestamp("0001-01-01T00:00:00Z")).toBe(ZERO_TIMESTAMP);
    expect(normalizeTimestamp("0099-03-01T00:00:00Z")).toBe("0099-03-01T00:00:00.000000000Z");
    expect(() => normalizeTimestamp("2023-02-30T00:00:00Z")).toThrow(RangeError);
    expect(() => normalizeTimestamp("yesterday")).toThrow(RangeError);
    expect(() => nsToTimestamp(-62135596800n * 1_000_000_000n - 1n)).toThrow(RangeError);
  });

  it("Go-style RFC3339Nano, zero time, Date conversion", () => {
    expect(formatRfc3339Nano("2023-11-14T22:13:20.100000000Z")).toBe("2023-11-14T22:13:20.1Z");
    expect(formatRfc3339Nano("2023-11-14T22:13:20.000000000Z")).toBe("2023-11-14T22:13:20Z");
    expect(formatRfc3339Nano(ZERO_TIMESTAMP)).toBe("0001-01-01T00:00:00Z");
    expect(isZeroTimestamp(ZERO_TIMESTAMP)).toBe(true);
    expect(isZeroTimestamp(nowTimestamp())).toBe(false);
    expect(timestampToDate("2023-11-14T22:13:20.123999999Z").getTime()).toBe(1700000000123);
    expect(timestampToDate("1969-12-31T23:59:59.999500000Z").getTime()).toBe(-1);
    const a = nowTimestamp();
    const b = nowTimestamp();
    expect(b > a).toBe(true);
    expect(Math.abs(timestampToDate(b).getTime() - Date.now())).toBeLessThan(5000);
  });
});
