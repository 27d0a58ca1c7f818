// A configuration the daemon cannot start with. The message names the offending key.
export class ConfigError extends Error {
  override name = "ConfigError";
}
