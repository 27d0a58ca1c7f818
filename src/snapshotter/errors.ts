// Snapshot failures in containerd's errdefs classes, which the gRPC service answers as status codes
// containerd maps back (docs/snapshotter.md §1.2). Messages follow errdefs.ToGRPC:
// "<context>: <class text>", e.g. `snapshot foo: not found`.
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  UnavailableError,
} from "../errors/errors.js";

export const notFound = (context: string) => new NotFoundError(`${context}: not found`);
export const alreadyExists = (context: string) => new AlreadyExistsError(`${context}: already exists`);
export const failedPrecondition = (context: string) => new FailedPreconditionError(`${context}: failed precondition`);
export const invalidArgument = (context: string) => new InvalidArgumentError(`${context}: invalid argument`);
export const unavailable = (context: string) => new UnavailableError(`${context}: unavailable`);
