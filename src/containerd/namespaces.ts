// containerd's namespace service (not itself namespaced).
import type { CallOptions, Rpc } from "./client.js";
import { labelPaths, type Labels } from "./types.js";

export interface Namespace {
  name: string;
  labels: Labels;
}

export class NamespacesService {
  constructor(private readonly rpc: Rpc) {}

  async list(opts?: CallOptions): Promise<Namespace[]> {
    const res = await this.rpc.unary<unknown, { namespaces: Namespace[] }>("namespaces", "List", { filter: "" }, opts);
    return res.namespaces.map((n) => ({ name: n.name, labels: { ...n.labels } }));
  }

  async get(name: string, opts?: CallOptions): Promise<Namespace> {
    const res = await this.rpc.unary<unknown, { namespace: Namespace }>("namespaces", "Get", { name }, opts);
    return { name: res.namespace.name, labels: { ...res.namespace.labels } };
  }

  /** AlreadyExistsError if it exists. */
  async create(name: string, labels: Labels = {}, opts?: CallOptions): Promise<Namespace> {
    const res = await this.rpc.unary<unknown, { namespace: Namespace }>(
      "namespaces",
      "Create",
      { namespace: { name, labels } },
      opts,
    );
    return { name: res.namespace.name, labels: { ...res.namespace.labels } };
  }

  async setLabels(name: string, labels: Labels, opts?: CallOptions): Promise<Namespace> {
    const res = await this.rpc.unary<unknown, { namespace: Namespace }>(
      "namespaces",
      "Update",
      {
        namespace: { name, labels },
        updateMask: { paths: labelPaths(labels) },
      },
      opts,
    );
    return { name: res.namespace.name, labels: { ...res.namespace.labels } };
  }

  /** FailedPreconditionError while the namespace still holds images, content, snapshots… */
  async delete(name: string, opts?: CallOptions): Promise<void> {
    await this.rpc.unary("namespaces", "Delete", { name }, opts);
  }
}
