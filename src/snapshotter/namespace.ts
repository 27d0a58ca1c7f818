// The namespace of a request (docs/snapshotter.md §1.3): containerd's `containerd-namespace` header
// when sent; containerd 1.6 sends none to proxy snapshotters, but its metadata layer names every
// backend key `<namespace>/<seq>/<client key>`, so the first path segment is the namespace.
import type { Metadata } from "@grpc/grpc-js";
import { invalidArgument } from "./errors.js";

export const NAMESPACE_HEADER = "containerd-namespace";
export const DEFAULT_NAMESPACE = "default";

/** containerd's namespace rule: alphanumerics, separated by single `.`, `_` or `-`. */
const VALID = /^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$/;
const MAX_LENGTH = 76;

export function isValidNamespace(ns: string): boolean {
  return ns.length <= MAX_LENGTH && VALID.test(ns);
}

export function requestNamespace(metadata: Metadata | undefined, key: string): string {
  const header = metadata?.get(NAMESPACE_HEADER)[0];
  if (header !== undefined && header !== "") {
    const ns = String(header);
    if (!isValidNamespace(ns)) throw invalidArgument(`namespace ${JSON.stringify(ns)}: invalid namespace name`);
    return ns;
  }
  const slash = key.indexOf("/");
  if (slash > 0) {
    const ns = key.slice(0, slash);
    if (isValidNamespace(ns)) return ns;
  }
  return DEFAULT_NAMESPACE;
}
