// What `soci demo` needs on the machine, installed with apt when missing (Debian/Ubuntu, as root).
import { FailedPreconditionError } from "../errors/errors.js";
import { execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { promisify } from "node:util";

const run = promisify(execFile);

/** Debian packages the demo runs on. */
export const DEMO_PACKAGES = ["docker-registry", "containerd", "runc", "busybox-static", "libfuse2", "fuse3"];

/** The machine lacks something the demo needs, and it could not be installed. */
export class SetupError extends FailedPreconditionError {
  override name = "SetupError";
}

/** The packages of `pkgs` that dpkg does not list as installed. */
export async function missingPackages(pkgs: string[]): Promise<string[]> {
  const missing: string[] = [];
  for (const p of pkgs) {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a dpkg-query format field, not a JS template
    const r = await run("dpkg-query", ["-W", "-f=${db:Status-Status}", p]).catch(() => ({ stdout: "" }));
    if (r.stdout.trim() !== "installed") missing.push(p);
  }
  return missing;
}

function aptGet(args: string[], log: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn("apt-get", args, {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    });
    let out = "";
    const add = (d: Buffer) => (out = (out + d.toString()).slice(-8000));
    child.stdout!.on("data", add);
    child.stderr!.on("data", add);
    child.on("error", reject);
    child.on("close", (code) => {
      if (code === 0) {
        const summary = out.split("\n").find((l) => /newly installed/.test(l));
        if (summary) log(`  ${summary.trim()}`);
        resolve();
      } else reject(new SetupError(`apt-get ${args.join(" ")} exited ${code}:\n${out.trim()}`));
    });
  });
}

/**
 * Checks root, apt and /dev/fuse; installs the missing packages (`apt-get install -y`, after an
 * `apt-get update` if the first attempt fails). Returns what it installed.
 */
export async function ensureDemoPrerequisites(
  log: (line: string) => void,
  opts: { install?: boolean } = {},
): Promise<string[]> {
  if (process.platform !== "linux")
    throw new SetupError("soci demo runs containers with containerd and FUSE: it needs Linux");
  if (typeof process.getuid === "function" && process.getuid() !== 0) {
    throw new SetupError(
      "soci demo starts containerd, mounts FUSE filesystems and may install packages: run it as root (sudo)",
    );
  }
  const hasDpkg = existsSync("/usr/bin/dpkg-query");
  const missing = hasDpkg ? await missingPackages(DEMO_PACKAGES) : DEMO_PACKAGES.filter((p) => !fallbackPresent(p));
  if (missing.length) {
    if (opts.install === false)
      throw new SetupError(`missing packages: ${missing.join(" ")} (install them, or drop --no-install)`);
    if (!existsSync("/usr/bin/apt-get")) {
      throw new SetupError(
        `missing packages: ${missing.join(" ")}; this machine has no apt-get: install their equivalents by hand`,
      );
    }
    log(`installing with apt-get: ${missing.join(" ")}`);
    await aptGet(["install", "-y", "--no-install-recommends", ...missing], log).catch(async () => {
      log("  apt-get install failed; running apt-get update and trying again");
      await aptGet(["update"], () => undefined);
      await aptGet(["install", "-y", "--no-install-recommends", ...missing], log);
    });
  } else {
    log(`prerequisites present: ${DEMO_PACKAGES.join(", ")}`);
  }
  if (!existsSync("/dev/fuse")) {
    await run("modprobe", ["fuse"]).catch(() => undefined);
    if (!existsSync("/dev/fuse"))
      throw new SetupError("/dev/fuse is missing (load the fuse module, or in a container pass --device /dev/fuse)");
  }
  return missing;
}

function fallbackPresent(pkg: string): boolean {
  const paths: Record<string, string[]> = {
    "docker-registry": ["/usr/bin/docker-registry"],
    containerd: ["/usr/bin/containerd"],
    runc: ["/usr/sbin/runc", "/usr/bin/runc"],
    "busybox-static": ["/bin/busybox"],
    libfuse2: ["/usr/lib/x86_64-linux-gnu/libfuse.so.2", "/usr/lib/aarch64-linux-gnu/libfuse.so.2"],
    fuse3: ["/usr/bin/fusermount3", "/bin/fusermount3"],
  };
  return (paths[pkg] ?? []).some((p) => existsSync(p));
}
