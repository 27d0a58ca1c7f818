// The CRI keychain without containerd: the credential cache (reference normalisation, host and
// server_address matching, the AuthConfig forms, forgetting), its place after the docker config in
// the registry authorizer, and the ImageService proxy on the snapshotter's gRPC server against a
// fake CRI backend (bytes passed through unchanged, deadline, metadata, cancellation, error codes
// and trailers, RemoveImage by image ID, v1alpha2, backend down). With containerd's real CRI
// plugin: test/daemon-cri-keychain.test.ts.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import {
  CriCredentials,
  CriImageService,
  backendTarget,
  credentialsFromAuthConfig,
  imageService,
  normalizeImageRef,
  type CriAuthConfig,
} from "../src/cri/index.js";
import { DockerConfigCredentials, RegistryAuthorizer } from "../src/registry/auth.js";
import { startSnapshotterServer, type SnapshotterServer } from "../src/snapshotter/index.js";

const b64 = (s: string) => Buffer.from(s).toString("base64");
const DIGEST = `sha256:${"ab".repeat(32)}`;

describe("normalizeImageRef", () => {
  it("applies Docker Hub defaults and :latest, drops the tag beside a digest", () => {
    expect(normalizeImageRef("busybox")).toBe("docker.io/library/busybox:latest");
    expect(normalizeImageRef("index.docker.io/library/busybox:1.36")).toBe("docker.io/library/busybox:1.36");
    expect(normalizeImageRef("user/app")).toBe("docker.io/user/app:latest");
    expect(normalizeImageRef("127.0.0.1:5000/a/b")).toBe("127.0.0.1:5000/a/b:latest");
    expect(normalizeImageRef(`reg.example.com/a/b:v1@${DIGEST}`)).toBe(`reg.example.com/a/b@${DIGEST}`);
    expect(normalizeImageRef(`reg.example.com/a/b@${DIGEST}`)).toBe(`reg.example.com/a/b@${DIGEST}`);
  });

  it("rejects what is not a reference", () => {
    expect(() => normalizeImageRef("Invalid Reference!")).toThrow();
    expect(() => normalizeImageRef("")).toThrow();
  });
});

describe("credentialsFromAuthConfig (containerd's ParseAuth)", () => {
  const host = "reg.example.com:5000";

  it("username and password", () => {
    expect(credentialsFromAuthConfig({ username: "u", password: "p" }, host)).toEqual({ username: "u", password: "p" });
  });

  it("the base64 `auth` field is user:pass (split at the first colon; NULs trimmed)", () => {
    expect(credentialsFromAuthConfig({ auth: b64("u:p:w") }, host)).toEqual({ username: "u", password: "p:w" });
    expect(credentialsFromAuthConfig({ auth: b64("u:pw\0\0") }, host)).toEqual({ username: "u", password: "pw" });
    // not base64, or no colon: nothing
    expect(credentialsFromAuthConfig({ auth: "***not base64***" }, host)).toBeUndefined();
    expect(credentialsFromAuthConfig({ auth: b64("nocolon") }, host)).toBeUndefined();
  });

  it("an identity token is an OAuth2 refresh token; username/password win over it, it wins over `auth`", () => {
    expect(credentialsFromAuthConfig({ identity_token: "idt" }, host)).toEqual({
      username: "",
      password: "",
      identityToken: "idt",
    });
    expect(credentialsFromAuthConfig({ username: "u", password: "p", identity_token: "idt" }, host)).toEqual({
      username: "u",
      password: "p",
    });
    expect(credentialsFromAuthConfig({ identity_token: "idt", auth: b64("u:p") }, host)).toEqual({
      username: "",
      password: "",
      identityToken: "idt",
    });
  });

  it("server_address must name the host (scheme and path ignored; Docker Hub aliases are one host)", () => {
    const auth = (server_address: string): CriAuthConfig => ({ username: "u", password: "p", server_address });
    expect(credentialsFromAuthConfig(auth(`https://${host}`), host)).toBeDefined();
    expect(credentialsFromAuthConfig(auth(`http://${host}/v2/`), host)).toBeDefined();
    expect(credentialsFromAuthConfig(auth(host), host)).toBeDefined();
    expect(credentialsFromAuthConfig(auth("https://other.example.com"), host)).toBeUndefined();
    expect(credentialsFromAuthConfig(auth("https://reg.example.com:5001"), host)).toBeUndefined();
    expect(credentialsFromAuthConfig(auth("https://index.docker.io/v1/"), "registry-1.docker.io")).toBeDefined();
    expect(credentialsFromAuthConfig(auth("https://index.docker.io/v1/"), "docker.io")).toBeDefined();
  });

  it("nothing for no auth, an empty one, or only a registry token (unsupported, as in containerd 1.6)", () => {
    expect(credentialsFromAuthConfig(undefined, host)).toBeUndefined();
    expect(credentialsFromAuthConfig(null, host)).toBeUndefined();
    expect(credentialsFromAuthConfig({}, host)).toBeUndefined();
    expect(credentialsFromAuthConfig({ registry_token: "rt" }, host)).toBeUndefined();
  });
});

describe("CriCredentials", () => {
  it("remembers per normalized reference and answers for the reference's host only", () => {
    const c = new CriCredentials();
    expect(c.remember("reg.example.com/team/app", { username: "u", password: "p" })).toBe(
      "reg.example.com/team/app:latest",
    );
    expect(c.lookup("reg.example.com")).toEqual({ username: "u", password: "p" });
    expect(c.lookup("REG.example.com")).toEqual({ username: "u", password: "p" });
    expect(c.lookup("reg.example.com:5000")).toBeUndefined();
    expect(c.lookup("other.example.com")).toBeUndefined();
    c.remember("busybox", { auth: b64("hub:pw") });
    for (const h of ["docker.io", "registry-1.docker.io", "index.docker.io"])
      expect(c.lookup(h)).toEqual({ username: "hub", password: "pw" });
  });

  it("answers a repository with its own newest pull only; a host-wide question with the host's newest", () => {
    const c = new CriCredentials();
    c.remember("reg.example.com/a:1", { username: "a", password: "1" });
    c.remember("reg.example.com/b:1", { username: "b", password: "1" });
    expect(c.lookup("reg.example.com")).toEqual({ username: "b", password: "1" });
    expect(c.lookup("reg.example.com", { repository: "a" })).toEqual({ username: "a", password: "1" });
    // another repository's pull secret never serves this one
    expect(c.lookup("reg.example.com", { repository: "c" })).toBeUndefined();
    // a new pull of a makes it the newest
    c.remember("reg.example.com/a:2", { username: "a", password: "2" });
    expect(c.lookup("reg.example.com")).toEqual({ username: "a", password: "2" });
    // entries whose server_address names another host are skipped
    c.remember("reg.example.com/d:1", {
      username: "d",
      password: "1",
      server_address: "https://elsewhere.example.com",
    });
    expect(c.lookup("reg.example.com", { repository: "d" })).toBeUndefined();
    expect(c.lookup("reg.example.com", { repository: "a" })).toEqual({ username: "a", password: "2" });
  });

  it("a pull without credentials replaces the reference's; forget() takes any spelling of the reference", () => {
    const c = new CriCredentials();
    c.remember("busybox:1.36", { username: "u", password: "p" });
    c.remember("docker.io/library/busybox:1.36", {});
    expect(c.size).toBe(0);
    c.remember("busybox:1.36", { username: "u", password: "p" });
    expect(c.forget("index.docker.io/library/busybox:1.36")).toBe(true);
    expect(c.lookup("docker.io")).toBeUndefined();
    expect(c.forget("busybox:1.36")).toBe(false);
    expect(c.forget("Invalid Reference!")).toBe(false);
    expect(() => c.remember("Invalid Reference!", { username: "u", password: "p" })).toThrow();
    expect(c.size).toBe(0);
  });

  it("rollback of a failed pull restores what the reference had, unless a later pull replaced it", () => {
    const c = new CriCredentials();
    c.remember("reg.example.com/a:1", { username: "old", password: "p" });
    c.rememberPull("reg.example.com/a:1", { username: "new", password: "p" }).rollback();
    expect(c.lookup("reg.example.com")).toEqual({ username: "old", password: "p" });
    c.rememberPull("reg.example.com/b:1", { username: "b", password: "p" }).rollback();
    expect(c.size).toBe(1);
    const first = c.rememberPull("reg.example.com/a:1", { username: "first", password: "p" });
    c.rememberPull("reg.example.com/a:1", { username: "second", password: "p" });
    first.rollback();
    expect(c.lookup("reg.example.com")).toEqual({ username: "second", password: "p" });
  });

  it("keeps at most maxEntries references, dropping the oldest", () => {
    const c = new CriCredentials({ maxEntries: 2 });
    for (const r of ["a", "b", "c"]) c.remember(`reg.example.com/${r}:1`, { username: r, password: "p" });
    expect(c.size).toBe(2);
    expect(c.lookup("reg.example.com", { repository: "a" })).toBeUndefined();
    expect(c.lookup("reg.example.com", { repository: "b" })).toEqual({ username: "b", password: "p" });
  });

  it("comes after the docker config in the registry authorizer: the first source with an answer wins", async () => {
    const dir = await mkdtemp(join(tmpdir(), "soci-crikc-unit-"));
    try {
      await writeFile(
        join(dir, "config.json"),
        JSON.stringify({ auths: { "a.example.com": { auth: b64("docker:pw") } } }),
      );
      const cri = new CriCredentials();
      cri.remember("a.example.com/x:1", { username: "cri-a", password: "pw" });
      cri.remember("b.example.com/x:1", { username: "cri-b", password: "pw" });
      const authz = new RegistryAuthorizer({
        credentials: [new DockerConfigCredentials({ configDir: dir }).provider, cri.provider],
      });
      expect(await authz.credentials("a.example.com")).toEqual({ username: "docker", password: "pw" });
      expect(await authz.credentials("b.example.com")).toEqual({ username: "cri-b", password: "pw" });
      expect(await authz.credentials("c.example.com")).toBeUndefined();
      // the repository of the request reaches the CRI source
      cri.remember("b.example.com/y:1", { username: "cri-b-y", password: "pw" });
      expect(await authz.credentials("b.example.com", { repository: "x" })).toEqual({
        username: "cri-b",
        password: "pw",
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

// ------------------------------------------------------------------------------------------------
// The proxy on the snapshotter's server, against a fake CRI backend

interface Seen {
  path: string;
  bytes: Buffer;
  metadata: Record<string, unknown>;
  deadline: number;
  /** what the keychain answered for reg.example.com while the backend handled the call */
  credsDuringCall: unknown;
}

const def = () => imageService().service;
const ID = `sha256:${"cd".repeat(32)}`;

describe("CriImageService on the snapshotter's gRPC server", () => {
  let dir = "";
  let backend: grpc.Server;
  let server: SnapshotterServer;
  let cri: CriImageService;
  let client: grpc.Client;
  const seen: Seen[] = [];
  let cancelledPulls = 0;

  /** The fake containerd CRI: runtime.v1 and v1alpha2 ImageService, requests recorded as bytes. */
  function startBackend(socket: string): Promise<grpc.Server> {
    const s = new grpc.Server();
    for (const svc of ["runtime.v1.ImageService", "runtime.v1alpha2.ImageService"]) {
      const definition: Record<string, grpc.MethodDefinition<Buffer, Buffer>> = {};
      const impl: grpc.UntypedServiceImplementation = {};
      for (const m of ["ListImages", "ImageStatus", "PullImage", "RemoveImage", "ImageFsInfo"] as const) {
        const id = (b: Buffer) => b;
        definition[m] = {
          path: `/${svc}/${m}`,
          requestStream: false,
          responseStream: false,
          requestSerialize: id,
          requestDeserialize: id,
          responseSerialize: id,
          responseDeserialize: id,
        };
        impl[m] = (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
          const d = call.getDeadline();
          seen.push({
            path: `/${svc}/${m}`,
            bytes: call.request,
            metadata: call.metadata.getMap(),
            deadline: d instanceof Date ? d.getTime() : Number(d),
            credsDuringCall: cri.credentials.lookup("reg.example.com"),
          });
          const req = def()[m]!.requestDeserialize(call.request) as { image?: { image?: string } };
          const image = req.image?.image ?? "";
          const ok = (msg: unknown) => cb(null, def()[m]!.responseSerialize(msg));
          if (m === "PullImage") {
            if (image.endsWith(":slow")) {
              call.on("cancelled", () => cancelledPulls++);
              return; // never answers
            }
            if (image.endsWith(":missing")) {
              const md = new grpc.Metadata();
              md.set("x-backend-detail", "no such tag");
              return cb({ code: grpc.status.NOT_FOUND, details: `failed to pull ${image}: not found`, metadata: md });
            }
            return ok({ image_ref: ID });
          }
          if (m === "ImageStatus") {
            if (image === ID || image === "reg.example.com/a:1") {
              return ok({
                image: {
                  id: ID,
                  repo_tags: ["reg.example.com/a:1", "reg.example.com/a:2"],
                  repo_digests: [`reg.example.com/a@${DIGEST}`],
                  size: "1234",
                },
              });
            }
            return ok({});
          }
          if (m === "RemoveImage") {
            if (image === "reg.example.com/busy:1")
              return cb({ code: grpc.status.FAILED_PRECONDITION, details: "image is in use" });
            return ok({});
          }
          if (m === "ListImages") return ok({ images: [{ id: ID, repo_tags: [svc], size: "9007199254740993" }] });
          return ok({
            image_filesystems: [
              {
                timestamp: "1",
                fs_id: { mountpoint: "/var/lib/containerd" },
                used_bytes: { value: "5" },
                inodes_used: { value: "6" },
              },
            ],
          });
        };
      }
      s.addService(definition, impl);
    }
    return new Promise((resolve, reject) =>
      s.bindAsync(`unix:${socket}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve(s))),
    );
  }

  /** A raw call on the snapshotter's socket: request object (or bytes) in, decoded answer out. */
  function call<T>(
    method: string,
    req: object,
    opts: { service?: string; metadata?: grpc.Metadata; deadlineMs?: number; raw?: boolean } = {},
  ): Promise<T> & { cancel(): void } {
    const m = def()[method]!;
    let c: grpc.ClientUnaryCall | undefined;
    const p = new Promise<T>((resolve, reject) => {
      c = client.makeUnaryRequest(
        `/${opts.service ?? "runtime.v1.ImageService"}/${method}`,
        opts.raw ? (b: object) => b as Buffer : m.requestSerialize, // raw: `req` is the encoded bytes
        m.responseDeserialize,
        req,
        opts.metadata ?? new grpc.Metadata(),
        { deadline: Date.now() + (opts.deadlineMs ?? 10_000) },
        (err, res) => (err ? reject(err) : resolve(res as T)),
      );
    });
    return Object.assign(p, { cancel: () => c!.cancel() });
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "soci-crikc-proxy-"));
    backend = await startBackend(join(dir, "containerd.sock"));
    cri = new CriImageService({ backend: `unix://${join(dir, "containerd.sock")}`, watchConnection: false });
    server = await startSnapshotterServer({
      address: join(dir, "soci.sock"),
      root: join(dir, "root"),
      skipOverlayCheck: true,
      extraServices: cri.services,
    });
    client = new grpc.Client(`unix:${join(dir, "soci.sock")}`, grpc.credentials.createInsecure());
  });

  afterAll(async () => {
    client?.close();
    await server?.close();
    cri?.close();
    backend?.forceShutdown();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("backendTarget: bare paths and unix:// are unix sockets", () => {
    expect(backendTarget("/run/containerd/containerd.sock")).toBe("unix:/run/containerd/containerd.sock");
    expect(backendTarget("unix:///run/containerd/containerd.sock")).toBe("unix:/run/containerd/containerd.sock");
  });

  it("the snapshots service is still served beside it", async () => {
    const snapshots = await import("../src/snapshotter/proto.js");
    const Snap = snapshots.snapshotsService();
    const sc = new Snap(
      `unix:${join(dir, "soci.sock")}`,
      grpc.credentials.createInsecure(),
    ) as unknown as grpc.Client & { List: (req: unknown, md: grpc.Metadata) => grpc.ClientReadableStream<unknown> };
    const md = new grpc.Metadata();
    md.set("containerd-namespace", "default");
    const items: unknown[] = [];
    await new Promise<void>((resolve, reject) => {
      const st = sc.List({ snapshotter: "soci" }, md);
      st.on("data", (d) => items.push(d));
      st.on("end", resolve);
      st.on("error", reject);
    });
    sc.close();
    expect(items).toEqual([]);
  });

  it("PullImage: credentials are remembered before the backend pulls, the request reaches it byte for byte (unknown fields too), with metadata and deadline", async () => {
    seen.length = 0;
    const encoded = def().PullImage!.requestSerialize({
      image: { image: "reg.example.com/a:1", annotations: { k: "v" } },
      auth: { username: "u", password: "s3cret" },
      sandbox_config: { metadata: { name: "pod", uid: "1", namespace: "ns", attempt: 0 } },
    });
    // field 99 (length-delimited): a field newer than our proto
    const bytes = Buffer.concat([encoded, Buffer.from([0x9a, 0x06, 0x03, 0x61, 0x62, 0x63])]);
    const md = new grpc.Metadata();
    md.set("x-trace-id", "t-1");
    const started = Date.now();
    const res = await call<{ image_ref: string }>("PullImage", bytes, { raw: true, metadata: md, deadlineMs: 8000 });
    expect(res.image_ref).toBe(ID);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.path).toBe("/runtime.v1.ImageService/PullImage");
    expect(seen[0]!.bytes.equals(bytes)).toBe(true);
    expect(seen[0]!.metadata["x-trace-id"]).toBe("t-1");
    expect(seen[0]!.deadline).toBeGreaterThan(started + 6000);
    expect(seen[0]!.deadline).toBeLessThanOrEqual(started + 8100);
    expect(seen[0]!.credsDuringCall).toEqual({ username: "u", password: "s3cret" });
    expect(cri.credentials.lookup("reg.example.com", { repository: "a" })).toEqual({
      username: "u",
      password: "s3cret",
    });
  });

  it("a failed pull passes the backend's code, message and trailers through and leaves no credentials", async () => {
    const before = cri.credentials.size;
    const err = (await call("PullImage", {
      image: { image: "reg.example.com/m:missing" },
      auth: { username: "m", password: "pw" },
    }).catch((e: unknown) => e)) as grpc.ServiceError;
    expect(err.code).toBe(grpc.status.NOT_FOUND);
    expect(err.details).toBe("failed to pull reg.example.com/m:missing: not found");
    expect(err.metadata.get("x-backend-detail")).toEqual(["no such tag"]);
    expect(seen.at(-1)!.credsDuringCall).toEqual({ username: "m", password: "pw" });
    expect(cri.credentials.size).toBe(before);
    expect(cri.credentials.lookup("reg.example.com", { repository: "m" })).toBeUndefined();
  });

  it("a cancelled call is cancelled at the backend too", async () => {
    const before = cri.credentials.size;
    const p = call("PullImage", {
      image: { image: "reg.example.com/s:slow" },
      auth: { username: "s", password: "pw" },
    });
    for (let i = 0; i < 100 && !seen.some((s) => s.bytes.includes(Buffer.from(":slow"))); i++)
      await new Promise((r) => setTimeout(r, 20));
    p.cancel();
    expect(((await p.catch((e: unknown) => e)) as grpc.ServiceError).code).toBe(grpc.status.CANCELLED);
    for (let i = 0; i < 100 && cancelledPulls === 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(cancelledPulls).toBe(1);
    for (let i = 0; i < 100 && cri.credentials.size !== before; i++) await new Promise((r) => setTimeout(r, 20));
    expect(cri.credentials.size).toBe(before);
  });

  it("ListImages, ImageStatus and ImageFsInfo answer as the backend does (64-bit sizes intact)", async () => {
    const list = await call<{ images: Array<{ id: string; size: string; repo_tags: string[] }> }>("ListImages", {});
    expect(list.images).toMatchObject([{ id: ID, size: "9007199254740993", repo_tags: ["runtime.v1.ImageService"] }]);
    const status = await call<{ image: { id: string } | null }>("ImageStatus", { image: { image: ID } });
    expect(status.image?.id).toBe(ID);
    expect(
      (await call<{ image: unknown }>("ImageStatus", { image: { image: "reg.example.com/none:1" } })).image,
    ).toBeNull();
    const fs = await call<{
      image_filesystems: Array<{ fs_id: { mountpoint: string }; used_bytes: { value: string } }>;
    }>("ImageFsInfo", {});
    expect(fs.image_filesystems).toMatchObject([
      { fs_id: { mountpoint: "/var/lib/containerd" }, used_bytes: { value: "5" } },
    ]);
  });

  it("runtime.v1alpha2 calls go to the backend's v1alpha2 service", async () => {
    const list = await call<{ images: Array<{ repo_tags: string[] }> }>(
      "ListImages",
      {},
      { service: "runtime.v1alpha2.ImageService" },
    );
    expect(list.images[0]!.repo_tags).toEqual(["runtime.v1alpha2.ImageService"]);
    expect(seen.at(-1)!.path).toBe("/runtime.v1alpha2.ImageService/ListImages");
  });

  it("RemoveImage by image ID forgets every name of the image; a refused removal forgets nothing", async () => {
    cri.credentials.clear();
    cri.credentials.remember("reg.example.com/a:1", { username: "a1", password: "pw" });
    cri.credentials.remember(`reg.example.com/a@${DIGEST}`, { username: "ad", password: "pw" });
    cri.credentials.remember("reg.example.com/busy:1", { username: "busy", password: "pw" });
    cri.credentials.remember("reg.example.com/other:1", { username: "other", password: "pw" });
    await expect(call("RemoveImage", { image: { image: "reg.example.com/busy:1" } })).rejects.toMatchObject({
      code: grpc.status.FAILED_PRECONDITION,
      details: "image is in use",
    });
    expect(cri.credentials.size).toBe(4);
    await call("RemoveImage", { image: { image: ID } });
    expect(seen.slice(-2).map((s) => s.path)).toEqual([
      "/runtime.v1.ImageService/ImageStatus",
      "/runtime.v1.ImageService/RemoveImage",
    ]);
    expect(cri.credentials.size).toBe(2);
    expect(cri.credentials.lookup("reg.example.com", { repository: "a" })).toBeUndefined();
    expect(cri.credentials.lookup("reg.example.com", { repository: "other" })).toEqual({
      username: "other",
      password: "pw",
    });
    // by name
    await call("RemoveImage", { image: { image: "reg.example.com/other:1" } });
    expect(cri.credentials.size).toBe(1);
  });

  it("with the backend down, calls fail UNAVAILABLE (and a pull remembers nothing)", async () => {
    const down = new CriImageService({ backend: join(dir, "nothing-here.sock"), watchConnection: false });
    const s = new grpc.Server();
    for (const r of down.services) s.addService(r.definition, r.implementation);
    const sock = join(dir, "down.sock");
    await new Promise<void>((resolve, reject) =>
      s.bindAsync(`unix:${sock}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())),
    );
    const c = new grpc.Client(`unix:${sock}`, grpc.credentials.createInsecure());
    try {
      const m = def().PullImage!;
      const err = await new Promise<grpc.ServiceError>((resolve) =>
        c.makeUnaryRequest(
          "/runtime.v1.ImageService/PullImage",
          m.requestSerialize,
          m.responseDeserialize,
          { image: { image: "reg.example.com/a:1" }, auth: { username: "u", password: "p" } },
          new grpc.Metadata(),
          { deadline: Date.now() + 10_000 },
          (e) => resolve(e!),
        ),
      );
      expect(err.code).toBe(grpc.status.UNAVAILABLE);
      expect(down.credentials.size).toBe(0);
    } finally {
      c.close();
      s.forceShutdown();
      down.close();
    }
  });
});
