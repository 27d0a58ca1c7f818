// The snapshot metadata store against a real SQLite file: containerd's storage semantics
// (docs/snapshotter.md §1.6) and the filter language List uses.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { SociError } from "../src/errors/errors.js";
import { parseFilter, parseFilters, unquote } from "../src/snapshotter/filters.js";
import { SnapshotStore } from "../src/snapshotter/snapshot-store.js";

let dir: string;
let store: SnapshotStore;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "snap-store-"));
  store = SnapshotStore.open(join(dir, "metadata.db"));
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The error class and message of a failing call. */
function failure(fn: () => unknown): { cls: string; message: string } {
  try {
    fn();
  } catch (err) {
    if (err instanceof SociError) return { cls: err.code, message: err.message };
    throw err;
  }
  throw new Error("expected a failure");
}

/** base ← layer2 (committed), plus an active child of layer2. */
function chain() {
  store.createSnapshot("active", "a1", "", { x: "1" });
  store.commitActive("a1", "base", { size: 10, inodes: 2 }, { l: "base" });
  store.createSnapshot("active", "a2", "base", undefined);
  store.commitActive("a2", "layer2", { size: 20, inodes: 3 }, {});
  return store.createSnapshot("active", "ctr", "layer2", {});
}

describe("SnapshotStore", () => {
  it("hands out increasing ids that survive commit and are never reused", () => {
    const a = store.createSnapshot("active", "a", "", {});
    const b = store.createSnapshot("view", "b", "", {});
    expect([a.id, b.id]).toEqual(["1", "2"]);
    expect(store.commitActive("a", "A", { size: 0, inodes: 0 }, {})).toBe("1");
    store.remove("b");
    expect(store.createSnapshot("active", "c", "", {}).id).toBe("3");
    // the sequence is persistent
    store.close();
    store = SnapshotStore.open(join(dir, "metadata.db"));
    expect(store.createSnapshot("active", "d", "", {}).id).toBe("4");
    expect(store.getInfo("A").id).toBe("1");
  });

  it("reports the parent chain nearest first", () => {
    const s = chain();
    expect(s).toEqual({ id: "3", kind: "active", parentIds: ["2", "1"] });
    expect(store.getSnapshot("ctr").parentIds).toEqual(["2", "1"]);
    expect(store.createSnapshot("view", "v", "base", {}).parentIds).toEqual(["1"]);
  });

  it("creates only active and view snapshots, on committed parents, under new keys", () => {
    chain();
    expect(failure(() => store.createSnapshot("committed", "x", "", {}))).toEqual({
      cls: "InvalidArgument",
      message:
        "snapshot type committed invalid; only snapshots of type Active or View can be created: invalid argument",
    });
    expect(failure(() => store.createSnapshot("active", "x", "nope", {}))).toEqual({
      cls: "NotFound",
      message: 'missing parent "nope" bucket: not found',
    });
    expect(failure(() => store.createSnapshot("active", "x", "ctr", {})).cls).toBe("InvalidArgument");
    expect(failure(() => store.createSnapshot("view", "ctr", "base", {}))).toEqual({
      cls: "AlreadyExists",
      message: "snapshot ctr: already exists",
    });
    expect(failure(() => store.createSnapshot("active", "base", "", {})).cls).toBe("AlreadyExists");
    expect(failure(() => store.createSnapshot("active", "", "", {})).cls).toBe("InvalidArgument");
  });

  it("rolls the record back when the in-transaction step fails", () => {
    expect(() =>
      store.createSnapshot("active", "k", "", {}, () => {
        throw new Error("rename failed");
      }),
    ).toThrow("rename failed");
    expect(failure(() => store.getInfo("k")).cls).toBe("NotFound");
    expect(store.createSnapshot("active", "k", "", {}).id).toBe("1");
  });

  it("commits: labels replaced, usage stored, key gone, timestamps renewed", async () => {
    store.createSnapshot("active", "k", "", { old: "1" });
    const before = store.getInfo("k").info;
    await new Promise((r) => setTimeout(r, 5));
    store.commitActive("k", "name", { size: 4096, inodes: 7 }, { new: "2", empty: "" });
    const { info, usage } = store.getInfo("name");
    expect(info).toMatchObject({ name: "name", parent: "", kind: "committed", labels: { new: "2" } });
    expect(usage).toEqual({ size: 4096, inodes: 7 });
    const t = (x: { seconds: number; nanos: number }) => x.seconds * 1e9 + x.nanos;
    expect(t(info.created)).toBeGreaterThan(t(before.created));
    expect(info.updated).toEqual(info.created);
    expect(failure(() => store.getInfo("k")).cls).toBe("NotFound");
  });

  it("refuses commits of the wrong kind or onto an existing name", () => {
    chain();
    store.createSnapshot("view", "v", "base", {});
    expect(failure(() => store.commitActive("v", "n", { size: 0, inodes: 0 }, {}))).toEqual({
      cls: "FailedPrecondition",
      message: 'snapshot "v" is not active: failed precondition',
    });
    expect(failure(() => store.commitActive("ctr", "base", { size: 0, inodes: 0 }, {}))).toEqual({
      cls: "AlreadyExists",
      message: "committed snapshot base: already exists",
    });
    expect(failure(() => store.commitActive("missing", "n", { size: 0, inodes: 0 }, {})).cls).toBe("NotFound");
  });

  it("removes only leaves", () => {
    chain();
    expect(failure(() => store.remove("layer2"))).toEqual({
      cls: "FailedPrecondition",
      message: "cannot remove snapshot with child: failed precondition",
    });
    expect(store.remove("ctr")).toEqual({ id: "3", kind: "active" });
    expect(store.remove("layer2")).toEqual({ id: "2", kind: "committed" });
    expect(store.remove("base").id).toBe("1");
    expect(failure(() => store.remove("base"))).toEqual({ cls: "NotFound", message: "snapshot base: not found" });
    expect(store.idMap().size).toBe(0);
  });

  it("gives mounts only for active and view snapshots", () => {
    chain();
    expect(failure(() => store.getSnapshot("base"))).toEqual({
      cls: "FailedPrecondition",
      message: "requested snapshot base not active or view: failed precondition",
    });
    expect(failure(() => store.getSnapshot("none")).cls).toBe("NotFound");
  });

  it("updates labels by path", () => {
    store.createSnapshot("active", "k", "", { a: "1", b: "2" });
    expect(store.updateInfo("k", { a: "x", c: "3" }, ["labels.a"]).labels).toEqual({ a: "x", b: "2" });
    // a path whose label is absent from the request deletes it
    expect(store.updateInfo("k", {}, ["labels.b"]).labels).toEqual({ a: "x" });
    expect(store.updateInfo("k", { z: "9" }, ["labels"]).labels).toEqual({ z: "9" });
    expect(store.updateInfo("k", { y: "8" }, []).labels).toEqual({ y: "8" });
    expect(failure(() => store.updateInfo("k", {}, ["parent"]))).toEqual({
      cls: "InvalidArgument",
      message: 'cannot update "parent" field on snapshot "k": invalid argument',
    });
    expect(failure(() => store.updateInfo("none", {}, [])).cls).toBe("NotFound");
    expect(store.getInfo("k").info.labels).toEqual({ y: "8" });
  });

  it("walks with containerd filters", () => {
    chain();
    store.updateInfo("layer2", { "containerd.io/snapshot.ref": "sha256:abc", "a.b": "c" }, []);
    const names = (...f: string[]) => store.walk(f).map((i) => i.name);
    expect(names()).toEqual(["base", "ctr", "layer2"]);
    expect(names('labels."containerd.io/snapshot.ref"==sha256:abc,parent=="base"')).toEqual(["layer2"]);
    expect(names('labels."containerd.io/snapshot.ref"==sha256:abc,parent==""')).toEqual([]);
    expect(names("kind==committed")).toEqual(["base", "layer2"]);
    expect(names("kind==active", "name==base")).toEqual(["base", "ctr"]);
    expect(names("labels.a.b==c")).toEqual(["layer2"]);
    expect(names("labels.l")).toEqual(["base"]);
    expect(names("labels.l!=base")).toEqual(["ctr", "layer2"]);
    expect(names("name~=^l.*2$")).toEqual(["layer2"]);
    expect(names("name~=|e$|")).toEqual(["base"]);
    expect(names("parent==layer2")).toEqual(["ctr"]);
    // RE2-style escaped punctuation and a leading flag group
    expect(names('labels."containerd.io/snapshot.ref"~=^sha256\\:a')).toEqual(["layer2"]);
    expect(names("name~=(?i)^BASE$")).toEqual(["base"]);
    expect(failure(() => store.walk(["name=="])).cls).toBe("InvalidArgument");
    expect(failure(() => store.walk(["name~=("]))).toMatchObject({ cls: "InvalidArgument" });
  });
});

describe("filters", () => {
  const obj = (fields: Record<string, string>) => (path: string[]) => {
    const k = path.join(".");
    return k in fields ? { value: fields[k]!, present: true } : { value: "", present: false };
  };

  it("ORs filter strings and ANDs selectors", () => {
    const f = parseFilters(["name==a,labels.x", "name==b"]);
    expect(f.match(obj({ name: "a", "labels.x": "" }))).toBe(true);
    expect(f.match(obj({ name: "a" }))).toBe(false);
    expect(f.match(obj({ name: "b" }))).toBe(true);
    expect(parseFilters([]).match(obj({}))).toBe(true);
    expect(parseFilter("").match(obj({}))).toBe(true);
  });

  it("reads quoted fields and values, spaces around tokens", () => {
    const f = parseFilter(' labels."with space" == "a,b" , name != x ');
    expect(f.match(obj({ "labels.with space": "a,b", name: "y" }))).toBe(true);
    expect(f.match(obj({ "labels.with space": "a,b", name: "x" }))).toBe(false);
  });

  it('unquotes Go escapes with ", / and | delimiters', () => {
    expect(unquote('"a\\"b\\n\\x41\\u00e9\\101"')).toBe('a"b\nA\u00e9A');
    expect(unquote("/a\\/b/")).toBe("a/b");
    expect(unquote("|x|")).toBe("x");
    expect(() => unquote('"a\\/b"')).toThrow("quote syntax error");
  });

  it("names the position of a syntax error", () => {
    expect(() => parseFilter("name==a,")).toThrow("filters: parse error: [name==a,]: expected field or quoted");
    expect(() => parseFilter("name>=a")).toThrow(/expected an operator/);
    expect(() => parseFilter("name=a")).toThrow('unsupported operator "="');
    expect(() => parseFilter('labels."open')).toThrow(/expected field or quoted/);
  });
});
