// Platforms as containerd's `platforms` package handles them (v1.0 series, used by containerd
// v2.2): specifier parsing, normalization, formatting, strict matching, the host default, and SOCI's
// `ociutil.DedupePlatforms` (docs/formats.md §3.4, §3.5, §7.1; pitfall 15).

import { InvalidArgumentError } from "../errors/errors.js";
import { decodeGoSlice, decodeGoString, decodeStruct, parseGoJson, topContext, type FieldSpec } from "./go-json.js";
import type { Platform } from "./oci.js";
import { goCleanPath } from "./prefetch.js";

export type { Platform } from "./oci.js";

/** Thrown for unparsable platform specifiers (containerd's `errdefs.ErrInvalidArgument`). */
export class PlatformError extends InvalidArgumentError {
  override name = "PlatformError";
}

// ------------------------------------------------------------------------------------------------
// Host

/** What the host looks like; defaults come from `process`. Tests pass explicit values. */
export interface HostInfo {
  /** Node `process.platform`. */
  platform: string;
  /** Node `process.arch`. */
  arch: string;
  /** ARM architecture version for 32-bit arm (Node `process.config.variables.arm_version`). */
  armVersion?: string;
  /** Byte order, needed to tell ppc64 from ppc64le. */
  endianness?: "LE" | "BE";
}

function currentHost(): HostInfo {
  const vars = (process.config?.variables ?? {}) as Record<string, unknown>;
  const armv = vars.arm_version;
  const le = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
  return {
    platform: process.platform,
    arch: process.arch,
    armVersion: typeof armv === "string" || typeof armv === "number" ? String(armv) : undefined,
    endianness: le ? "LE" : "BE",
  };
}

/** Go's GOOS for a Node `process.platform`. */
export function goosOf(nodePlatform: string): string {
  switch (nodePlatform) {
    case "win32":
    case "cygwin":
      return "windows";
    case "sunos":
      return "solaris";
    default:
      return nodePlatform; // linux, darwin, freebsd, openbsd, netbsd, aix, android
  }
}

/** Go's GOARCH for a Node `process.arch`. */
export function goarchOf(nodeArch: string, endianness: "LE" | "BE" = "LE"): string {
  switch (nodeArch) {
    case "x64":
      return "amd64";
    case "ia32":
      return "386";
    case "mipsel":
      return "mipsle";
    case "ppc64":
      return endianness === "LE" ? "ppc64le" : "ppc64";
    default:
      return nodeArch; // arm, arm64, loong64, mips, ppc, riscv64, s390, s390x
  }
}

/**
 * containerd `platforms.DefaultSpec()` for the host: `{os: GOOS, architecture: GOARCH, variant:
 * cpuVariant()}` — NOT normalized, so arm64 hosts report variant `v8` (cpuinfo "8"), arm hosts
 * `v<N>`; other architectures have no variant.
 */
export function defaultPlatform(host: HostInfo = currentHost()): Platform {
  const os = goosOf(host.platform);
  const architecture = goarchOf(host.arch, host.endianness);
  const p: Platform = { architecture, os };
  if (architecture === "arm64") p.variant = "v8";
  else if (architecture === "arm")
    p.variant = "v" + (host.armVersion && /^\d+$/.test(host.armVersion) ? host.armVersion : "7");
  return p;
}

// ------------------------------------------------------------------------------------------------
// Normalization

const KNOWN_OS = new Set([
  "aix",
  "android",
  "darwin",
  "dragonfly",
  "freebsd",
  "hurd",
  "illumos",
  "ios",
  "js",
  "linux",
  "nacl",
  "netbsd",
  "openbsd",
  "plan9",
  "solaris",
  "windows",
  "zos",
]);
const KNOWN_ARCH = new Set([
  "386",
  "amd64",
  "amd64p32",
  "arm",
  "armbe",
  "arm64",
  "arm64be",
  "ppc64",
  "ppc64le",
  "loong64",
  "mips",
  "mipsle",
  "mips64",
  "mips64le",
  "mips64p32",
  "mips64p32le",
  "ppc",
  "riscv",
  "riscv64",
  "s390",
  "s390x",
  "sparc",
  "sparc64",
  "wasm",
]);

export function isKnownOS(os: string): boolean {
  return KNOWN_OS.has(os);
}

export function isKnownArch(arch: string): boolean {
  return KNOWN_ARCH.has(arch);
}

/** Lower-cases, `macos` → `darwin`; an empty OS becomes the host OS (as containerd does). */
export function normalizeOS(os: string, host?: HostInfo): string {
  if (os === "") return goosOf((host ?? currentHost()).platform);
  const l = os.toLowerCase();
  return l === "macos" ? "darwin" : l;
}

/**
 * containerd `normalizeArch`: i386→386 (no variant); x86_64/x86-64/amd64→amd64 (variant v1 dropped);
 * aarch64/arm64→arm64 (variant 8/v8 dropped); armhf→arm/v7; armel→arm/v6; arm: ""/7→v7, 5/6/8→v5/v6/v8.
 */
export function normalizeArch(arch: string, variant: string): [string, string] {
  let a = arch.toLowerCase();
  let v = variant.toLowerCase();
  switch (a) {
    case "i386":
      a = "386";
      v = "";
      break;
    case "x86_64":
    case "x86-64":
    case "amd64":
      a = "amd64";
      if (v === "v1") v = "";
      break;
    case "aarch64":
    case "arm64":
      a = "arm64";
      if (v === "8" || v === "v8") v = "";
      break;
    case "armhf":
      a = "arm";
      v = "v7";
      break;
    case "armel":
      a = "arm";
      v = "v6";
      break;
    case "arm":
      if (v === "" || v === "7") v = "v7";
      else if (v === "5" || v === "6" || v === "8") v = "v" + v;
      break;
  }
  return [a, v];
}

/**
 * containerd `platforms.Normalize`: OS and architecture/variant canonicalised, OS features sorted
 * and de-duplicated. OS version is kept. Returns a new object.
 */
export function normalizePlatform(p: Platform, host?: HostInfo): Platform {
  const [architecture, variant] = normalizeArch(p.architecture ?? "", p.variant ?? "");
  const out: Platform = { architecture, os: normalizeOS(p.os ?? "", host) };
  if (p.osVersion) out.osVersion = p.osVersion;
  if (p.osFeatures && p.osFeatures.length > 0) {
    const sorted = [...p.osFeatures].sort(byteCompare);
    out.osFeatures = sorted.filter((f, i) => i === 0 || f !== sorted[i - 1]);
  } else if (p.osFeatures) {
    out.osFeatures = p.osFeatures;
  }
  if (variant) out.variant = variant;
  return out;
}

function byteCompare(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

// ------------------------------------------------------------------------------------------------
// Parse / format

const SPECIFIER_RE = /^[A-Za-z0-9_.-]+$/;
const OS_RE = /^([A-Za-z0-9_-]+)(?:\(([A-Za-z0-9_.%-]*)((?:\+[A-Za-z0-9_.%-]+)*)\))?$/;

function decodeOSOption(v: string, specifier: string, what: string): string {
  if (!v.includes("%")) return v;
  try {
    return decodeURIComponent(v);
  } catch {
    throw new PlatformError(
      `${JSON.stringify(specifier)} has an invalid OS ${what} ${JSON.stringify(v)}: invalid argument`,
    );
  }
}

/**
 * containerd `platforms.Parse`: `<os>[(<osversion>[+<feature>]*)]`, `<arch>`, `<os>/<arch>` or
 * `<os>/<arch>/<variant>`. A lone OS gets the host architecture; a lone architecture the host OS.
 * Two parts: arm's default `v7` is dropped; three parts: `arm64` with a normalized-away variant gets
 * `v8` back (so `linux/arm64/v8` parses to variant `v8`, `linux/arm64` to none).
 */
export function parsePlatform(specifier: string, host?: HostInfo): Platform {
  const h = host ?? currentHost();
  const bad = (msg: string): never => {
    throw new PlatformError(`${msg}: invalid argument`);
  };
  if (specifier.includes("*")) bad(`${JSON.stringify(specifier)}: wildcards not yet supported`);
  const parts = splitN(specifier, "/", 4);
  const p: Platform = { architecture: "", os: "" };
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    if (i === 0) {
      const m = OS_RE.exec(part);
      if (!m) {
        bad(
          `${JSON.stringify(part)} is an invalid OS component of ${JSON.stringify(specifier)}: OSAndVersion specifier component must match ${JSON.stringify(OS_RE.source)}`,
        );
      }
      p.os = normalizeOS(m![1]!, h);
      const osVersion = decodeOSOption(m![2] ?? "", specifier, "version");
      if (osVersion) p.osVersion = osVersion;
      if (m![3])
        p.osFeatures = m![3]
          .slice(1)
          .split("+")
          .map((f) => decodeOSOption(f, specifier, "feature"));
    } else if (!SPECIFIER_RE.test(part)) {
      bad(
        `${JSON.stringify(part)} is an invalid component of ${JSON.stringify(specifier)}: platform specifier component must match ${JSON.stringify(SPECIFIER_RE.source)}`,
      );
    }
  }
  const setArch = (a: string, v: string) => {
    p.architecture = a;
    if (v) p.variant = v;
    else delete p.variant;
  };
  switch (parts.length) {
    case 1: {
      if (isKnownOS(p.os)) {
        const def = defaultPlatform(h);
        p.architecture = def.architecture;
        if (p.architecture === "arm" && def.variant !== "v7" && def.variant) p.variant = def.variant;
        return p;
      }
      let [a, v] = normalizeArch(parts[0]!, "");
      if (a === "arm" && v === "v7") v = "";
      if (isKnownArch(a)) {
        const out: Platform = { architecture: a, os: goosOf(h.platform) };
        if (v) out.variant = v;
        return out;
      }
      return bad(`${JSON.stringify(specifier)}: unknown operating system or architecture`);
    }
    case 2: {
      let [a, v] = normalizeArch(parts[1]!, "");
      if (a === "arm" && v === "v7") v = "";
      setArch(a, v);
      return p;
    }
    case 3: {
      let [a, v] = normalizeArch(parts[1]!, parts[2]!);
      if (a === "arm64" && v === "") v = "v8";
      setArch(a, v);
      return p;
    }
  }
  return bad(`${JSON.stringify(specifier)}: cannot parse platform specifier`);
}

/** Go `strings.SplitN`. */
export function splitN(s: string, sep: string, n: number): string[] {
  const out: string[] = [];
  let rest = s;
  while (out.length < n - 1) {
    const i = rest.indexOf(sep);
    if (i < 0) break;
    out.push(rest.slice(0, i));
    rest = rest.slice(i + sep.length);
  }
  out.push(rest);
  return out;
}

/** Go `path.Join(elems...)`: non-empty elements joined with `/`, then cleaned. */
function goPathJoin(...elems: string[]): string {
  const nonEmpty = elems.filter((e) => e !== "");
  if (nonEmpty.length === 0) return "";
  return goCleanPath(nonEmpty.join("/"));
}

/** containerd `platforms.Format`: `os/arch[/variant]` (path-joined), or `unknown` without an OS. */
export function formatPlatform(p: Platform): string {
  if (!p.os) return "unknown";
  return goPathJoin(p.os, p.architecture ?? "", p.variant ?? "");
}

/** containerd `platforms.FormatAll`: like Format with `os(version+feature...)` when present. */
export function formatPlatformAll(p: Platform): string {
  if (!p.os) return "unknown";
  const enc = (v: string) =>
    v.replace(/%/g, "%25").replace(/\+/g, "%2B").replace(/\(/g, "%28").replace(/\)/g, "%29").replace(/\//g, "%2F");
  let opts = enc(p.osVersion ?? "");
  const features = [...(p.osFeatures ?? [])].sort(byteCompare);
  for (const f of features) opts += "+" + enc(f);
  const os = opts.length > 0 ? `${p.os}(${opts})` : p.os;
  return goPathJoin(os, p.architecture ?? "", p.variant ?? "");
}

// ------------------------------------------------------------------------------------------------
// Matching

export interface PlatformMatcher {
  match(p: Platform): boolean;
}

function windowsBuild(v: string | undefined): [number, number, number] {
  const parts = (v ?? "").split(".");
  const n = (s: string | undefined) => {
    const x = Number.parseInt(s ?? "", 10);
    return Number.isFinite(x) ? x : 0;
  };
  return [n(parts[0]), n(parts[1]), n(parts[2])];
}

/**
 * containerd `platforms.NewMatcher` / `OnlyStrict` (they match the same set on non-Windows hosts):
 * both sides normalized, OS + architecture + variant equal, the candidate's OS features a subset of
 * the matcher's, and for Windows the OS build (major.minor.build) equal when both are given.
 */
export function platformMatcher(want: Platform, host?: HostInfo): PlatformMatcher {
  const m = normalizePlatform(want, host);
  const winBuild = want.os === "windows" ? windowsBuild(want.osVersion) : undefined;
  return {
    match(p: Platform): boolean {
      const n = normalizePlatform(p, host);
      if (m.os !== n.os || m.architecture !== n.architecture || (m.variant ?? "") !== (n.variant ?? "")) return false;
      if (winBuild && !(winBuild[0] === 0 && winBuild[1] === 0 && winBuild[2] === 0) && p.osVersion) {
        const b = windowsBuild(p.osVersion);
        if (b[0] !== winBuild[0] || b[1] !== winBuild[1] || b[2] !== winBuild[2]) return false;
      }
      const nf = n.osFeatures ?? [];
      if (nf.length === 0) return true;
      const mf = m.osFeatures ?? [];
      if (mf.length < nf.length) return false;
      let j = 0;
      for (const feature of nf) {
        let found = false;
        for (; j < mf.length; j++) {
          if (feature === mf[j]) {
            found = true;
            j++;
            break;
          }
          if (byteCompare(feature, mf[j]!) < 0) return false;
        }
        if (!found) return false;
      }
      return true;
    },
  };
}

/** `platforms.OnlyStrict(want).Match(have)`. */
export function matchPlatformStrict(want: Platform, have: Platform, host?: HostInfo): boolean {
  return platformMatcher(want, host).match(have);
}

/**
 * SOCI `ociutil.DedupePlatforms`: keeps the first of each group of platforms that match strictly
 * after normalization (exact and denormalized duplicates removed); the kept values are unchanged.
 */
export function dedupePlatforms(ps: readonly Platform[], host?: HostInfo): Platform[] {
  const matchers: PlatformMatcher[] = [];
  const out: Platform[] = [];
  for (const p of ps) {
    const n = normalizePlatform(p, host);
    if (matchers.some((m) => m.match(n))) continue;
    out.push(p);
    matchers.push(platformMatcher(n, host));
  }
  return out;
}

// ------------------------------------------------------------------------------------------------
// Image config

interface ConfigPlatform {
  architecture: string;
  os: string;
  osVersion?: string;
  osFeatures?: string[] | null;
  variant?: string;
}

const configFields: FieldSpec<ConfigPlatform>[] = [
  {
    name: "architecture",
    decode: (v, t, c) => {
      t.architecture = decodeGoString(v, t.architecture, c) ?? "";
    },
  },
  {
    name: "os",
    decode: (v, t, c) => {
      t.os = decodeGoString(v, t.os, c) ?? "";
    },
  },
  {
    name: "os.version",
    decode: (v, t, c) => {
      t.osVersion = decodeGoString(v, t.osVersion, c);
    },
  },
  {
    name: "os.features",
    decode: (v, t, c) => {
      t.osFeatures = decodeGoSlice(v, t.osFeatures, c, "[]string", (e, cur, cc) => decodeGoString(e, cur, cc) ?? "");
    },
  },
  {
    name: "variant",
    decode: (v, t, c) => {
      t.variant = decodeGoString(v, t.variant, c);
    },
  },
];

/**
 * The platform of a single-manifest image as containerd's `images.Platforms` derives it from the
 * image config (`ocispec.Image`): `Normalize({os, architecture, os.version, os.features, variant})`.
 */
export function platformFromImageConfig(configBytes: Uint8Array | string, host?: HostInfo): Platform {
  const t: ConfigPlatform = { architecture: "", os: "" };
  decodeStruct(parseGoJson(configBytes), t, topContext("v1.Image"), "Image", "v1.Image", configFields);
  const p: Platform = { architecture: t.architecture, os: t.os };
  if (t.osVersion) p.osVersion = t.osVersion;
  if (t.osFeatures) p.osFeatures = t.osFeatures;
  if (t.variant) p.variant = t.variant;
  return normalizePlatform(p, host);
}
