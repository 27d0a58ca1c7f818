// How CLI failures are reported: `<program>: <message>` on stderr, exit code 1.

export class NotImplementedError extends Error {
  override name = "NotImplementedError";
  constructor(what: string) {
    super(`${what}: not yet implemented`);
  }
}

export function reportAndExit(program: string, err: unknown): never {
  const msg = err instanceof Error ? err.message : String(err);
  process.stderr.write(`${program}: ${msg}\n`);
  process.exit(1);
}
