// Reads one file of a layer through its ztoc: only the spans holding the file's bytes are read
// and inflated (docs/formats.md §2.5, ztoc.go ExtractFile).
import { InvalidArgumentError, NotFoundError } from "../errors/errors.js";
import { extract } from "../wasm/extract.js";
import { GzipZinfo } from "../formats/gzip-zinfo.js";
import type { Ztoc } from "../formats/ztoc.js";
import type { FileMetadata } from "../formats/toc.js";
import { zinfoOf } from "../formats/zinfo.js";

/** Random access to the layer blob: bytes [start, end). */
export type ReadRange = (start: number, end: number) => Promise<Uint8Array>;

const bytesEqual = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);
const text = new TextDecoder();

/**
 * `TOC.GetMetadataEntry`: the first entry named exactly `name`; any entry with a link name (hard
 * or symbolic) is followed by it, as the reference does (docs/formats.md §1.6).
 */
export function metadataEntry(ztoc: Ztoc, name: Uint8Array): FileMetadata {
  for (let hops = 0; hops <= 255; hops++) {
    const e = ztoc.toc.find((m) => bytesEqual(m.name, name));
    if (!e) throw new NotFoundError(`file ${text.decode(name)} does not exist in metadata`);
    if (e.linkname.length === 0) return e;
    name = e.linkname;
  }
  throw new InvalidArgumentError(`file ${text.decode(name)}: too many levels of links`);
}

export async function extractFile(
  ztoc: Ztoc,
  entry: FileMetadata,
  read: ReadRange,
  zinfo = zinfoOf(ztoc),
): Promise<Uint8Array> {
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
