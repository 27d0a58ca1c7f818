// Digests of what registries send and receive: nothing unverified is returned to a caller.
import { createHash, type Hash } from "node:crypto";
import { DigestMismatchError, InvalidArgumentError, UnsupportedError, redactUrl } from "./errors.js";

/** A hasher for a digest's algorithm (sha256/sha384/sha512). */
export function digester(digest: string): { hash: Hash; algorithm: string } {
  const i = digest.indexOf(":");
  const algorithm = i > 0 ? digest.slice(0, i) : "";
  if (algorithm !== "sha256" && algorithm !== "sha384" && algorithm !== "sha512") {
    throw new UnsupportedError(`unsupported digest algorithm in ${JSON.stringify(digest)}`);
  }
  if (!/^[0-9a-f]+$/.test(digest.slice(i + 1)))
    throw new InvalidArgumentError(`invalid digest ${JSON.stringify(digest)}`);
  return { hash: createHash(algorithm), algorithm };
}

export function computeDigest(algorithm: string, bytes: Uint8Array): string {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest("hex")}`;
}

export function verifyDigest(expected: string, bytes: Uint8Array, url?: string, what = "blob"): void {
  const { algorithm } = digester(expected);
  const actual = computeDigest(algorithm, bytes);
  if (actual !== expected)
    throw new DigestMismatchError(expected, actual, { what, ...(url ? { url: redactUrl(url) } : {}) });
}

/** Fails when `got` bytes are not the `size` a descriptor promised. */
export function checkSize(digest: string, got: number, size: number | undefined, what: string, url?: string): void {
  if (size === undefined || got === size) return;
  throw new DigestMismatchError(digest, `${got} bytes instead of ${size}`, {
    what,
    ...(url ? { url: redactUrl(url) } : {}),
  });
}
