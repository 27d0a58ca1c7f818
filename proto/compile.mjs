// Compiles the .proto files in this directory into protobufjs JSON descriptors in
// `<package root>/build/proto/` (run by `npm run build`). Loading a descriptor costs a process a
// fraction of what parsing the .proto files and deriving gRPC's reflection data at run time did
// (~40 ms instead of ~200–400 ms at every start of the CLI, the daemon and the FUSE host).
// Each output holds one group of files: field names camelCase, but snake_case for the CRI API,
// whose messages the code handles as cri-api names them.
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import protobuf from "protobufjs";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "build", "proto");

/** `.proto` files under `dir`, relative to this directory, sorted. */
function protoFiles(dir) {
  const found = [];
  for (const e of readdirSync(join(here, dir), { withFileTypes: true })) {
    const path = join(dir, e.name);
    if (e.isDirectory()) found.push(...protoFiles(path));
    else if (e.name.endsWith(".proto")) found.push(path);
  }
  return found.sort();
}

export const GROUPS = {
  containerd: { files: protoFiles("containerd"), keepCase: false },
  "fuse-host": { files: ["fuse-host.proto"], keepCase: false },
  "cri-api": { files: ["cri-api.proto"], keepCase: true },
};

/** The JSON descriptor of one group, as written. */
export function compileGroup(name) {
  const { files, keepCase } = GROUPS[name];
  const root = new protobuf.Root();
  // imports are relative to this directory (google/protobuf/* are protobufjs's own)
  root.resolvePath = (_origin, target) => (target.startsWith(here) ? target : join(here, target));
  root.loadSync(
    files.map((f) => join(here, f)),
    { keepCase },
  );
  root.resolveAll();
  return `${JSON.stringify(root.toJSON())}\n`;
}

if (process.argv[1] && relative(process.argv[1], fileURLToPath(import.meta.url)) === "") {
  mkdirSync(out, { recursive: true });
  for (const name of Object.keys(GROUPS)) writeFileSync(join(out, `${name}.json`), compileGroup(name));
}
