// The snapshot metadata store: containerd's snapshots/storage semantics (docs/snapshotter.md §1.6) kept
// in SQLite. One row per snapshot keyed by its key (committed snapshots: their name); ids come from
// a sequence that never hands out a number twice, and a snapshot keeps its id when committed, so
// `snapshots/<id>` stays its directory for life.
import Database from "better-sqlite3";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { alreadyExists, failedPrecondition, invalidArgument, notFound } from "./errors.js";
import { FilterSyntaxError, parseFilters, type FieldLookup, type Filter } from "./filters.js";

export type SnapshotKind = "view" | "active" | "committed";

/** google.protobuf.Timestamp */
export interface Timestamp {
  seconds: number;
  nanos: number;
}

export type Labels = Record<string, string>;

/** What Stat/List/Update report (containerd snapshots.Info). */
export interface SnapshotInfo {
  name: string;
  /** the parent's name, "" for none */
  parent: string;
  kind: SnapshotKind;
  created: Timestamp;
  updated: Timestamp;
  labels: Labels;
}

export interface Usage {
  /** bytes on disk */
  size: number;
  inodes: number;
}

/** An active or view snapshot as the mount logic needs it. */
export interface SnapshotRef {
  id: string;
  kind: SnapshotKind;
  /** ids of the parent, grandparent, … (nearest first) */
  parentIds: string[];
}

const KIND_CODE: Record<SnapshotKind, number> = { view: 1, active: 2, committed: 3 };
const KIND_OF = (code: number): SnapshotKind => (code === 1 ? "view" : code === 2 ? "active" : "committed");

interface Row {
  key: string;
  id: number;
  kind: number;
  parent: string | null;
  created_s: number;
  created_ns: number;
  updated_s: number;
  updated_ns: number;
  size: number;
  inodes: number;
  labels: string;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS snapshots (
  key        TEXT PRIMARY KEY,
  id         INTEGER NOT NULL UNIQUE,
  kind       INTEGER NOT NULL,
  parent     TEXT REFERENCES snapshots(key),
  created_s  INTEGER NOT NULL,
  created_ns INTEGER NOT NULL,
  updated_s  INTEGER NOT NULL,
  updated_ns INTEGER NOT NULL,
  size       INTEGER NOT NULL DEFAULT 0,
  inodes     INTEGER NOT NULL DEFAULT 0,
  labels     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent);
CREATE TABLE IF NOT EXISTS sequence (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO sequence (name, value) VALUES ('snapshot_id', 0);
`;

// Wall-clock time with nanosecond resolution: one Date.now() anchor plus the monotonic clock.
const ANCHOR_NS = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();

/** The current UTC time as a protobuf Timestamp. */
export function nowTimestamp(): Timestamp {
  const ns = ANCHOR_NS + process.hrtime.bigint();
  return { seconds: Number(ns / 1_000_000_000n), nanos: Number(ns % 1_000_000_000n) };
}

/** Labels as containerd stores them: an empty value means "no such label". */
function cleanLabels(labels: Labels | undefined): Labels {
  const out: Labels = {};
  for (const [k, v] of Object.entries(labels ?? {})) if (v !== "") out[k] = v;
  return out;
}

function requireKey(what: string, key: string): void {
  if (key === "") throw invalidArgument(`${what} must not be empty`);
}

export class SnapshotStore {
  private readonly db: Database.Database;

  private constructor(db: Database.Database) {
    this.db = db;
  }

  /** Opens (creating if needed) the store at `path`, e.g. `<root>/metadata.db`. */
  static open(path: string): SnapshotStore {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    const db = new Database(path);
    db.pragma("journal_mode = WAL");
    // WAL + NORMAL survives a killed process (the daemon's SIGKILL case); only power loss may
    // lose the last transactions.
    db.pragma("synchronous = NORMAL");
    db.pragma("foreign_keys = ON");
    db.exec(SCHEMA);
    return new SnapshotStore(db);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  private row(key: string): Row | undefined {
    return this.db.prepare("SELECT * FROM snapshots WHERE key = ?").get(key) as Row | undefined;
  }

  private parentIds(parentKey: string | null): string[] {
    const ids: string[] = [];
    for (let k = parentKey; k !== null; ) {
      const r = this.row(k);
      if (!r) throw notFound(`missing parent ${JSON.stringify(k)}`);
      ids.push(String(r.id));
      k = r.parent;
    }
    return ids;
  }

  /**
   * Records a new active or view snapshot. `withinTransaction` runs before the transaction
   * commits (the snapshotter renames the snapshot's directory into place there); if it throws,
   * nothing is recorded.
   */
  createSnapshot(
    kind: SnapshotKind,
    key: string,
    parent: string,
    labels: Labels | undefined,
    withinTransaction?: (snapshot: SnapshotRef) => void,
  ): SnapshotRef {
    if (kind !== "active" && kind !== "view") {
      throw invalidArgument(`snapshot type ${kind} invalid; only snapshots of type Active or View can be created`);
    }
    requireKey("snapshot key", key);
    return this.db.transaction((): SnapshotRef => {
      let parentIds: string[] = [];
      if (parent !== "") {
        const p = this.row(parent);
        if (!p) throw notFound(`missing parent ${JSON.stringify(parent)} bucket`);
        if (p.kind !== KIND_CODE.committed)
          throw invalidArgument(`parent ${JSON.stringify(parent)} is not committed snapshot`);
        parentIds = this.parentIds(parent);
      }
      if (this.row(key)) throw alreadyExists(`snapshot ${key}`);
      const id = this.nextId();
      const t = nowTimestamp();
      this.db
        .prepare(
          `INSERT INTO snapshots (key, id, kind, parent, created_s, created_ns, updated_s, updated_ns, labels)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          key,
          id,
          KIND_CODE[kind],
          parent === "" ? null : parent,
          t.seconds,
          t.nanos,
          t.seconds,
          t.nanos,
          JSON.stringify(cleanLabels(labels)),
        );
      const ref: SnapshotRef = { id: String(id), kind, parentIds };
      withinTransaction?.(ref);
      return ref;
    })();
  }

  private nextId(): number {
    const r = this.db
      .prepare("UPDATE sequence SET value = value + 1 WHERE name = 'snapshot_id' RETURNING value")
      .get() as { value: number };
    return r.value;
  }

  /** An active or view snapshot (Mounts): FailedPrecondition for a committed one. */
  getSnapshot(key: string): SnapshotRef {
    requireKey("snapshot key", key);
    const r = this.row(key);
    if (!r) throw notFound("snapshot does not exist");
    if (r.kind === KIND_CODE.committed) throw failedPrecondition(`requested snapshot ${key} not active or view`);
    return { id: String(r.id), kind: KIND_OF(r.kind), parentIds: this.parentIds(r.parent) };
  }

  /** Stat: the snapshot's id, info and stored usage. */
  getInfo(key: string): { id: string; info: SnapshotInfo; usage: Usage } {
    requireKey("snapshot key", key);
    const r = this.row(key);
    if (!r) throw notFound("snapshot does not exist");
    return { id: String(r.id), info: toInfo(r), usage: { size: r.size, inodes: r.inodes } };
  }

  /**
   * Update: paths `labels` (replace all) or `labels.<key>` (set one; an absent or empty value
   * deletes it); no paths replaces all labels. Anything else is InvalidArgument.
   */
  updateInfo(name: string, labels: Labels | undefined, paths: readonly string[]): SnapshotInfo {
    requireKey("snapshot name", name);
    return this.db.transaction((): SnapshotInfo => {
      const r = this.row(name);
      if (!r) throw notFound("snapshot does not exist");
      let next: Labels = JSON.parse(r.labels) as Labels;
      if (paths.length === 0) next = { ...labels };
      for (const path of paths) {
        if (path.startsWith("labels.")) {
          const k = path.slice("labels.".length);
          next[k] = labels?.[k] ?? "";
        } else if (path === "labels") {
          next = { ...labels };
        } else {
          throw invalidArgument(`cannot update ${JSON.stringify(path)} field on snapshot ${JSON.stringify(name)}`);
        }
      }
      const t = nowTimestamp();
      this.db
        .prepare("UPDATE snapshots SET labels = ?, updated_s = ?, updated_ns = ? WHERE key = ?")
        .run(JSON.stringify(cleanLabels(next)), t.seconds, t.nanos, name);
      return toInfo(this.row(name)!);
    })();
  }

  /**
   * Commit: the active snapshot `key` becomes committed snapshot `name` with the same id; labels
   * are replaced (not inherited), timestamps renewed, usage stored. Returns the id.
   */
  commitActive(key: string, name: string, usage: Usage, labels: Labels | undefined): string {
    requireKey("snapshot key", key);
    requireKey("snapshot name", name);
    return this.db.transaction((): string => {
      if (this.row(name)) throw alreadyExists(`committed snapshot ${name}`);
      const r = this.row(key);
      if (!r) throw notFound(`failed to get active snapshot ${JSON.stringify(key)}`);
      if (r.kind !== KIND_CODE.active) throw failedPrecondition(`snapshot ${JSON.stringify(key)} is not active`);
      const t = nowTimestamp();
      // Active snapshots never have children (parents must be committed), so the key can change
      // without touching any parent reference.
      this.db
        .prepare(
          `UPDATE snapshots SET key = ?, kind = ?, created_s = ?, created_ns = ?, updated_s = ?, updated_ns = ?,
             size = ?, inodes = ?, labels = ? WHERE key = ?`,
        )
        .run(
          name,
          KIND_CODE.committed,
          t.seconds,
          t.nanos,
          t.seconds,
          t.nanos,
          usage.size,
          usage.inodes,
          JSON.stringify(cleanLabels(labels)),
          key,
        );
      return String(r.id);
    })();
  }

  /** Remove: only leaves. Returns the removed snapshot's id and kind. */
  remove(key: string): { id: string; kind: SnapshotKind } {
    requireKey("snapshot key", key);
    return this.db.transaction(() => {
      const r = this.row(key);
      if (!r) throw notFound(`snapshot ${key}`);
      if (this.db.prepare("SELECT 1 FROM snapshots WHERE parent = ? LIMIT 1").get(key)) {
        throw failedPrecondition("cannot remove snapshot with child");
      }
      this.db.prepare("DELETE FROM snapshots WHERE key = ?").run(key);
      return { id: String(r.id), kind: KIND_OF(r.kind) };
    })();
  }

  /** List: every snapshot matching any of `filters` (containerd filter syntax), in key order. */
  walk(filters: readonly string[] = []): SnapshotInfo[] {
    let filter: Filter;
    try {
      filter = parseFilters(filters);
    } catch (err) {
      if (err instanceof FilterSyntaxError) throw invalidArgument(err.message);
      throw err;
    }
    const rows = this.db.prepare("SELECT * FROM snapshots ORDER BY key").all() as Row[];
    return rows.map(toInfo).filter((info) => filter.match(fieldsOf(info)));
  }

  /** Every live snapshot id with its key (Cleanup, restore). */
  idMap(): Map<string, string> {
    const rows = this.db.prepare("SELECT id, key FROM snapshots").all() as Pick<Row, "id" | "key">[];
    return new Map(rows.map((r) => [String(r.id), r.key]));
  }

  /** Every snapshot with its id (restore, close). */
  all(): Array<{ id: string; info: SnapshotInfo }> {
    const rows = this.db.prepare("SELECT * FROM snapshots ORDER BY id").all() as Row[];
    return rows.map((r) => ({ id: String(r.id), info: toInfo(r) }));
  }
}

function toInfo(r: Row): SnapshotInfo {
  return {
    name: r.key,
    parent: r.parent ?? "",
    kind: KIND_OF(r.kind),
    created: { seconds: r.created_s, nanos: r.created_ns },
    updated: { seconds: r.updated_s, nanos: r.updated_ns },
    labels: JSON.parse(r.labels) as Labels,
  };
}

/** The fields a filter can test (containerd's snapshot adaptor): kind, name, parent, labels.<k>. */
function fieldsOf(info: SnapshotInfo): FieldLookup {
  return (path) => {
    switch (path[0]) {
      case "kind":
        return { value: info.kind, present: true };
      case "name":
        return { value: info.name, present: true };
      case "parent":
        return { value: info.parent, present: true };
      case "labels": {
        // An unquoted dotted key (labels.a.b) means the label "a.b".
        const k = path.slice(1).join(".");
        return Object.hasOwn(info.labels, k)
          ? { value: info.labels[k]!, present: true }
          : { value: "", present: false };
      }
      default:
        return { value: "", present: false };
    }
  };
}
