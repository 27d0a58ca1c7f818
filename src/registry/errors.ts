// Registry failures in the project's vocabulary (errors/errors.ts): an HTTP answer becomes the class
// of its status and error body; messages name the operation and a credential-free URL (no
// userinfo, no query), and the error keeps the status, URL and body codes (HttpErrorDetails).
import {
  DigestMismatchError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  type RegistryErrorEntry,
  SociError,
  type SociErrorOptions,
  UnauthenticatedError,
  UnavailableError,
  UnimplementedError,
} from "../errors/errors.js";

export { DigestMismatchError, InvalidArgumentError, NotFoundError, UnavailableError };

/** 401, or an UNAUTHORIZED error body: no or wrong credentials. */
export class UnauthorizedError extends UnauthenticatedError {
  override name = "UnauthorizedError";
}

/** 403, or a DENIED error body: the credentials do not grant the operation. */
export class DeniedError extends PermissionDeniedError {
  override name = "DeniedError";
}

/** 405/501, or an UNSUPPORTED error body: the registry does not offer the operation. */
export class UnsupportedError extends UnimplementedError {
  override name = "UnsupportedError";
}

/** URL text safe for messages: no userinfo, no query (signed blob-storage URLs carry tokens). */
export function redactUrl(url: string | URL): string {
  try {
    const u = new URL(String(url));
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return "<invalid url>";
  }
}

/** Parses a Distribution error body; tolerant of anything else (returns []). */
export function parseOciErrors(body: Uint8Array | string | undefined): RegistryErrorEntry[] {
  if (body === undefined || body.length === 0) return [];
  try {
    const text = typeof body === "string" ? body : new TextDecoder().decode(body);
    const v = JSON.parse(text) as unknown;
    const errs = (v as { errors?: unknown }).errors;
    if (!Array.isArray(errs)) return [];
    const out: RegistryErrorEntry[] = [];
    for (const e of errs) {
      if (e && typeof e === "object" && typeof (e as { code?: unknown }).code === "string") {
        const msg = (e as { message?: unknown }).message;
        out.push({ code: (e as { code: string }).code, ...(typeof msg === "string" ? { message: msg } : {}) });
      }
    }
    return out;
  } catch {
    return [];
  }
}

const STATUS_WORDS: Record<number, string> = {
  401: "unauthorized",
  403: "denied",
  404: "not found",
  405: "unsupported",
  429: "too many requests",
  500: "registry error",
  502: "bad gateway",
  503: "unavailable",
  504: "gateway timeout",
};

const NOT_FOUND_CODES = new Set(["BLOB_UNKNOWN", "MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UPLOAD_UNKNOWN"]);

/** Maps an HTTP error response to a typed error. `what` names the operation ("GET manifest …"). */
export function errorFromResponse(what: string, status: number, url: string, body?: Uint8Array): SociError {
  const ociErrors = parseOciErrors(body);
  const codes = ociErrors.map((e) => e.code);
  const detail = ociErrors.length
    ? ": " + ociErrors.map((e) => (e.message ? `${e.code}: ${e.message}` : e.code)).join("; ")
    : "";
  const d: SociErrorOptions = { httpStatus: status, registryErrors: ociErrors, url: redactUrl(url) };
  const msg = `${what}: ${redactUrl(url)}: ${STATUS_WORDS[status] ?? "HTTP"} (${status})${detail}`;
  if (codes.includes("UNAUTHORIZED") || status === 401) return new UnauthorizedError(msg, d);
  if (codes.includes("DENIED") || status === 403) return new DeniedError(msg, d);
  if (status === 404 || codes.some((c) => NOT_FOUND_CODES.has(c))) return new NotFoundError(msg, d);
  if (codes.includes("UNSUPPORTED") || status === 405 || status === 501) return new UnsupportedError(msg, d);
  if (codes.includes("DIGEST_INVALID")) return new SociError("DigestMismatch", msg, d);
  if (status === 429 || codes.includes("TOOMANYREQUESTS") || status >= 500) return new UnavailableError(msg, d);
  return new InvalidArgumentError(msg, d);
}
