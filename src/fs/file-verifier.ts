// First-read verification of a file (docs/snapshotter.md §4.4): its tar header bytes
// [tarHeaderOffset, uncompressedOffset) — themselves verified span bytes — must parse as exactly
// one tar entry whose header ends where the TOC says the payload starts, and that agrees with the
// TOC entry (name, type, mode, ownership, size, mtime, link target, device, SCHILY.xattr.*).
// The outcome is kept per entry, so later reads only look it up.
import { TarReader, type TarEntry } from "../formats/tar.js";
import type { FileMetadata, PaxRecord } from "../formats/toc.js";
import { parseGoTimeText } from "../formats/go-time.js";

/** Reads uncompressed layer bytes [start, end) through verified spans. */
export type LayerRangeReader = (start: number, end: number) => Promise<Uint8Array>;

export class FileVerificationError extends Error {
  override name = "FileVerificationError";
}

const XATTR_PREFIX = "SCHILY.xattr.";
const text = (b: Uint8Array) => Buffer.from(b).toString("latin1");
const show = (b: Uint8Array) => JSON.stringify(Buffer.from(b).toString("utf8"));
const equalBytes = (a: Uint8Array, b: Uint8Array) => Buffer.from(a.buffer, a.byteOffset, a.length).equals(b);

function xattrs(records: PaxRecord[]): string {
  return records
    .map((r) => [text(r.key), text(r.value)] as const)
    .filter(([k]) => k.startsWith(XATTR_PREFIX))
    .map(([k, v]) => JSON.stringify([k, v]))
    .sort()
    .join(",");
}

/** The single tar entry held by `bytes` (header blocks only), or an error. */
function parseOneHeader(bytes: Uint8Array): TarEntry {
  const entries: TarEntry[] = [];
  const r = new TarReader((e) => entries.push(e));
  r.push(bytes);
  if (entries.length !== 1)
    throw new FileVerificationError(`found ${entries.length} tar headers where one was expected`);
  const e = entries[0]!;
  if (e.dataOffset !== bytes.length) {
    throw new FileVerificationError(`tar header is ${e.dataOffset} bytes, the TOC says ${bytes.length}`);
  }
  return e;
}

/** Differences between a parsed header and the TOC entry (empty when they agree). */
export function compareHeader(h: TarEntry, m: FileMetadata): string[] {
  const diffs: string[] = [];
  const t = parseGoTimeText(m.modTime);
  if (!equalBytes(h.name, m.name)) diffs.push(`name ${show(h.name)} != ${show(m.name)}`);
  if (h.type !== m.type) diffs.push(`type ${h.type} != ${m.type}`);
  if (h.size !== m.uncompressedSize) diffs.push(`size ${h.size} != ${m.uncompressedSize}`);
  if (h.mode !== m.mode) diffs.push(`mode ${h.mode.toString(8)} != ${m.mode.toString(8)}`);
  if (h.uid !== m.uid || h.gid !== m.gid) diffs.push(`owner ${h.uid}:${h.gid} != ${m.uid}:${m.gid}`);
  if (!t || t.sec !== h.mtimeSec || t.nsec !== h.mtimeNsec)
    diffs.push(`mtime ${h.mtimeSec}.${h.mtimeNsec} != ${m.modTime}`);
  if (!equalBytes(h.linkname, m.linkname)) diffs.push(`linkname ${show(h.linkname)} != ${show(m.linkname)}`);
  if (h.devmajor !== m.devmajor || h.devminor !== m.devminor)
    diffs.push(`device ${h.devmajor}:${h.devminor} != ${m.devmajor}:${m.devminor}`);
  if (xattrs(h.pax) !== xattrs(m.xattrs)) diffs.push("xattrs differ");
  return diffs;
}

export class FileVerifier {
  /** Entries whose header matched. */
  private readonly ok = new WeakSet<FileMetadata>();
  /** Entries whose header did not (a permanent error, kept to answer fast). */
  private readonly bad = new WeakMap<FileMetadata, FileVerificationError>();
  /** Verifications under way, shared by concurrent first reads. */
  private readonly pending = new WeakMap<FileMetadata, Promise<void>>();

  constructor(
    private readonly read: LayerRangeReader,
    private readonly disabled = false,
  ) {}

  /** True when reads of `entry` need no (more) verification: the warm path's check. */
  isVerified(entry: FileMetadata): boolean {
    return this.disabled || this.ok.has(entry);
  }

  /** Resolves once `entry`'s header is verified; rejects on a mismatch (or a failed read, which is retried next time). */
  verify(entry: FileMetadata, retry = true): Promise<void> {
    if (this.isVerified(entry)) return Promise.resolve();
    const bad = this.bad.get(entry);
    if (bad) return Promise.reject(bad);
    const joined = this.pending.get(entry);
    if (joined) {
      // a check started by an earlier read may fail on that read's deadline (a stalled registry)
      // just after this read joined it: this read then checks again, on its own time, once
      return retry ? joined.catch((e: unknown) => this.retryAfter(entry, e)) : joined;
    }
    const p = this.check(entry).finally(() => this.pending.delete(entry));
    this.pending.set(entry, p);
    return p;
  }

  private retryAfter(entry: FileMetadata, e: unknown): Promise<void> {
    if (e instanceof FileVerificationError) throw e;
    return this.verify(entry, false);
  }

  private async check(entry: FileMetadata): Promise<void> {
    const start = entry.tarHeaderOffset;
    const end = entry.uncompressedOffset;
    const name = show(entry.name);
    if (!(start >= 0 && end > start)) {
      throw this.fail(entry, new FileVerificationError(`file ${name}: invalid header range [${start}, ${end})`));
    }
    const bytes = await this.read(start, end);
    let diffs: string[];
    try {
      diffs = compareHeader(parseOneHeader(bytes), entry);
    } catch (e) {
      throw this.fail(entry, new FileVerificationError(`file ${name}: ${(e as Error).message}`));
    }
    if (diffs.length)
      throw this.fail(
        entry,
        new FileVerificationError(`file ${name}: tar header does not match the TOC: ${diffs.join("; ")}`),
      );
    this.ok.add(entry);
  }

  private fail(entry: FileMetadata, err: FileVerificationError): FileVerificationError {
    this.bad.set(entry, err);
    return err;
  }
}
