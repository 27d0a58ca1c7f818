// The Node options the pools' worker threads start with. Left to default, a worker inherits every
// per-thread option of the parent, module loader hooks included: a hook the parent was started
// with (tsx, a test runner's register) loaded again in every worker and transformed each module it
// imported — in a `tsx` process that cost each index build worker ~100 ms of start and code
// wrapped in helpers (bench/RESULTS.md, 2026-12-08). The workers run compiled JavaScript from
// dist/, so they keep only the parent's diagnostics and resolution options. V8 options
// (--expose-gc, --max-semi-space-size, …) are process-wide and apply to workers anyway; Node
// refuses them in a worker's execArgv.
const KEPT = new Set([
  "--enable-source-maps",
  "--no-warnings",
  "--no-deprecation",
  "--trace-warnings",
  "--trace-deprecation",
  "--trace-uncaught",
  "--unhandled-rejections",
  "--conditions",
  "-C",
]);
/** Kept options whose value may come as the next argument. */
const WITH_VALUE = new Set(["--unhandled-rejections", "--conditions", "-C"]);

export function workerExecArgv(argv: readonly string[] = process.execArgv): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const eq = a.indexOf("=");
    const name = eq < 0 ? a : a.slice(0, eq);
    if (!KEPT.has(name)) continue;
    out.push(a);
    if (eq < 0 && WITH_VALUE.has(name) && i + 1 < argv.length) out.push(argv[++i]!);
  }
  return out;
}
