// The Node options the pools' worker threads start with: the parent's, minus module loader hooks.
// Workers run compiled JavaScript from dist/; a hook the parent was started with (tsx, a test
// runner's register) would otherwise load again in every worker and transform each module it
// imports — in a `tsx` process that cost each index build worker ~100 ms of start and code
// wrapped in helpers (bench/RESULTS.md, 2026-12-08).
const HOOKS = new Set(["--import", "--require", "-r", "--loader", "--experimental-loader"]);

export function workerExecArgv(argv: readonly string[] = process.execArgv): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const eq = a.indexOf("=");
    if (HOOKS.has(eq < 0 ? a : a.slice(0, eq))) {
      if (eq < 0) i++; // the hook's module is the next argument
      continue;
    }
    out.push(a);
  }
  return out;
}
