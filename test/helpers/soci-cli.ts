// Runs `soci` commands for tests: in this process (the command tree of src/cli/program.ts with
// stdout/stderr captured, a failure reported as bin/soci.js reports it), or as a child process of
// bin/soci.js. In-process runs save a Node start and the imports behind every command; a few
// tests per command family spawn the real executable to prove the wiring, exit codes and stderr.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { type Command, CommanderError } from "commander";
import { sociProgram } from "../../src/cli/program.js";
import { exitStatusOf, failureLine } from "../../src/errors/status.js";

const execFileAsync = promisify(execFile);
const SOCI_BIN = new URL("../../bin/soci.js", import.meta.url).pathname;

export interface CliResult {
  code: number;
  /** stdout as bytes (`ztoc get-file` prints binary content) */
  out: Buffer;
  stdout: string;
  stderr: string;
}

/** `soci <args>` as a child process of bin/soci.js, with `env` added to this process's environment. */
export async function sociChild(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  try {
    const r = await execFileAsync("node", [SOCI_BIN, ...args], {
      maxBuffer: 64 << 20,
      encoding: "buffer",
      env: { ...process.env, ...env },
    });
    return { code: 0, out: r.stdout, stdout: r.stdout.toString("utf8"), stderr: r.stderr.toString("utf8") };
  } catch (e) {
    const err = e as { code: unknown; stdout?: Buffer; stderr?: Buffer };
    if (typeof err.code !== "number") throw e; // not started, or killed by a signal
    const out = err.stdout ?? Buffer.alloc(0);
    return {
      code: err.code,
      out,
      stdout: out.toString("utf8"),
      stderr: (err.stderr ?? Buffer.alloc(0)).toString("utf8"),
    };
  }
}

type Write = typeof process.stdout.write;

/**
 * Replaces `stream.write` with one that appends to `chunks`, and makes the stream no terminal (as a
 * child's pipe is: no progress lines); returns the function that restores both.
 */
function capture(stream: NodeJS.WriteStream, chunks: Buffer[]): () => void {
  const original = stream.write;
  const ownIsTTY = Object.getOwnPropertyDescriptor(stream, "isTTY");
  Object.defineProperty(stream, "isTTY", { value: false, configurable: true, writable: true });
  const write = (chunk: string | Uint8Array, ...rest: unknown[]): boolean => {
    const encoding = typeof rest[0] === "string" ? (rest[0] as BufferEncoding) : undefined;
    chunks.push(typeof chunk === "string" ? Buffer.from(chunk, encoding) : Buffer.from(chunk));
    const done = rest.find((r) => typeof r === "function") as (() => void) | undefined;
    if (done) queueMicrotask(done);
    return true;
  };
  stream.write = write as Write;
  return () => {
    stream.write = original;
    if (ownIsTTY) Object.defineProperty(stream, "isTTY", ownIsTTY);
    else delete (stream as { isTTY?: boolean }).isTTY;
  };
}

/** Commander's own failures (usage errors, --help, --version) throw instead of exiting the process. */
function noExit(cmd: Command, writeOut: (s: string) => void, writeErr: (s: string) => void): void {
  cmd.exitOverride().configureOutput({ writeOut, writeErr });
  for (const sub of cmd.commands) noExit(sub, writeOut, writeErr);
}

/**
 * `soci <args>` in this process. `env` is set in process.env for the run (TZ included: Node re-reads
 * the time zone when it changes) and restored afterwards. Runs must not overlap (they swap the
 * process's stdout and stderr).
 */
export async function sociInProcess(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const saved = Object.keys(env).map((k) => [k, process.env[k]] as const);
  Object.assign(process.env, env);
  const restoreOut = capture(process.stdout, out);
  const restoreErr = capture(process.stderr, err);
  let code = 0;
  try {
    const program = await sociProgram(args);
    noExit(
      program,
      (s) => out.push(Buffer.from(s)),
      (s) => err.push(Buffer.from(s)),
    );
    await program.parseAsync(args, { from: "user" });
  } catch (e) {
    if (e instanceof CommanderError) code = e.exitCode;
    else {
      err.push(Buffer.from(failureLine("soci", e)));
      code = exitStatusOf(e);
    }
  } finally {
    restoreErr();
    restoreOut();
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
  const stdout = Buffer.concat(out);
  return { code, out: stdout, stdout: stdout.toString("utf8"), stderr: Buffer.concat(err).toString("utf8") };
}
