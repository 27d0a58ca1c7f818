// Where a tar entry may land inside the directory a layer is unpacked into. Names are cleaned like
// Go's filepath.Clean; absolute names and names that climb above the root are refused, and every
// parent component is resolved against what the unpack itself created (the target is private and
// starts empty), following symlinks only while they stay inside the root - securejoin-style, except
// that a symlink leading out is an error instead of being clamped.
//
// Paths are binary strings (one char per byte, like Go strings), relative to the root, "" = root.

export class UnsafePathError extends Error {
  override name = "UnsafePathError";
}

/** The components of a tar name after cleaning; [] is the root itself. */
export function cleanComponents(name: string, what = "path"): string[] {
  if (name.startsWith("/")) throw new UnsafePathError(`absolute ${what} ${show(name)} is not allowed in a layer`);
  return normalize([], name, what, name);
}

// Appends the components of relative path `rel` to `base` (already clean), resolving "." and "..".
function normalize(base: string[], rel: string, what: string, original: string): string[] {
  const out = [...base];
  for (const c of rel.split("/")) {
    if (c === "" || c === ".") continue;
    if (c === "..") {
      if (out.length === 0) throw new UnsafePathError(`${what} ${show(original)} escapes the layer root`);
      out.pop();
    } else out.push(c);
  }
  return out;
}

export type NodeKind = "dir" | "symlink" | "other";

/** What the unpack has created so far, by root-relative path. */
export interface TreeIndex {
  kind(rel: string): NodeKind | undefined;
  /** The target of the symlink at `rel` (binary string). */
  linkTarget(rel: string): string;
}

export interface ResolvedParent {
  /** Root-relative path of the deepest existing directory on the way (symlinks resolved). */
  existing: string;
  /** Components below `existing` that do not exist yet and must be created as directories. */
  missing: string[];
}

const MAX_SYMLINKS = 40; // Linux's MAXSYMLINKS

/**
 * Resolves the directory components `dirs` (cleaned) to a real directory inside the root. A
 * symlink on the way is followed when its target stays inside the root; an absolute or escaping
 * target, a loop, or a non-directory on the way throws, naming `entry`.
 */
export function resolveParent(index: TreeIndex, dirs: string[], entry: string): ResolvedParent {
  let todo = dirs;
  let at: string[] = [];
  let followed = 0;
  for (let i = 0; i < todo.length; i++) {
    const next = [...at, todo[i]!];
    const rel = next.join("/");
    const kind = index.kind(rel);
    if (kind === undefined) return { existing: at.join("/"), missing: todo.slice(i) };
    if (kind === "dir") {
      at = next;
      continue;
    }
    if (kind === "other") throw new UnsafePathError(`entry ${show(entry)}: ${show(rel)} is not a directory`);
    if (++followed > MAX_SYMLINKS) throw new UnsafePathError(`entry ${show(entry)}: too many levels of symbolic links`);
    const target = index.linkTarget(rel);
    if (target.startsWith("/")) {
      throw new UnsafePathError(
        `entry ${show(entry)} goes through symlink ${show(rel)} -> ${show(target)}, which points outside the layer`,
      );
    }
    let resolved: string[];
    try {
      resolved = normalize(at, target, "symlink", target);
    } catch {
      throw new UnsafePathError(
        `entry ${show(entry)} goes through symlink ${show(rel)} -> ${show(target)}, which points outside the layer`,
      );
    }
    // Restart from the root with the link replaced by its target; resolved prefixes are cheap.
    todo = [...resolved, ...todo.slice(i + 1)];
    at = [];
    i = -1;
  }
  return { existing: at.join("/"), missing: [] };
}

/** A binary-string path as text for messages (UTF-8 where it decodes, Go-style quoting). */
export function show(s: string): string {
  return JSON.stringify(Buffer.from(s, "latin1").toString("utf8"));
}
