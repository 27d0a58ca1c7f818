// The gRPC services built from the compiled descriptors (build/proto/*.json, proto/compile.mjs)
// against the .proto files they come from, parsed here with protobufjs: same methods, paths and
// streaming, and messages that survive an encode/decode round trip with the conversions the code uses.
import { join } from "node:path";
import protobuf from "protobufjs";
import { describe, expect, it } from "vitest";
import { containerdProtos, grpcService, PROTO_OPTIONS, type ProtoGroup } from "../src/containerd/proto.js";
import { CRI_PROTO_OPTIONS, IMAGE_SERVICE_METHODS, IMAGE_SERVICE_V1 } from "../src/cri/proto.js";
import { fuseHostService } from "../src/fuse-host/protocol.js";

const PROTO = join(import.meta.dirname, "..", "proto");

function parsed(files: string[], keepCase: boolean): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => (target.startsWith(PROTO) ? target : join(PROTO, target));
  root.loadSync(
    files.map((f) => join(PROTO, f)),
    { keepCase },
  );
  return root;
}

const SERVICES: [ProtoGroup, string, string[], boolean][] = [
  ["containerd", "containerd.services.content.v1.Content", ["containerd/services/content/v1/content.proto"], false],
  ["containerd", "containerd.services.diff.v1.Diff", ["containerd/services/diff/v1/diff.proto"], false],
  ["containerd", "containerd.services.images.v1.Images", ["containerd/services/images/v1/images.proto"], false],
  ["containerd", "containerd.services.leases.v1.Leases", ["containerd/services/leases/v1/leases.proto"], false],
  [
    "containerd",
    "containerd.services.namespaces.v1.Namespaces",
    ["containerd/services/namespaces/v1/namespace.proto"],
    false,
  ],
  [
    "containerd",
    "containerd.services.snapshots.v1.Snapshots",
    ["containerd/services/snapshots/v1/snapshots.proto"],
    false,
  ],
  ["fuse-host", "soci.fusehost.v1.FuseHost", ["fuse-host.proto"], false],
  ["cri-api", IMAGE_SERVICE_V1, ["cri-api.proto"], true],
];

describe("compiled proto descriptors", () => {
  it.each(SERVICES)("%s %s: the methods of the .proto", (group, name, files, keepCase) => {
    const source = parsed(files, keepCase).lookupService(name);
    const built = grpcService(group, name).service;
    expect(Object.keys(built).sort()).toEqual(Object.keys(source.methods).sort());
    for (const m of source.methodsArray) {
      const d = built[m.name]!;
      expect(d.path).toBe(`/${name}/${m.name}`);
      expect([d.requestStream, d.responseStream]).toEqual([!!m.requestStream, !!m.responseStream]);
      expect(d.originalName).toBe(m.name[0]!.toLowerCase() + m.name.slice(1));
    }
  });

  it("decodes containerd's messages as the code expects them (camelCase, int64 as number, enums by name, defaults)", () => {
    const { services } = containerdProtos();
    const info = services.content.service.Info!;
    const res = parsed(["containerd/services/content/v1/content.proto"], false).lookupType(
      "containerd.services.content.v1.InfoResponse",
    );
    const wire = res
      .encode(res.fromObject({ info: { digest: "sha256:ab", size: 5_000_000_000, labels: { a: "b" } } }))
      .finish();
    expect(info.responseDeserialize(Buffer.from(wire))).toMatchObject({
      info: { digest: "sha256:ab", size: 5_000_000_000, labels: { a: "b" }, createdAt: null },
    });
    const status = services.content.service.Status!;
    const req = { ref: "r" };
    expect(status.requestDeserialize(status.requestSerialize(req))).toEqual({ ref: "r" });
    const kind = services.snapshots.service.Stat!.responseDeserialize;
    const statRes = parsed(["containerd/services/snapshots/v1/snapshots.proto"], false).lookupType(
      "containerd.services.snapshots.v1.StatSnapshotResponse",
    );
    expect(
      kind(Buffer.from(statRes.encode(statRes.fromObject({ info: { name: "n", kind: 2 } })).finish())),
    ).toMatchObject({
      info: { name: "n", kind: "ACTIVE", parent: "" },
    });
    expect(PROTO_OPTIONS.longs).toBe(Number);
  });

  it("keeps cri-api's snake_case names and 64-bit integers as strings", () => {
    const status = grpcService("cri-api", IMAGE_SERVICE_V1, CRI_PROTO_OPTIONS).service.ImageStatus!;
    const res = parsed(["cri-api.proto"], true).lookupType("runtime.v1.ImageStatusResponse");
    const wire = res.encode(res.fromObject({ image: { id: "x", repo_tags: ["t"], size: 5_000_000_000 } })).finish();
    expect(status.responseDeserialize(Buffer.from(wire))).toMatchObject({
      image: { id: "x", repo_tags: ["t"], repo_digests: [], size: "5000000000" },
    });
    expect(Object.keys(grpcService("cri-api", IMAGE_SERVICE_V1, CRI_PROTO_OPTIONS).service)).toEqual([
      ...IMAGE_SERVICE_METHODS,
    ]);
    expect(Object.keys(fuseHostService().service)).toContain("Mount");
  });

  it("refuses a service the descriptors do not hold", () => {
    expect(() => grpcService("containerd", "containerd.services.tasks.v1.Tasks")).toThrow(/no service/);
  });
});
