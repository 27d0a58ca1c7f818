// Every test file is in exactly one of these lists (test/suites.test.ts checks it, so a new file is
// classified on purpose). `npm run test:unit` (vitest.unit.config.ts) runs UNIT_TESTS; `npm test`
// runs every file, whatever the lists say.

/**
 * Need no root, no registry, no containerd, no FUSE and no network: each was run as `nobody`
 * (setpriv --reuid=65534) to check. They may start local processes (the CLI, GNU tar, pigz, umoci,
 * skopeo on OCI layouts) and use the built WASM and workers (`pretest:unit` builds them).
 */
export const UNIT_TESTS = [
  "cli-inspect.test.ts",
  "cli.test.ts",
  "convert.test.ts",
  "cri-keychain.test.ts",
  "daemon-config.test.ts",
  "daemon-logger.test.ts",
  "daemon-metrics.test.ts",
  "errors.test.ts",
  "extract-spans.test.ts",
  "fs-span-manager.test.ts",
  "fs-span-budget.test.ts",
  "fs-tree.test.ts",
  "fuse-host.test.ts",
  "garbage.test.ts",
  "go-json.test.ts",
  "go-time.test.ts",
  "inflate-differential.test.ts",
  "inflate-errors.test.ts",
  "inflate-stream.test.ts",
  "inflate-vectors.test.ts",
  "layer-indexer.test.ts",
  "layer-verification.test.ts",
  "layers.test.ts",
  "pool.test.ts",
  "worker-argv.test.ts",
  "read-handles.test.ts",
  "registry-auth.test.ts",
  "registry-hosts.test.ts",
  "snapshotter-store.test.ts",
  "soci-index.test.ts",
  "store-artifacts-db.test.ts",
  "store-content.test.ts",
  "store-oci-layout.test.ts",
  "structure.test.ts",
  "proto-descriptors.test.ts",
  "suites.test.ts",
  "tar.test.ts",
  "zinfo.test.ts",
  "ztoc.test.ts",
];

/** Need root (overlay mounts, device nodes), a real registry, containerd, FUSE, or the npm registry. */
export const INTEGRATION_TESTS = [
  "chunk-verification-mount.test.ts", // registry, FUSE (soci mount)
  "cli-containerd.test.ts", // containerd
  "cli-image-locations.test.ts", // registry
  "containerd-client.test.ts", // containerd
  "convert-remote.test.ts", // registry
  "daemon-chunk-verification.test.ts", // containerd, registry, FUSE, the FUSE host
  "daemon-cache-full.test.ts", // a tmpfs under the daemon root, containerd, registry, FUSE
  "daemon-cli.test.ts", // the daemon's overlayfs check mounts: root
  "daemon-content-store.test.ts", // containerd, registry
  "daemon-cri-keychain.test.ts", // containerd's CRI, registry
  "daemon-cri.test.ts", // containerd's CRI, registry
  "daemon-deploy.test.ts", // containerd, systemd-style socket activation as root
  "daemon-fuse-host.test.ts", // containerd, registry, FUSE, the FUSE host process
  "daemon-lazy-pull.test.ts", // containerd, registry, FUSE
  "daemon-parallel-pull.test.ts", // containerd, registry
  "daemon-pull-modes.test.ts", // containerd, registry, FUSE
  "daemon-registry-timeout.test.ts", // containerd, registry behind a stalling proxy
  "daemon-restart.test.ts", // containerd, registry, FUSE
  "demo.test.ts", // the whole demo: apt, containerd, registry
  "docs.test.ts", // imports the CRI containerd helper (the config it writes is checked against the doc)
  "fs-background-fetcher.test.ts", // registry
  "fs-chunk-verification.test.ts", // registry
  "fs-layer-reader.test.ts", // registry
  "fs-mount.test.ts", // FUSE
  "fs-parallel-pull.test.ts", // registry
  "fs-unpack-layer.test.ts", // overlay mounts and device nodes: root
  "hostile-layers.test.ts", // registry, FUSE
  "package-install.test.ts", // npm pack + npm install -g from the npm registry
  "permissions.test.ts", // useradd, FUSE, containerd
  "registry-auth-e2e.test.ts", // registry
  "registry-client.test.ts", // registry
  "registry-mirrors-tls.test.ts", // registry
  "registry-transport.test.ts", // registry, proxies
  "snapshotter-containerd.test.ts", // containerd
  "snapshotter-service.test.ts", // overlay mounts: root
  "snapshotter-socket-activation.test.ts", // containerd
  "soci-mount.test.ts", // registry, FUSE
];

/** Helpers that start a registry, containerd, the daemon or a FUSE mount: no unit test imports them. */
export const INTEGRATION_HELPERS = [
  "helpers/registry-server.js",
  "helpers/containerd.js",
  "helpers/soci-daemon.js",
  "helpers/cri/containerd.js",
];
