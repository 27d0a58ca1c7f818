// Read handles of span cache files, kept open across reads: a read of a cached span then costs one
// positioned read instead of open + read + close (three syscalls, each a threadpool round trip).
// A handle whose file is removed or replaced is dropped (closed once no read uses it); the bytes it
// would still read are the same verified span bytes, so a read racing a replacement is never wrong.
import { open, type FileHandle } from "node:fs/promises";

interface Entry {
  fh: Promise<FileHandle>;
  users: number;
  dropped: boolean;
}

export class ReadHandles {
  /** Least recently used first. */
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly max = 64) {}

  /** Runs `fn` with a read handle of `path`, opened on first use (open's errors reject). */
  async with<T>(path: string, fn: (fh: FileHandle) => Promise<T>): Promise<T> {
    let e = this.entries.get(path);
    if (e) {
      this.entries.delete(path);
      this.entries.set(path, e);
    } else {
      const entry: Entry = { fh: open(path, "r"), users: 0, dropped: false };
      entry.fh.catch(() => this.forget(path, entry));
      this.entries.set(path, entry);
      this.evict();
      e = entry;
    }
    e.users++;
    try {
      return await fn(await e.fh);
    } finally {
      e.users--;
      if (e.dropped && e.users === 0) close(e.fh);
    }
  }

  /** `path` was removed or replaced. */
  drop(path: string): void {
    const e = this.entries.get(path);
    if (e) this.forget(path, e);
  }

  /** Every path below directory `dir`. */
  dropUnder(dir: string): void {
    for (const [p, e] of [...this.entries]) if (p.startsWith(`${dir}/`)) this.forget(p, e);
  }

  get size(): number {
    return this.entries.size;
  }

  private forget(path: string, e: Entry): void {
    if (this.entries.get(path) === e) this.entries.delete(path);
    if (e.dropped) return;
    e.dropped = true;
    if (e.users === 0) close(e.fh);
  }

  private evict(): void {
    for (const [p, e] of this.entries) {
      if (this.entries.size <= this.max) return;
      this.forget(p, e);
    }
  }
}

function close(fh: Promise<FileHandle>): void {
  fh.then((h) => h.close()).catch(() => undefined);
}
