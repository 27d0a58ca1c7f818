// `npm run test:unit`: the tests that need no root, registry, containerd or FUSE (test/suites.ts).
// They are CPU-bound and independent, so they use every core (vitest's default leaves one idle:
// a single worker on a 2-core machine). Files share their worker process (isolate: false): a new
// process per file cost more CPU than most files' tests, so files that change process-wide state
// (TZ, process.stdout) restore it. Transformed modules are cached on disk between runs
// (node_modules/.experimental-vitest-cache, keyed by each file's content and the config).
import { defineConfig } from "vitest/config";
import base from "./vitest.config.js";
import { UNIT_TESTS } from "./test/suites.js";

export default defineConfig({
  ...base,
  test: {
    ...base.test,
    include: UNIT_TESTS.map((f) => `test/${f}`),
    maxWorkers: "100%",
    isolate: false,
    experimental: { fsModuleCache: true },
  },
});
