// systemd's readiness protocol (sd_notify, for `Type=notify`). Node has no unix datagram sockets,
// so the message goes through `systemd-notify`, naming this process as the main PID (the unit sets
// NotifyAccess=all: the datagram comes from a child). Without NOTIFY_SOCKET this does nothing.
import { spawn } from "node:child_process";
import type { JsonLogger } from "../log/json-logger.js";

/** Tells systemd the daemon is ready; a failure is logged, never fatal. */
export function notifyReady(logger: JsonLogger): Promise<void> {
  if (!process.env.NOTIFY_SOCKET) return Promise.resolve();
  return new Promise((resolve) => {
    const child = spawn("systemd-notify", ["--ready", `--pid=${process.pid}`], { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.on("error", (e) => {
      logger.warn("failed to notify systemd of readiness", { error: e.message });
      resolve();
    });
    child.on("close", (code) => {
      if (code !== 0)
        logger.warn("failed to notify systemd of readiness", { error: err.trim() || `systemd-notify exited ${code}` });
      resolve();
    });
  });
}
