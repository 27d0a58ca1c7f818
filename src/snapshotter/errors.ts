// Snapshot failures carry containerd's errdefs class, which the gRPC service turns into the status
// code containerd maps back (SNAPSHOTTER.md §1.2). Messages follow errdefs.ToGRPC:
// "<context>: <class text>", e.g. `snapshot foo: not found`.
import { status as Status } from "@grpc/grpc-js";

export type SnapshotErrorClass =
  | "InvalidArgument"
  | "NotFound"
  | "AlreadyExists"
  | "FailedPrecondition"
  | "Unavailable"
  | "NotImplemented";

/** containerd's text for each class, appended to the context. */
const CLASS_TEXT: Record<SnapshotErrorClass, string> = {
  InvalidArgument: "invalid argument",
  NotFound: "not found",
  AlreadyExists: "already exists",
  FailedPrecondition: "failed precondition",
  Unavailable: "unavailable",
  NotImplemented: "not implemented",
};

const GRPC_CODE: Record<SnapshotErrorClass, Status> = {
  InvalidArgument: Status.INVALID_ARGUMENT,
  NotFound: Status.NOT_FOUND,
  AlreadyExists: Status.ALREADY_EXISTS,
  FailedPrecondition: Status.FAILED_PRECONDITION,
  Unavailable: Status.UNAVAILABLE,
  NotImplemented: Status.UNIMPLEMENTED,
};

export class SnapshotError extends Error {
  override name = "SnapshotError";
  /** @param context what failed, e.g. `snapshot foo`; the class text is appended */
  constructor(
    readonly errorClass: SnapshotErrorClass,
    context: string,
    options?: ErrorOptions & { classTextIncluded?: boolean },
  ) {
    super(options?.classTextIncluded ? context : `${context}: ${CLASS_TEXT[errorClass]}`, options);
  }

  get grpcCode(): Status {
    return GRPC_CODE[this.errorClass];
  }

  /** The same class with more context in front, like Go's fmt.Errorf("…: %w"). */
  wrap(context: string): SnapshotError {
    return new SnapshotError(this.errorClass, `${context}: ${this.message}`, { cause: this, classTextIncluded: true });
  }
}

export const notFound = (context: string) => new SnapshotError("NotFound", context);
export const alreadyExists = (context: string) => new SnapshotError("AlreadyExists", context);
export const failedPrecondition = (context: string) => new SnapshotError("FailedPrecondition", context);
export const invalidArgument = (context: string) => new SnapshotError("InvalidArgument", context);
export const unavailable = (context: string) => new SnapshotError("Unavailable", context);

export function isSnapshotError(err: unknown, cls?: SnapshotErrorClass): err is SnapshotError {
  return err instanceof SnapshotError && (cls === undefined || err.errorClass === cls);
}
