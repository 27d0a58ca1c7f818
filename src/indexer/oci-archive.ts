// OCI image layouts on disk as directories or tar archives: the input and output of
// `soci convert --standalone` (§4.2) and the `oci-archive:` locations of `soci convert`/`create`.
// GNU tar does the archive I/O: it refuses members that would escape the target directory
// (`..`, absolute names) and streams without holding blobs in memory.
import { FailedPreconditionError, InvalidArgumentError, NotFoundError } from "../errors/errors.js";
import { execFile } from "node:child_process";
import { cp, mkdir, mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export type LayoutFormat = "oci-archive" | "oci-dir";

/** Copies a layout directory, or extracts a layout archive, into a fresh temp dir. */
export async function stageLayout(input: string, parent = tmpdir()): Promise<string> {
  const st = await stat(input).catch(() => {
    throw new NotFoundError(`${input}: no such file or directory`);
  });
  if (st.isDirectory()) await checkLayout(input, input);
  const dir = await mkdtemp(join(parent, "soci-oci-"));
  try {
    if (st.isDirectory()) {
      await cp(input, dir, { recursive: true });
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
