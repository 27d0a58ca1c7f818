// Feeds a tar stream through the Go-compatible TarReader and hands each entry, with its data, to a
// TreeWriter. The reader reports an entry as soon as its header is parsed and skips the data; the
// data is cut out of the same chunks here (entries carry their stream offset), so a file is written
// as it streams and never held whole.
import { TarReader, type TarEntry } from "../formats/tar.js";
import type { FileSink, TreeWriter } from "./tree-writer.js";

export class TarApplier {
  private readonly reader: TarReader;
  private fresh: TarEntry[] = [];
  private offset = 0; // stream offset of the next chunk
  private open: { sink: FileSink; end: number } | undefined;

  constructor(private readonly writer: TreeWriter) {
    this.reader = new TarReader((e) => this.fresh.push(e), { skipGlobalHeaders: true });
  }

  /** Applies the next bytes of the tar (copied before this returns: the caller may reuse the chunk). */
  push(chunk: Uint8Array): void {
    this.reader.push(chunk);
    const start = this.offset;
    const end = start + chunk.length;
    this.offset = end;
    if (this.open) {
      const o = this.open;
      const n = Math.min(o.end, end) - start;
      if (n > 0) o.sink.write(chunk.subarray(0, n));
      if (o.end <= end) {
        this.open = undefined;
        o.sink.close();
      }
    }
    const entries = this.fresh;
    this.fresh = [];
    for (const e of entries) {
      if (e.type !== "reg" || e.size === 0) {
        this.writer.add(e);
        continue;
      }
      // The reader reports an entry right after its header, so its data starts in this chunk or at its end.
      const from = e.dataOffset,
        to = from + e.size;
      if (to <= end) {
        this.writer.add(e, chunk.subarray(from - start, to - start));
      } else {
        const sink = this.writer.openFile(e);
        this.open = { sink, end: to };
        if (from < end) sink.write(chunk.subarray(from - start));
      }
    }
  }

  /** The tar stream ended: throws if it ended inside an entry or a header. */
  end(): void {
    this.reader.end();
    if (this.open) throw new Error("tar stream ended inside a file"); // the reader reports this first
  }

  /** Closes a file left open by a failed unpack. */
  abort(): void {
    const o = this.open;
    this.open = undefined;
    o?.sink.abort();
  }
}
