// The logging surface the snapshotter needs; the daemon supplies its structured JSON logger.
export type LogFields = Record<string, unknown>;

export interface SnapshotterLogger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
}

const nothing = () => {};
export const silentLogger: SnapshotterLogger = { debug: nothing, info: nothing, warn: nothing, error: nothing };
