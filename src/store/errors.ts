// Typed failures of the local store. `code` names the class the CLI/gRPC edge maps to an exit
// code or status; messages follow the reference where the CLI prints them.

export type StoreErrorCode = "InvalidArgument" | "NotFound" | "DigestMismatch" | "FailedPrecondition";

export abstract class StoreError extends Error {
  abstract readonly code: StoreErrorCode;
}

export class InvalidDigestError extends StoreError {
  override name = "InvalidDigestError";
  readonly code = "InvalidArgument";
  constructor(readonly digest: string) {
    super(`invalid digest ${JSON.stringify(digest)}`);
  }
}

export class DigestMismatchError extends StoreError {
  override name = "DigestMismatchError";
  readonly code = "DigestMismatch";
  constructor(
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`digest mismatch: expected ${expected}, got ${actual}`);
  }
}

export class SizeMismatchError extends StoreError {
  override name = "SizeMismatchError";
  readonly code = "DigestMismatch";
  constructor(
    readonly digest: string,
    readonly expected: number,
    readonly actual: number,
  ) {
    super(
      `size mismatch for ${digest}: expected ${expected} bytes, got ${actual}${actual > expected ? " or more" : ""}`,
    );
  }
}

export class BlobNotFoundError extends StoreError {
  override name = "BlobNotFoundError";
  readonly code = "NotFound";
  constructor(readonly digest: string) {
    super(`${digest}: not found`);
  }
}

export class InvalidLayoutError extends StoreError {
  override name = "InvalidLayoutError";
  readonly code = "FailedPrecondition";
  constructor(
    readonly dir: string,
    reason: string,
  ) {
    super(`${dir}: invalid OCI image layout: ${reason}`);
  }
}

export class ArtifactNotFoundError extends StoreError {
  override name = "ArtifactNotFoundError";
  readonly code = "NotFound";
  constructor(
    readonly digest: string,
    message = `couldn't retrieve artifact for ${digest}, not found`,
  ) {
    super(message);
  }
}

/** `index rm` on a digest whose entry is not an OCI-manifest (i.e. a ztoc or prefetch artifact). */
export class NotAnIndexError extends StoreError {
  override name = "NotAnIndexError";
  readonly code = "FailedPrecondition";
  constructor(readonly digest: string) {
    super(`the digest ${digest} does not correspond to an index`);
  }
}
