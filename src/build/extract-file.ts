// Reads one file of a layer through its ztoc: only the spans holding the file's bytes are read
// and inflated (FORMATS.md §2.5, ztoc.go ExtractFile).
import { extract } from "../wasm/extract.js";
import { GzipZinfo } from "../formats/gzip-zinfo.js";
import { TarZinfo } from "../formats/tar-zinfo.js";
import type { Ztoc } from "../formats/ztoc.js";
import type { FileMetadata } from "../formats/toc.js";
import type { Zinfo } from "../formats/zinfo.js";

/** Random access to the layer blob: bytes [start, end). */
export type ReadRange = (start: number, end: number) => Promise<Uint8Array>;

export function zinfoOf(ztoc: Ztoc): Zinfo {
  return ztoc.compressionAlgorithm === "gzip" ? GzipZinfo.fromBlob(ztoc.checkpoints) : TarZinfo.fromBlob(ztoc.checkpoints);
}

const textEq = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

/** The TOC entry named exactly `name`, following hardlinks (by exact linkname match) to the data. */
export function findEntry(ztoc: Ztoc, name: Uint8Array): FileMetadata | undefined {
  let e = ztoc.toc.find((m) => textEq(m.name, name));
  for (let hops = 0; e && e.type === "hardlink" && hops < 64; hops++) {
    const target = e.linkname;
    e = ztoc.toc.find((m) => textEq(m.name, target));
  }
  return e;
}

export async function extractFile(ztoc: Ztoc, entry: FileMetadata, read: ReadRange, zinfo = zinfoOf(ztoc)): Promise<Uint8Array> {
  const size = entry.uncompressedSize;
  if (size === 0) return new Uint8Array(0);
  const off = entry.uncompressedOffset;
  const first = zinfo.spanForOffset(off);
  const last = zinfo.spanForOffset(off + size - 1);
  const start = zinfo.startCompressedOffset(first);
  const end = zinfo.endCompressedOffset(last, ztoc.compressedArchiveSize);
  const bytes = await read(start, end);
  if (zinfo instanceof GzipZinfo) return extract(bytes, zinfo.checkpoint(first), off, size);
  return bytes.slice(off - start, off - start + size);
}
