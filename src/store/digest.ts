// Digest strings as the store accepts them. Only canonical lowercase hex of the exact length is
// allowed, so a digest can be turned into a path without any chance of leaving the blob directory.
import { createHash, type Hash } from "node:crypto";
import { InvalidDigestError } from "./errors.js";

export type DigestAlgorithm = "sha256" | "sha384" | "sha512";

const HEX_LENGTH: Record<DigestAlgorithm, number> = { sha256: 64, sha384: 96, sha512: 128 };
const DIGEST_RE = /^(sha256|sha384|sha512):([0-9a-f]+)$/;

export interface ParsedDigest {
  algorithm: DigestAlgorithm;
  hex: string;
}

export function parseDigest(digest: string): ParsedDigest {
  const m = typeof digest === "string" ? DIGEST_RE.exec(digest) : null;
  if (!m) throw new InvalidDigestError(String(digest));
  const algorithm = m[1] as DigestAlgorithm;
  const hex = m[2]!;
  if (hex.length !== HEX_LENGTH[algorithm]) throw new InvalidDigestError(digest);
  return { algorithm, hex };
}

export function isValidDigest(digest: string): boolean {
  try {
    parseDigest(digest);
    return true;
  } catch {
    return false;
  }
}

export function isKnownAlgorithm(name: string): name is DigestAlgorithm {
  return Object.hasOwn(HEX_LENGTH, name);
}

/** True when `hex` is a well-formed encoded part for `algorithm` (used when walking blob dirs). */
export function isValidHex(algorithm: DigestAlgorithm, hex: string): boolean {
  return hex.length === HEX_LENGTH[algorithm] && /^[0-9a-f]+$/.test(hex);
}

export function createHasher(algorithm: DigestAlgorithm = "sha256"): Hash {
  return createHash(algorithm);
}

export function digestOf(bytes: Uint8Array, algorithm: DigestAlgorithm = "sha256"): string {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest("hex")}`;
}
