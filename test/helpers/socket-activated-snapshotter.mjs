// Run under `systemd-socket-activate -l <socket> node <this> <root>`: serves the snapshots
// service of this checkout (dist/, built with tsc) on the listening socket systemd passed it, as
// the daemon's `--address fd://` would. SIGINT closes it.
import { startSnapshotterServer, systemdListenFds } from "../../dist/snapshotter/index.js";

const fds = systemdListenFds();
if (fds.length !== 1) {
  console.error(`expected one socket from systemd, got ${fds.length} (LISTEN_PID=${process.env.LISTEN_PID} LISTEN_FDS=${process.env.LISTEN_FDS})`);
  process.exit(2);
}
const server = await startSnapshotterServer({ address: "fd://", root: process.argv[2], listenFd: fds[0] });
console.log(`serving on fd ${fds[0]}`);
process.once("SIGINT", () => {
  void server.close().then(() => {
    console.log("closed");
    process.exit(0);
  });
});
