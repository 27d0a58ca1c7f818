// The daemon configuration: read once at start, then passed down as a plain typed object.
//
//   defaultConfig()       the reference's NewConfig(): defaults with every fill pass applied
//   parseConfig(text)     TOML text → validated config (throws ConfigError naming the key)
//   loadConfig(path)      file → config; the missing default path means defaults
//   dumpConfig(cfg)       TOML text as `soci-snapshotter-grpc config dump` prints it

import { readFile } from "node:fs/promises";
import { decodeTable, parseToml } from "./decode.js";
import { applyInitialDefaults, DEFAULT_CONFIG_PATH, fillZeroValues, validateConfig, zeroConfig } from "./defaults.js";
import { encodeToml } from "./encode.js";
import { ConfigError } from "./errors.js";
import { CONFIG_SCHEMA } from "./schema.js";
import type { SnapshotterConfig } from "./types.js";

export * from "./types.js";
export { ConfigError } from "./errors.js";
export {
  DEFAULT_ADDRESS,
  DEFAULT_CONFIG_PATH,
  DEFAULT_CONTAINERD_ADDRESS,
  DEFAULT_IMAGE_SERVICE_PATH,
  DEFAULT_ROOT_PATH,
  UNBOUNDED,
  USE_SITE_DEFAULTS,
  parseSize,
} from "./defaults.js";

/** The configuration used when there is no file. */
export function defaultConfig(): SnapshotterConfig {
  const cfg = zeroConfig();
  applyInitialDefaults(cfg);
  fillZeroValues(cfg);
  return cfg;
}

/** What loading a configuration may tell besides the result. */
export interface ConfigLoadOptions {
  /** A key no setting takes (ignored), by its dotted name: `background_fetch.silence_perid_msec`. */
  onUnknownKey?: (key: string) => void;
}

/** TOML text → configuration: defaults, then the file's values, then the fill passes, then checks. */
export function parseConfig(text: string, opts: ConfigLoadOptions = {}): SnapshotterConfig {
  const cfg = defaultConfig();
  decodeTable(parseToml(text), CONFIG_SCHEMA, cfg as unknown as Record<string, unknown>, "", opts.onUnknownKey);
  fillZeroValues(cfg);
  validateConfig(cfg);
  return cfg;
}

/**
 * Reads the config file. A missing file at the default path means defaults; any other missing or
 * unreadable file is an error ("failed to open config file"); bad content is "failed to load".
 */
export async function loadConfig(path: string | undefined, opts: ConfigLoadOptions = {}): Promise<SnapshotterConfig> {
  const file = path ?? DEFAULT_CONFIG_PATH;
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === "ENOENT" && file === DEFAULT_CONFIG_PATH) return defaultConfig();
    throw new ConfigError(`failed to open config file ${JSON.stringify(file)}: ${describeFsError(err)}`);
  }
  try {
    return parseConfig(text, opts);
  } catch (e) {
    if (e instanceof ConfigError)
      throw new ConfigError(`failed to load config file ${JSON.stringify(file)}: ${e.message}`);
    throw e;
  }
}

function describeFsError(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case "ENOENT":
      return "no such file or directory";
    case "EACCES":
      return "permission denied";
    case "EISDIR":
      return "is a directory";
    default:
      return err.message;
  }
}

/** The configuration as TOML, laid out as the reference's `config dump` prints it. */
export function dumpConfig(cfg: SnapshotterConfig): string {
  return encodeToml(CONFIG_SCHEMA, cfg as unknown as Record<string, unknown>);
}

/** What `soci-snapshotter-grpc config default` prints. */
export function defaultConfigText(): string {
  return dumpConfig(defaultConfig());
}
