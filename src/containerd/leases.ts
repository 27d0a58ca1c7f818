// containerd's lease service. Content and snapshots created under a lease (calls carrying the
// `containerd-lease` header, see ContainerdClient.withLease) are safe from garbage collection
// until the lease is deleted or expires.
import { randomBytes } from "node:crypto";
import type { CallOptions, ContainerdClient, Rpc } from "./client.js";
import { toDate, type Labels, type Timestamp } from "./types.js";

/** containerd's label for a lease's expiry time (RFC 3339). */
export const LEASE_EXPIRE_LABEL = "containerd.io/gc.expire";

export interface Lease {
  id: string;
  createdAt?: Date;
  labels: Labels;
}

/** A leased resource: type `content` (id = digest), `ingests` (id = ref), or `snapshots/<snapshotter>` (id = key). */
export interface LeaseResource {
  id: string;
  type: string;
}

export interface CreateLeaseOptions extends CallOptions {
  /** Default: `soci-<random>`. */
  id?: string;
  /** Lifetime; containerd removes the lease after it (sets `containerd.io/gc.expire`). */
  expiresInMs?: number;
  labels?: Labels;
}

interface ProtoLease {
  id: string;
  createdAt: Timestamp | null;
  labels: Labels;
}

function lease(p: ProtoLease): Lease {
  return { id: p.id, createdAt: toDate(p.createdAt), labels: { ...p.labels } };
}

/** Go's RFC 3339 (`time.RFC3339`, seconds precision, `Z`), the form containerd parses. */
function rfc3339(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

export class LeasesService {
  constructor(private readonly rpc: Rpc) {}

  async create(opts: CreateLeaseOptions = {}): Promise<Lease> {
    const labels: Labels = { ...opts.labels };
    if (opts.expiresInMs !== undefined) labels[LEASE_EXPIRE_LABEL] = rfc3339(new Date(Date.now() + opts.expiresInMs));
    const id = opts.id ?? `soci-${randomBytes(8).toString("hex")}`;
    const res = await this.rpc.unary<unknown, { lease: ProtoLease }>("leases", "Create", { id, labels }, opts);
    return lease(res.lease);
  }

  async list(filters: string[] = [], opts?: CallOptions): Promise<Lease[]> {
    const res = await this.rpc.unary<unknown, { leases: ProtoLease[] }>("leases", "List", { filters }, opts);
    return res.leases.map(lease);
  }

  /** `sync` waits for the garbage collection the deletion triggers. */
  async delete(id: string, opts: CallOptions & { sync?: boolean } = {}): Promise<void> {
    await this.rpc.unary("leases", "Delete", { id, sync: opts.sync ?? false }, opts);
  }

  async addResource(id: string, resource: LeaseResource, opts?: CallOptions): Promise<void> {
    await this.rpc.unary("leases", "AddResource", { id, resource }, opts);
  }

  async deleteResource(id: string, resource: LeaseResource, opts?: CallOptions): Promise<void> {
    await this.rpc.unary("leases", "DeleteResource", { id, resource }, opts);
  }

  async listResources(id: string, opts?: CallOptions): Promise<LeaseResource[]> {
    const res = await this.rpc.unary<unknown, { resources: LeaseResource[] }>("leases", "ListResources", { id }, opts);
    return res.resources.map((r) => ({ id: r.id, type: r.type }));
  }
}

/** How long a lease lives if we die before deleting it (containerd's client default). */
export const LEASE_TTL_MS = 24 * 3600_000;

/** A client whose calls carry a fresh lease, and the deletion of that lease (never throws). */
export interface OpenLease {
  leased: ContainerdClient;
  release(): Promise<void>;
}

/**
 * Creates a lease in `client`'s namespace and returns a client whose writes it holds. The caller
 * releases it once what it wrote is referenced (labelled) by something that keeps it alive.
 */
export async function openLease(client: ContainerdClient): Promise<OpenLease> {
  const lease = await client.leases.create({ expiresInMs: LEASE_TTL_MS });
  return {
    leased: client.withLease(lease.id),
    release: () => client.leases.delete(lease.id).catch(() => undefined),
  };
}

/** Runs `f` with a client whose writes are held by a fresh lease, deleted afterwards. */
export async function withLease<T>(client: ContainerdClient, f: (leased: ContainerdClient) => Promise<T>): Promise<T> {
  const { leased, release } = await openLease(client);
  try {
    return await f(leased);
  } finally {
    await release();
  }
}
