// Positioned file I/O that does not stop at a short read or write (the system calls may).
import type { FileHandle } from "node:fs/promises";

/** Reads into `buf` from `position` until it is full or the file ends; returns the bytes read. */
export async function readAt(fh: FileHandle, buf: Uint8Array, position: number): Promise<number> {
  let got = 0;
  while (got < buf.length) {
    const { bytesRead } = await fh.read(buf, got, buf.length - got, position + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got;
}

/** Writes all of `bytes` at `position`. */
export async function writeAt(fh: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  for (let off = 0; off < bytes.length; ) {
    off += (await fh.write(bytes, off, bytes.length - off, position + off)).bytesWritten;
  }
}
