// containerd answers with its errdefs classes encoded as gRPC status codes (docs/snapshotter.md
// §1.2); a failed call becomes the project's error of the same class (errors/status.ts). Messages
// name the call and keep containerd's own text, e.g.
// `containerd content.Info: content digest sha256:…: not found`.
import type { ServiceError } from "@grpc/grpc-js";
import { DeadlineExceededError, SociError, UnavailableError } from "../errors/errors.js";
import { errorFromGrpcStatus, GrpcStatus } from "../errors/status.js";

/** An answer from containerd that breaks the protocol (out-of-order data, a missing reply). */
export class ContainerdProtocolError extends SociError {
  override name = "ContainerdProtocolError";
  constructor(message: string) {
    super("Unknown", message);
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
  if (!isServiceError(err))
    return err instanceof Error ? err : new SociError("Unknown", `containerd ${op}: ${String(err)}`);
  const details = err.details || err.message;
  const opts = { cause: err };
  switch (err.code) {
    case GrpcStatus.UNAVAILABLE:
      return new UnavailableError(
        `containerd at ${address} is not reachable (${op}): ${connectionDetails(details)}`,
        opts,
      );
    case GrpcStatus.DEADLINE_EXCEEDED:
      return new DeadlineExceededError(`containerd ${op}: no answer in time (${details})`, opts);
    default:
      return errorFromGrpcStatus(err.code, `containerd ${op}: ${details}`, opts);
  }
}
