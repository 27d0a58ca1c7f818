// Extended attributes for unpacked files. Node has no setxattr, so all of a layer's attributes go
// to one `setfattr --restore` run (attr package): names and paths octal-escaped, values hex, so
// every byte survives; `-h` sets them on a symlink itself, never on what it points to.
import { runTool } from "./run-tool.js";

export interface XattrSet {
  /** Absolute path, raw bytes. */
  path: Uint8Array;
  attrs: { name: Uint8Array; value: Uint8Array }[];
}

// getfattr's dump format; setfattr unquotes \ooo escapes in file and attribute names.
function octalEscape(bytes: Uint8Array): string {
  let s = "";
  for (const c of bytes) {
    const safe =
      (c >= 0x30 && c <= 0x39) ||
      (c >= 0x41 && c <= 0x5a) ||
      (c >= 0x61 && c <= 0x7a) ||
      c === 0x2e ||
      c === 0x2f ||
      c === 0x5f ||
      c === 0x2d;
    s += safe ? String.fromCharCode(c) : "\\" + c.toString(8).padStart(3, "0");
  }
  return s;
}

/** The restore script for `sets` (exported for tests). */
export function restoreScript(sets: XattrSet[]): Buffer {
  const lines: string[] = [];
  for (const s of sets) {
    if (s.attrs.length === 0) continue;
    lines.push(`# file: ${octalEscape(s.path)}`);
    for (const a of s.attrs) lines.push(`${octalEscape(a.name)}=0x${Buffer.from(a.value).toString("hex")}`);
    lines.push("");
  }
  return Buffer.from(lines.join("\n") + "\n", "latin1");
}

/**
 * Sets every attribute in `sets`. Attributes the filesystem does not support (EOPNOTSUPP) are
 * skipped and returned as warnings, as containerd does; any other failure throws.
 */
export async function setXattrs(sets: XattrSet[], signal?: AbortSignal): Promise<string[]> {
  if (!sets.some((s) => s.attrs.length > 0)) return [];
  const r = await runTool("setfattr", ["-h", "--restore=-"], {
    input: restoreScript(sets),
    ...(signal ? { signal } : {}),
  });
  if (r.code === 0) return [];
  const lines = r.stderr.split("\n").filter((l) => l.trim() !== "");
  const fatal = lines.filter((l) => !/Operation not supported$/.test(l));
  if (fatal.length > 0 || lines.length === 0) {
    throw new Error(
      `setting extended attributes failed: ${fatal.slice(0, 5).join("; ") || `setfattr exited with status ${r.code}`}`,
    );
  }
  return lines;
}
