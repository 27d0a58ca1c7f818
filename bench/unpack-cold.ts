// What a layer unpacked by a fresh process costs (a daemon's first pull, `soci mount`): unpackLayer
// in a new Node process — as is, after warmUnpacker() (what the daemon does when it starts), and the
// 4th unpack of one process (a daemon's steady state) — against GNU `tar -xzpf` and `tar -xpf`,
// interleaved round by round. CPU is user + system time of every thread of the unpack (Node's
// process.cpuUsage() over the unpack alone) or of the tar process (the bench's reaped-children time
// from /proc/self/stat): on a shared machine CPU time is the comparable number, wall time is not.
//
//   npm run build && SOCI_BENCH_RUNS=3 npx tsx bench/unpack-cold.ts
//
// Layers: "busybox" — /bin/busybox (busybox-static) and a hard link per applet, gzip -6 (the shape of
// the e2e data image's first layer, ~1 MB, unpacked locally during its pull); "fixture" — bench:unpack's.
import { execFileSync } from "node:child_process";
import { existsSync, linkSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { benchDir, benchRuns } from "./lib/env.js";
import { commandLine, fmt, machineInfo, table, writeResults } from "./lib/report.js";
import { median } from "./lib/timing.js";
import { fixtureLayer } from "./lib/unpack-layers.js";

function busyboxLayer(): string {
  const dir = join(benchDir(), "unpack-busybox");
  const gz = join(dir, "layer.tar.gz");
  if (existsSync(gz)) return gz;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, "src", "bin"), { recursive: true });
  execFileSync("cp", ["/bin/busybox", join(dir, "src", "bin", "busybox")]);
  const applets = execFileSync("/bin/busybox", ["--list"], { encoding: "utf8" }).split("\n");
  for (const a of applets) if (a && a !== "busybox") linkSync(join(dir, "src/bin/busybox"), join(dir, "src/bin", a));
  execFileSync("tar", ["--numeric-owner", "-C", join(dir, "src"), "-cf", join(dir, "layer.tar"), "bin"]);
  execFileSync("sh", ["-c", `gzip -6 -n -c '${dir}/layer.tar' > '${gz}.tmp' && mv '${gz}.tmp' '${gz}'`]);
  rmSync(join(dir, "src"), { recursive: true, force: true });
  return gz;
}

// The child: unpacks `times` times into fresh directories, prints the last one's wall and CPU.
const CHILD = `
import { createReadStream, rmSync } from "node:fs";
const [, , lib, gz, dest, warm, times] = process.argv;
const { unpackLayer, warmUnpacker } = await import(lib);
if (warm === "1") await warmUnpacker();
let r;
for (let i = 0; i < Number(times); i++) {
  rmSync(dest, { recursive: true, force: true });
  const c = process.cpuUsage(), t = performance.now();
  await unpackLayer(createReadStream(gz, { highWaterMark: 1 << 20 }), dest);
  const u = process.cpuUsage(c);
  r = { wall: performance.now() - t, cpu: (u.user + u.system) / 1000 };
}
console.log(JSON.stringify(r));
process.exit(0);
`;

// CPU milliseconds of the bench's reaped children (utime + stime of waited-for processes).
function childrenCpuMs(): number {
  const f = readFileSync("/proc/self/stat", "latin1");
  const fields = f.slice(f.lastIndexOf(")") + 2).split(" ");
  return ((Number(fields[13]) + Number(fields[14])) * 1000) / 100; // clock ticks (USER_HZ 100)
}

function tar(args: string[], dest: string): { wall: number; cpu: number } {
  mkdirSync(dest, { recursive: true });
  const c = childrenCpuMs();
  const t = performance.now();
  execFileSync("tar", [...args, "--xattrs", "--xattrs-include=*", "--numeric-owner", "-C", dest], {
    stdio: ["ignore", "ignore", "ignore"],
  });
  return { wall: performance.now() - t, cpu: childrenCpuMs() - c };
}

async function main(): Promise<void> {
  const runs = benchRuns();
  const work = join(benchDir(), "unpack-cold-work");
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const child = join(work, "..", "unpack-cold-child.mjs");
  writeFileSync(child, CHILD);
  const lib = pathToFileURL(resolve("dist/fs/unpack-layer.js")).href;
  const layers = [
    { name: "busybox", gz: busyboxLayer() },
    { name: "fixture", gz: await fixtureLayer() },
  ];
  const modes: [string, (gz: string, dest: string) => { wall: number; cpu: number }][] = [
    ["unpackLayer, fresh process", (gz, d) => ours(child, lib, gz, d, "0", 1)],
    ["unpackLayer, fresh process after warmUnpacker()", (gz, d) => ours(child, lib, gz, d, "1", 1)],
    ["unpackLayer, 4th in one process", (gz, d) => ours(child, lib, gz, d, "1", 4)],
    ["tar -xzpf", (gz, d) => tar(["-xzpf", gz], d)],
    ["tar -xpf (plain tar)", (gz, d) => tar(["-xpf", gz.replace(/\.gz$/, "")], d)],
  ];
  console.log(`machine: ${JSON.stringify(machineInfo())}`);
  console.log(`command: ${commandLine()}`);
  const rows: string[][] = [];
  const results: unknown[] = [];
  for (const l of layers) {
    const got = modes.map(() => ({ wall: [] as number[], cpu: [] as number[] }));
    for (let i = 0; i < runs; i++) {
      modes.forEach(([, f], m) => {
        const dest = join(work, `m${m}`);
        const r = f(l.gz, dest);
        rmSync(dest, { recursive: true, force: true });
        got[m]!.wall.push(r.wall);
        got[m]!.cpu.push(r.cpu);
      });
    }
    modes.forEach(([name], m) => {
      const g = got[m]!;
      rows.push([l.name, name, fmt(median(g.cpu), 0), fmt(median(g.wall), 0), g.cpu.map((x) => fmt(x, 0)).join(" ")]);
      results.push({ layer: l.name, mode: name, cpuMs: g.cpu, wallMs: g.wall, gzBytes: statSync(l.gz).size });
    });
  }
  rmSync(work, { recursive: true, force: true });
  console.log("");
  console.log(table(["layer", "how", "CPU ms (median)", "wall ms (median)", "CPU ms per run"], rows));
  writeResults("unpack-cold", { runs, results });
}

function ours(child: string, lib: string, gz: string, dest: string, warm: string, times: number) {
  const out = execFileSync(process.execPath, [child, lib, gz, dest, warm, String(times)], { encoding: "utf8" });
  return JSON.parse(out) as { wall: number; cpu: number };
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
