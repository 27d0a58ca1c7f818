// OCI image layouts on disk as directories or tar archives: the input and output of
// `soci convert --standalone` (§4.2) and the `oci-archive:` locations of `soci convert`/`create`.
// GNU tar does the archive I/O: it refuses members that would escape the target directory
// (`..`, absolute names) and streams without holding blobs in memory.
import { FailedPreconditionError, InvalidArgumentError, NotFoundError } from "../errors/errors.js";
import { execFile } from "node:child_process";
import { constants } from "node:fs";
import { copyFile, cp, link, mkdir, mkdtemp, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export type LayoutFormat = "oci-archive" | "oci-dir";

/**
 * Stages a layout directory into `dir`: blobs are hard links when the two are on one filesystem
 * (blobs are content-addressed and the store only ever adds files by rename, so neither side can
 * change the other's), else copies (reflinks where the filesystem has them); other files are copied.
 */
async function stageDir(from: string, to: string, inBlobs = false): Promise<void> {
  for (const ent of await readdir(from, { withFileTypes: true })) {
    const src = join(from, ent.name);
    const dst = join(to, ent.name);
    if (ent.isDirectory()) {
      await mkdir(dst, { recursive: true });
      await stageDir(src, dst, inBlobs || ent.name === "blobs");
    } else if (ent.isFile() && inBlobs) {
      await link(src, dst).catch(() => copyFile(src, dst, constants.COPYFILE_FICLONE));
    } else {
      await cp(src, dst, { recursive: true });
    }
  }
}

/** Copies a layout directory (blobs as hard links where possible), or extracts a layout archive, into a fresh temp dir. */
export async function stageLayout(input: string, parent = tmpdir()): Promise<string> {
  const st = await stat(input).catch(() => {
    throw new NotFoundError(`${input}: no such file or directory`);
  });
  if (st.isDirectory()) await checkLayout(input, input);
  const dir = await mkdtemp(join(parent, "soci-oci-"));
  try {
    if (st.isDirectory()) {
      await stageDir(input, dir);
    } else {
      await run("tar", ["-xf", input, "-C", dir, "--no-same-owner", "--no-same-permissions"]).catch(
        (err: { stderr?: string; message: string }) => {
          throw new InvalidArgumentError(
            `${input}: not a readable OCI archive: ${err.stderr?.trim().split("\n")[0] || err.message}`,
          );
        },
      );
    }
    await checkLayout(dir, input);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return dir;
}

async function checkLayout(dir: string, name: string): Promise<void> {
  let layout: { imageLayoutVersion?: unknown };
  try {
    layout = JSON.parse(await readFile(join(dir, "oci-layout"), "utf8")) as typeof layout;
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code === "ENOENT" ? "no oci-layout file" : (err as Error).message;
    throw new InvalidArgumentError(`${name}: not an OCI image layout (${why})`);
  }
  if (typeof layout.imageLayoutVersion !== "string")
    throw new InvalidArgumentError(`${name}: not an OCI image layout (oci-layout has no imageLayoutVersion)`);
}

/** The files under `dir`/blobs, as paths relative to `dir`. */
export async function listBlobs(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string) => {
    for (const ent of await readdir(join(dir, rel), { withFileTypes: true }).catch(() => [])) {
      const r = `${rel}/${ent.name}`;
      if (ent.isDirectory()) await walk(r);
      else out.push(r);
    }
  };
  await walk("blobs");
  return out.sort();
}

const TAR_OWNER = ["--owner=0", "--group=0", "--numeric-owner"];

/**
 * An OCI archive written in two steps, so the image's own blobs (the bulk of it) are copied while
 * the SOCI artifacts are still being built: start() archives `oci-layout` and the given blobs,
 * finish() appends `index.json` and the blobs added since, and renames the archive into place.
 */
export class ArchiveWriter {
  private readonly partial: string;
  private first: Promise<unknown> | undefined;

  constructor(
    private readonly dir: string,
    private readonly output: string,
  ) {
    this.partial = `${output}.partial`;
  }

  start(blobs: string[]): void {
    this.first = run("tar", ["-cf", this.partial, "-C", this.dir, ...TAR_OWNER, "oci-layout", ...blobs]);
    this.first.catch(() => {}); // reported by finish()
  }

  async finish(added: string[]): Promise<void> {
    try {
      await this.first;
      await run("tar", ["-rf", this.partial, "-C", this.dir, ...TAR_OWNER, "index.json", ...added]);
      await rename(this.partial, this.output);
    } catch (err) {
      await rm(this.partial, { force: true });
      const e = err as { stderr?: string; message: string };
      throw new Error(`${this.output}: cannot write the OCI archive: ${e.stderr?.trim().split("\n")[0] || e.message}`);
    }
  }

  /** Abandons the archive (the build failed). */
  async abort(): Promise<void> {
    await this.first?.catch(() => {});
    await rm(this.partial, { force: true });
  }
}

/** Writes `dir` (an OCI layout holding only what should ship) to `output` as a dir or archive. */
export async function writeLayout(dir: string, output: string, format: LayoutFormat): Promise<void> {
  if (format === "oci-dir") {
    await mkdir(output, { recursive: true });
    await cp(dir, output, { recursive: true });
    return;
  }
  await run("tar", [
    "-cf",
    output,
    "-C",
    dir,
    "--owner=0",
    "--group=0",
    "--numeric-owner",
    "oci-layout",
    "index.json",
    "blobs",
  ]).catch(async (err: { stderr?: string; message: string }) => {
    await rm(output, { force: true }); // no half-written archive left behind
    throw new FailedPreconditionError(
      `${output}: cannot write the OCI archive: ${err.stderr?.trim().split("\n")[0] || err.message}`,
    );
  });
}
