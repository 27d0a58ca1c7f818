// The daemon's metrics: the reference's families and exposition details, served over real HTTP on
// TCP and on a unix socket and read back with node's http client.
import { afterEach, describe, expect, it } from "vitest";
import { request } from "node:http";
import { createServer } from "node:net";
import { existsSync } from "node:fs";
import { mkdtemp, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { goFloat, serveMetrics, SociMetrics, splitHostPort, type MetricsServer } from "../src/daemon/metrics.js";

interface Reply {
  status: number;
  type: string | undefined;
  body: string;
}

function get(target: { socketPath: string } | { host: string; port: number }, path: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ ...target, path, method: "GET", agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, type: res.headers["content-type"], body }));
    });
    req.on("error", reject);
    req.end();
  });
}

/** The value of the sample line starting with `prefix` (how integration/util_test.go reads it). */
function sample(body: string, prefix: string): number | undefined {
  const line = body.split("\n").find((l) => l.startsWith(prefix + " "));
  return line === undefined ? undefined : Number(line.slice(prefix.length + 1));
}

const servers: MetricsServer[] = [];
afterEach(async () => {
  while (servers.length) await servers.pop()!.close();
});

describe("exposition", () => {
  it("writes counters with alphabetical labels and integer values; the eviction counter starts at 0", async () => {
    const m = new SociMetrics({ processMetrics: false });
    m.countOperation("", "fuse_mount_failure_count");
    m.countOperation("sha256:bb", "synchronous_read_count", 3);
    m.countOperation("sha256:aa", "synchronous_read_count");
    const text = await m.exposition();
    expect(text).toContain(
      "# HELP soci_fs_operation_count The count of soci snapshotter operations. Broken down by operation type and layer sha.\n" +
        "# TYPE soci_fs_operation_count counter\n" +
        'soci_fs_operation_count{layer="",operation_type="background_fetch_work_queue_evicted"} 0\n' +
        'soci_fs_operation_count{layer="",operation_type="fuse_mount_failure_count"} 1\n' +
        'soci_fs_operation_count{layer="sha256:aa",operation_type="synchronous_read_count"} 1\n' +
        'soci_fs_operation_count{layer="sha256:bb",operation_type="synchronous_read_count"} 3\n',
    );
  });

  it("writes histograms with the reference's buckets, le last, cumulative counts, _sum and _count", async () => {
    const m = new SociMetrics({ processMetrics: false });
    m.observeOperation("sha256:aa", "mount", 3);
    m.observeOperation("sha256:aa", "mount", 20000);
    m.observeOperationMicros("", "synchronous_read", 1.5);
    const text = await m.exposition();
    const ms = text.split("\n").filter((l) => l.startsWith("soci_fs_operation_duration_milliseconds"));
    const les = ms.filter((l) => l.includes("_bucket")).map((l) => /le="([^"]+)"/.exec(l)![1]);
    expect(les).toEqual([
      "1",
      "2",
      "4",
      "8",
      "16",
      "32",
      "64",
      "128",
      "256",
      "512",
      "1024",
      "2048",
      "4096",
      "8192",
      "16384",
      "+Inf",
    ]);
    expect(ms[0]).toBe(
      'soci_fs_operation_duration_milliseconds_bucket{layer="sha256:aa",operation_type="mount",le="1"} 0',
    );
    expect(
      sample(text, 'soci_fs_operation_duration_milliseconds_bucket{layer="sha256:aa",operation_type="mount",le="4"}'),
    ).toBe(1);
    expect(
      sample(
        text,
        'soci_fs_operation_duration_milliseconds_bucket{layer="sha256:aa",operation_type="mount",le="16384"}',
      ),
    ).toBe(1);
    expect(
      sample(
        text,
        'soci_fs_operation_duration_milliseconds_bucket{layer="sha256:aa",operation_type="mount",le="+Inf"}',
      ),
    ).toBe(2);
    expect(ms.at(-2)).toBe(
      'soci_fs_operation_duration_milliseconds_sum{layer="sha256:aa",operation_type="mount"} 20003',
    );
    expect(ms.at(-1)).toBe('soci_fs_operation_duration_milliseconds_count{layer="sha256:aa",operation_type="mount"} 2');
    const us = text.split("\n").filter((l) => l.startsWith("soci_fs_operation_duration_microseconds_bucket"));
    expect(us.map((l) => /le="([^"]+)"/.exec(l)![1])).toEqual([
      "1",
      "2",
      "4",
      "8",
      "16",
      "32",
      "64",
      "128",
      "256",
      "512",
      "1024",
      "+Inf",
    ]);
    expect(text).toContain(
      'soci_fs_operation_duration_microseconds_bucket{layer="",operation_type="synchronous_read",le="2"} 1\n',
    );
  });

  it("sorts families by name and leaves out families without samples", async () => {
    const m = new SociMetrics({ processMetrics: false });
    const names = [...(await m.exposition()).matchAll(/^# TYPE (\S+)/gm)].map((x) => x[1]);
    expect(names).toEqual(["soci_fs_operation_count"]);
    m.addBytesServed("sha256:aa", 4096);
    m.setBackgroundFetchQueueSize(5);
    m.addImageOperationCount("sha256:img", "node.Lookup", 7);
    m.observeOperation("", "ztoc_fetch", 1);
    const all = [...(await m.exposition()).matchAll(/^# TYPE (\S+) (\S+)/gm)].map((x) => `${x[1]} ${x[2]}`);
    expect(all).toEqual([
      "soci_fs_bytes_served gauge",
      "soci_fs_image_operation_count_key gauge",
      "soci_fs_operation_count counter",
      "soci_fs_operation_duration_milliseconds histogram",
    ]);
    const text = await m.exposition();
    expect(text).toContain('soci_fs_bytes_served{layer="sha256:aa",operation_type="synchronous_bytes_served"} 4096\n');
    expect(text).toContain(
      'soci_fs_image_operation_count_key{image="",operation_type="background_fetch_work_queue_size"} 5\n' +
        'soci_fs_image_operation_count_key{image="sha256:img",operation_type="node.Lookup"} 7\n',
    );
  });

  it("maps FUSE failures to their counters", async () => {
    const m = new SociMetrics({ processMetrics: false });
    m.countFuseFailure("sha256:aa", "file.Read");
    m.countFuseFailure("sha256:aa", "node.Mystery");
    const text = await m.exposition();
    expect(
      sample(text, 'soci_fs_operation_count{layer="sha256:aa",operation_type="fuse_file_read_failure_count"}'),
    ).toBe(1);
    expect(
      sample(text, 'soci_fs_operation_count{layer="sha256:aa",operation_type="fuse_unknown_operation_failure_count"}'),
    ).toBe(1);
  });

  it("reports mounted layers' sizes at scrape time, until removed", async () => {
    const m = new SociMetrics({ processMetrics: false });
    let fetched = 1024;
    m.addLayer("/var/lib/soci-snapshotter-grpc/snapshotter/snapshots/3/fs", {
      digest: "sha256:cc",
      size: () => 52428800,
      fetchedSize: () => fetched,
    });
    let text = await m.exposition();
    expect(text).toContain(
      "# HELP soci_fs_layer_fetched_size_bytes Total fetched size of the layer\n# TYPE soci_fs_layer_fetched_size_bytes counter\n" +
        'soci_fs_layer_fetched_size_bytes{digest="sha256:cc",mountpoint="/var/lib/soci-snapshotter-grpc/snapshotter/snapshots/3/fs"} 1024\n',
    );
    expect(text).toContain(
      'soci_fs_layer_size_bytes{digest="sha256:cc",mountpoint="/var/lib/soci-snapshotter-grpc/snapshotter/snapshots/3/fs"} 5.24288e+07\n',
    );
    fetched = 4096;
    text = await m.exposition();
    expect(
      sample(
        text,
        'soci_fs_layer_fetched_size_bytes{digest="sha256:cc",mountpoint="/var/lib/soci-snapshotter-grpc/snapshotter/snapshots/3/fs"}',
      ),
    ).toBe(4096);
    m.removeLayer("/var/lib/soci-snapshotter-grpc/snapshotter/snapshots/3/fs");
    expect(await m.exposition()).not.toContain("soci_fs_layer_");
  });

  it("formats numbers like Go's %g and escapes label values", async () => {
    expect(
      [0, -0, 1, -1, 0.5, 1.5, 100000, 123456, 1000000, 52428800, 0.0001, 0.00001, 1e21, NaN, Infinity, -Infinity].map(
        goFloat,
      ),
    ).toEqual([
      "0",
      "0",
      "1",
      "-1",
      "0.5",
      "1.5",
      "100000",
      "123456",
      "1e+06",
      "5.24288e+07",
      "0.0001",
      "1e-05",
      "1e+21",
      "NaN",
      "+Inf",
      "-Inf",
    ]);
    const m = new SociMetrics({ processMetrics: false });
    m.countOperation('we"ird\\layer\nx', "resolve_cache_hit");
    expect(await m.exposition()).toContain(
      'soci_fs_operation_count{layer="we\\"ird\\\\layer\\nx",operation_type="resolve_cache_hit"} 1\n',
    );
  });

  it("includes the process collectors when asked", async () => {
    const text = await new SociMetrics().exposition();
    expect(text).toMatch(/^# TYPE process_cpu_user_seconds_total counter$/m);
    expect(text).toMatch(/^process_resident_memory_bytes \d/m);
  });
});

describe("the /metrics endpoint", () => {
  it("serves over TCP and stops on close", async () => {
    const m = new SociMetrics({ processMetrics: false });
    m.countOperation("", "fuse_mount_failure_count");
    const srv = await serveMetrics({ metricsAddress: "127.0.0.1:0", metricsNetwork: "tcp", noPrometheus: false }, m);
    expect(srv).not.toBeNull();
    servers.push(srv!);
    const { host, port } = splitHostPort(srv!.address);
    expect(host).toBe("127.0.0.1");
    const r = await get({ host: host!, port }, "/metrics");
    expect(r.status).toBe(200);
    expect(r.type).toBe("text/plain; version=0.0.4; charset=utf-8");
    expect(sample(r.body, 'soci_fs_operation_count{layer="",operation_type="fuse_mount_failure_count"}')).toBe(1);
    m.countOperation("", "fuse_mount_failure_count");
    expect(
      sample(
        (await get({ host: host!, port }, "/metrics")).body,
        'soci_fs_operation_count{layer="",operation_type="fuse_mount_failure_count"}',
      ),
    ).toBe(2);
    const nf = await get({ host: host!, port }, "/other");
    expect([nf.status, nf.body]).toEqual([404, "404 page not found\n"]);
    await servers.pop()!.close();
    await expect(get({ host: host!, port }, "/metrics")).rejects.toThrow(/ECONNREFUSED/);
  });

  it("serves on a unix socket, creating its directory and replacing a stale socket file", async () => {
    const dir = await mkdtemp(join(tmpdir(), "soci-metrics-"));
    const path = join(dir, "run", "deeper", "metrics.sock");
    const m = new SociMetrics({ processMetrics: false });
    const first = await serveMetrics({ metricsAddress: path, metricsNetwork: "unix", noPrometheus: false }, m);
    expect(first!.address).toBe(path);
    expect((await stat(path)).isSocket()).toBe(true);
    expect((await get({ socketPath: path }, "/metrics")).body).toContain(
      'operation_type="background_fetch_work_queue_evicted"} 0',
    );
    await first!.close();
    expect(existsSync(path)).toBe(false);
    await writeFile(path, "stale");
    const second = await serveMetrics({ metricsAddress: path, metricsNetwork: "unix", noPrometheus: false }, m);
    servers.push(second!);
    expect((await get({ socketPath: path }, "/metrics")).status).toBe(200);
  });

  it("is off without an address or with no_prometheus", async () => {
    const m = new SociMetrics({ processMetrics: false });
    expect(await serveMetrics({ metricsAddress: "", metricsNetwork: "tcp", noPrometheus: false }, m)).toBeNull();
    expect(
      await serveMetrics({ metricsAddress: "127.0.0.1:0", metricsNetwork: "tcp", noPrometheus: true }, m),
    ).toBeNull();
  });

  it("fails clearly on a bad address or a port in use", async () => {
    const m = new SociMetrics({ processMetrics: false });
    await expect(
      serveMetrics({ metricsAddress: "127.0.0.1", metricsNetwork: "tcp", noPrometheus: false }, m),
    ).rejects.toThrow("failed to get listener for metrics endpoint: address 127.0.0.1: missing port in address");
    const busy = createServer();
    await new Promise<void>((ok) => busy.listen(0, "127.0.0.1", ok));
    const port = (busy.address() as { port: number }).port;
    try {
      await expect(
        serveMetrics({ metricsAddress: `127.0.0.1:${port}`, metricsNetwork: "tcp", noPrometheus: false }, m),
      ).rejects.toThrow(/^failed to get listener for metrics endpoint: .*EADDRINUSE/);
    } finally {
      busy.close();
    }
  });

  it("splits Go host:port forms", () => {
    expect(splitHostPort(":9901")).toEqual({ host: undefined, port: 9901 });
    expect(splitHostPort("[::1]:80")).toEqual({ host: "::1", port: 80 });
    expect(splitHostPort("localhost:0")).toEqual({ host: "localhost", port: 0 });
    expect(() => splitHostPort("::1")).toThrow(/missing port/);
    expect(() => splitHostPort("h:99999")).toThrow(/invalid port/);
  });
});
