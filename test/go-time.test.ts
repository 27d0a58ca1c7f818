import { afterEach, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import {
  canonicalGoTimeText,
  formatGoTime,
  formatTarTime,
  formatUtcTime,
  GO_ZERO_TIME_TEXT,
  GO_ZERO_TIME_UNIX,
  localOffsetSeconds,
  parseGoTimeText,
} from "../src/formats/go-time.js";

const savedTz = process.env.TZ;
afterEach(() => {
  if (savedTz === undefined) delete process.env.TZ;
  else process.env.TZ = savedTz;
});

describe("Go MarshalText rendering", () => {
  it("renders the spec's examples", () => {
    expect(formatGoTime(1700000000, 0, 0)).toBe("2023-11-14T22:13:20Z");
    expect(formatGoTime(1700000000, 123456789, 0)).toBe("2023-11-14T22:13:20.123456789Z");
    expect(formatGoTime(0, 0, 0)).toBe("1970-01-01T00:00:00Z");
    expect(formatGoTime(1700000000, 0, -8 * 3600)).toBe("2023-11-14T14:13:20-08:00");
    expect(formatGoTime(1700000000, 123456789, -8 * 3600)).toBe("2023-11-14T14:13:20.123456789-08:00");
    expect(formatGoTime(0, 0, -8 * 3600)).toBe("1969-12-31T16:00:00-08:00");
    expect(formatUtcTime(1700000000)).toBe("2023-11-14T22:13:20Z");
  });

  it("trims trailing zeros of the fraction", () => {
    expect(formatGoTime(1700000000, 100000000, 0)).toBe("2023-11-14T22:13:20.1Z");
    expect(formatGoTime(1700000000, 1, 0)).toBe("2023-11-14T22:13:20.000000001Z");
    expect(formatGoTime(1700000000, 120, 0)).toBe("2023-11-14T22:13:20.00000012Z");
  });

  it("renders positive, half-hour and sub-minute offsets like Go", () => {
    expect(formatGoTime(1700000000, 0, 5 * 3600 + 1800)).toBe("2023-11-15T03:43:20+05:30");
    // LMT-style offsets with seconds: clock uses the full offset, the zone is truncated to minutes
    expect(formatGoTime(-3000000000, 0, -28378)).toBe("1874-12-07T10:47:02-07:52");
    // |offset| < 60 s but non-zero: zone minutes truncate to 0 and Go writes "+00:00"
    expect(formatGoTime(0, 0, -30)).toBe("1969-12-31T23:59:30+00:00");
    // zone hour >= 24 is a MarshalText error
    expect(formatGoTime(0, 0, 24 * 3600)).toBe("");
  });

  it("returns '' outside years [0,9999]", () => {
    expect(formatGoTime(253402300800, 0, 0)).toBe(""); // 10000-01-01T00:00:00Z
    expect(formatGoTime(253402300799, 0, 0)).toBe("9999-12-31T23:59:59Z");
    expect(formatGoTime(-62167219200, 0, 0)).toBe("0000-01-01T00:00:00Z");
    expect(formatGoTime(-62167219201, 0, 0)).toBe(""); // year -1
    // the year is checked in the time's own zone
    expect(formatGoTime(253402300799, 0, 3600)).toBe("");
    expect(formatGoTime(-62167219200, 0, -3600)).toBe("");
    expect(formatGoTime(8.64e15, 0, 0)).toBe("");
    expect(formatGoTime(Number.NaN, 0, 0)).toBe("");
    expect(formatTarTime(2 ** 62)).toBe("");
  });

  it("renders the zero Go time", () => {
    expect(formatGoTime(GO_ZERO_TIME_UNIX, 0, 0)).toBe(GO_ZERO_TIME_TEXT);
    expect(GO_ZERO_TIME_TEXT).toBe("0001-01-01T00:00:00Z");
  });

  it("normalizes nanoseconds like time.Unix", () => {
    expect(formatGoTime(1700000000, 1_500_000_000, 0)).toBe("2023-11-14T22:13:21.5Z");
    expect(formatGoTime(1700000000, -1, 0)).toBe("2023-11-14T22:13:19.999999999Z");
  });

  it("matches JS Date for many instants", () => {
    let x = 12345;
    for (let i = 0; i < 2000; i++) {
      x = (x * 1103515245 + 12345) % 2147483648;
      const sec = (x - 1073741824) * 60 + (i % 60);
      const d = new Date(sec * 1000);
      const y = d.getUTCFullYear();
      const iso = y >= 0 && y <= 9999 ? d.toISOString().replace(".000Z", "Z") : "";
      expect(formatGoTime(sec, 0, 0)).toBe(iso);
    }
  });
});

describe("local zone", () => {
  it("uses UTC when TZ=UTC", () => {
    process.env.TZ = "UTC";
    expect(localOffsetSeconds(1700000000)).toBe(0);
    expect(formatTarTime(1700000000)).toBe("2023-11-14T22:13:20Z");
    expect(formatTarTime(0)).toBe("1970-01-01T00:00:00Z");
  });

  it("honours TZ=America/Los_Angeles (P1 / V6)", () => {
    process.env.TZ = "America/Los_Angeles";
    expect(localOffsetSeconds(1700000000)).toBe(-8 * 3600);
    expect(localOffsetSeconds(1690000000)).toBe(-7 * 3600); // PDT
    expect(formatTarTime(1700000000)).toBe("2023-11-14T14:13:20-08:00");
    expect(formatTarTime(1700000000, 123456789)).toBe("2023-11-14T14:13:20.123456789-08:00");
    expect(formatTarTime(0)).toBe("1969-12-31T16:00:00-08:00");
    // local mean time before 1883 keeps its seconds
    expect(localOffsetSeconds(-3000000000)).toBe(-28378);
    expect(formatTarTime(-3000000000)).toBe("1874-12-07T10:47:02-07:52");
  });

  it("honours TZ in a fresh process", () => {
    // the built module (`pretest:unit` builds dist/): plain node starts faster than through tsx
    const code = `
      import("${new URL("../dist/formats/go-time.js", import.meta.url).href}").then((m) => {
        process.stdout.write(m.formatTarTime(1700000000) + " " + m.formatTarTime(1700000000, 123456789));
      });`;
    const out = execFileSync(process.execPath, ["-e", code], {
      env: { ...process.env, TZ: "America/Los_Angeles" },
      cwd: new URL("..", import.meta.url).pathname,
      encoding: "utf8",
    });
    expect(out).toBe("2023-11-14T14:13:20-08:00 2023-11-14T14:13:20.123456789-08:00");
  });
});

describe("Go UnmarshalText parsing", () => {
  it("parses UTC, fractional and offset texts", () => {
    expect(parseGoTimeText("2023-11-14T22:13:20Z")).toEqual({ sec: 1700000000, nsec: 0, offset: 0 });
    expect(parseGoTimeText("2023-11-14T22:13:20.123456789Z")).toEqual({ sec: 1700000000, nsec: 123456789, offset: 0 });
    expect(parseGoTimeText("2023-11-14T14:13:20-08:00")).toEqual({ sec: 1700000000, nsec: 0, offset: -28800 });
    expect(parseGoTimeText("2023-11-15T03:43:20.5+05:30")).toEqual({ sec: 1700000000, nsec: 500000000, offset: 19800 });
    expect(parseGoTimeText("1970-01-01T00:00:00Z")).toEqual({ sec: 0, nsec: 0, offset: 0 });
    // more than 9 fraction digits: truncated
    expect(parseGoTimeText("2023-11-14T22:13:20.1234567891234Z")).toEqual({
      sec: 1700000000,
      nsec: 123456789,
      offset: 0,
    });
    expect(parseGoTimeText(new TextEncoder().encode("2023-11-14T22:13:20Z"))).toEqual({
      sec: 1700000000,
      nsec: 0,
      offset: 0,
    });
  });

  it("round-trips the zero time", () => {
    const z = parseGoTimeText(GO_ZERO_TIME_TEXT);
    expect(z).toEqual({ sec: GO_ZERO_TIME_UNIX, nsec: 0, offset: 0 });
    expect(formatGoTime(z!.sec, z!.nsec, z!.offset)).toBe(GO_ZERO_TIME_TEXT);
  });

  it("rejects what Go rejects", () => {
    for (const bad of [
      "",
      "garbage",
      "2023-11-14",
      "2023-11-14 22:13:20Z",
      "2023-11-14T22:13:20",
      "2023-11-14T22:13:20z",
      "2023-11-14T22:13:20ZZ",
      "2023-13-14T22:13:20Z",
      "2023-02-29T22:13:20Z",
      "2023-11-31T22:13:20Z",
      "2023-11-14T24:13:20Z",
      "2023-11-14T22:60:20Z",
      "2023-11-14T22:13:60Z",
      "2023-11-14T2:13:20Z",
      "2023-11-14T22:13:20,5Z",
      "2023-11-14T22:13:20.Z",
      "2023-11-14T22:13:20+24:00",
      "2023-11-14T22:13:20+08:60",
      "2023-11-14T22:13:20+0800",
      "2023-11-14T22:13:20 08:00",
      "+2023-11-14T22:13:20Z",
      "10000-01-01T00:00:00Z",
      "-001-01-01T00:00:00Z",
    ]) {
      expect(parseGoTimeText(bad), bad).toBeNull();
    }
    expect(parseGoTimeText("2024-02-29T00:00:00Z")).not.toBeNull();
  });

  it("canonicalizes like a Go read + re-marshal", () => {
    expect(canonicalGoTimeText("2023-11-14T22:13:20.100Z")).toBe("2023-11-14T22:13:20.1Z");
    expect(canonicalGoTimeText("2023-11-14T22:13:20+00:00")).toBe("2023-11-14T22:13:20Z");
    expect(canonicalGoTimeText("2023-11-14T14:13:20-08:00")).toBe("2023-11-14T14:13:20-08:00");
    expect(canonicalGoTimeText("nope")).toBe(GO_ZERO_TIME_TEXT);
    expect(canonicalGoTimeText("")).toBe(GO_ZERO_TIME_TEXT);
  });

  it("parse(format(x)) is the identity", () => {
    let x = 987654321;
    for (let i = 0; i < 2000; i++) {
      x = (x * 1103515245 + 12345) % 2147483648;
      const sec = (x - 1073741824) * 29 + i;
      const nsec = (x * 7) % 1e9;
      const offset = ((x % 1560) - 780) * 60; // ±13h in minutes
      const text = formatGoTime(sec, nsec, offset);
      if (text === "") continue;
      expect(parseGoTimeText(text)).toEqual({ sec, nsec, offset });
    }
  });
});
