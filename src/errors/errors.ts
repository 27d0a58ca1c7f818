// One error vocabulary for the whole project. Every failure a caller may act on is a SociError
// whose `code` names its class; the classes follow containerd's errdefs (and so gRPC's codes), plus
// DigestMismatch. Subsystems subclass these for their own names (TarError is an InvalidArgument,
// a registry 404 a NotFound) without changing the code. The edges map codes to a gRPC status or a
// CLI exit status in one place (status.ts). API misuse by a programmer (a negative length passed to
// `extract`) stays a plain TypeError/RangeError: no caller should handle it.

/** The stable class of a failure: what a caller switches on. */
export type ErrorCode =
  | "InvalidArgument"
  | "NotFound"
  | "AlreadyExists"
  | "FailedPrecondition"
  | "Unavailable"
  | "DigestMismatch"
  | "Unauthenticated"
  | "PermissionDenied"
  | "DeadlineExceeded"
  | "Canceled"
  | "ResourceExhausted"
  | "Unimplemented"
  | "Unknown";

/** Where a failure came from when it was an HTTP answer (registry calls). */
export interface HttpErrorDetails {
  /** The response's status. */
  httpStatus?: number;
  /** The request URL without credentials or query. */
  url?: string;
  /** Error codes from the registry's error body (e.g. MANIFEST_UNKNOWN). */
  registryErrors?: RegistryErrorEntry[];
}

/** One entry of an OCI distribution error body: `{"errors":[{"code":"MANIFEST_UNKNOWN",…}]}`. */
export interface RegistryErrorEntry {
  code: string;
  message?: string;
}

export interface SociErrorOptions extends ErrorOptions, HttpErrorDetails {}

export class SociError extends Error {
  override name = "SociError";
  readonly httpStatus: number | undefined;
  readonly url: string | undefined;
  readonly registryErrors: RegistryErrorEntry[];

  constructor(
    readonly code: ErrorCode,
    message: string,
    options: SociErrorOptions = {},
  ) {
    super(message, options.cause !== undefined ? { cause: options.cause } : undefined);
    this.httpStatus = options.httpStatus;
    this.url = options.url;
    this.registryErrors = options.registryErrors ?? [];
  }
}

export class InvalidArgumentError extends SociError {
  override name = "InvalidArgumentError";
  constructor(message: string, options?: SociErrorOptions) {
    super("InvalidArgument", message, options);
  }
}

export class NotFoundError extends SociError {
  override name = "NotFoundError";
  constructor(message: string, options?: SociErrorOptions) {
    super("NotFound", message, options);
  }
}

export class AlreadyExistsError extends SociError {
  override name = "AlreadyExistsError";
  constructor(message: string, options?: SociErrorOptions) {
    super("AlreadyExists", message, options);
  }
}

export class FailedPreconditionError extends SociError {
  override name = "FailedPreconditionError";
  constructor(message: string, options?: SociErrorOptions) {
    super("FailedPrecondition", message, options);
  }
}

export class UnavailableError extends SociError {
  override name = "UnavailableError";
  constructor(message: string, options?: SociErrorOptions) {
    super("Unavailable", message, options);
  }
}

/** Content that does not hash (or measure) to what a descriptor, ztoc or index promised. */
export class DigestMismatchError extends SociError {
  override name = "DigestMismatchError";
  constructor(
    readonly expected: string,
    readonly actual: string,
    options?: SociErrorOptions & { what?: string },
  ) {
    const what = options?.what ? `${options.what} ` : "";
    super("DigestMismatch", `${what}digest mismatch: expected ${expected}, got ${actual}`, options);
  }
}

export class UnauthenticatedError extends SociError {
  override name = "UnauthenticatedError";
  constructor(message: string, options?: SociErrorOptions) {
    super("Unauthenticated", message, options);
  }
}

export class PermissionDeniedError extends SociError {
  override name = "PermissionDeniedError";
  constructor(message: string, options?: SociErrorOptions) {
    super("PermissionDenied", message, options);
  }
}

/** An operation that did not finish within its deadline; the message says what it waited for. */
export class DeadlineExceededError extends SociError {
  override name = "DeadlineExceededError";
  constructor(message: string, options?: SociErrorOptions) {
    super("DeadlineExceeded", message, options);
  }
}

export class CanceledError extends SociError {
  override name = "CanceledError";
  constructor(message: string, options?: SociErrorOptions) {
    super("Canceled", message, options);
  }
}

export class ResourceExhaustedError extends SociError {
  override name = "ResourceExhaustedError";
  constructor(message: string, options?: SociErrorOptions) {
    super("ResourceExhausted", message, options);
  }
}

export class UnimplementedError extends SociError {
  override name = "UnimplementedError";
  constructor(message: string, options?: SociErrorOptions) {
    super("Unimplemented", message, options);
  }
}

/** The error and each `cause` below it, outermost first (cycles and depth bounded). */
export function* causeChain(err: unknown): Generator<unknown> {
  const seen = new Set<unknown>();
  for (let e = err; e !== undefined && e !== null && !seen.has(e) && seen.size < 32; ) {
    seen.add(e);
    yield e;
    e = (e as { cause?: unknown }).cause;
  }
}

/** The first error in `err`'s cause chain that satisfies `pred`. */
export function findCause<T>(err: unknown, pred: (e: unknown) => e is T): T | undefined;
export function findCause(err: unknown, pred: (e: unknown) => boolean): unknown;
export function findCause(err: unknown, pred: (e: unknown) => boolean): unknown {
  for (const e of causeChain(err)) if (pred(e)) return e;
  return undefined;
}

/** The code of the outermost SociError in `err`'s cause chain. */
export function errorCodeOf(err: unknown): ErrorCode | undefined {
  return findCause(err, (e): e is SociError => e instanceof SociError)?.code;
}

/** `err` is a SociError of class `code` (the error itself, not a cause). */
export function hasCode(err: unknown, code: ErrorCode): err is SociError {
  return err instanceof SociError && err.code === code;
}

/** An error of the same class with `context` in front of its message (Go's `fmt.Errorf("…: %w")`). */
export function withContext(err: unknown, context: string): Error {
  if (err instanceof SociError) {
    return new SociError(err.code, `${context}: ${err.message}`, {
      cause: err,
      httpStatus: err.httpStatus,
      url: err.url,
      registryErrors: err.registryErrors,
    });
  }
  const msg = err instanceof Error ? err.message : String(err);
  return new Error(`${context}: ${msg}`, { cause: err });
}

/** The message of anything thrown. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
