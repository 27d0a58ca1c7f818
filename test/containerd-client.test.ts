// The containerd client against a real private containerd: content (write with containerd
// verifying digest and size, ranged reads, labels, list, delete), images, leases (content kept
// from GC), namespaces, and the snapshots service with the overlayfs snapshotter.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash, randomBytes } from "node:crypto";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { mkdir } from "node:fs/promises";
import { chainIds, unpackImage } from "../src/pull/unpack.js";
import { parseManifest } from "../src/formats/oci.js";
import { startContainerd, type Containerd } from "./helpers/containerd.js";
import { ContainerdClient } from "../src/containerd/client.js";
import { openLease } from "../src/containerd/leases.js";
import { AlreadyExistsError, FailedPreconditionError, NotFoundError, UnavailableError } from "../src/errors/errors.js";

const run = promisify(execFile);
const sha256 = (b: Uint8Array) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

let ctd: Containerd;
let client: ContainerdClient;

beforeAll(async () => {
  ctd = await startContainerd();
  client = ContainerdClient.connect({ address: ctd.address, namespace: "soci-test" });
}, 60_000);

afterAll(async () => {
  client?.close();
  await ctd?.stop();
});

describe("content", () => {
  it("writes a blob in several messages, verified by containerd, and reads it back whole and by range", async () => {
    const data = randomBytes(3 * 1024 * 1024 + 123);
    const digest = sha256(data);
    const r = await client.content.write(
      data,
      { digest, size: data.length },
      { labels: { "test/kind": "random" }, chunkSize: 1 << 20 },
    );
    expect(r).toEqual({ digest, size: data.length, existed: false });

    const info = await client.content.info(digest);
    expect(info.size).toBe(data.length);
    expect(info.labels).toEqual({ "test/kind": "random" });
    expect(Buffer.from(await client.content.readAll(digest)).equals(data)).toBe(true);
    const part = await client.content.readAll(digest, { offset: 1_500_000, size: 70_000 });
    expect(Buffer.from(part).equals(data.subarray(1_500_000, 1_570_000))).toBe(true);
    // containerd's own copy on disk
    const onDisk = await readFile(
      join(ctd.root, "io.containerd.content.v1.content", "blobs", "sha256", digest.slice(7)),
    );
    expect(onDisk.equals(data)).toBe(true);
  });

  it("writes streamed chunks of any size and a blob without an expected digest", async () => {
    const parts = [randomBytes(10), randomBytes(700_000), randomBytes(1), randomBytes(2_000_000)];
    const all = Buffer.concat(parts);
    async function* gen() {
      for (const p of parts) yield p;
    }
    const r = await client.content.write(gen(), { digest: sha256(all), size: all.length });
    expect(r.digest).toBe(sha256(all));
    const small = Buffer.from("no expected digest\n");
    const r2 = await client.content.write(small);
    expect(r2).toEqual({ digest: sha256(small), size: small.length, existed: false });
  });

  it("rejects a wrong digest or size with a clear error and stores nothing", async () => {
    const data = Buffer.from("the real content\n");
    const wrong = sha256(Buffer.from("something else\n"));
    const err = await client.content.write(data, { digest: wrong, size: data.length }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(FailedPreconditionError);
    expect((err as Error).message).toMatch(
      /^containerd content\.Write: .*unexpected commit digest sha256:[0-9a-f]{64}, expected sha256:[0-9a-f]{64}/,
    );
    expect(await client.content.exists(wrong)).toBe(false);
    expect(await client.content.exists(sha256(data))).toBe(false);

    const sizeErr = await client.content
      .write(data, { digest: sha256(data), size: data.length + 5 })
      .catch((e: Error) => e);
    expect(sizeErr).toBeInstanceOf(FailedPreconditionError);
    expect((sizeErr as Error).message).toMatch(/^containerd content\.Write: .*failed size validation: 17 != 22/);
    expect(await client.content.exists(sha256(data))).toBe(false);
    // no ingest left behind
    const { stdout } = await ctd.ctr(["content", "active"], { namespace: "soci-test" });
    expect(stdout.trim().split("\n").slice(1).filter(Boolean)).toEqual([]);
  });

  it("passes a failing input's error through, stops on abort, and leaves no ingest either way", async () => {
    async function* failing() {
      yield randomBytes(1 << 20);
      throw new Error("source went away");
    }
    const err = await client.content
      .write(failing(), { digest: sha256(Buffer.from("x")), size: 2 << 20 })
      .catch((e: Error) => e);
    expect((err as Error).message).toBe("source went away");

    const ac = new AbortController();
    async function* slow() {
      yield randomBytes(1 << 20);
      ac.abort();
      await new Promise((r) => setTimeout(r, 50));
      yield randomBytes(1 << 20);
    }
    const aborted = await client.content
      .write(slow(), { digest: sha256(Buffer.from("y")), size: 2 << 20 }, { signal: ac.signal })
      .catch((e: Error) => e);
    expect(aborted).toMatchObject({ code: "Canceled" });
    const { stdout } = await ctd.ctr(["content", "active"], { namespace: "soci-test" });
    expect(stdout.trim().split("\n").slice(1).filter(Boolean)).toEqual([]);
  });

  it("lets concurrent writers of the same blob both succeed", async () => {
    const data = randomBytes(2 << 20);
    const d = { digest: sha256(data), size: data.length };
    const rs = await Promise.all([
      client.content.write(data, d),
      client.content.write(data, d),
      client.content.write(data, d),
    ]);
    expect(rs.map((r) => r.digest)).toEqual([d.digest, d.digest, d.digest]);
    expect(rs.filter((r) => !r.existed).length).toBeGreaterThanOrEqual(1);
    expect(Buffer.from(await client.content.readAll(d.digest)).equals(data)).toBe(true);
  });

  it("treats an existing blob as written and merges labels; labels can be set and removed", async () => {
    const data = Buffer.from("twice\n");
    const d = { digest: sha256(data), size: data.length };
    await client.content.write(data, d, { labels: { a: "1" } });
    const again = await client.content.write(data, d, { labels: { b: "2" } });
    expect(again.existed).toBe(true);
    expect((await client.content.info(d.digest)).labels).toEqual({ a: "1", b: "2" });
    const wrongSize = await client.content.write(data, { digest: d.digest, size: d.size + 1 }).catch((e: Error) => e);
    expect(wrongSize).toBeInstanceOf(FailedPreconditionError);
    expect((wrongSize as Error).message).toBe(
      `containerd content.Write: ${d.digest} is stored with 6 bytes, expected 7`,
    );
    await client.content.setLabels(d.digest, { a: "", c: "3" });
    expect((await client.content.info(d.digest)).labels).toEqual({ b: "2", c: "3" });
  });

  it("lists with filters, deletes, and reports a missing blob as NotFound", async () => {
    const data = Buffer.from("listed\n");
    const digest = sha256(data);
    await client.content.write(data, { digest, size: data.length }, { labels: { "test/list": "yes" } });
    const listed = await client.content.list([`labels."test/list"==yes`]);
    expect(listed.map((i) => i.digest)).toEqual([digest]);
    expect((await client.content.list()).length).toBeGreaterThan(3);

    await client.content.delete(digest);
    const err = await client.content.info(digest).catch((e: Error) => e);
    expect(err).toBeInstanceOf(NotFoundError);
    expect((err as Error).message).toBe(`containerd content.Info: content digest ${digest}: not found`);
    const readErr = await client.content.readAll(digest, { size: 3 }).catch((e: Error) => e);
    expect(readErr).toBeInstanceOf(NotFoundError);
    expect(await client.content.exists(digest)).toBe(false);
  });

  it("keeps content in its own namespace", async () => {
    const data = Buffer.from("namespaced\n");
    const digest = sha256(data);
    await client.content.write(data, { digest, size: data.length });
    expect(await client.withNamespace("other-ns").content.exists(digest)).toBe(false);
  });
});

describe("images", () => {
  it("creates, gets, lists with filters, updates labels and target, and deletes", async () => {
    const a = Buffer.from('{"schemaVersion":2}');
    const target = { mediaType: "application/vnd.oci.image.manifest.v1+json", digest: sha256(a), size: a.length };
    const img = await client.images.create({ name: "example.com/test/a:1", target, labels: { x: "y" } });
    expect(img.target).toEqual(target);
    expect(img.createdAt).toBeInstanceOf(Date);

    const dup = await client.images.create({ name: "example.com/test/a:1", target }).catch((e: Error) => e);
    expect(dup).toBeInstanceOf(AlreadyExistsError);
    expect((dup as Error).message).toMatch(/image "example.com\/test\/a:1": already exists/);

    await client.images.create({ name: "example.com/test/b:1", target });
    expect((await client.images.get("example.com/test/a:1")).labels).toEqual({ x: "y" });
    expect((await client.images.list()).map((i) => i.name).sort()).toEqual([
      "example.com/test/a:1",
      "example.com/test/b:1",
    ]);
    expect((await client.images.list([`name=="example.com/test/b:1"`])).map((i) => i.name)).toEqual([
      "example.com/test/b:1",
    ]);
    expect((await client.images.list([`target.digest==${target.digest}`])).length).toBe(2);

    const up = await client.images.setLabels("example.com/test/a:1", { z: "w" });
    expect(up.labels).toEqual({ x: "y", z: "w" });
    const other = { ...target, digest: sha256(Buffer.from("x")), size: 1 };
    const put = await client.images.put({ name: "example.com/test/a:1", target: other });
    expect(put.target.digest).toBe(other.digest);
    expect(put.labels).toEqual({ x: "y", z: "w" });

    await client.images.delete("example.com/test/a:1");
    const gone = await client.images.get("example.com/test/a:1").catch((e: Error) => e);
    expect(gone).toBeInstanceOf(NotFoundError);
    expect((gone as Error).message).toBe(`containerd images.Get: image "example.com/test/a:1": not found`);
    await client.images.delete("example.com/test/b:1");
  });
});

describe("leases", () => {
  it("creates a lease with an expiry, holds content across GC, lists resources, and releases it", async () => {
    const lease = await client.leases.create({ expiresInMs: 3600_000, labels: { purpose: "test" } });
    expect(lease.labels["containerd.io/gc.expire"]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(lease.labels.purpose).toBe("test");
    expect((await client.leases.list()).map((l) => l.id)).toContain(lease.id);

    const leased = client.withLease(lease.id);
    const data = randomBytes(4096);
    const digest = sha256(data);
    await leased.content.write(data, { digest, size: data.length });
    expect(await client.leases.listResources(lease.id)).toContainEqual({ id: digest, type: "content" });

    // unreferenced content without a lease: a synchronous GC (triggered by a sync image delete) removes it
    const loose = randomBytes(4096);
    await client.content.write(loose, { digest: sha256(loose), size: loose.length });
    const t = { mediaType: "application/octet-stream", digest: sha256(loose), size: loose.length };
    await client.images.create({ name: "gc-trigger", target: t });
    await client.images.delete("gc-trigger", { sync: true });
    expect(await client.content.exists(sha256(loose))).toBe(false);
    expect(await client.content.exists(digest)).toBe(true);

    // resources can be added and removed by hand
    const extra = { id: sha256(Buffer.from("extra")), type: "content" };
    await client.leases.addResource(lease.id, extra);
    expect(await client.leases.listResources(lease.id)).toContainEqual(extra);
    await client.leases.deleteResource(lease.id, extra);
    expect(await client.leases.listResources(lease.id)).not.toContainEqual(extra);

    await client.leases.delete(lease.id, { sync: true });
    expect(await client.content.exists(digest)).toBe(false);
    const err = await client.leases.delete(lease.id).catch((e: Error) => e);
    expect(err).toBeInstanceOf(NotFoundError);
  });
});

describe("namespaces", () => {
  it("lists and creates namespaces, with labels", async () => {
    await client.namespaces.create("made-here", { team: "soci" });
    const all = await client.namespaces.list();
    expect(all.map((n) => n.name)).toEqual(expect.arrayContaining(["made-here", "soci-test"]));
    expect((await client.namespaces.get("made-here")).labels).toEqual({ team: "soci" });
    await client.namespaces.setLabels("made-here", { team: "", env: "ci" });
    expect((await client.namespaces.get("made-here")).labels).toEqual({ env: "ci" });
    const dup = await client.namespaces.create("made-here").catch((e: Error) => e);
    expect(dup).toBeInstanceOf(AlreadyExistsError);
    await client.namespaces.delete("made-here");
    expect((await client.namespaces.list()).map((n) => n.name)).not.toContain("made-here");
    expect(() => client.withNamespace("bad namespace!")).toThrow(/invalid namespace name/);
  });
});

describe("snapshots (overlayfs)", () => {
  it("prepares, mounts, commits, stats, views, lists, updates, measures and removes", async () => {
    // under a lease, as a real client works: the removals below trigger containerd's garbage
    // collection, which would otherwise take the unreferenced committed "layer-1" before its turn
    const { leased, release } = await openLease(client);
    try {
      await snapshotLifecycle(leased.snapshots("overlayfs"));
    } finally {
      await release();
    }
  });
});

async function snapshotLifecycle(sn: ReturnType<ContainerdClient["snapshots"]>): Promise<void> {
  const mounts = await sn.prepare("layer-1-active", "", { "containerd.io/snapshot/test": "1" });
  expect(mounts).toHaveLength(1);
  expect(mounts[0]!.type).toBe("bind");
  // write a file into the active snapshot through its mount
  const mnt = await mkdtemp(join(tmpdir(), "ctd-mnt-"));
  try {
    await run("mount", ["-t", mounts[0]!.type, mounts[0]!.source, mnt, "-o", mounts[0]!.options.join(",")]);
    await writeFile(join(mnt, "hello.txt"), "hello from layer 1\n");
    await run("umount", [mnt]);
  } finally {
    await rm(mnt, { recursive: true, force: true });
  }
  expect(await sn.mounts("layer-1-active")).toEqual(mounts);
  expect((await sn.stat("layer-1-active")).kind).toBe("ACTIVE");

  await sn.commit("layer-1", "layer-1-active", { "containerd.io/snapshot/test": "committed" });
  const st = await sn.stat("layer-1");
  expect(st).toMatchObject({
    name: "layer-1",
    parent: "",
    kind: "COMMITTED",
    labels: { "containerd.io/snapshot/test": "committed" },
  });
  expect((await sn.usage("layer-1")).size).toBeGreaterThan(0);
  const gone = await sn.stat("layer-1-active").catch((e: Error) => e);
  expect(gone).toBeInstanceOf(NotFoundError);

  // a child sees the parent's file through an overlay mount
  const child = await sn.prepare("layer-2-active", "layer-1");
  expect(child[0]!.type).toBe("overlay");
  expect(child[0]!.options.some((o) => o.startsWith("lowerdir="))).toBe(true);
  const view = await sn.view("layer-1-view", "layer-1");
  expect(view[0]!.options).toContain("ro");
  expect((await sn.stat("layer-1-view")).kind).toBe("VIEW");

  const names = (await sn.list()).map((i) => i.name).sort();
  expect(names).toEqual(["layer-1", "layer-1-view", "layer-2-active"]);
  expect((await sn.list(["parent==layer-1"])).map((i) => i.name).sort()).toEqual(["layer-1-view", "layer-2-active"]);

  const up = await sn.setLabels("layer-1", { "containerd.io/snapshot/extra": "x" });
  expect(up.labels).toEqual({ "containerd.io/snapshot/test": "committed", "containerd.io/snapshot/extra": "x" });

  const busy = await sn.remove("layer-1").catch((e: Error) => e);
  expect(busy).toBeInstanceOf(FailedPreconditionError);
  expect((busy as Error).message).toMatch(/^containerd snapshots\.Remove: .*child/);
  const exists = await sn.prepare("layer-2-active", "layer-1").catch((e: Error) => e);
  expect(exists).toBeInstanceOf(AlreadyExistsError);

  await sn.remove("layer-2-active");
  await sn.remove("layer-1-view");
  await sn.remove("layer-1");
  expect(await sn.list()).toEqual([]);
  // overlayfs in containerd 1.6 has no Cleanup: a typed Unimplemented error
  const cleanup = await sn.cleanup().catch((e: Error) => e);
  expect(cleanup).toMatchObject({
    code: "Unimplemented",
    message: expect.stringMatching(/does not implement Cleanup/),
  });
}

describe("image import and unpack (content + images + diff + snapshots)", () => {
  /** A gzip layer of the files in `files` (path → content), as `tar` writes it. */
  async function layer(files: Record<string, string>): Promise<{ blob: Buffer; diffId: string }> {
    const src = await mkdtemp(join(tmpdir(), "ctd-layer-"));
    try {
      for (const [path, content] of Object.entries(files)) {
        await mkdir(join(src, path, ".."), { recursive: true });
        await writeFile(join(src, path), content);
      }
      const { stdout } = await run("tar", ["-C", src, "--sort=name", "-cf", "-", "."], {
        encoding: "buffer",
        maxBuffer: 64 << 20,
      });
      const tar = stdout as unknown as Buffer;
      return { blob: gzipSync(tar), diffId: sha256(tar) };
    } finally {
      await rm(src, { recursive: true, force: true });
    }
  }

  /** Writes layers, config and manifest through our client and names the image. */
  async function importImage(
    name: string,
    layers: { blob: Buffer; diffId: string }[],
    diffIds = layers.map((l) => l.diffId),
  ) {
    const json = (v: unknown) => Buffer.from(JSON.stringify(v));
    const lease = await client.leases.create({ expiresInMs: 600_000 });
    const leased = client.withLease(lease.id);
    try {
      const layerDescs = [];
      for (const l of layers) {
        const d = {
          mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
          digest: sha256(l.blob),
          size: l.blob.length,
        };
        await leased.content.write(l.blob, d);
        layerDescs.push(d);
      }
      const config = json({
        architecture: "amd64",
        os: "linux",
        rootfs: { type: "layers", diff_ids: diffIds },
        config: {},
      });
      const configDesc = {
        mediaType: "application/vnd.oci.image.config.v1+json",
        digest: sha256(config),
        size: config.length,
      };
      await leased.content.write(config, configDesc);
      const manifest = json({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: configDesc,
        layers: layerDescs,
      });
      const mDesc = {
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        digest: sha256(manifest),
        size: manifest.length,
      };
      const labels: Record<string, string> = { "containerd.io/gc.ref.content.config": configDesc.digest };
      layerDescs.forEach((d, i) => {
        labels[`containerd.io/gc.ref.content.l.${i}`] = d.digest;
      });
      await leased.content.write(manifest, mDesc, { labels });
      await client.images.create({ name, target: mDesc });
      return { manifest: mDesc, config: configDesc };
    } finally {
      await client.leases.delete(lease.id);
    }
  }

  it("unpacks an image into overlayfs snapshots named by chain ID; a second unpack finds them; GC drops them with the image", async () => {
    const l1 = await layer({ "etc/hello.txt": "hello\n", "app/a.txt": "first\n" });
    const l2 = await layer({ "app/a.txt": "overwritten\n", "app/b.txt": "second\n" });
    const name = "example.com/unpack/test:1";
    const { config } = await importImage(name, [l1, l2]);
    const chains = chainIds([l1.diffId, l2.diffId]);
    expect(chains[0]).toBe(l1.diffId);

    const first = await unpackImage(client, name, "overlayfs");
    expect(first).toEqual({
      chainId: chains[1],
      layers: [
        { chainId: chains[0], outcome: "applied" },
        { chainId: chains[1], outcome: "applied" },
      ],
    });
    const sn = client.snapshots("overlayfs");
    expect(await sn.stat(chains[1]!)).toMatchObject({
      kind: "COMMITTED",
      parent: chains[0],
      labels: { "containerd.io/snapshot.ref": chains[1] },
    });
    expect((await client.content.info(config.digest)).labels["containerd.io/gc.ref.snapshot.overlayfs"]).toBe(
      chains[1],
    );

    // the merged view shows both layers (a lease keeps the view from GC while we look)
    const lease = await client.leases.create({ expiresInMs: 600_000 });
    const mounts = await client.withLease(lease.id).snapshots("overlayfs").view("unpack-view", chains[1]);
    const mnt = await mkdtemp(join(tmpdir(), "ctd-mnt-"));
    try {
      await run("mount", ["-t", mounts[0]!.type, mounts[0]!.source, mnt, "-o", mounts[0]!.options.join(",")]);
      try {
        expect(await readFile(join(mnt, "etc/hello.txt"), "utf8")).toBe("hello\n");
        expect(await readFile(join(mnt, "app/a.txt"), "utf8")).toBe("overwritten\n");
        expect(await readFile(join(mnt, "app/b.txt"), "utf8")).toBe("second\n");
      } finally {
        await run("umount", [mnt]);
      }
    } finally {
      await rm(mnt, { recursive: true, force: true });
    }
    await sn.remove("unpack-view");
    await client.leases.delete(lease.id);

    const again = await unpackImage(client, name, "overlayfs");
    expect(again.layers.map((l) => l.outcome)).toEqual(["existing", "existing"]);

    await client.images.delete(name, { sync: true });
    expect(await sn.list()).toEqual([]);
  });

  it("fetches a missing layer blob through the caller's hook only when it must be extracted", async () => {
    const l1 = await layer({ "lazy/one.txt": "one\n" });
    const l2 = await layer({ "lazy/two.txt": "two\n" });
    const name = "example.com/unpack/lazy:1";
    const { manifest } = await importImage(name, [l1, l2]);
    // drop the second layer's blob (the manifest's GC label is the only thing naming it)
    const layers = parseManifest(await client.content.readAll(manifest.digest)).layers!;
    await client.content.delete(layers[1]!.digest);
    const fetched: string[] = [];
    const res = await unpackImage(client, name, "overlayfs", {
      fetchBlob: async (l, leased) => {
        fetched.push(l.blob.digest);
        await leased.content.write(l2.blob, { digest: l.blob.digest, size: l.blob.size });
      },
    });
    expect(res.layers.map((l) => l.outcome)).toEqual(["applied", "applied"]);
    expect(fetched).toEqual([layers[1]!.digest]);
    await client.images.delete(name, { sync: true });
    expect(await client.snapshots("overlayfs").list()).toEqual([]);
  });

  it("refuses a layer whose content does not match the config's diff ID and leaves no snapshot behind", async () => {
    const l1 = await layer({ "x.txt": "x\n" });
    const name = "example.com/unpack/bad:1";
    await importImage(name, [l1], [sha256(Buffer.from("not the layer"))]);
    const err = await unpackImage(client, name, "overlayfs").catch((e: Error) => e);
    expect((err as Error).message).toMatch(
      /wrong diff id calculated on extraction: sha256:[0-9a-f]{64}, expected sha256:[0-9a-f]{64}/,
    );
    expect(await client.snapshots("overlayfs").list()).toEqual([]);
    await client.images.delete(name, { sync: true });
  });
});

describe("test helper", () => {
  it("registers proxy snapshotter plugins in a second private containerd and cleans up after it", async () => {
    const other = await startContainerd({ proxyPlugins: { soci: { address: "/tmp/soci-helper-test-nothing.sock" } } });
    try {
      const { stdout } = await other.ctr(["plugins", "ls"]);
      expect(stdout).toMatch(/^io\.containerd\.snapshotter\.v1\s+soci\s/m);
      expect(await readFile(other.configPath, "utf8")).toContain(`[proxy_plugins."soci"]`);
      // something left mounted under its directories (as a crashed test might leave)
      await mkdir(join(other.state, "leftover"), { recursive: true });
      await run("mount", ["-t", "tmpfs", "tmpfs", join(other.state, "leftover")]);
    } finally {
      await other.stop();
    }
    await expect(readFile(other.configPath)).rejects.toThrow(/ENOENT/);
    expect(await readFile("/proc/self/mounts", "utf8")).not.toContain(other.dir);
  });
});

describe("connection failures", () => {
  it("reports an address where nothing listens as Unavailable, naming the socket", async () => {
    const c = ContainerdClient.connect({ address: "unix:///tmp/no-such-containerd.sock", timeoutMs: 5000 });
    try {
      const err = await c.images.list().catch((e: Error) => e);
      expect(err).toBeInstanceOf(UnavailableError);
      expect((err as Error).message).toBe(
        "containerd at /tmp/no-such-containerd.sock is not reachable (images.List): connect ENOENT /tmp/no-such-containerd.sock",
      );
    } finally {
      c.close();
    }
  });
});
