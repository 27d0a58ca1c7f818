// systemd's readiness protocol (sd_notify, for `Type=notify`). Node has no unix datagram sockets,
// so the message goes through `systemd-notify`, naming this process as the main PID (the unit sets
// NotifyAccess=all: the datagram comes from a child). Without NOTIFY_SOCKET this does nothing.
import { spawn } from "node:child_process";
import type { JsonLogger } from "../log/json-logger.js";

/** Tells systemd the daemon is ready; a failure is logged, never fatal. */
export function notifyReady(logger: JsonLogger): Promise<void> {
  return sdNotify(logger, ["--ready", `--pid=${process.pid}`], "readiness");
}

/**
 * Tells systemd which process is the service's main process from now on: a FUSE host taking over
 * from the one it upgrades (which then exits on its own), or handing it back when that failed.
 */
export function notifyMainPid(logger: JsonLogger, pid = process.pid): Promise<void> {
  return sdNotify(logger, [`--pid=${pid}`], "the main pid");
}

function sdNotify(logger: JsonLogger, args: string[], what: string): Promise<void> {
  if (!process.env.NOTIFY_SOCKET) return Promise.resolve();
  return new Promise((resolve) => {
    const child = spawn("systemd-notify", args, { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.on("error", (e) => {
      logger.warn(`failed to notify systemd of ${what}`, { error: e.message });
      resolve();
    });
    child.on("close", (code) => {
      if (code !== 0)
        logger.warn(`failed to notify systemd of ${what}`, { error: err.trim() || `systemd-notify exited ${code}` });
      resolve();
    });
  });
}
