// Failures of the local store, in the project's vocabulary (errors/errors.ts). Messages follow the
// reference where the CLI prints them.
import {
  DigestMismatchError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  SociError,
} from "../errors/errors.js";

export { DigestMismatchError };

export class InvalidDigestError extends InvalidArgumentError {
  override name = "InvalidDigestError";
  constructor(readonly digest: string) {
    super(`invalid digest ${JSON.stringify(digest)}`);
  }
}

/** Content longer or shorter than its descriptor says (a digest mismatch by another measure). */
export class SizeMismatchError extends SociError {
  override name = "SizeMismatchError";
  constructor(
    readonly digest: string,
    readonly expected: number,
    readonly actual: number,
  ) {
    super(
      "DigestMismatch",
      `size mismatch for ${digest}: expected ${expected} bytes, got ${actual}${actual > expected ? " or more" : ""}`,
    );
  }
}

export class BlobNotFoundError extends NotFoundError {
  override name = "BlobNotFoundError";
  constructor(readonly digest: string) {
    super(`${digest}: not found`);
  }
}

export class InvalidLayoutError extends FailedPreconditionError {
  override name = "InvalidLayoutError";
  constructor(
    readonly dir: string,
    reason: string,
  ) {
    super(`${dir}: invalid OCI image layout: ${reason}`);
  }
}

export class ArtifactNotFoundError extends NotFoundError {
  override name = "ArtifactNotFoundError";
  constructor(
    readonly digest: string,
    message = `couldn't retrieve artifact for ${digest}, not found`,
  ) {
    super(message);
  }
}

/** `index rm` on a digest whose entry is not an OCI-manifest (i.e. a ztoc or prefetch artifact). */
export class NotAnIndexError extends FailedPreconditionError {
  override name = "NotAnIndexError";
  constructor(readonly digest: string) {
    super(`the digest ${digest} does not correspond to an index`);
  }
}
