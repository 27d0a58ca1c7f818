// Image references (distribution/reference "normalized named" rules): `busybox` →
// docker.io/library/busybox:latest; `host:port/repo:tag@sha256:…`.

import type { ImageRef } from "./types.js";
import { InvalidArgumentError } from "./errors.js";

export const DEFAULT_REGISTRY = "docker.io";
const LEGACY_DEFAULT_REGISTRY = "index.docker.io";

const COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN_RE =
  /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$/;
const TAG_RE = /^[\w][\w.-]{0,127}$/;
const DIGEST_RE = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/;
const SHA256_RE = /^sha256:[0-9a-f]{64}$/;

/** Parses an image reference, applying Docker Hub defaults (host, `library/`, tag `latest`). */
export function parseReference(s: string): ImageRef {
  const bad = (why: string) => new InvalidArgumentError(`invalid reference ${JSON.stringify(s)}: ${why}`);
  if (typeof s !== "string" || s.length === 0) throw bad("empty");
  if (s.length > 4096) throw bad("too long");
  let rest = s;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST_RE.test(digest)) throw bad("invalid digest");
    if (digest.startsWith("sha256:") && !SHA256_RE.test(digest)) throw bad("invalid sha256 digest");
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf("/");
  const colon = rest.lastIndexOf(":");
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG_RE.test(tag)) throw bad("invalid tag");
  }
  let host: string;
  let repository: string;
  const slash = rest.indexOf("/");
  const first = slash >= 0 ? rest.slice(0, slash) : "";
  if (
    slash >= 0 &&
    (first.includes(".") || first.includes(":") || first === "localhost" || first !== first.toLowerCase())
  ) {
    host = first;
    repository = rest.slice(slash + 1);
    if (!DOMAIN_RE.test(host)) throw bad("invalid registry host");
  } else {
    host = DEFAULT_REGISTRY;
    repository = rest;
  }
  if (host === LEGACY_DEFAULT_REGISTRY) host = DEFAULT_REGISTRY;
  if (host === DEFAULT_REGISTRY && !repository.includes("/")) repository = "library/" + repository;
  if (repository.length === 0) throw bad("empty repository");
  if (repository.length > 255) throw bad("repository name too long");
  for (const c of repository.split("/")) {
    if (!COMPONENT_RE.test(c)) throw bad(`invalid repository component ${JSON.stringify(c)}`);
  }
  if (tag === undefined && digest === undefined) tag = "latest";
  return { host, repository, ...(tag !== undefined ? { tag } : {}), ...(digest !== undefined ? { digest } : {}) };
}

/** Canonical text: `host/repository[:tag][@digest]`. */
export function formatReference(ref: ImageRef): string {
  return `${ref.host}/${ref.repository}${ref.tag !== undefined ? ":" + ref.tag : ""}${ref.digest !== undefined ? "@" + ref.digest : ""}`;
}

/** The same repository with another tag/digest (or none). */
export function withReference(ref: ImageRef, what: { tag?: string; digest?: string }): ImageRef {
  return { host: ref.host, repository: ref.repository, ...what };
}

/** The reference part used in `/manifests/<reference>`: the digest when present, else the tag. */
export function manifestReference(ref: ImageRef): string {
  const r = ref.digest ?? ref.tag;
  if (r === undefined) throw new InvalidArgumentError(`reference ${formatReference(ref)} has neither tag nor digest`);
  return r;
}

/** The referrers fallback tag for a subject digest (`sha256:<hex>` → `sha256-<hex>`, no truncation). */
export function referrersTag(digest: string): string {
  if (!DIGEST_RE.test(digest)) throw new InvalidArgumentError(`invalid digest ${JSON.stringify(digest)}`);
  return digest.replace(":", "-");
}
