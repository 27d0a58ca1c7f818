// The prefetch recorder: which files of a lazily mounted image a workload reads, and how much of
// each, turned into the file list `soci convert --prefetch-files-json` takes (docs/formats.md §3.7).
// It plays the part of stargz's `ctr-remote image optimize` without rewriting any layer: the
// recorded files become prefetch artifacts the snapshotter fetches at mount time.
import type { FileMetadata } from "../formats/toc.js";

export interface RecordedFile {
  /** The path in the image ("/" + the TOC name, cleaned). */
  path: string;
  size: number;
  /** Distinct bytes read. */
  read: number;
  /** Order of the file's first read. */
  first: number;
}

export interface PrefetchListOptions {
  /** A file is listed when at least this share of it was read (default 0.5)… */
  minFraction?: number;
  /** …or when it is no larger than this, whatever was read of it (default 1 MiB). */
  smallFile?: number;
}

/** Collects the byte ranges read per file (each file is one entry of one layer). */
export class PrefetchRecorder {
  private readonly files = new Map<string, { size: number; ranges: [number, number][]; first: number }>();
  private order = 0;

  /** A read of `length` bytes at `offset` of `entry` (what the FUSE layer asked the reader for). */
  record(entry: FileMetadata, offset: number, length: number): void {
    if (entry.uncompressedSize === 0 || length <= 0 || offset >= entry.uncompressedSize) return;
    const path = imagePath(entry.name);
    let f = this.files.get(path);
    if (!f) {
      f = { size: entry.uncompressedSize, ranges: [], first: this.order++ };
      this.files.set(path, f);
    }
    f.ranges.push([offset, Math.min(entry.uncompressedSize, offset + length)]);
    if (f.ranges.length > 64) f.ranges = union(f.ranges);
  }

  /** Every file read, in the order of first reads. */
  recorded(): RecordedFile[] {
    return [...this.files]
      .map(([path, f]) => ({ path, size: f.size, read: covered(union(f.ranges)), first: f.first }))
      .sort((a, b) => a.first - b.first);
  }

  /**
   * The files worth prefetching: mostly read, or small. A large file read only in part (a 4 KiB
   * header of a 200 MiB data file) is left to on-demand reads: prefetching it whole would cost more
   * than the workload needs. Returns the list and what was left out.
   */
  prefetchList(opts: PrefetchListOptions = {}): { files: string[]; skipped: RecordedFile[] } {
    const minFraction = opts.minFraction ?? 0.5;
    const small = opts.smallFile ?? 1 << 20;
    const files: string[] = [];
    const skipped: RecordedFile[] = [];
    for (const f of this.recorded()) {
      if (f.size <= small || f.read >= minFraction * f.size) files.push(f.path);
      else skipped.push(f);
    }
    return { files, skipped };
  }
}

/** "/" + the TOC name with "./" and duplicate slashes gone (what `--prefetch-file` matches, §3.7). */
function imagePath(name: Uint8Array): string {
  const parts = Buffer.from(name)
    .toString("utf8")
    .split("/")
    .filter((p) => p !== "" && p !== ".");
  return `/${parts.join("/")}`;
}

function union(ranges: [number, number][]): [number, number][] {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
  const out: [number, number][] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r[0] <= last[1]) last[1] = Math.max(last[1], r[1]);
    else out.push([r[0], r[1]]);
  }
  return out;
}

const covered = (ranges: [number, number][]) => ranges.reduce((n, [a, b]) => n + b - a, 0);
