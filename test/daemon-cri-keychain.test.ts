// The CRI keychain (docs/snapshotter.md §5.4, reference docs/registry-authentication.md "CRI
// Credentials"): a kubelet pointed at the snapshotter's socket (`--image-service-endpoint`) pulls a
// SOCI image from a registry that requires credentials. The daemon has no docker config; it only
// learns the credentials from the PullImage it forwards to containerd's CRI plugin (the test's
// CRI client plays the kubelet). containerd 1.6 runs with its CRI plugin on `snapshotter = "soci"`,
// the registry is Distribution 2.8 with token auth.
//
// Phases: (1) the daemon without the keychain: the snapshotter socket has no ImageService, and a
// pull straight through containerd's CRI gives the daemon no credentials, so every layer is left to
// containerd; (2) the daemon restarted with `[cri_keychain] enable_keychain = true` and
// `image_service_path` = containerd's socket: the same kind of pull through the snapshotter's
// socket gives FUSE-mounted layers, a container reads them, ImageStatus/ListImages/ImageFsInfo
// answer as containerd's do, errors keep their codes; (3) RemoveImage through the proxy forgets the
// credentials: a later pull straight through containerd is again left to containerd. The
// password never appears in any daemon log.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { startRegistry, type RegistryServer } from "./helpers/registry-server.js";
import { startTokenServer, type TokenServer } from "./helpers/token-server.js";
import { makeSigningCert } from "./helpers/tls-certs.js";
import type { Containerd } from "./helpers/containerd.js";
import { startCriContainerd } from "./helpers/cri/containerd.js";
import { criImageClient, imageServiceClient, type CriImage, type CriImageClient } from "./helpers/cri/client.js";
import { pushTestImage, type PushedImage } from "./helpers/test-image.js";
import {
  SOCI_BIN,
  fuseMountsUnder,
  spawnDaemon,
  unmountAllUnder,
  waitForSnapshotter,
  type SociDaemon,
} from "./helpers/soci-daemon.js";
import { RegistryClient } from "../src/registry/client.js";
import { RegistryAuthorizer } from "../src/registry/auth.js";

const run = promisify(execFile);
const K8S = "k8s.io";
const USER = "kube-puller";
const PASS = `cri-pw-${randomBytes(12).toString("hex")}`;
const SERVICE = "soci-cri-registry";
const ISSUER = "soci-cri-issuer";
const MIN_LAYER_SIZE = 100_000;

let dir = "";
let tokens: TokenServer;
let registry: RegistryServer;
let ctd: Containerd | undefined;
let daemon: SociDaemon | undefined;
/** the kubelet's view through the snapshotter's socket (the CRI keychain's proxy) */
let viaSoci: CriImageClient | undefined;
/** containerd's CRI plugin, called directly */
let direct: CriImageClient | undefined;
/** every daemon's output of the file (the no-secrets check reads it all) */
let allDaemonLogs = "";
const images: Record<string, PushedImage> = {};
const soci = (name: string) => `${registry.host}/cri/${name}:soci`;

const sock = () => join(dir, "soci.sock");
const daemonRoot = () => join(dir, "soci-root");
const fuseMounts = () => fuseMountsUnder(daemonRoot());
/** an empty docker config: the daemon has no credentials of its own */
const dockerConfigDir = () => join(dir, "docker");

async function startDaemon(keychain: boolean): Promise<void> {
  const toml = ["[background_fetch]", "disable = true"];
  if (keychain)
    toml.push("[cri_keychain]", "enable_keychain = true", `image_service_path = ${JSON.stringify(ctd!.socket)}`);
  await writeFile(join(dir, "config.toml"), toml.join("\n") + "\n");
  const d = spawnDaemon({
    address: sock(),
    root: daemonRoot(),
    config: join(dir, "config.toml"),
    env: { ...process.env, DOCKER_CONFIG: dockerConfigDir() },
  });
  daemon = d;
  d.proc.stdout!.on("data", (b: Buffer) => (allDaemonLogs += b.toString()));
  d.proc.stderr!.on("data", (b: Buffer) => (allDaemonLogs += b.toString()));
  await d.ready;
  await waitForSnapshotter((args) => ctd!.ctr(args, { namespace: K8S }));
}

interface Outcome {
  remote: number;
  local: number;
  deferred: number;
}

/** Per-layer outcomes the daemon logged since `from` (an offset in its log). */
async function outcomes(from: number, layers = 3): Promise<Outcome> {
  const count = (): Outcome => {
    const lines = daemon!
      .log()
      .slice(from)
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Record<string, string>);
    return {
      remote: lines.filter((l) => l["remote-snapshot-prepared"] === "true").length,
      local: lines.filter((l) => l["local-snapshot-prepared"] === "true").length,
      deferred: lines.filter((l) => l["defer-snapshot-runtime"] === "true").length,
    };
  };
  // the outcome lines are written before containerd gets the answer; give the pipe a moment
  for (let i = 0; i < 50; i++) {
    const o = count();
    if (o.remote + o.local + o.deferred >= layers) return o;
    await new Promise((r) => setTimeout(r, 100));
  }
  return count();
}

const withLogs = (e: Error): never => {
  throw new Error(
    `${e.message}\ncontainerd log:\n${ctd?.log().slice(-3000)}\ndaemon log:\n${daemon?.log().slice(-5000)}`,
  );
};

/** Digests in containerd's content store (k8s.io). */
async function contentDigests(): Promise<string[]> {
  const { stdout } = await ctd!.ctr(["content", "ls", "-q"], { namespace: K8S });
  return stdout.split("\n").filter(Boolean);
}

const lazyLayers = (img: PushedImage) => img.layers.filter((l) => l.size >= MIN_LAYER_SIZE).map((l) => l.digest);
const byId = (list: CriImage[]) => [...list].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));

/** A raw unary call on the snapshotter's socket (any service path), with the runtime.v1 messages. */
function rawCall(path: string, method: "ListImages" | "ImageStatus", req: unknown): Promise<unknown> {
  const def = imageServiceClient().service[method]!;
  const client = new grpc.Client(`unix:${sock()}`, grpc.credentials.createInsecure());
  return new Promise<unknown>((resolve, reject) => {
    client.makeUnaryRequest(
      path,
      def.requestSerialize,
      def.responseDeserialize,
      req,
      new grpc.Metadata(),
      { deadline: Date.now() + 30_000 },
      (err, res) => {
        client.close();
        if (err) reject(err);
        else resolve(res);
      },
    );
  });
}

/** The outcome of a call: its answer, or its gRPC code and message. */
async function settle<T>(p: Promise<T>): Promise<{ ok: T } | { code: number; details: string }> {
  try {
    return { ok: await p };
  } catch (e) {
    const err = e as grpc.ServiceError;
    return { code: err.code, details: err.details };
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "soci-crikc-"));
  await mkdir(dockerConfigDir());
  const cert = await makeSigningCert(dir);
  tokens = await startTokenServer({
    users: { [USER]: PASS },
    keyPem: cert.keyPem,
    certDerBase64: cert.certDerBase64,
    issuer: ISSUER,
    service: SERVICE,
  });
  registry = await startRegistry({
    token: { realm: tokens.realm, service: SERVICE, issuer: ISSUER, rootCertBundle: cert.certFile },
  });

  // three private images, each SOCI-converted (`soci convert --user`): busybox and data layers get
  // ztocs, the tiny /etc layer does not
  const pusher = new RegistryClient({
    plainHttp: true,
    authorizer: new RegistryAuthorizer({ user: `${USER}:${PASS}`, dockerConfig: false }),
  });
  try {
    for (const name of ["before", "img", "after"])
      images[name] = await pushTestImage(pusher, registry.host, `cri/${name}`, "latest", 2 << 20);
  } finally {
    await pusher.close();
  }
  await Promise.all(
    ["before", "img", "after"].map((name) =>
      run(
        "node",
        [
          SOCI_BIN,
          "--root",
          join(dir, `convert-${name}`),
          "convert",
          "--plain-http",
          "--user",
          `${USER}:${PASS}`,
          "--min-layer-size",
          String(MIN_LAYER_SIZE),
          "--span-size",
          String(256 << 10),
          `${registry.host}/cri/${name}:latest`,
          soci(name),
        ],
        { env: { ...process.env, DOCKER_CONFIG: dockerConfigDir() } },
      ),
    ),
  );
  for (const img of Object.values(images)) expect(lazyLayers(img)).toHaveLength(2);

  // containerd first: the daemon's CRI keychain needs its socket path (the proxy plugin dials later)
  ctd = await startCriContainerd({ dir, sociSocket: sock(), registryHost: registry.host });
  direct = criImageClient(ctd.socket);
  await startDaemon(false);
  viaSoci = criImageClient(sock());
}, 300_000);

afterAll(async () => {
  viaSoci?.close();
  direct?.close();
  await ctd?.stop().catch(() => undefined);
  await daemon?.stop("SIGINT").catch(() => undefined);
  await unmountAllUnder(dir);
  await registry?.stop();
  await tokens?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 60_000);

describe("CRI keychain off ([cri_keychain] enable_keychain = false)", () => {
  it("the snapshotter's socket serves no ImageService", async () => {
    const r = await settle(viaSoci!.listImages());
    expect(r).toMatchObject({ code: grpc.status.UNIMPLEMENTED });
  });

  it("a pull with credentials straight through containerd's CRI: the daemon cannot reach the private image, containerd unpacks every layer", async () => {
    const from = daemon!.log().length;
    const ref = await direct!.pullImage(soci("before"), { auth: { username: USER, password: PASS } }).catch(withLogs);
    expect(ref).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(await outcomes(from)).toEqual({ remote: 0, local: 0, deferred: 3 });
    expect(await fuseMounts()).toHaveLength(0);
    // containerd downloaded the layers the daemon could not serve
    const digests = await contentDigests();
    for (const d of images.before!.layers.map((l) => l.digest)) expect(digests).toContain(d);
  }, 120_000);
});

describe("CRI keychain on: the kubelet talks to the snapshotter's socket", () => {
  beforeAll(async () => {
    await daemon!.stop("SIGINT");
    await startDaemon(true);
  }, 60_000);

  it("ImageService answers through the snapshotter as containerd's does", async () => {
    for (let i = 0; i < 50 && !daemon!.log().includes("connected to backend CRI service"); i++)
      await new Promise((r) => setTimeout(r, 100));
    expect(daemon!.lines("msg").find((l) => l.msg === "connected to backend CRI service")).toMatchObject({
      address: ctd!.socket,
    });
    expect(await viaSoci!.imageStatus(soci("img"))).toBeNull();
    expect(byId(await viaSoci!.listImages())).toEqual(byId(await direct!.listImages()));
    const status = await viaSoci!.imageStatus(soci("before"));
    expect(status).not.toBeNull();
    expect(status).toEqual(await direct!.imageStatus(soci("before")));
  }, 60_000);

  it("PullImage with credentials through the snapshotter: the daemon uses them, the indexed layers are FUSE mounts", async () => {
    const from = daemon!.log().length;
    const ref = await viaSoci!
      .pullImage(soci("img"), {
        auth: { username: USER, password: PASS, server_address: `http://${registry.host}` },
        sandbox: { name: "kc-pod", namespace: "default", uid: "5e1f" },
      })
      .catch(withLogs);
    expect(ref).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(await outcomes(from)).toEqual({ remote: 2, local: 1, deferred: 0 });
    const mounts = await fuseMounts();
    expect(mounts).toHaveLength(2);
    const listings = await Promise.all(mounts.map((mp) => readdir(mp)));
    expect(listings.flat().sort()).toEqual(expect.arrayContaining(["bin", "data"]));
    // containerd never downloaded the lazily loaded layers
    const digests = await contentDigests();
    for (const d of lazyLayers(images.img!)) expect(digests).not.toContain(d);
    // the daemon logged the pull without its credentials
    const pulls = daemon!.lines("with-auth");
    expect(pulls.at(-1)).toMatchObject({ msg: "CRI PullImage", image: soci("img"), "with-auth": true });
  }, 120_000);

  it("a container of the image reads its lazily loaded files", async () => {
    const img = images.img!;
    const sha = createHash("sha256").update(img.files.big).digest("hex");
    const r = await ctd!
      .ctr(
        [
          "run",
          "--rm",
          "--snapshotter",
          "soci",
          "--runc-root",
          join(dir, "runc"),
          soci("img"),
          `kc-${randomBytes(3).toString("hex")}`,
          "/bin/sh",
          "-c",
          "cat /id /etc/hello /data/f7.txt; sha256sum /data/big.bin",
        ],
        { namespace: K8S },
      )
      .catch(withLogs);
    expect(r.stdout).toBe(`${img.files.id}\n${img.files.hello}${img.files.id} file 7\n${sha}  /data/big.bin\n`);
  }, 120_000);

  it("ImageStatus, ListImages (v1 and v1alpha2) and ImageFsInfo through the proxy match containerd's answers", async () => {
    const status = await viaSoci!.imageStatus(soci("img"));
    expect(status).not.toBeNull();
    expect(status!.id).toBe((await direct!.imageStatus(soci("img")))!.id);
    expect(status).toEqual(await direct!.imageStatus(soci("img")));
    expect(status!.repo_tags).toContain(soci("img"));
    const listed = byId(await viaSoci!.listImages());
    expect(listed.map((i) => i.id)).toContain(status!.id);
    expect(listed).toEqual(byId(await direct!.listImages()));
    // a filter passes through too (containerd 1.6 ignores it and lists every image)
    expect(byId(await viaSoci!.listImages(soci("img")))).toEqual(byId(await direct!.listImages(soci("img"))));
    // the v1alpha2 API (older kubelets) is proxied as well
    const alpha = (await rawCall("/runtime.v1alpha2.ImageService/ListImages", "ListImages", {})) as {
      images: CriImage[];
    };
    expect(byId(alpha.images).map((i) => i.id)).toEqual(listed.map((i) => i.id));
    const [fsViaSoci, fsDirect] = await Promise.all([viaSoci!.imageFsInfo(), direct!.imageFsInfo()]);
    expect(fsViaSoci.image_filesystems.length).toBeGreaterThan(0);
    expect(fsViaSoci.image_filesystems.map((f) => f.fs_id?.mountpoint)).toEqual(
      fsDirect.image_filesystems.map((f) => f.fs_id?.mountpoint),
    );
  }, 60_000);

  it("errors come back with containerd's code and message (and a failed pull leaves no credentials behind)", async () => {
    // a reference containerd cannot parse (Unknown), and a tag the registry does not have (NotFound)
    const cases: Array<[string, grpc.status]> = [
      ["Invalid Reference!", grpc.status.UNKNOWN],
      [`${registry.host}/cri/img:missing`, grpc.status.NOT_FOUND],
    ];
    for (const [image, code] of cases) {
      const [a, b] = await Promise.all([
        settle(viaSoci!.pullImage(image, { auth: { username: USER, password: PASS } })),
        settle(direct!.pullImage(image, { auth: { username: USER, password: PASS } })),
      ]);
      expect(a).toMatchObject({ code, details: expect.stringContaining(image) });
      expect(a).toEqual(b);
    }
  }, 60_000);

  it("RemoveImage through the proxy removes the image and forgets its credentials", async () => {
    await viaSoci!.removeImage(soci("img"));
    expect(await viaSoci!.imageStatus(soci("img"))).toBeNull();
    expect(daemon!.lines("forgotten-auth-entries").at(-1)).toMatchObject({
      image: soci("img"),
      "forgotten-auth-entries": 1,
    });
    // wait for containerd's GC to take the snapshots (and their FUSE mounts) away
    for (let i = 0; i < 50 && (await fuseMounts()).length > 0; i++) {
      await ctd!.ctr(["snapshots", "--snapshotter", "soci", "ls"], { namespace: K8S });
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(await fuseMounts()).toHaveLength(0);
    // RemoveImage stays idempotent through the proxy
    await viaSoci!.removeImage(soci("img"));

    // a pull straight through containerd (not the proxy): the daemon has no credentials left for
    // the registry, so again every layer is containerd's
    const from = daemon!.log().length;
    await direct!.pullImage(soci("after"), { auth: { username: USER, password: PASS } }).catch(withLogs);
    expect(await outcomes(from)).toEqual({ remote: 0, local: 0, deferred: 3 });
    expect(await fuseMounts()).toHaveLength(0);
  }, 120_000);

  it("the password never appears in the daemon's logs", () => {
    expect(allDaemonLogs.length).toBeGreaterThan(0);
    expect(allDaemonLogs).not.toContain(PASS);
    expect(allDaemonLogs).not.toContain(Buffer.from(`${USER}:${PASS}`).toString("base64"));
  });
});
