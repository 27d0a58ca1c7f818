// The containerd snapshots gRPC service (docs/snapshotter.md §1.1): the ten RPCs mapped onto the
// Snapshotter, failures as gRPC statuses with containerd's error codes (§1.2), List streamed in
// batches of 100 like containerd's contrib/snapshotservice.
import {
  status as Status,
  type ServerErrorResponse,
  type ServerWritableStream,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { invalidArgument } from "./errors.js";
import { grpcStatusOf } from "../errors/status.js";
import { silentLogger, type Logger } from "../log/log.js";
import { requestNamespace } from "./namespace.js";
import type { Mount } from "./overlay-mounts.js";
import type { Snapshotter } from "./snapshotter.js";
import type { Labels, SnapshotInfo, SnapshotKind } from "./snapshot-store.js";

/** Infos per ListSnapshotsResponse message. */
export const LIST_BATCH_SIZE = 100;

const KIND_NAME: Record<SnapshotKind, string> = { view: "VIEW", active: "ACTIVE", committed: "COMMITTED" };

interface KeyRequest {
  key: string;
}
interface CreateRequest extends KeyRequest {
  parent: string;
  labels: Labels | null;
}
interface CommitRequest extends KeyRequest {
  name: string;
  labels: Labels | null;
}
interface UpdateRequest {
  info: { name: string; labels: Labels | null } | null;
  updateMask: { paths: string[] } | null;
}
interface ListRequest {
  filters: string[];
}

function infoMessage(info: SnapshotInfo) {
  return {
    name: info.name,
    parent: info.parent,
    kind: KIND_NAME[info.kind],
    createdAt: info.created,
    updatedAt: info.updated,
    labels: info.labels,
  };
}

const mountMessages = (mounts: Mount[]) => ({ mounts: mounts.map((m) => ({ ...m, target: "" })) });

/** A gRPC status for `err`: its class's code (containerd maps it back), Unknown for anything unclassified. */
export function toStatus(err: unknown): ServerErrorResponse {
  const message = err instanceof Error ? err.message : String(err);
  return Object.assign(new Error(message), { code: grpcStatusOf(err), details: message });
}

/** The service implementation to add to a grpc.Server under the Snapshots service definition. */
export function snapshotsServiceImpl(
  snapshotter: Snapshotter,
  logger: Logger = silentLogger,
): UntypedServiceImplementation {
  type Callback = (err: ServerErrorResponse | null, value?: unknown) => void;
  type Call<R> = { request: R; metadata: import("@grpc/grpc-js").Metadata };

  /** A unary handler: runs `fn`, answers with its result or its error. */
  const unary =
    <R>(rpc: string, fn: (call: Call<R>) => Promise<unknown> | unknown) =>
    (call: Call<R>, callback: Callback) => {
      const { key, parent, name } = call.request as { key?: string; parent?: string; name?: string };
      logger.debug(rpc, { key, parent, name });
      Promise.resolve()
        .then(() => fn(call))
        .then(
          (value) => callback(null, value ?? {}),
          (err: unknown) => {
            const st = toStatus(err);
            // AlreadyExists is the remote-snapshot signal and NotFound answers Stat probes: routine.
            const routine = st.code === Status.ALREADY_EXISTS || st.code === Status.NOT_FOUND;
            const fields = { request: call.request, error: st.details, code: st.code };
            if (routine) logger.debug(`${rpc} failed`, fields);
            else logger.warn(`${rpc} failed`, fields);
            callback(st);
          },
        );
    };

  return {
    Prepare: unary<CreateRequest>("Prepare", async ({ request: r, metadata }) => {
      const ns = requestNamespace(metadata, r.key);
      return mountMessages(await snapshotter.prepare(r.key, r.parent, r.labels ?? {}, ns));
    }),
    View: unary<CreateRequest>("View", async ({ request: r }) =>
      mountMessages(await snapshotter.view(r.key, r.parent, r.labels ?? {})),
    ),
    Mounts: unary<KeyRequest>("Mounts", async ({ request: r }) => mountMessages(await snapshotter.mounts(r.key))),
    Commit: unary<CommitRequest>("Commit", async ({ request: r }) => {
      await snapshotter.commit(r.name, r.key, r.labels ?? {});
    }),
    Remove: unary<KeyRequest>("Remove", async ({ request: r }) => {
      await snapshotter.remove(r.key);
    }),
    Stat: unary<KeyRequest>("Stat", ({ request: r }) => ({ info: infoMessage(snapshotter.stat(r.key)) })),
    Update: unary<UpdateRequest>("Update", ({ request: r }) => {
      if (!r.info) throw invalidArgument("update: info is required");
      const info = snapshotter.update(r.info.name, r.info.labels ?? {}, r.updateMask?.paths ?? []);
      return { info: infoMessage(info) };
    }),
    Usage: unary<KeyRequest>("Usage", async ({ request: r }) => snapshotter.usage(r.key)),
    Cleanup: unary<unknown>("Cleanup", async () => {
      await snapshotter.cleanup();
    }),
    List: (call: ServerWritableStream<ListRequest, unknown>) => {
      let infos: SnapshotInfo[];
      try {
        infos = snapshotter.list(call.request.filters ?? []);
      } catch (err) {
        const st = toStatus(err);
        logger.warn("List failed", { filters: call.request.filters, error: st.details, code: st.code });
        call.emit("error", st);
        return;
      }
      for (let i = 0; i < infos.length; i += LIST_BATCH_SIZE) {
        call.write({ info: infos.slice(i, i + LIST_BATCH_SIZE).map(infoMessage) });
      }
      call.end();
    },
  };
}
