// The FUSE host's wire protocol (proto/fuse-host.proto, docs/snapshotter.md §5.8): the service
// definition, where the sockets live, and the conversions between the library's types
// (LayerMountRequest, LayerMetricsSnapshot) and the messages.
import { join } from "node:path";
import type * as grpc from "@grpc/grpc-js";
import { grpcService } from "../containerd/proto.js";
import { errorFromGrpcStatus, grpcStatusOf } from "../errors/status.js";
import type { Descriptor } from "../formats/oci.js";
import type {
  BackgroundSettings,
  LayerMetricsSnapshot,
  LayerMountRequest,
  LayerSettings,
  ServedLayer,
} from "../fs/lazy-layers.js";

export const FUSE_HOST_SERVICE = "soci.fusehost.v1.FuseHost";

/** Ztocs travel inside Mount: allow large ones (the socket is local). */
export const MAX_MESSAGE = 512 << 20;

export const CHANNEL_OPTIONS = {
  "grpc.max_receive_message_length": MAX_MESSAGE,
  "grpc.max_send_message_length": MAX_MESSAGE,
};

/** The host's directory under the daemon root: sockets, log file. */
export function hostDir(root: string): string {
  return join(root, "fuse-host");
}

/** Where the active host listens unless configured otherwise. */
export function defaultHostAddress(root: string): string {
  return join(hostDir(root), "host.sock");
}

/** Where a retired host keeps serving its mounts (next to the active socket). */
export function retiredAddress(activeAddress: string, pid: number): string {
  return join(activeAddress, "..", `retired-${pid}.sock`);
}

/** The FuseHost service (`.service` for a server; the constructor is a client). */
export function fuseHostService(): grpc.ServiceClientConstructor {
  return grpcService("fuse-host", "soci.fusehost.v1.FuseHost");
}

/** A failure as a gRPC status (its SociError code, else UNKNOWN). */
export function toStatus(err: unknown): Partial<grpc.StatusObject> {
  return { code: grpcStatusOf(err), details: err instanceof Error ? err.message : String(err) };
}

/** A failed call as a typed error; `op` names the call. */
export function fromStatus(err: unknown, op: string): Error {
  const e = err as Partial<grpc.ServiceError>;
  if (typeof e.code !== "number") return err instanceof Error ? err : new Error(String(err));
  return errorFromGrpcStatus(e.code, `FUSE host ${op}: ${e.details || e.message}`, { cause: err });
}

// ---------------------------------------------------------------------------------------------------
// Messages (camelCase, int64 as number, as PROTO_OPTIONS load them)

interface WireDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations: Record<string, string>;
}

export interface WireMountRequest {
  mountpoint: string;
  imageRef: string;
  image: string;
  layer: WireDescriptor;
  ztoc: WireDescriptor;
  ztocBlob: Uint8Array;
  ztocTocHead: Uint8Array;
  ztocTocTail: Uint8Array;
  verification: WireDescriptor | null;
  verificationBlob: Uint8Array;
  prefetch: Array<{ startSpan: number; endSpan: number }>;
  settings: WireLayerSettings;
  registry: WireRegistrySettings;
}

interface WireLayerSettings {
  maxSpanVerificationRetries: number;
  fetchTimeoutMs: number;
  disableVerification: boolean;
  attrTimeout: number;
  entryTimeout: number;
  negativeTimeout: number;
  logFuseOperations: boolean;
  fuseMetricsEmitWaitMs: number;
  background: BackgroundSettings | null;
  resolveTimeoutMs: number;
}

interface WireRegistrySettings {
  mirrors: Array<{ host: string; mirrors: Array<{ host: string; insecure: boolean; requestTimeoutSec: number }> }>;
  timeoutMs: number;
  connectTimeoutMs: number;
  deadlineMs: number;
  retries: number;
  baseDelayMs: number;
  maxDelayMs: number;
  credentials: Array<{ host: string; repository: string; username: string; password: string; identityToken: string }>;
}

const wireDescriptor = (d: Descriptor): WireDescriptor => ({
  mediaType: d.mediaType,
  digest: d.digest,
  size: d.size,
  annotations: d.annotations ?? {},
});

function descriptor(w: WireDescriptor | null | undefined, what: string): Descriptor {
  if (!w?.digest) throw new TypeError(`mount request without a ${what} descriptor`);
  const d: Descriptor = { mediaType: w.mediaType, digest: w.digest, size: w.size };
  if (w.annotations && Object.keys(w.annotations).length > 0) d.annotations = { ...w.annotations };
  return d;
}

/** 0 on the wire means "default": undefined here. */
const opt = (n: number | undefined | null) => (n ? n : undefined);

export function mountRequestToWire(req: LayerMountRequest): WireMountRequest {
  const s = req.settings;
  const r = req.registry.settings;
  return {
    mountpoint: req.mountpoint,
    imageRef: req.imageRef,
    image: req.image,
    layer: wireDescriptor(req.layer),
    ztoc: wireDescriptor(req.ztoc),
    ztocBlob: req.ztocBlob ?? new Uint8Array(0),
    ztocTocHead: req.ztocTocPart?.head ?? new Uint8Array(0),
    ztocTocTail: req.ztocTocPart?.tail ?? new Uint8Array(0),
    verification: req.verification ? wireDescriptor(req.verification.descriptor) : null,
    verificationBlob: req.verification?.blob ?? new Uint8Array(0),
    prefetch: (req.prefetch ?? []).map((p) => ({ startSpan: p.startSpan, endSpan: p.endSpan })),
    settings: {
      maxSpanVerificationRetries: s.maxSpanVerificationRetries ?? 0,
      fetchTimeoutMs: s.fetchTimeoutMs ?? 0,
      disableVerification: s.disableVerification ?? false,
      attrTimeout: s.attrTimeout ?? 0,
      entryTimeout: s.entryTimeout ?? 0,
      negativeTimeout: s.negativeTimeout ?? 0,
      logFuseOperations: s.logFuseOperations ?? false,
      fuseMetricsEmitWaitMs: s.fuseMetricsEmitWaitMs ?? 0,
      background: s.background ?? null,
      resolveTimeoutMs: s.resolveTimeoutMs ?? 0,
    },
    registry: {
      mirrors: Object.entries(r.mirrors).map(([host, mirrors]) => ({
        host,
        mirrors: mirrors.map((m) => ({
          host: m.host,
          insecure: m.insecure ?? false,
          requestTimeoutSec: m.request_timeout_sec ?? 0,
        })),
      })),
      timeoutMs: r.timeoutMs ?? 0,
      connectTimeoutMs: r.connectTimeoutMs ?? 0,
      deadlineMs: r.deadlineMs ?? 0,
      retries: r.retries ?? -1,
      baseDelayMs: r.baseDelayMs ?? 0,
      maxDelayMs: r.maxDelayMs ?? 0,
      credentials: req.registry.credentials.map((c) => ({
        host: c.host,
        repository: c.repository ?? "",
        username: c.username,
        password: c.password,
        identityToken: c.identityToken ?? "",
      })),
    },
  };
}

export function mountRequestFromWire(w: WireMountRequest): LayerMountRequest {
  const s = w.settings ?? ({} as Partial<WireLayerSettings>);
  const r = w.registry ?? ({ mirrors: [], credentials: [] } as unknown as WireRegistrySettings);
  const settings: LayerSettings = {
    maxSpanVerificationRetries: s.maxSpanVerificationRetries ?? 0,
    fetchTimeoutMs: opt(s.fetchTimeoutMs),
    disableVerification: s.disableVerification ?? false,
    attrTimeout: opt(s.attrTimeout),
    entryTimeout: opt(s.entryTimeout),
    negativeTimeout: opt(s.negativeTimeout),
    logFuseOperations: s.logFuseOperations ?? false,
    fuseMetricsEmitWaitMs: opt(s.fuseMetricsEmitWaitMs),
    resolveTimeoutMs: opt(s.resolveTimeoutMs),
  };
  if (s.background) settings.background = s.background;
  const mirrors: Record<string, Array<{ host: string; insecure?: boolean; request_timeout_sec?: number }>> = {};
  for (const h of r.mirrors ?? [])
    mirrors[h.host] = h.mirrors.map((m) => ({
      host: m.host,
      insecure: m.insecure,
      ...(m.requestTimeoutSec ? { request_timeout_sec: m.requestTimeoutSec } : {}),
    }));
  return {
    mountpoint: w.mountpoint,
    imageRef: w.imageRef,
    image: w.image,
    layer: descriptor(w.layer, "layer"),
    ztoc: descriptor(w.ztoc, "ztoc"),
    ...(w.ztocBlob?.length ? { ztocBlob: w.ztocBlob } : {}),
    ...(w.ztocTocHead?.length || w.ztocTocTail?.length
      ? { ztocTocPart: { head: w.ztocTocHead ?? new Uint8Array(0), tail: w.ztocTocTail ?? new Uint8Array(0) } }
      : {}),
    ...(w.verification?.digest
      ? {
          verification: {
            descriptor: descriptor(w.verification, "verification"),
            blob: w.verificationBlob ?? new Uint8Array(0),
          },
        }
      : {}),
    ...(w.prefetch?.length
      ? { prefetch: w.prefetch.map((p) => ({ startSpan: p.startSpan, endSpan: p.endSpan })) }
      : {}),
    settings,
    registry: {
      settings: {
        mirrors,
        timeoutMs: opt(r.timeoutMs),
        connectTimeoutMs: opt(r.connectTimeoutMs),
        deadlineMs: opt(r.deadlineMs),
        retries: r.retries >= 0 ? r.retries : undefined,
        baseDelayMs: opt(r.baseDelayMs),
        maxDelayMs: opt(r.maxDelayMs),
      },
      credentials: (r.credentials ?? []).map((c) => ({
        host: c.host,
        ...(c.repository ? { repository: c.repository } : {}),
        username: c.username,
        password: c.password,
        ...(c.identityToken ? { identityToken: c.identityToken } : {}),
      })),
    },
  };
}

interface WireSnapshot {
  source: string;
  layers: Array<{ mountpoint: string; digest: string; size: number; fetchedSize: number }>;
  fuseFailures: Array<{ key: string; operation: string; count: number }>;
  failureStates: number;
  imageOperations: Array<{ key: string; operation: string; count: number }>;
  cacheWriteFailures: Array<{ key: string; operation: string; count: number }>;
}

export function snapshotToWire(s: LayerMetricsSnapshot): WireSnapshot {
  return {
    source: s.source,
    layers: s.layers,
    fuseFailures: s.fuseFailures.map((f) => ({ key: f.layer, operation: f.operation, count: f.count })),
    failureStates: s.failureStates,
    imageOperations: s.imageOperations.map((o) => ({ key: o.image, operation: o.operation, count: o.count })),
    cacheWriteFailures: s.cacheWriteFailures.map((c) => ({ key: c.reason, operation: "cache_write", count: c.count })),
  };
}

export function snapshotFromWire(w: WireSnapshot): LayerMetricsSnapshot {
  return {
    source: w.source,
    layers: (w.layers ?? []).map((l) => ({
      mountpoint: l.mountpoint,
      digest: l.digest,
      size: l.size,
      fetchedSize: l.fetchedSize,
    })),
    fuseFailures: (w.fuseFailures ?? []).map((f) => ({ layer: f.key, operation: f.operation, count: f.count })),
    failureStates: w.failureStates ?? 0,
    imageOperations: (w.imageOperations ?? []).map((o) => ({ image: o.key, operation: o.operation, count: o.count })),
    cacheWriteFailures: (w.cacheWriteFailures ?? []).map((c) => ({
      reason: c.key === "no_space" ? "no_space" : "other",
      count: c.count,
    })),
  };
}

/** What this build's host understands beyond the first protocol version (InfoResponse.features). */
export const HOST_FEATURES = ["layer-verification"] as const;
export type HostFeature = (typeof HOST_FEATURES)[number];

export interface HostInfo {
  /** Absent from hosts older than the field: none. */
  features?: string[];
  pid: number;
  version: string;
  root: string;
  retired: boolean;
  executable: string;
  startedMs: number;
  layers: number;
}

export type { ServedLayer };
