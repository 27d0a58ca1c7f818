// Registry failures in the project's vocabulary (errors/errors.ts): an HTTP answer becomes the class
// of its status and error body; messages name the operation and a credential-free URL (no
// userinfo, no query), and the error keeps the status, URL and body codes (HttpErrorDetails).
// Network failures (errno codes, undici's UND_ERR_*, OpenSSL's) are classified by the codes along
// their cause chain: worth a retry, nothing answered, a TLS problem.
import {
  causeChain,
  DigestMismatchError,
  findCause,
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

// ---------------------------------------------------------------------------------------------
// Network failures

/** The string `code` of each error along `err`'s cause chain, outermost first. */
export function errorCodes(err: unknown): string[] {
  const out: string[] = [];
  for (const e of causeChain(err)) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") out.push(code);
  }
  return out;
}

const RETRYABLE_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EAI_AGAIN",
  "ENETUNREACH",
  "EHOSTUNREACH",
  "UND_ERR_SOCKET",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
  "UND_ERR_CLOSED",
  "UND_ERR_RES_CONTENT_LENGTH_MISMATCH",
  "UND_ERR_REQ_RETRY",
]);

/** True for network-level failures worth another attempt (reset, refused, timeouts, truncated bodies). */
export function isRetryableNetworkError(err: unknown): boolean {
  return (
    findCause(err, (e) => {
      const { code, name } = e as { code?: unknown; name?: unknown };
      return (
        (typeof code === "string" && RETRYABLE_CODES.has(code)) || name === "TimeoutError" || name === "SocketError"
      );
    }) !== undefined
  );
}

/**
 * Nothing answered: refused, unroutable, no such host, no connection within the dial timeout, or
 * no response headers within the request timeout (a host that accepts and stays silent).
 */
const UNRESPONSIVE_CODES = new Set([
  "ECONNREFUSED",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "ENOTFOUND",
  "EAI_AGAIN",
]);

/** The endpoint did not answer at all: the next one is tried at once, and this one skipped for a while. */
export function isUnresponsive(err: unknown): boolean {
  return errorCodes(err).some((c) => UNRESPONSIVE_CODES.has(c));
}

/** A TLS client hello answered with plain HTTP: the endpoint is an http:// one. */
export function speaksPlainHttp(err: unknown): boolean {
  return errorCodes(err).includes("ERR_SSL_WRONG_VERSION_NUMBER");
}

const TLS_CODE = /^(CERT_|UNABLE_TO_|SELF_SIGNED_|DEPTH_ZERO_|ERR_TLS_|ERR_SSL_|HOSTNAME_MISMATCH)/;

/** A certificate/handshake failure, described; undefined for anything else. */
export function tlsProblem(err: unknown): string | undefined {
  const e = findCause(err, (x) => {
    const code = (x as { code?: unknown }).code;
    return typeof code === "string" && TLS_CODE.test(code);
  }) as Error & { code: string };
  if (!e) return undefined;
  const why =
    e.code === "SELF_SIGNED_CERT_IN_CHAIN" ||
    e.code === "DEPTH_ZERO_SELF_SIGNED_CERT" ||
    e.code.startsWith("UNABLE_TO_")
      ? "certificate signed by an unknown authority"
      : "handshake failed";
  return `${why} (${e.code}: ${e.message})`;
}

/** Errors after which the next endpoint (mirror → upstream) is tried. */
export function fallsThrough(err: unknown): boolean {
  return err instanceof NotFoundError || err instanceof UnavailableError || isRetryableNetworkError(err);
}

/**
 * A failure of `what` (e.g. "GET blob") on `url` as a SociError: network and TLS failures become
 * Unavailable naming the request; anything else undici or Node raised (a `code`d error) too.
 * SociErrors and programming errors (TypeError, RangeError without a code) pass through.
 */
export function networkError(what: string, url: string, err: unknown): unknown {
  if (err instanceof SociError) return err;
  const where = redactUrl(url);
  const tls = tlsProblem(err);
  if (tls) {
    return new UnavailableError(
      `${what}: ${where}: TLS: ${tls} (trust the registry's CA with \`ca\` in hosts.toml, or set skip_verify = true)`,
      { cause: err, url: where },
    );
  }
  const code = errorCodes(err)[0];
  if (code === "UND_ERR_INVALID_ARG") {
    // undici refused the request itself (e.g. a hosts.toml header value it cannot send)
    return new InvalidArgumentError(`${what}: ${where}: ${(err as Error).message}`, { cause: err, url: where });
  }
  if (code !== undefined || isRetryableNetworkError(err)) {
    const msg = err instanceof Error ? err.message : String(err);
    return new UnavailableError(`${what}: ${where}: ${code ? `${code}: ` : ""}${msg}`, { cause: err, url: where });
  }
  return err;
}
