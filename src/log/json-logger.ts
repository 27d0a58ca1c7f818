// Structured logging as the reference writes it: logrus's JSON formatter, one object per line with
// the keys sorted (Go marshals a map), `level`, `msg`, `time` (RFC3339NanoFixed, local zone) and the
// entry's fields. Every string passes through `redact` first, so no credential reaches the stream.
import { InvalidArgumentError } from "../errors/errors.js";

import { formatGoTime, localOffsetSeconds } from "../formats/go-time.js";
import { goString } from "../formats/go-json.js";
import { isSecretKey, redact, REDACTED } from "./redact.js";

export type LogLevel = "panic" | "fatal" | "error" | "warn" | "info" | "debug" | "trace";

const SEVERITY: Record<LogLevel, number> = { panic: 0, fatal: 1, error: 2, warn: 3, info: 4, debug: 5, trace: 6 };
/** logrus's `Level.String()`: warn prints as "warning". */
const LEVEL_TEXT: Record<LogLevel, string> = {
  panic: "panic",
  fatal: "fatal",
  error: "error",
  warn: "warning",
  info: "info",
  debug: "debug",
  trace: "trace",
};

/** logrus.ParseLevel: case-insensitive, "warning" accepted for warn. */
export function parseLogLevel(text: string): LogLevel {
  const t = text.toLowerCase();
  if (t === "warning") return "warn";
  if (t in SEVERITY) return t as LogLevel;
  throw new InvalidArgumentError(`not a valid logrus Level: ${JSON.stringify(text)}`);
}

export type LogFields = Record<string, unknown>;

export interface LogSink {
  write(line: string): unknown;
}

interface Shared {
  sink: LogSink;
  level: LogLevel;
  now: () => number;
}

/** RFC3339NanoFixed (`2006-01-02T15:04:05.000000000Z07:00`) of an epoch time in milliseconds. */
export function formatLogTime(epochMs: number): string {
  const sec = Math.floor(epochMs / 1000);
  const nsec = Math.round((epochMs - sec * 1000) * 1e6);
  const whole = formatGoTime(sec, 0, localOffsetSeconds(sec)); // "…:SSZ" or "…:SS±hh:mm"
  const cut = whole.endsWith("Z") ? whole.length - 1 : whole.length - 6;
  return `${whole.slice(0, cut)}.${String(Math.min(nsec, 999_999_999)).padStart(9, "0")}${whole.slice(cut)}`;
}

/** A JSON value as Go's encoding/json would write it, strings redacted. */
function jsonValue(v: unknown, depth = 0): string {
  if (v === null || v === undefined) return "null";
  if (typeof v === "string") return goString(redact(v));
  if (typeof v === "number") return Number.isFinite(v) ? JSON.stringify(v) : goString(String(v));
  if (typeof v === "bigint") return v.toString();
  if (typeof v === "boolean") return String(v);
  if (v instanceof Error) return goString(redact(v.message));
  if (v instanceof Date) return goString(formatLogTime(v.getTime()));
  if (v instanceof Uint8Array) return goString(redact(Buffer.from(v).toString("base64")));
  if (depth > 8) return goString("…");
  if (Array.isArray(v)) return `[${v.map((x) => jsonValue(x, depth + 1)).join(",")}]`;
  if (typeof v === "object") {
    const entries = Object.entries(v as Record<string, unknown>)
      .map(([k, x]) => [redact(k), isSecretKey(k) ? REDACTED : x] as const)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, x]) => `${goString(k)}:${jsonValue(x, depth + 1)}`).join(",")}}`;
  }
  return goString(redact(String(v)));
}

/** A logger; children share the sink and the level of their root. */
export class JsonLogger {
  private constructor(
    private readonly shared: Shared,
    private readonly fields: Readonly<LogFields>,
  ) {}

  static create(opts: { sink: LogSink; level?: LogLevel; now?: () => number }): JsonLogger {
    return new JsonLogger({ sink: opts.sink, level: opts.level ?? "info", now: opts.now ?? preciseNow }, {});
  }

  get level(): LogLevel {
    return this.shared.level;
  }

  /** Changes the level of this logger, its root and every child. */
  setLevel(level: LogLevel): void {
    this.shared.level = level;
  }

  enabled(level: LogLevel): boolean {
    return SEVERITY[level] <= SEVERITY[this.shared.level];
  }

  withFields(fields: LogFields): JsonLogger {
    return new JsonLogger(this.shared, { ...this.fields, ...fields });
  }

  withField(key: string, value: unknown): JsonLogger {
    return this.withFields({ [key]: value });
  }

  /** logrus's WithError: the error's message under `error`. */
  withError(err: unknown): JsonLogger {
    return this.withField("error", err instanceof Error ? err.message : String(err));
  }

  trace(msg: string, fields?: LogFields): void {
    this.log("trace", msg, fields);
  }
  debug(msg: string, fields?: LogFields): void {
    this.log("debug", msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    this.log("info", msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    this.log("warn", msg, fields);
  }
  error(msg: string, fields?: LogFields): void {
    this.log("error", msg, fields);
  }
  /** Writes a fatal entry; ending the process is the caller's job (it may need to clean up first). */
  fatal(msg: string, fields?: LogFields): void {
    this.log("fatal", msg, fields);
  }

  log(level: LogLevel, msg: string, fields?: LogFields): void {
    if (!this.enabled(level)) return;
    const entries: Array<[key: string, json: string]> = [];
    for (const [k, v] of Object.entries(fields ? { ...this.fields, ...fields } : this.fields)) {
      // logrus keeps clashing field names under "fields.<key>"
      const key = k === "level" || k === "msg" || k === "time" ? `fields.${k}` : k;
      entries.push([redact(key), isSecretKey(key) ? goString(REDACTED) : jsonValue(v)]);
    }
    entries.push(
      ["level", goString(LEVEL_TEXT[level])],
      ["msg", jsonValue(msg)],
      ["time", goString(formatLogTime(this.shared.now()))],
    );
    entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    try {
      this.shared.sink.write(`{${entries.map(([k, j]) => `${goString(k)}:${j}`).join(",")}}\n`);
    } catch {
      // a broken log stream must not take the daemon down
    }
  }
}

/** The daemon's logger: JSON lines on stderr. */
export function stderrLogger(level: LogLevel = "info"): JsonLogger {
  return JsonLogger.create({ sink: process.stderr, level });
}

/** Epoch milliseconds with sub-millisecond digits (the log's nanosecond field is not all zeros). */
function preciseNow(): number {
  return performance.timeOrigin + performance.now();
}
