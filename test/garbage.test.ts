// src/wasm/garbage.ts in a node started as the daemon is (--expose-gc, small young generation):
// span-sized buffers dropped one after another (the event loop turning in between, as in the
// daemon) are freed after every budget's worth, instead of piling up until V8's own
// external-memory limit; without an exposed gc it does nothing.
import { describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);
const garbage = new URL("../dist/wasm/garbage.js", import.meta.url).pathname;

// Drops twelve 4 MiB buffers, noting each; prints the MB of ArrayBuffer memory still held after.
const script = `
const { noteDroppedBuffers } = await import(${JSON.stringify(garbage)});
for (let i = 0; i < 12; i++) {
  const span = new Uint8Array(4 << 20);
  span[i] = 1;
  noteDroppedBuffers(span.length);
  await new Promise((r) => setImmediate(r));
}
await new Promise((r) => setTimeout(r, 50));
console.log(process.memoryUsage().arrayBuffers / 1e6);
`;

// Drops 400 read answers of 128 KiB each (50 MiB), noting each as young garbage; prints the MB held after.
const reads = `
const { noteYoungGarbage } = await import(${JSON.stringify(garbage)});
for (let i = 0; i < 400; i++) {
  const answer = new Uint8Array(128 << 10);
  answer[i % 1000] = 1;
  noteYoungGarbage(answer.length);
  await new Promise((r) => setImmediate(r));
}
await new Promise((r) => setTimeout(r, 50));
console.log(process.memoryUsage().arrayBuffers / 1e6);
`;

const heldMB = async (flags: string[], code = script) =>
  Number(
    (
      await run(process.execPath, [...flags, "--max-semi-space-size=2", "--input-type=module", "-e", code])
    ).stdout.trim(),
  );

describe("collections after dropped span buffers", () => {
  it("with --expose-gc at most the buffers since the last collection are held; without, more pile up", async () => {
    const collected = await heldMB(["--expose-gc"]);
    const left = await heldMB([]);
    expect(collected).toBeLessThanOrEqual(12); // budget 8 MiB + the last buffer
    expect(left).toBeGreaterThan(collected + 4);
  });

  it("read answers noted as young garbage are freed by scavenges every 8 MiB; without --expose-gc they pile up", async () => {
    const collected = await heldMB(["--expose-gc"], reads);
    const left = await heldMB([], reads);
    expect(collected).toBeLessThanOrEqual(10);
    expect(left).toBeGreaterThan(collected + 4);
  });
});
