// Reading the repository's own documentation from tests: the containerd snippet of
// docs/kubernetes.md (the single source of the CRI settings the CRI tests run) and the numbered
// sections of the docs that code comments cite.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** The repository root (this file is test/helpers/docs.ts). */
export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const DOCS_DIR = fileURLToPath(new URL("../../docs/", import.meta.url));
export const KUBERNETES_DOC = fileURLToPath(new URL("../../docs/kubernetes.md", import.meta.url));

/** The HTML comment that precedes the ```toml fence of the containerd snippet in docs/kubernetes.md. */
export const CONTAINERD_CRI_SNIPPET_MARKER = "<!-- containerd-cri-snippet -->";

/** The snapshotter's default socket, the address the snippet must give (tests replace it). */
export const DEFAULT_SOCI_SOCKET = "/run/soci-snapshotter-grpc/soci-snapshotter-grpc.sock";

/**
 * The TOML of the fenced block right after the marker in `markdown` (default: docs/kubernetes.md).
 * Throws, naming what is wrong, when the marker or its ```toml fence is missing.
 */
export function containerdCriSnippet(markdown = readFileSync(KUBERNETES_DOC, "utf8")): string {
  const lines = markdown.split("\n");
  const at = lines.findIndex((l) => l.trim() === CONTAINERD_CRI_SNIPPET_MARKER);
  if (at < 0) throw new Error(`docs/kubernetes.md: no line ${CONTAINERD_CRI_SNIPPET_MARKER}`);
  if (lines.slice(at + 1).some((l) => l.trim() === CONTAINERD_CRI_SNIPPET_MARKER))
    throw new Error(`docs/kubernetes.md: ${CONTAINERD_CRI_SNIPPET_MARKER} appears more than once`);
  const fence = at + 1;
  if (lines[fence]?.trim() !== "```toml")
    throw new Error(`docs/kubernetes.md: the line after ${CONTAINERD_CRI_SNIPPET_MARKER} must open a \`\`\`toml block`);
  const end = lines.findIndex((l, i) => i > fence && l.trim() === "```");
  if (end < 0) throw new Error("docs/kubernetes.md: the containerd snippet's ```toml block is not closed");
  return lines.slice(fence + 1, end).join("\n") + "\n";
}

/**
 * The section numbers of a markdown file: "N" for every `## N.` heading and "N.M" for every
 * `### N.M` heading (a trailing dot allowed), e.g. {"0", "1", "1.1", …}.
 */
export function sectionNumbers(markdown: string): Set<string> {
  const out = new Set<string>();
  for (const line of markdown.split("\n")) {
    const top = /^## (\d+)\.(?:\s|$)/.exec(line);
    if (top) out.add(top[1]!);
    const sub = /^### (\d+\.\d+)\.?(?:\s|$)/.exec(line);
    if (sub) out.add(sub[1]!);
  }
  return out;
}
