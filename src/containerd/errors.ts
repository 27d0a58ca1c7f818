// Typed failures of containerd calls. containerd encodes its errdefs classes as gRPC status codes
// (SNAPSHOTTER.md §1.2); callers switch on the class (`instanceof NotFoundError`, or `code`).
// Messages name the call and keep containerd's own text, e.g.
// `containerd content.Info: content digest sha256:…: not found`.
import { status as Status, type ServiceError } from "@grpc/grpc-js";

export type ContainerdErrorCode =
  | "NotFound"
  | "AlreadyExists"
  | "FailedPrecondition"
  | "InvalidArgument"
  | "Unavailable"
  | "NotImplemented"
  | "Canceled"
  | "DeadlineExceeded"
  | "Unknown";

export class ContainerdError extends Error {
  override name = "ContainerdError";
  constructor(
    readonly code: ContainerdErrorCode,
    message: string,
    /** The gRPC status code containerd answered with (undefined for client-side failures). */
    readonly grpcCode?: number,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

export class NotFoundError extends ContainerdError {
  override name = "NotFoundError";
  constructor(message: string, grpcCode = Status.NOT_FOUND, options?: ErrorOptions) {
    super("NotFound", message, grpcCode, options);
  }
}

export class AlreadyExistsError extends ContainerdError {
  override name = "AlreadyExistsError";
  constructor(message: string, grpcCode = Status.ALREADY_EXISTS, options?: ErrorOptions) {
    super("AlreadyExists", message, grpcCode, options);
  }
}

export class FailedPreconditionError extends ContainerdError {
  override name = "FailedPreconditionError";
  constructor(message: string, grpcCode = Status.FAILED_PRECONDITION, options?: ErrorOptions) {
    super("FailedPrecondition", message, grpcCode, options);
  }
}

export class InvalidArgumentError extends ContainerdError {
  override name = "InvalidArgumentError";
  constructor(message: string, grpcCode = Status.INVALID_ARGUMENT, options?: ErrorOptions) {
    super("InvalidArgument", message, grpcCode, options);
  }
}

export class UnavailableError extends ContainerdError {
  override name = "UnavailableError";
  constructor(message: string, grpcCode = Status.UNAVAILABLE, options?: ErrorOptions) {
    super("Unavailable", message, grpcCode, options);
  }
}

function isServiceError(err: unknown): err is ServiceError {
  return err instanceof Error && typeof (err as Partial<ServiceError>).code === "number" && "details" in err;
}

/** grpc-js's connection failure text without its boilerplate: `connect ENOENT /run/….sock`. */
function connectionDetails(details: string): string {
  return details
    .replace(/\s*Resolution note:.*$/s, "")
    .replace(/^No connection established\. Last error: (?:Error: )?/, "")
    .replace(/\.$/, "");
}

/**
 * The typed error for a failed call `op` (e.g. `content.Info`). `address` goes into the message
 * when containerd cannot be reached at all.
 */
export function fromGrpcError(err: unknown, op: string, address: string): Error {
  if (!isServiceError(err)) return err instanceof Error ? err : new Error(String(err));
  const details = err.details || err.message;
  const msg = `containerd ${op}: ${details}`;
  const opts = { cause: err };
  switch (err.code) {
    case Status.NOT_FOUND:
      return new NotFoundError(msg, err.code, opts);
    case Status.ALREADY_EXISTS:
      return new AlreadyExistsError(msg, err.code, opts);
    case Status.FAILED_PRECONDITION:
      return new FailedPreconditionError(msg, err.code, opts);
    case Status.INVALID_ARGUMENT:
    case Status.OUT_OF_RANGE:
      return new InvalidArgumentError(msg, err.code, opts);
    case Status.UNAVAILABLE:
      return new UnavailableError(
        `containerd at ${address} is not reachable (${op}): ${connectionDetails(details)}`,
        err.code,
        opts,
      );
    case Status.UNIMPLEMENTED:
      return new ContainerdError("NotImplemented", msg, err.code, opts);
    case Status.CANCELLED:
      return new ContainerdError("Canceled", msg, err.code, opts);
    case Status.DEADLINE_EXCEEDED:
      return new ContainerdError(
        "DeadlineExceeded",
        `containerd ${op}: no answer in time (${details})`,
        err.code,
        opts,
      );
    default:
      return new ContainerdError("Unknown", msg, err.code, opts);
  }
}
