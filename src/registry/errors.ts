// Typed failures of the registry client. `code` is the class callers switch on (CLI exit codes,
// gRPC statuses); messages name the operation and a credential-free URL (no userinfo, no query).

export type RegistryErrorCode =
  | "NotFound"
  | "Unauthorized"
  | "Denied"
  | "DigestMismatch"
  | "Unsupported"
  | "Unavailable"
  | "InvalidArgument";

/** One entry of an OCI/Distribution error body: `{"errors":[{"code":"MANIFEST_UNKNOWN",...}]}`. */
export interface OciErrorEntry {
  code: string;
  message?: string;
}

export interface RegistryErrorDetails {
  status?: number;
  /** Error codes from the response body (e.g. MANIFEST_UNKNOWN). */
  ociErrors?: OciErrorEntry[];
  /** Request URL without credentials or query. */
  url?: string;
  cause?: unknown;
}

export class RegistryError extends Error {
  override name = "RegistryError";
  readonly status: number | undefined;
  readonly ociErrors: OciErrorEntry[];
  readonly url: string | undefined;
  constructor(
    readonly code: RegistryErrorCode,
    message: string,
    details: RegistryErrorDetails = {},
  ) {
    super(message, details.cause !== undefined ? { cause: details.cause } : undefined);
    this.status = details.status;
    this.ociErrors = details.ociErrors ?? [];
    this.url = details.url;
  }
}

export class NotFoundError extends RegistryError {
  override name = "NotFoundError";
  constructor(message: string, details?: RegistryErrorDetails) {
    super("NotFound", message, details);
  }
}

export class UnauthorizedError extends RegistryError {
  override name = "UnauthorizedError";
  constructor(message: string, details?: RegistryErrorDetails) {
    super("Unauthorized", message, details);
  }
}

export class DeniedError extends RegistryError {
  override name = "DeniedError";
  constructor(message: string, details?: RegistryErrorDetails) {
    super("Denied", message, details);
  }
}

export class DigestMismatchError extends RegistryError {
  override name = "DigestMismatchError";
  constructor(
    readonly expected: string,
    readonly actual: string,
    details?: RegistryErrorDetails & { what?: string },
  ) {
    super(
      "DigestMismatch",
      `${details?.what ?? "content"} digest mismatch: expected ${expected}, got ${actual}`,
      details,
    );
  }
}

export class UnsupportedError extends RegistryError {
  override name = "UnsupportedError";
  constructor(message: string, details?: RegistryErrorDetails) {
    super("Unsupported", message, details);
  }
}

export class UnavailableError extends RegistryError {
  override name = "UnavailableError";
  constructor(message: string, details?: RegistryErrorDetails) {
    super("Unavailable", message, details);
  }
}

export class InvalidArgumentError extends RegistryError {
  override name = "InvalidArgumentError";
  constructor(message: string, details?: RegistryErrorDetails) {
    super("InvalidArgument", message, details);
  }
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
export function parseOciErrors(body: Uint8Array | string | undefined): OciErrorEntry[] {
  if (body === undefined || body.length === 0) return [];
  try {
    const text = typeof body === "string" ? body : new TextDecoder().decode(body);
    const v = JSON.parse(text) as unknown;
    const errs = (v as { errors?: unknown }).errors;
    if (!Array.isArray(errs)) return [];
    const out: OciErrorEntry[] = [];
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
export function errorFromResponse(what: string, status: number, url: string, body?: Uint8Array): RegistryError {
  const ociErrors = parseOciErrors(body);
  const codes = ociErrors.map((e) => e.code);
  const detail = ociErrors.length
    ? ": " + ociErrors.map((e) => (e.message ? `${e.code}: ${e.message}` : e.code)).join("; ")
    : "";
  const d: RegistryErrorDetails = { status, ociErrors, url: redactUrl(url) };
  const msg = `${what}: ${redactUrl(url)}: ${STATUS_WORDS[status] ?? "HTTP"} (${status})${detail}`;
  if (codes.includes("UNAUTHORIZED") || status === 401) return new UnauthorizedError(msg, d);
  if (codes.includes("DENIED") || status === 403) return new DeniedError(msg, d);
  if (status === 404 || codes.some((c) => NOT_FOUND_CODES.has(c))) return new NotFoundError(msg, d);
  if (codes.includes("UNSUPPORTED") || status === 405 || status === 501) return new UnsupportedError(msg, d);
  if (codes.includes("DIGEST_INVALID")) return new RegistryError("DigestMismatch", msg, d);
  if (status === 429 || codes.includes("TOOMANYREQUESTS") || status >= 500) return new UnavailableError(msg, d);
  return new InvalidArgumentError(msg, d);
}
