// The documentation keeps up with the code: (a) the containerd snippet in docs/kubernetes.md — which
// the CRI tests run (test/helpers/cri/containerd.ts) — has the settings lazy pulls need and matches
// deploy/containerd-config.toml; (b) every section a comment cites (`docs/formats.md §2.3`, the older
// `FORMATS.md §2.3` / `SNAPSHOTTER.md §2.3`, and bare `§2.3` in a file that cites a doc) exists in
// docs/, and so do the sections and pitfalls the docs cite among themselves. Fast: files only.
import { describe, expect, it } from "vitest";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { parse, stringify } from "smol-toml";
import {
  containerdCriSnippet,
  CONTAINERD_CRI_SNIPPET_MARKER,
  DEFAULT_SOCI_SOCKET,
  DOCS_DIR,
  KUBERNETES_DOC,
  REPO_ROOT,
  sectionNumbers,
} from "./helpers/docs.js";
import { documentedCriConfig } from "./helpers/cri/containerd.js";

type Table = Record<string, unknown>;
const table = (v: unknown): Table => {
  expect(v, "a TOML table").toBeTypeOf("object");
  return v as Table;
};

// ------------------------------------------------------------------------------------------------
// (a) the containerd snippet

describe("docs/kubernetes.md containerd snippet", () => {
  const snippet = containerdCriSnippet();
  const config = parse(snippet);

  it("is a version 2 config with the soci proxy plugin on the daemon's default socket", () => {
    expect(config.version).toBe(2);
    const soci = table(table(config.proxy_plugins).soci);
    expect(soci.type).toBe("snapshot");
    expect(soci.address).toBe(DEFAULT_SOCI_SOCKET);
  });

  it('makes the CRI plugin unpack with soci and pass the image labels (snapshotter = "soci", disable_snapshot_annotations = false)', () => {
    const containerd = table(table(table(config.plugins)["io.containerd.grpc.v1.cri"]).containerd);
    expect(containerd.snapshotter).toBe("soci");
    expect(containerd.disable_snapshot_annotations).toBe(false);
  });

  it("says what deploy/containerd-config.toml says", () => {
    const deploy = parse(readFileSync(join(REPO_ROOT, "deploy", "containerd-config.toml"), "utf8"));
    expect(deploy).toEqual(config);
  });

  it("is what the CRI test harness starts containerd with, socket path replaced", () => {
    const harness = documentedCriConfig("/tmp/test/soci.sock", snippet);
    const { version: _, ...rest } = config;
    expect(harness).toEqual({
      ...rest,
      proxy_plugins: { soci: { type: "snapshot", address: "/tmp/test/soci.sock" } },
    });
    expect(parse(stringify(harness))).toEqual(harness);
  });

  it("is found only after its marker, in a closed ```toml block", () => {
    const doc = readFileSync(KUBERNETES_DOC, "utf8");
    expect(doc.split(CONTAINERD_CRI_SNIPPET_MARKER)).toHaveLength(2);
    expect(() => containerdCriSnippet("no marker here")).toThrow(/no line/);
    expect(() => containerdCriSnippet(`${CONTAINERD_CRI_SNIPPET_MARKER}\n\`\`\`sh\nx\n\`\`\`\n`)).toThrow(/toml/);
    expect(() => containerdCriSnippet(`${CONTAINERD_CRI_SNIPPET_MARKER}\n\`\`\`toml\nx = 1\n`)).toThrow(/not closed/);
    expect(containerdCriSnippet(`${CONTAINERD_CRI_SNIPPET_MARKER}\n\`\`\`toml\nx = 1\n\`\`\`\n`)).toBe("x = 1\n");
  });
});

// ------------------------------------------------------------------------------------------------
// (b) section references

/** docs/<name>.md → its section numbers. */
const docs = new Map<string, Set<string>>(
  readdirSync(DOCS_DIR)
    .filter((f) => f.endsWith(".md"))
    .map((f) => [f, sectionNumbers(readFileSync(join(DOCS_DIR, f), "utf8"))]),
);

/** The numbered pitfalls of formats.md §8 ("N. **…**" items). */
function pitfalls(): Set<string> {
  const text = readFileSync(join(DOCS_DIR, "formats.md"), "utf8");
  const start = text.search(/^## 8\. /m);
  const out = new Set<string>();
  if (start < 0) return out;
  for (const m of text.slice(start).matchAll(/^(\d+)\. /gm)) out.add(m[1]!);
  return out;
}

const NUM = String.raw`\d+(?:\.\d+)?`;
/** One reference or range, capturing its ends. */
const ONE = String.raw`§\s?(${NUM})(?:\s*[-–]\s*§?(${NUM}))?`;
/** The same without captures. */
const ONE_NC = String.raw`§\s?${NUM}(?:\s*[-–]\s*§?${NUM})?`;
/**
 * A run of section references: an optional doc token (`docs/formats.md`, `formats.md`, `FORMATS.md`,
 * `FORMATS`, the same for SNAPSHOTTER; optionally followed by a backtick or `)` as in markdown
 * links), then `§N[.M]`, ranges `§a–b` / `§a-§b`, and `, §…` continuations.
 */
const REF_RUN = new RegExp(
  String.raw`(?<![\w.-])(?:((?:docs/)?[a-z][a-z0-9-]*\.md|FORMATS(?:\.md)?|SNAPSHOTTER(?:\.md)?)[\`)]?\s*)?` +
    String.raw`(${ONE_NC}(?:\s*,\s*${ONE_NC})*)`,
  "g",
);
const ONE_RE = new RegExp(ONE, "g");

interface Ref {
  file: string;
  line: number;
  text: string;
  /** docs file the reference points to, or undefined for a bare `§` */
  doc?: string;
  sections: string[];
}

/** The doc a token names ("FORMATS.md" → "formats.md"); undefined when it is not one of docs/. */
function docOf(token: string): string | undefined {
  if (/^FORMATS/.test(token)) return "formats.md";
  if (/^SNAPSHOTTER/.test(token)) return "snapshotter.md";
  const name = token.replace(/^docs\//, "");
  if (docs.has(name)) return name;
  // `docs/missing.md §1` is a broken reference; `other.md §1` is someone else's document
  return token.startsWith("docs/") ? name : undefined;
}

/** Every section reference in `text`. */
function findRefs(file: string, text: string): Ref[] {
  const out: Ref[] = [];
  for (const m of text.matchAll(REF_RUN)) {
    const before = text.slice(Math.max(0, m.index - 12), m.index);
    if (/RFC\s*\d+\s*$/.test(before)) continue; // RFC 7235 §4.1 and the like
    const token = m[1];
    const doc = token === undefined ? undefined : docOf(token);
    if (token !== undefined && doc === undefined) continue;
    const sections: string[] = [];
    for (const one of m[2]!.matchAll(ONE_RE)) {
      sections.push(one[1]!);
      if (one[2]) sections.push(one[2]);
    }
    const line = text.slice(0, m.index).split("\n").length;
    out.push({ file, line, text: m[0].trim(), ...(doc ? { doc } : {}), sections });
  }
  return out;
}

/** Text files under `dir` (binary files — with a NUL byte — skipped). */
function textFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) {
      if (name !== "node_modules") out.push(...textFiles(path));
    } else if (!readFileSync(path).includes(0)) {
      out.push(path);
    }
  }
  return out;
}

describe("section references", () => {
  it("finds references in the forms the code uses", () => {
    const refs = findRefs(
      "x.ts",
      [
        "// (FORMATS.md §0, §3.1–§3.5) and SNAPSHOTTER.md §2.3–2.4, §3;",
        "// `docs/formats.md` §7.2 V7–V9, docs/snapshotter.md §1.7 `mounts`, FORMATS §4.1",
        "// bare (§4.6), RFC 7235 §4.1 skipped, steps 2, 4 not sections: §3.5 steps 2, 4",
      ].join("\n"),
    );
    expect(refs.map((r) => [r.doc, r.sections])).toEqual([
      ["formats.md", ["0", "3.1", "3.5"]],
      ["snapshotter.md", ["2.3", "2.4", "3"]],
      ["formats.md", ["7.2"]],
      ["snapshotter.md", ["1.7"]],
      ["formats.md", ["4.1"]],
      [undefined, ["4.6"]],
      [undefined, ["3.5"]],
    ]);
  });

  it("the docs keep the numbered sections code comments were written against", () => {
    // the numbering of the notes the code was written from; a section may be added, never renumbered
    const range = (major: number, last: number) => Array.from({ length: last }, (_, i) => `${major}.${i + 1}`);
    const required: Record<string, string[]> = {
      "formats.md": [
        ...["0", "1", "2", "3", "4", "5", "6", "7", "8"],
        ...range(1, 6),
        ...range(2, 7),
        ...range(3, 8),
        ...range(4, 4),
        ...range(7, 3),
      ],
      "snapshotter.md": [
        ...["1", "2", "3", "4", "5", "6", "7", "8"],
        ...range(1, 7),
        ...range(2, 4),
        ...range(3, 7),
        ...range(4, 6),
        ...range(5, 7),
      ],
    };
    for (const [doc, sections] of Object.entries(required)) {
      const have = docs.get(doc) ?? new Set<string>();
      expect(
        sections.filter((s) => !have.has(s)),
        `docs/${doc} lacks`,
      ).toEqual([]);
    }
    expect([...pitfalls()].sort((a, b) => Number(a) - Number(b))).toEqual(range(0, 24).map((s) => s.slice(2)));
  });

  it("every section cited in src/, test/, bench/ and assembly/ exists in docs/", () => {
    const broken: string[] = [];
    let checked = 0;
    const files = ["src", "test", "bench", "assembly"].flatMap((d) => textFiles(join(REPO_ROOT, d)));
    for (const path of files) {
      const file = relative(REPO_ROOT, path);
      if (file === "test/docs.test.ts") continue; // its own examples
      const text = readFileSync(path, "utf8");
      const refs = findRefs(file, text);
      // a bare § belongs to the docs this file cites by name (none: not ours to judge)
      const cited = [...new Set(refs.flatMap((r) => (r.doc ? [r.doc] : [])))];
      for (const r of refs) {
        const candidates = r.doc ? [r.doc] : cited;
        if (candidates.length === 0) continue;
        for (const s of r.sections) {
          checked++;
          if (!candidates.some((d) => docs.get(d)?.has(s)))
            broken.push(`${r.file}:${r.line}: ${r.text} → §${s} not in docs/${candidates.join(" or docs/")}`);
        }
      }
      if (cited.includes("formats.md")) {
        for (const m of text.matchAll(/\b[Pp]itfalls? P?(\d+)/g)) {
          checked++;
          if (!pitfalls().has(m[1]!)) broken.push(`${file}: ${m[0]} is not a pitfall of docs/formats.md §8`);
        }
      }
    }
    expect(broken).toEqual([]);
    expect(checked).toBeGreaterThan(100); // the scan works (about 150 references today)
  });

  it("every section the docs cite among themselves exists", () => {
    const broken: string[] = [];
    for (const doc of docs.keys()) {
      const text = readFileSync(join(DOCS_DIR, doc), "utf8");
      for (const r of findRefs(`docs/${doc}`, text)) {
        const target = r.doc ?? doc; // a bare § is a section of the same document
        for (const s of r.sections) {
          if (!docs.get(target)?.has(s)) broken.push(`${r.file}:${r.line}: ${r.text} → §${s} not in docs/${target}`);
        }
      }
      for (const m of text.matchAll(/\b[Pp]itfalls? P?(\d+)/g)) {
        if (!pitfalls().has(m[1]!)) broken.push(`docs/${doc}: ${m[0]} is not a pitfall of docs/formats.md §8`);
      }
    }
    expect(broken).toEqual([]);
  });
});
