// `npm run test:unit`: the tests that need no root, registry, containerd or FUSE (test/suites.ts).
import { defineConfig } from "vitest/config";
import base from "./vitest.config.js";
import { UNIT_TESTS } from "./test/suites.js";

export default defineConfig({
  ...base,
  test: { ...base.test, include: UNIT_TESTS.map((f) => `test/${f}`) },
});
