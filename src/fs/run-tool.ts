// Runs a system tool without blocking the event loop (Node has no mknod or setxattr), optionally
// feeding it stdin, and turns a failure into an error carrying the tool's own message.
import { spawn } from "node:child_process";

export interface ToolResult {
  code: number;
  stderr: string;
}

/** Runs `cmd args`; resolves with the exit code and stderr (never rejects on a non-zero exit). */
export function runTool(
  cmd: string,
  args: string[],
  opts: { input?: Uint8Array; signal?: AbortSignal } = {},
): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      stdio: [opts.input ? "pipe" : "ignore", "ignore", "pipe"],
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    const err: Buffer[] = [];
    child.stderr!.on("data", (b: Buffer) => err.push(b));
    child.on("error", (e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT")
        reject(
          new Error(`${cmd} not found: install it (${cmd === "setfattr" ? "apt-get install attr" : "coreutils"})`),
        );
      else reject(e);
    });
    child.on("close", (code, sig) =>
      resolve({ code: code ?? (sig ? 128 : 1), stderr: Buffer.concat(err).toString("utf8").trim() }),
    );
    if (opts.input && child.stdin) {
      child.stdin.on("error", () => {}); // the exit status reports what went wrong
      child.stdin.end(opts.input);
    }
  });
}

/** Runs `cmd args` and throws `what: <stderr>` unless it exits 0. */
export async function runToolOrThrow(
  what: string,
  cmd: string,
  args: string[],
  opts: { input?: Uint8Array; signal?: AbortSignal } = {},
): Promise<void> {
  const r = await runTool(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${what}: ${r.stderr || `${cmd} exited with status ${r.code}`}`);
}
