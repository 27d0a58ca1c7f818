// containerd's diff service: extract a layer blob (read from containerd's content store) onto
// the mounts of an active snapshot, as containerd's own unpacker does.
import type { CallOptions, Rpc } from "./client.js";
import type { Mount, ProtoDescriptor } from "./types.js";

/** Layer extraction can take a while for big layers. */
const APPLY_TIMEOUT_MS = 10 * 60_000;

export class DiffService {
  constructor(private readonly rpc: Rpc) {}

  /** Applies `layer` onto `mounts`; returns the uncompressed layer's descriptor (digest = diff ID). */
  async apply(layer: ProtoDescriptor, mounts: Mount[], opts: CallOptions = {}): Promise<ProtoDescriptor> {
    const res = await this.rpc.unary<unknown, { applied: ProtoDescriptor }>(
      "diff",
      "Apply",
      {
        diff: {
          mediaType: layer.mediaType,
          digest: layer.digest,
          size: layer.size,
          annotations: layer.annotations ?? {},
        },
        mounts: mounts.map((m) => ({ type: m.type, source: m.source, target: m.target ?? "", options: m.options })),
      },
      { timeoutMs: APPLY_TIMEOUT_MS, ...opts },
    );
    return { mediaType: res.applied.mediaType, digest: res.applied.digest, size: res.applied.size };
  }
}
