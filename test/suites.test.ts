// Every test file is classified as unit or integration (test/suites.ts), so `npm run test:unit`
// never silently misses a new file, and a unit test never starts a registry, containerd or the daemon.
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { INTEGRATION_HELPERS, INTEGRATION_TESTS, UNIT_TESTS } from "./suites.js";

const TEST_DIR = fileURLToPath(new URL("./", import.meta.url));
const testFiles = () =>
  readdirSync(TEST_DIR)
    .filter((f) => f.endsWith(".test.ts"))
    .sort();

describe("test suites", () => {
  it("every test file is in exactly one of UNIT_TESTS and INTEGRATION_TESTS, and every listed file exists", () => {
    const listed = [...UNIT_TESTS, ...INTEGRATION_TESTS];
    expect(
      listed.filter((f, i) => listed.indexOf(f) !== i),
      "listed twice",
    ).toEqual([]);
    const files = testFiles();
    expect(
      files.filter((f) => !listed.includes(f)),
      "unclassified: add them to UNIT_TESTS or INTEGRATION_TESTS in test/suites.ts",
    ).toEqual([]);
    expect(
      listed.filter((f) => !files.includes(f)),
      "listed in test/suites.ts but not in test/",
    ).toEqual([]);
  });

  it("no unit test imports a helper that starts a registry, containerd or the daemon", () => {
    const offenders = UNIT_TESTS.flatMap((f) => {
      const text = readFileSync(`${TEST_DIR}${f}`, "utf8");
      return INTEGRATION_HELPERS.filter((h) => text.includes(`./${h}"`)).map((h) => `${f} imports ${h}`);
    });
    expect(offenders).toEqual([]);
  });
});
