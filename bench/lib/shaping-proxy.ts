// The link-shaping proxy lives with the demo (src/demo/shaping-proxy.ts, shipped) so that
// `soci demo` and the benchmarks model the same link; re-exported here for the benchmarks.
export { startShapingProxy, type ShapingOptions, type ShapingProxy } from "../../src/demo/shaping-proxy.js";
