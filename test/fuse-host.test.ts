// The FUSE host's protocol and lifecycle without containerd (docs/snapshotter.md §5.8): real hosts
// on real unix sockets in this process — one host per root, a takeover that retires the running
// host onto a private socket (the active one forwards to it), a retired host done once it serves
// nothing, an idle host done after its idle time, and Mount refusing what it must not serve (a
// mountpoint outside the root, a ztoc whose bytes do not match its digest) with the error's code
// intact across the socket. The mounts themselves are daemon-fuse-host.test.ts's.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { errorCodeOf } from "../src/errors/errors.js";
import { FuseHostConnection } from "../src/fuse-host/connection.js";
import { defaultHostAddress } from "../src/fuse-host/protocol.js";
import { HostRunningError, LogHub, startFuseHost, type FuseHost } from "../src/fuse-host/server.js";
import { JsonLogger } from "../src/log/json-logger.js";
import { InflatePool } from "../src/wasm/pool.js";

let dir = "";
const pool = new InflatePool({ threads: 1 });
const running: FuseHost[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "soci-fuse-host-"));
});

afterAll(async () => {
  for (const h of running) await h.stop().catch(() => undefined);
  await pool.destroy();
  await rm(dir, { recursive: true, force: true });
});

/** A host on `root`, its log lines kept, `done` resolving with why it finished on its own. */
async function host(root: string, opts: { takeover?: boolean; idleExitMs?: number } = {}) {
  const lines: string[] = [];
  const logs = new LogHub({ write: (l: string) => lines.push(l) });
  let finished!: (why: string) => void;
  const done = new Promise<string>((r) => (finished = r));
  const h = await startFuseHost({
    root,
    address: defaultHostAddress(root),
    logger: JsonLogger.create({ sink: logs, level: "debug" }),
    logs,
    pool,
    executable: "/nonexistent/soci-fuse-host.js",
    version: "test",
    ...opts,
    onDone: finished,
  });
  running.push(h);
  return { host: h, lines, done };
}

describe("FUSE host", () => {
  it("serves one root: a second host is refused, a takeover retires the first onto a private socket", async () => {
    const root = await mkdtemp(join(dir, "r"));
    const first = await host(root);
    const socket = defaultHostAddress(root);
    expect((await stat(socket)).mode & 0o777).toBe(0o600); // root only
    expect((await stat(join(root, "fuse-host"))).mode & 0o777).toBe(0o700);
    await expect(host(root)).rejects.toBeInstanceOf(HostRunningError);

    const c = new FuseHostConnection(socket);
    const before = await c.info();
    expect(before).toMatchObject({ pid: process.pid, retired: false, layers: 0, version: "test" });
    const ended = new Promise<string>((r) => c.relayLogs("debug", () => undefined, r));
    await new Promise((r) => setTimeout(r, 100)); // the subscription is in place

    // the first host has no layer: retired, it is done at once and its private socket goes
    const second = await host(root, { takeover: true });
    expect(await ended).toBe("retired");
    expect(await first.done).toBe("retired, and the last layer is unmounted");
    expect(first.host.retired).toBe(true);
    expect(second.lines.join("")).toContain("took over from the running FUSE host");
    c.close();

    const d = new FuseHostConnection(socket);
    expect(await d.info()).toMatchObject({ retired: false });
    expect(await d.list()).toEqual([]);
    expect((await d.metrics()).map((m) => m.layers)).toEqual([[]]);
    d.close();
    expect((await readdir(join(root, "fuse-host"))).filter((n) => n.startsWith("retired-"))).toEqual([]);
  });

  it("refuses a mountpoint outside its root and a ztoc that does not match its digest, with their error codes", async () => {
    const root = await mkdtemp(join(dir, "r"));
    await host(root);
    const c = new FuseHostConnection(defaultHostAddress(root));
    const request = (mountpoint: string) => ({
      mountpoint,
      imageRef: "127.0.0.1:5000/app:latest",
      image: `sha256:${"1".repeat(64)}`,
      layer: { mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: `sha256:${"2".repeat(64)}`, size: 10 },
      ztoc: { mediaType: "application/octet-stream", digest: `sha256:${"3".repeat(64)}`, size: 4 },
      ztocBlob: new Uint8Array([1, 2, 3, 4]),
      settings: {},
      registry: { settings: { mirrors: {} }, credentials: [] },
    });
    const outside = await c.mount(request(join(dir, "elsewhere", "fs")), 10_000).catch((e: unknown) => e);
    expect(errorCodeOf(outside)).toBe("NotFound");
    expect((outside as Error).message).toMatch(/is outside/);
    const mismatch = await c.mount(request(join(root, "snapshots", "1", "fs")), 10_000).catch((e: unknown) => e);
    // a digest mismatch travels as FAILED_PRECONDITION (docs/snapshotter.md §1.2)
    expect(errorCodeOf(mismatch)).toBe("FailedPrecondition");
    expect((mismatch as Error).message).toMatch(/ztoc digest mismatch/);
    c.close();
  });

  it("a host with no layer and no daemon subscribed is done after its idle time; a subscribed daemon keeps it", async () => {
    const root = await mkdtemp(join(dir, "r"));
    const h = await host(root, { idleExitMs: 1 });
    const c = new FuseHostConnection(defaultHostAddress(root));
    c.relayLogs("info", () => undefined);
    await new Promise((r) => setTimeout(r, 5_000)); // two checks of the mount table
    // the features a daemon checks before it hands over layer verification artifacts
    expect(await c.info()).toMatchObject({ layers: 0, features: ["layer-verification"] });
    c.close();
    expect(await h.done).toBe("no layer served and no daemon connected");
  });
});
