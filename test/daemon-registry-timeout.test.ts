// The daemon bounds its registry fetches by `[blob] fetching_timeout_sec` (docs/snapshotter.md §5.3):
// a labelled Prepare of a SOCI image whose registry goes silent right after the image manifest
// (SOCI index, config and everything else accepted and never answered, through a fault-injecting
// proxy in front of a real registry) ends within that timeout, deferred to containerd, and the
// daemon's log says what it waited for. Without the bound the SOCI index fetch alone would wait
// 9 attempts × 30 s for headers.
import * as grpc from "@grpc/grpc-js";
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseIndex, parseManifest } from "../src/formats/oci.js";
import { SociIndexArtifactTypeV2 } from "../src/formats/soci-index.js";
import { RegistryClient } from "../src/registry/client.js";
import { snapshotsService } from "../src/snapshotter/proto.js";
import { startFaultProxy, type FaultProxy } from "./helpers/fault-proxy.js";
import { startRegistry, type RegistryServer } from "./helpers/registry-server.js";
import { SOCI_BIN, spawnDaemon, unmountAllUnder, type SociDaemon } from "./helpers/soci-daemon.js";
import { pushTestImage } from "./helpers/test-image.js";

const run = promisify(execFile);
const REPO = "timeout/img";

let dir = "";
let registry: RegistryServer;
let faults: FaultProxy;
let daemon: SociDaemon | undefined;
let manifestDigest = "";
let layerDigest = "";

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "soci-daemon-timeout-"));
  registry = await startRegistry();
  faults = await startFaultProxy(registry.host);
  const client = new RegistryClient({ plainHttp: true });
  try {
    await pushTestImage(client, registry.host, REPO, "v1", 256 << 10);
    await run(process.execPath, [
      SOCI_BIN,
      "--root",
      join(dir, "cli"),
      "convert",
      "--plain-http",
      "--min-layer-size",
      "0",
      `${registry.host}/${REPO}:v1`,
      `${registry.host}/${REPO}:soci`,
    ]);
    const index = parseIndex((await client.getManifest(`${registry.host}/${REPO}:soci`)).bytes);
    const image = index.manifests!.find((m) => m.artifactType !== SociIndexArtifactTypeV2)!;
    manifestDigest = image.digest;
    const manifest = parseManifest((await client.getManifest(`${registry.host}/${REPO}:soci`, image)).bytes);
    layerDigest = manifest.layers![0]!.digest;
  } finally {
    await client.close();
  }
  await writeFile(
    join(dir, "config.toml"),
    ["[blob]", "fetching_timeout_sec = 3", "[background_fetch]", "disable = true", ""].join("\n"),
  );
  daemon = spawnDaemon({ address: join(dir, "soci.sock"), root: join(dir, "root"), config: join(dir, "config.toml") });
  await daemon.ready;
}, 120_000);

afterAll(async () => {
  await daemon?.stop("SIGINT");
  await faults?.close();
  await registry?.stop();
  if (dir) {
    await unmountAllUnder(dir);
    await rm(dir, { recursive: true, force: true });
  }
});

/** Prepare over the daemon's socket, as containerd sends it for a layer of an image it pulls. */
function prepare(key: string, labels: Record<string, string>): Promise<unknown> {
  const Ctor = snapshotsService();
  const c = new Ctor(`unix:${join(dir, "soci.sock")}`, grpc.credentials.createInsecure()) as grpc.Client &
    Record<string, (this: grpc.Client, ...args: unknown[]) => unknown>;
  return new Promise<unknown>((ok, fail) =>
    c.Prepare!.call(
      c,
      { snapshotter: "soci", key, parent: "", labels },
      new grpc.Metadata(),
      (e: Error | null, r: unknown) => (e ? fail(e) : ok(r)),
    ),
  ).finally(() => c.close());
}

describe("daemon registry fetches under fetching_timeout_sec", () => {
  it("a registry silent after the image manifest: Prepare ends within the timeout, deferred, saying what it waited for", async () => {
    // the image manifest is served; the SOCI index, the config and the rest are never answered
    faults.setRules([{ path: new RegExp(`^/v2/${REPO}/(?!manifests/${manifestDigest}$)`), action: { kind: "stall" } }]);
    const t0 = Date.now();
    const res = (await prepare(`default/1/extract-timeout ${layerDigest}`, {
      "containerd.io/snapshot.ref": `chain-timeout-${Date.now()}`,
      "containerd.io/snapshot/cri.image-ref": `${faults.host}/${REPO}:soci`,
      "containerd.io/snapshot/cri.manifest-digest": manifestDigest,
      "containerd.io/snapshot/cri.layer-digest": layerDigest,
    })) as { mounts: unknown[] };
    const elapsed = Date.now() - t0;
    // deferred: an ordinary active snapshot for containerd to unpack into
    expect(res.mounts.length).toBeGreaterThan(0);
    expect(elapsed).toBeLessThan(30_000); // 3 s and change, not minutes
    const manifestGets = faults.log.filter((l) => l.path === `/v2/${REPO}/manifests/${manifestDigest}`);
    expect(manifestGets.some((l) => l.status === 200)).toBe(true);
    expect(faults.log.some((l) => l.fault === "stall")).toBe(true);
    const failed = daemon!.lines("remote-snapshot-prepared").find((l) => l["remote-snapshot-prepared"] === "false");
    expect(failed?.error).toMatch(
      new RegExp(`^GET (manifest|blob) http://${faults.host}/v2/${REPO}/\\S+: no response within 3s \\(deadline\\)$`),
    );
  });
});
