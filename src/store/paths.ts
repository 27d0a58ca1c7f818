// Where the CLI and daemon keep their local state (§4.1). An empty root means the default root.
import { posix } from "node:path";

export const DEFAULT_SOCI_ROOT = "/var/lib/soci-snapshotter-grpc/";
export const ARTIFACTS_DB_NAME = "artifacts.db";
export const CONTENT_DIR_NAME = "content";

/** `ArtifactsDbPath(root)`: `""` → `/var/lib/soci-snapshotter-grpc/artifacts.db`, `/tmp` → `/tmp/artifacts.db`. */
export function artifactsDbPath(root: string): string {
  return posix.join(root === "" ? DEFAULT_SOCI_ROOT : root, ARTIFACTS_DB_NAME);
}

/** The SOCI content store (an OCI layout) under `root`. */
export function contentStorePath(root: string): string {
  return posix.join(root === "" ? DEFAULT_SOCI_ROOT : root, CONTENT_DIR_NAME);
}
