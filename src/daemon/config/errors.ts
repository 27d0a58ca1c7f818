// A configuration the daemon cannot start with. The message names the offending key.
import { InvalidArgumentError } from "../../errors/errors.js";
export class ConfigError extends InvalidArgumentError {
  override name = "ConfigError";
}
