// The artifacts database (§4.3): one row per SOCI artifact digest with the fields the reference
// keeps in its bbolt sub-buckets, here in SQLite. Used by create/convert (writes, ztoc reuse),
// index/ztoc/prefetch list|info|rm, push (newest v1 index per manifest) and rebuild-db.
import { FailedPreconditionError } from "../errors/errors.js";
import Database from "better-sqlite3";
import { closeSync, mkdirSync, openSync } from "node:fs";
import { dirname } from "node:path";
import { MediaTypeImageManifest as MEDIA_TYPE_OCI_MANIFEST } from "../formats/oci.js";
import { ArtifactNotFoundError, NotAnIndexError } from "./errors.js";
import { normalizeTimestamp, nowTimestamp } from "./timestamp.js";

export { artifactsDbPath } from "./paths.js";

export type ArtifactEntryType = "soci_index" | "soci_layer" | "soci_prefetch";

export const ARTIFACT_TYPE_INDEX: ArtifactEntryType = "soci_index";
export const ARTIFACT_TYPE_LAYER: ArtifactEntryType = "soci_layer";
export const ARTIFACT_TYPE_PREFETCH: ArtifactEntryType = "soci_prefetch";

export interface ArtifactEntry {
  /** the artifact's own digest (SOCI index, ztoc or prefetch blob) */
  digest: string;
  size: number;
  /** ztoc: layer digest; index: manifest digest; prefetch: empty */
  location: string;
  /** the reference's OriginalDigest: ztoc/prefetch ⇒ layer digest; index ⇒ platform manifest digest */
  ociDigest: string;
  /** index ⇒ image target digest (v2 after convert: the new OCI index digest); else empty */
  imageDigest: string;
  /** index ⇒ `os/arch[/variant]`; else empty */
  platform: string;
  type: ArtifactEntryType;
  mediaType: string;
  /** index ⇒ v1/v2 SOCI index artifact type; else empty */
  artifactType: string;
  /** RFC 3339 UTC with 9 fractional digits (see timestamp.ts) */
  createdAt: string;
  /** span size the ztoc was built with; 0 for other artifacts */
  spanSize: number;
}

export type ArtifactEntryInput = Pick<ArtifactEntry, "digest" | "size" | "type"> &
  Partial<Omit<ArtifactEntry, "digest" | "size" | "type" | "createdAt">> & { createdAt?: string | Date | bigint };

interface Row {
  digest: string;
  size: number;
  location: string;
  oci_digest: string;
  image_digest: string;
  platform: string;
  type: ArtifactEntryType;
  media_type: string;
  artifact_type: string;
  created_at: string;
  span_size: number;
}

const COLUMNS =
  "digest, size, location, oci_digest, image_digest, platform, type, media_type, artifact_type, created_at, span_size";
const NEWEST_FIRST = "ORDER BY created_at DESC, rowid DESC";

// Append-only: entry i upgrades a database at schema version i to version i+1.
const MIGRATIONS: string[] = [
  `CREATE TABLE artifacts (
     digest        TEXT PRIMARY KEY NOT NULL,
     size          INTEGER NOT NULL,
     location      TEXT NOT NULL DEFAULT '',
     oci_digest    TEXT NOT NULL DEFAULT '',
     image_digest  TEXT NOT NULL DEFAULT '',
     platform      TEXT NOT NULL DEFAULT '',
     type          TEXT NOT NULL CHECK (type IN ('soci_index', 'soci_layer', 'soci_prefetch')),
     media_type    TEXT NOT NULL DEFAULT '',
     artifact_type TEXT NOT NULL DEFAULT '',
     created_at    TEXT NOT NULL,
     span_size     INTEGER NOT NULL DEFAULT 0
   );
   CREATE INDEX artifacts_by_type ON artifacts (type, created_at);
   CREATE INDEX artifacts_by_oci_digest ON artifacts (oci_digest, type);
   CREATE INDEX artifacts_by_image_digest ON artifacts (image_digest);`,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

function fromRow(r: Row): ArtifactEntry {
  return {
    digest: r.digest,
    size: r.size,
    location: r.location,
    ociDigest: r.oci_digest,
    imageDigest: r.image_digest,
    platform: r.platform,
    type: r.type,
    mediaType: r.media_type,
    artifactType: r.artifact_type,
    createdAt: r.created_at,
    spanSize: r.span_size,
  };
}

function toRow(e: ArtifactEntryInput): Row {
  if (!Number.isSafeInteger(e.size) || e.size < 0) throw new RangeError(`invalid artifact size ${e.size}`);
  const spanSize = e.spanSize ?? 0;
  if (!Number.isSafeInteger(spanSize) || spanSize < 0) throw new RangeError(`invalid span size ${spanSize}`);
  return {
    digest: e.digest,
    size: e.size,
    location: e.location ?? "",
    oci_digest: e.ociDigest ?? "",
    image_digest: e.imageDigest ?? "",
    platform: e.platform ?? "",
    type: e.type,
    media_type: e.mediaType ?? "",
    artifact_type: e.artifactType ?? "",
    created_at: e.createdAt === undefined ? nowTimestamp() : normalizeTimestamp(e.createdAt),
    span_size: spanSize,
  };
}

export class ArtifactsDb {
  private constructor(private readonly db: Database.Database) {}

  /** Opens or creates the database file (mode 0600 when created) and brings its schema up to date. */
  static open(path: string): ArtifactsDb {
    if (path !== ":memory:") {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      // create it ourselves so the mode is 0600 regardless of SQLite's default; the -wal and
      // -shm files SQLite adds copy the database file's permissions
      closeSync(openSync(path, "a", 0o600));
    }
    const db = new Database(path, { timeout: 5000 });
    try {
      db.pragma("journal_mode = WAL");
      db.pragma("synchronous = NORMAL");
      migrate(db);
    } catch (err) {
      db.close();
      throw err;
    }
    return new ArtifactsDb(db);
  }

  /** Inserts or replaces the entry for `entry.digest`; `createdAt` defaults to now. */
  put(entry: ArtifactEntryInput): ArtifactEntry {
    const row = toRow(entry);
    this.db
      .prepare(
        `INSERT OR REPLACE INTO artifacts (${COLUMNS}) VALUES (@digest, @size, @location, @oci_digest, @image_digest, @platform, @type, @media_type, @artifact_type, @created_at, @span_size)`,
      )
      .run(row);
    return fromRow(row);
  }

  /** Writes several entries in one transaction. */
  putMany(entries: ArtifactEntryInput[]): ArtifactEntry[] {
    return this.db.transaction((list: ArtifactEntryInput[]) => list.map((e) => this.put(e)))(entries);
  }

  find(digest: string): ArtifactEntry | undefined {
    const row = this.db.prepare(`SELECT ${COLUMNS} FROM artifacts WHERE digest = ?`).get(digest) as Row | undefined;
    return row && fromRow(row);
  }

  /** Throws ArtifactNotFoundError when there is no entry. */
  get(digest: string): ArtifactEntry {
    const entry = this.find(digest);
    if (!entry) throw new ArtifactNotFoundError(digest);
    return entry;
  }

  /** Removes any entry for `digest`; false if there was none. */
  remove(digest: string): boolean {
    return this.db.prepare("DELETE FROM artifacts WHERE digest = ?").run(digest).changes > 0;
  }

  removeMany(digests: Iterable<string>): number {
    const stmt = this.db.prepare("DELETE FROM artifacts WHERE digest = ?");
    return this.db.transaction((list: string[]) => list.reduce((n, d) => n + stmt.run(d).changes, 0))([...digests]);
  }

  /**
   * `index rm`: removes the entry only if it is an index, recognised (as in the reference) by the
   * OCI image manifest media type. ztoc entries are never touched.
   */
  removeIndex(digest: string): void {
    this.db.transaction(() => {
      const entry = this.find(digest);
      if (!entry) throw new ArtifactNotFoundError(digest, `the index of the digest ${digest} doesn't exist`);
      if (entry.mediaType !== MEDIA_TYPE_OCI_MANIFEST) throw new NotAnIndexError(digest);
      this.remove(digest);
    })();
  }

  /** `index rm --ref`: removes every index entry whose image digest is `imageDigest`. */
  removeIndexesForImage(imageDigest: string): ArtifactEntry[] {
    return this.db.transaction(() => {
      const entries = this.indexesForImage(imageDigest);
      for (const e of entries) this.remove(e.digest);
      return entries;
    })();
  }

  /** Entries of one type, newest first. */
  listByType(type: ArtifactEntryType): ArtifactEntry[] {
    return this.select(`WHERE type = ? ${NEWEST_FIRST}`, type);
  }

  /** A reusable ztoc: the newest `soci_layer` entry for this layer built with this span size. */
  findZtoc(layerDigest: string, spanSize: number): ArtifactEntry | undefined {
    return this.select(
      `WHERE type = 'soci_layer' AND oci_digest = ? AND span_size = ? ${NEWEST_FIRST} LIMIT 1`,
      layerDigest,
      spanSize,
    )[0];
  }

  /** Index entries for a platform manifest, newest first, optionally of one artifact type (v1/v2). */
  indexesForManifest(ociDigest: string, artifactType?: string): ArtifactEntry[] {
    if (artifactType === undefined)
      return this.select(`WHERE type = 'soci_index' AND oci_digest = ? ${NEWEST_FIRST}`, ociDigest);
    return this.select(
      `WHERE type = 'soci_index' AND oci_digest = ? AND artifact_type = ? ${NEWEST_FIRST}`,
      ociDigest,
      artifactType,
    );
  }

  /** Index entries (OCI-manifest media type, as the reference checks) for an image target, newest first. */
  indexesForImage(imageDigest: string): ArtifactEntry[] {
    return this.select(
      `WHERE media_type = ? AND image_digest = ? ${NEWEST_FIRST}`,
      MEDIA_TYPE_OCI_MANIFEST,
      imageDigest,
    );
  }

  /** convert step 7: rebinds a v2 index entry to the rewritten manifest and the new OCI index. */
  updateIndexDigests(indexDigest: string, digests: { ociDigest: string; imageDigest: string }): ArtifactEntry {
    const changed = this.db
      .prepare("UPDATE artifacts SET oci_digest = ?, image_digest = ? WHERE digest = ?")
      .run(digests.ociDigest, digests.imageDigest, indexDigest).changes;
    if (changed === 0) throw new ArtifactNotFoundError(indexDigest);
    return this.get(indexDigest);
  }

  /** Every entry, newest first. */
  all(): ArtifactEntry[] {
    return this.select(NEWEST_FIRST);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  private select(where: string, ...params: (string | number)[]): ArtifactEntry[] {
    return (this.db.prepare(`SELECT ${COLUMNS} FROM artifacts ${where}`).all(...params) as Row[]).map(fromRow);
  }
}

function migrate(db: Database.Database): void {
  db.transaction(() => {
    db.exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)");
    const row = db.prepare("SELECT version FROM schema_version").get() as { version: number } | undefined;
    const current = row?.version ?? 0;
    if (current > MIGRATIONS.length) {
      throw new FailedPreconditionError(
        `artifacts.db schema version ${current} is newer than this program supports (${MIGRATIONS.length})`,
      );
    }
    for (let v = current; v < MIGRATIONS.length; v++) db.exec(MIGRATIONS[v]!);
    if (row === undefined) db.prepare("INSERT INTO schema_version (version) VALUES (?)").run(MIGRATIONS.length);
    else if (current !== MIGRATIONS.length) db.prepare("UPDATE schema_version SET version = ?").run(MIGRATIONS.length);
  }).immediate();
}
