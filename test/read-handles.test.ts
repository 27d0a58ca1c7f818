// The span cache's kept-open read handles (src/fs/read-handles.ts): one open per file across reads,
// a dropped handle closed only once the reads using it are done, a replaced file read afresh after
// its drop, and never more handles open than the limit.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, readdir, readlink, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ReadHandles } from "../src/fs/read-handles.js";

let dir = "";
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "soci-read-handles-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Descriptors of this process open on files below `d`. */
async function openBelow(d: string): Promise<string[]> {
  const out: string[] = [];
  for (const fd of await readdir("/proc/self/fd")) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => "");
    if (target.startsWith(`${d}/`)) out.push(target);
  }
  return out;
}

const settle = () => new Promise((r) => setTimeout(r, 50));

async function readAll(h: ReadHandles, path: string): Promise<string> {
  return h.with(path, async (fh) => (await fh.readFile()).toString());
}

describe("ReadHandles", () => {
  it("opens a file once for many reads, reads a replaced file afresh after drop, closes on drop", async () => {
    const d = await mkdtemp(join(dir, "a"));
    const p = join(d, "f");
    await writeFile(p, "one");
    const h = new ReadHandles(4);
    const reads = await Promise.all(
      Array.from({ length: 5 }, () => h.with(p, async (fh) => (await fh.read(Buffer.alloc(3), 0, 3, 0)).bytesRead)),
    );
    expect(reads).toEqual([3, 3, 3, 3, 3]);
    expect(await openBelow(d)).toEqual([p]);
    await writeFile(join(d, "g"), "two");
    await rename(join(d, "g"), p);
    // the kept handle still reads the file it opened (the cache drops it when it replaces a file)
    expect(await h.with(p, async (fh) => (await fh.read(Buffer.alloc(3), 0, 3, 0)).buffer.toString())).toBe("one");
    h.drop(p);
    expect(await readAll(h, p)).toBe("two");
    h.dropUnder(d);
    await settle();
    expect(await openBelow(d)).toEqual([]);
  });

  it("a handle dropped during a read stays open until that read is done", async () => {
    const d = await mkdtemp(join(dir, "b"));
    const p = join(d, "f");
    await writeFile(p, "data");
    const h = new ReadHandles(4);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const reading = h.with(p, async (fh) => {
      await gate;
      return (await fh.read(Buffer.alloc(4), 0, 4, 0)).bytesRead;
    });
    await settle();
    h.drop(p);
    release();
    expect(await reading).toBe(4);
    await settle();
    expect(await openBelow(d)).toEqual([]);
  });

  it("keeps at most its limit of handles open; a missing file rejects as open does", async () => {
    const d = await mkdtemp(join(dir, "c"));
    const h = new ReadHandles(3);
    for (let i = 0; i < 10; i++) {
      await writeFile(join(d, String(i)), String(i));
      expect(await readAll(h, join(d, String(i)))).toBe(String(i));
    }
    await settle();
    expect(h.size).toBe(3);
    expect((await openBelow(d)).length).toBe(3);
    await expect(readAll(h, join(d, "missing"))).rejects.toMatchObject({ code: "ENOENT" });
    await settle();
    // the failed open is not kept (the handle it displaced is closed)
    expect(h.size).toBe(2);
    expect((await openBelow(d)).length).toBe(2);
  });
});
