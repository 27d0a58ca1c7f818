// The one place where error classes meet the outside: gRPC status codes (what containerd's errdefs
// reads back, docs/snapshotter.md §1.2) and the CLI's exit status. gRPC codes are numbers here so
// the lowest layers need not load @grpc/grpc-js.
import {
  AlreadyExistsError,
  CanceledError,
  DeadlineExceededError,
  type ErrorCode,
  errorCodeOf,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  ResourceExhaustedError,
  SociError,
  type SociErrorOptions,
  UnauthenticatedError,
  UnavailableError,
  UnimplementedError,
} from "./errors.js";

/** gRPC status codes (google.rpc.Code). */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

const GRPC_OF: Record<ErrorCode, number> = {
  InvalidArgument: GrpcStatus.INVALID_ARGUMENT,
  NotFound: GrpcStatus.NOT_FOUND,
  AlreadyExists: GrpcStatus.ALREADY_EXISTS,
  FailedPrecondition: GrpcStatus.FAILED_PRECONDITION,
  Unavailable: GrpcStatus.UNAVAILABLE,
  // containerd's content service answers a commit with the wrong digest with FailedPrecondition
  DigestMismatch: GrpcStatus.FAILED_PRECONDITION,
  Unauthenticated: GrpcStatus.UNAUTHENTICATED,
  PermissionDenied: GrpcStatus.PERMISSION_DENIED,
  DeadlineExceeded: GrpcStatus.DEADLINE_EXCEEDED,
  Canceled: GrpcStatus.CANCELLED,
  ResourceExhausted: GrpcStatus.RESOURCE_EXHAUSTED,
  Unimplemented: GrpcStatus.UNIMPLEMENTED,
  Unknown: GrpcStatus.UNKNOWN,
};

/** The gRPC status for a failure: its class's, or UNKNOWN for anything unclassified (causes are not consulted). */
export function grpcStatusOf(err: unknown): number {
  return err instanceof SociError ? GRPC_OF[err.code] : GrpcStatus.UNKNOWN;
}

/** The typed error for a gRPC status a peer (containerd, a CRI runtime) answered with. */
export function errorFromGrpcStatus(status: number, message: string, options?: SociErrorOptions): SociError {
  switch (status) {
    case GrpcStatus.INVALID_ARGUMENT:
    case GrpcStatus.OUT_OF_RANGE:
      return new InvalidArgumentError(message, options);
    case GrpcStatus.NOT_FOUND:
      return new NotFoundError(message, options);
    case GrpcStatus.ALREADY_EXISTS:
      return new AlreadyExistsError(message, options);
    case GrpcStatus.FAILED_PRECONDITION:
      return new FailedPreconditionError(message, options);
    case GrpcStatus.UNAVAILABLE:
      return new UnavailableError(message, options);
    case GrpcStatus.UNAUTHENTICATED:
      return new UnauthenticatedError(message, options);
    case GrpcStatus.PERMISSION_DENIED:
      return new PermissionDeniedError(message, options);
    case GrpcStatus.DEADLINE_EXCEEDED:
      return new DeadlineExceededError(message, options);
    case GrpcStatus.CANCELLED:
      return new CanceledError(message, options);
    case GrpcStatus.RESOURCE_EXHAUSTED:
      return new ResourceExhaustedError(message, options);
    case GrpcStatus.UNIMPLEMENTED:
      return new UnimplementedError(message, options);
    default:
      return new SociError("Unknown", message, options);
  }
}

/**
 * The CLI's exit status for a failure. The reference's `soci` exits 1 on every error, and scripts
 * test for that, so every class maps to 1; an interrupted command exits as a shell reports SIGINT.
 */
export function exitStatusOf(err: unknown): number {
  return errorCodeOf(err) === "Canceled" ? 130 : 1;
}

/** The line the CLI and the daemon print on stderr for a failure: `<program>: <message>`. */
export function failureLine(program: string, err: unknown): string {
  return `${program}: ${err instanceof Error ? err.message : String(err)}\n`;
}

/** How the CLI and the daemon end on a failure: the failure line on stderr, then the exit status. */
export function reportAndExit(program: string, err: unknown): never {
  process.stderr.write(failureLine(program, err));
  process.exit(exitStatusOf(err));
}
