// The daemon's logrus-style JSON logger: line format, levels, child loggers, and that nothing
// credential-like reaches the output (the patterns of the reference's
// TestSnapshotterDoesNotLogSensitiveInformation, integration/log_test.go).
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { formatLogTime, JsonLogger, parseLogLevel, type LogLevel } from "../src/log/json-logger.js";
import { redact, redactUrl } from "../src/log/redact.js";

const SENSITIVE = [
  /password/i,
  /passwd/i,
  /secret/i,
  /credential/i,
  /token/i,
  /api[_-]?key/i,
  /AKIA[0-9A-Z]{16}/,
  /aws[_-]?access[_-]?key/i,
  /aws[_-]?secret[_-]?key/i,
  /-----BEGIN (?:RSA )?PRIVATE KEY-----/,
  /-----BEGIN CERTIFICATE-----/,
  /oauth/i,
  /bearer/i,
  /basic auth/i,
  /authorization: basic/i,
];

function capture(level: LogLevel = "trace", now = () => Date.UTC(2024, 1, 3, 4, 5, 6, 789)) {
  const lines: string[] = [];
  const logger = JsonLogger.create({ sink: { write: (l: string) => lines.push(l) }, level, now });
  return { logger, lines, json: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

let savedTz: string | undefined;
beforeEach(() => {
  savedTz = process.env.TZ;
  process.env.TZ = "UTC";
});
afterEach(() => {
  if (savedTz === undefined) delete process.env.TZ;
  else process.env.TZ = savedTz;
});

describe("line format", () => {
  it("writes logrus JSON: sorted keys, level, msg, RFC3339NanoFixed time, fields", () => {
    const { logger, lines } = capture();
    logger
      .withField("address", "/run/soci-snapshotter-grpc/soci-snapshotter-grpc.sock")
      .info("soci-snapshotter-grpc successfully started");
    expect(lines).toEqual([
      '{"address":"/run/soci-snapshotter-grpc/soci-snapshotter-grpc.sock","level":"info","msg":"soci-snapshotter-grpc successfully started","time":"2024-02-03T04:05:06.789000000Z"}\n',
    ]);
  });

  it("formats the time in the local zone with nine fraction digits", () => {
    expect(formatLogTime(Date.UTC(2024, 1, 3, 4, 5, 6, 0))).toBe("2024-02-03T04:05:06.000000000Z");
    expect(formatLogTime(Date.UTC(2024, 1, 3, 4, 5, 6, 7) + 0.25)).toBe("2024-02-03T04:05:06.007250000Z");
    process.env.TZ = "Asia/Kolkata";
    expect(formatLogTime(Date.UTC(2024, 1, 3, 4, 5, 6, 789))).toBe("2024-02-03T09:35:06.789000000+05:30");
    process.env.TZ = "America/New_York";
    expect(formatLogTime(Date.UTC(2024, 0, 1, 0, 0, 0, 1))).toBe("2023-12-31T19:00:00.001000000-05:00");
  });

  it("keeps the reference's value types and escaping; clashing field names move to fields.<key>", () => {
    const { logger, lines, json } = capture();
    logger.withError(new Error("failed <x> & y")).warn('layer "a"\n', {
      "remote-snapshot-prepared": "true",
      n: 3,
      ok: false,
      msg: "clash",
      time: 1,
      nested: { b: 1, a: [1, "x"] },
    });
    expect(lines[0]).toBe(
      '{"error":"failed \\u003cx\\u003e \\u0026 y","fields.msg":"clash","fields.time":1,"level":"warning","msg":"layer \\"a\\"\\n","n":3,"nested":{"a":[1,"x"],"b":1},"ok":false,"remote-snapshot-prepared":"true","time":"2024-02-03T04:05:06.789000000Z"}\n',
    );
    expect(json()[0]!.level).toBe("warning");
  });
});

describe("levels", () => {
  it("parses logrus level names", () => {
    expect(parseLogLevel("info")).toBe("info");
    expect(parseLogLevel("DEBUG")).toBe("debug");
    expect(parseLogLevel("warning")).toBe("warn");
    expect(parseLogLevel("warn")).toBe("warn");
    expect(parseLogLevel("trace")).toBe("trace");
    expect(parseLogLevel("panic")).toBe("panic");
    expect(() => parseLogLevel("verbose")).toThrow('not a valid logrus Level: "verbose"');
  });

  it("filters below the level; children share the level and add fields", () => {
    const { logger, json } = capture("info");
    const child = logger.withFields({ layer: "sha256:ab" }).withField("mountpoint", "/m");
    child.debug("hidden");
    child.trace("hidden");
    child.info("shown");
    logger.setLevel("debug");
    child.debug("now shown");
    logger.error("plain");
    child.fatal("fatal written, exiting is the caller's job");
    expect(json().map((e) => [e.level, e.msg, e.layer])).toEqual([
      ["info", "shown", "sha256:ab"],
      ["debug", "now shown", "sha256:ab"],
      ["error", "plain", undefined],
      ["fatal", "fatal written, exiting is the caller's job", "sha256:ab"],
    ]);
    expect(child.enabled("trace")).toBe(false);
    expect(child.level).toBe("debug");
  });

  it("a failing sink does not throw into the caller", () => {
    const logger = JsonLogger.create({
      sink: {
        write() {
          throw new Error("EPIPE");
        },
      },
    });
    expect(() => logger.info("x")).not.toThrow();
  });
});

describe("no secrets in the output", () => {
  const awsId = "AKIA" + "ABCDEFGHIJKLMNOP";
  const pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----";
  const cases: Array<[string, Record<string, unknown>]> = [
    [
      "GET https://registry.example/v2/app/blobs/sha256:aa?X-Amz-Signature=abc123&X-Amz-Credential=AKIDEXAMPLE failed",
      {},
    ],
    ["fetch https://user:hunter2@registry.example/v2/", {}],
    ["header Authorization: Basic dXNlcjpodW50ZXIy sent", {}],
    ["authorization=Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.sig", {}],
    ['docker config {"auths":{"r.io":{"auth":"dXNlcjpwYXNz","identitytoken":"abc"}}}', {}],
    ["password=hunter2 user=bob", {}],
    [
      "retrying",
      { password: "hunter2", token: "abc", aws_secret_key: "x", apiKey: "k", Authorization: "Basic abc", cookie: "c" },
    ],
    [`key ${awsId} in env`, { env: `AWS_ACCESS_KEY_ID=${awsId}` }],
    ["loaded key", { pem }],
    ["oauth refresh with basic auth fallback", { nested: { secret: "s", list: ["Bearer abcdef1234"] } }],
  ];

  for (const [msg, fields] of cases) {
    it(`scrubs: ${msg.slice(0, 40)}`, () => {
      const { logger, lines } = capture();
      logger.withError(new Error(`wrapped: ${msg}`)).error(msg, fields);
      expect(lines).toHaveLength(1);
      for (const re of SENSITIVE) expect(lines[0], `${re} in ${lines[0]}`).not.toMatch(re);
      for (const leaked of [
        "hunter2",
        "dXNlcjpwYXNz",
        "dXNlcjpodW50ZXIy",
        "abc123",
        "AKIDEXAMPLE",
        "eyJhbGciOiJIUzI1NiJ9",
        "MIIEowIBAAKCAQEA",
      ]) {
        expect(lines[0]).not.toContain(leaked);
      }
    });
  }

  it("redacts URL query values and user-info passwords, keeping the rest", () => {
    expect(redactUrl("https://r.io/v2/x/blobs/sha256:ab?X-Amz-Signature=abc&expires=10#frag")).toBe(
      "https://r.io/v2/x/blobs/sha256:ab?X-Amz-Signature=redacted&expires=redacted#frag",
    );
    expect(redactUrl("https://bob:pw@r.io/v2/")).toBe("https://bob:xxxxx@r.io/v2/");
    expect(redactUrl("http://r.io/v2/?flag")).toBe("http://r.io/v2/?flag");
    expect(redact("GET https://r.io/x?sig=ab,cd, retrying (see https://r.io/y?q=1).")).toBe(
      "GET https://r.io/x?sig=redacted, retrying (see https://r.io/y?q=redacted).",
    );
  });

  it("leaves the messages and keys the tests match untouched", () => {
    const keep = [
      "soci-snapshotter-grpc successfully started",
      "fetching SOCI artifacts using index descriptor",
      "no valid SOCI index found",
      "Successfully loaded prefetch artifact",
      "FUSE operation",
      "failed to resolve auth: connection refused",
      "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
      "GET http://127.0.0.1:5000/v2/app/manifests/latest",
    ];
    for (const k of keep) expect(redact(k)).toBe(k);
    const { logger, json } = capture();
    logger.info("remote-snapshot-prepared", {
      "remote-snapshot-prepared": "true",
      key: "default/4/x",
      parent: "sha256:aa",
    });
    expect(json()[0]).toMatchObject({
      msg: "remote-snapshot-prepared",
      "remote-snapshot-prepared": "true",
      key: "default/4/x",
      parent: "sha256:aa",
    });
  });
});
