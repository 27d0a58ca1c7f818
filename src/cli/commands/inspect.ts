// The inspection commands of `soci` (docs/formats.md §5): `index list|info|remove`, `ztoc list|info|get-file`,
// `prefetch list|info` and `rebuild-db`, with the reference's output formats and error messages.
//
// Differences from the reference, which talks to containerd (see local-store.ts):
// * content (indexes, ztocs, prefetch artifacts, and the layers `ztoc get-file` reads) comes from the
//   SOCI content store `<root>/content`, or containerd's with `--content-store containerd`;
// * with the SOCI store, image references resolve only to manifests/indexes already in it and the
//   IMAGE REF column of `index list` is empty (no image service); with containerd both come from
//   containerd's image service;
// * `rebuild-db` takes the platform of a rediscovered v1 index from the subject manifest's config
//   when both are in the content store, and leaves it empty otherwise (the reference requires
//   containerd to have them);
// * creation times are stored in UTC and shown in the local time zone (the reference shows them in
//   the zone of the process that created the artifact).
import { lstat, open, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Command } from "commander";
import {
  fetchBlob,
  getArtifactEntry,
  imageManifestFor,
  imagePlatforms,
  type LocalStore,
  parseGoDigest,
  resolveImage,
  walkArtifacts,
  withLocalStore,
} from "../local-store.js";
import {
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  SociError,
  UnimplementedError,
  withContext,
} from "../../errors/errors.js";
import { formatSociTable } from "../tables.js";
import type { ArtifactEntry } from "../../store/artifacts-db.js";
import type { ContentStore } from "../../store/content-store.js";
import { isZeroTimestamp, timestampToNs } from "../../store/timestamp.js";
import { decodeZtoc, ztocInfoJson } from "../../formats/ztoc.js";
import { collect } from "../build-flags.js";
import { extractFile, metadataEntry } from "../../indexer/extract-file.js";
import { zinfoOf } from "../../formats/zinfo.js";
import {
  IndexAnnotationImageLayerDigest,
  IndexAnnotationSpanSize,
  parseSociIndex,
  SociIndexArtifactTypeV1,
  SociIndexArtifactTypeV2,
  SociLayerMediaType,
  type SociIndex,
} from "../../formats/soci-index.js";
import { goArray, goIndent, goInt, goString, goStruct } from "../../formats/go-json.js";
import { parsePrefetchArtifact, prefetchArtifactJson, totalPrefetchSpans } from "../../formats/prefetch.js";
import {
  MediaTypeImageManifest,
  parseManifest,
  isConfigType,
  type Descriptor,
  type Platform,
} from "../../formats/oci.js";
import { formatPlatform, parsePlatform, platformFromImageConfig } from "../../formats/platform.js";
import { formatGoTime, localOffsetSeconds } from "../../formats/go-time.js";

const textEncoder = new TextEncoder();

/** Everything a command prints, written to stdout in one piece when it succeeds. */
class Output {
  private readonly chunks: Uint8Array[] = [];

  print(s: string | Uint8Array): void {
    this.chunks.push(typeof s === "string" ? textEncoder.encode(s) : s);
  }

  done(): void {
    if (this.chunks.length > 0) process.stdout.write(Buffer.concat(this.chunks));
  }
}

/** Runs a command that changes the local store (`index rm`, `rebuild-db`); the root is created if missing. */
async function run(cmd: Command, f: (s: LocalStore, out: Output) => Promise<void>): Promise<void> {
  const out = new Output();
  await withLocalStore(cmd, (s) => f(s, out));
  out.done();
}

/**
 * Runs a command that only reads the local store: it creates nothing, and a missing `--root` is an
 * error rather than a new empty store.
 */
async function read(cmd: Command, f: (s: LocalStore, out: Output) => Promise<void>): Promise<void> {
  const out = new Output();
  await withLocalStore(cmd, (s) => f(s, out), { readOnly: true });
  out.done();
}

/** `err` with `context` in front, keeping its class (a failure without one stays Unknown). */
function wrapped(err: unknown, context: string): SociError {
  const e = withContext(err, context);
  return e instanceof SociError ? e : new SociError("Unknown", e.message, { cause: err });
}

// ------------------------------------------------------------------------------------------------
// Times

const NS_PER_SECOND = 1_000_000_000n;
const MAX_DURATION = (1n << 63n) - 1n;
const MIN_DURATION = -(1n << 63n);

/** Go `Duration.Round(m)`: halves round away from zero; saturates on overflow. */
export function roundDuration(d: bigint, m: bigint): bigint {
  if (m <= 0n) return d;
  let r = d % m;
  const lessThanHalf = (x: bigint) => x + x < m;
  if (d < 0n) {
    r = -r;
    if (lessThanHalf(r)) return d + r;
    const d1 = d - m + r;
    return d1 < MIN_DURATION ? MIN_DURATION : d1;
  }
  if (lessThanHalf(r)) return d - r;
  const d1 = d + m - r;
  return d1 > MAX_DURATION ? MAX_DURATION : d1;
}

/** Go `Duration.String` (e.g. `7h23m0s`, `1.5s`, `250ms`, `0s`). */
export function goDuration(d: bigint): string {
  if (d === 0n) return "0s";
  const neg = d < 0n;
  let u = neg ? -d : d;
  const frac = (v: bigint, prec: number): [string, bigint] => {
    // the `prec` low decimal digits of v as a fraction without trailing zeros, and v without them
    let digits = "";
    let print = false;
    for (let i = 0; i < prec; i++) {
      const digit = v % 10n;
      print ||= digit !== 0n;
      if (print) digits = digit.toString() + digits;
      v /= 10n;
    }
    return [print ? "." + digits : "", v];
  };
  let s: string;
  if (u < NS_PER_SECOND) {
    let unit: string;
    let prec: number;
    if (u < 1000n) {
      unit = "ns";
      prec = 0;
    } else if (u < 1_000_000n) {
      unit = "µs";
      prec = 3;
    } else {
      unit = "ms";
      prec = 6;
    }
    const [f, rest] = frac(u, prec);
    s = rest.toString() + f + unit;
  } else {
    const [f, secs] = frac(u, 9);
    u = secs;
    s = (u % 60n).toString() + f + "s";
    u /= 60n;
    if (u > 0n) {
      s = (u % 60n).toString() + "m" + s;
      u /= 60n;
      if (u > 0n) s = u.toString() + "h" + s;
    }
  }
  return neg ? "-" + s : s;
}

/** `getDuration`: `n/a` for the zero time, else `time.Since(t).Round(time.Second)` + ` ago`. */
export function createdAgo(createdAt: string, nowNs = BigInt(Date.now()) * 1_000_000n): string {
  if (isZeroTimestamp(createdAt)) return "n/a";
  let d = nowNs - timestampToNs(createdAt);
  if (d > MAX_DURATION) d = MAX_DURATION;
  if (d < MIN_DURATION) d = MIN_DURATION;
  return `${goDuration(roundDuration(d, NS_PER_SECOND))} ago`;
}

/** Go `time.RFC3339Nano` text of the time in the local zone (`0001-01-01T00:00:00Z` for the zero time). */
export function localRfc3339Nano(createdAt: string): string {
  if (isZeroTimestamp(createdAt)) return "0001-01-01T00:00:00Z";
  const ns = timestampToNs(createdAt);
  const sec = Number(ns / NS_PER_SECOND - (ns % NS_PER_SECOND < 0n ? 1n : 0n));
  const nsec = Number(((ns % NS_PER_SECOND) + NS_PER_SECOND) % NS_PER_SECOND);
  return formatGoTime(sec, nsec, localOffsetSeconds(sec));
}

/** Go layout `2006-01-02 15:04:05` in the local zone. */
export function localDateTime(createdAt: string): string {
  const t = localRfc3339Nano(createdAt);
  return `${t.slice(0, 10)} ${t.slice(11, 19)}`;
}

// ------------------------------------------------------------------------------------------------
// index

function manifestVersion(artifactType: string): string {
  if (artifactType === SociIndexArtifactTypeV1) return "v1";
  if (artifactType === SociIndexArtifactTypeV2) return "v2";
  return "";
}

/** Platform manifests of an image for `platforms`, with the reference's not-found message. */
async function manifestDigestsFor(
  cs: ContentStore,
  ref: string,
  platforms: Platform[],
  wrapNotFound: boolean,
): Promise<string[]> {
  const img = await resolveImage(cs, ref);
  const ps = platforms.length > 0 ? platforms : await imagePlatforms(cs, img);
  const out: string[] = [];
  for (const p of ps) {
    let desc: Descriptor | undefined;
    try {
      desc = await imageManifestFor(cs, img, p);
    } catch (err) {
      if (wrapNotFound && err instanceof NotFoundError)
        throw withContext(err, `image manifest for platform ${formatPlatform(p)}`);
      throw err;
    }
    if (!desc) throw new InvalidArgumentError(`${img.digest}: not an image manifest or index`);
    out.push(desc.digest);
  }
  return out;
}

function indexListCommand(): Command {
  return new Command("list")
    .alias("ls")
    .description("list indices")
    .option(
      "--ref <image>",
      "filter indices to those that are associated with a specific image ref (a digest in the content store)",
    )
    .option("-q, --quiet", "only display the index digests", false)
    .option("-p, --platform <platform>", "filter indices to a specific platform (repeatable)", collect, [] as string[])
    .action(async (opts: { ref?: string; quiet: boolean; platform: string[] }, cmd: Command) =>
      read(cmd, async (s, out) => {
        const plats = opts.platform.map((p) => parsePlatform(p));
        let filter = (e: ArtifactEntry) => e.type === "soci_index";
        if (opts.ref) {
          const manifests = new Set(await manifestDigestsFor(await s.contentStore(), opts.ref, plats, true));
          filter = (e) => e.type === "soci_index" && manifests.has(e.ociDigest);
        } else if (plats.length > 0) {
          const wanted = new Set(plats.map(formatPlatform));
          filter = (e) => e.type === "soci_index" && wanted.has(e.platform);
        }
        const entries = walkArtifacts(s.db).filter(filter);
        // newest first (stable, so equal times keep the walk order)
        entries.sort((a, b) => {
          const ta = timestampToNs(a.createdAt);
          const tb = timestampToNs(b.createdAt);
          return ta > tb ? -1 : ta < tb ? 1 : 0;
        });
        if (opts.quiet) {
          for (const e of entries) out.print(`${e.digest}\n`);
          return;
        }
        const rows = [["DIGEST", "SIZE", "IMAGE REF", "PLATFORM", "MEDIA TYPE", "MANIFEST VERSION", "CREATED"]];
        // IMAGE REF: one row per containerd image whose target is the entry's image digest (none: one empty row)
        for (const e of entries) {
          const names = await s.imageNamesFor(e.imageDigest);
          for (const name of names.length > 0 ? names : [""]) {
            rows.push([
              e.digest,
              String(e.size),
              name,
              e.platform,
              e.mediaType,
              manifestVersion(e.artifactType),
              createdAgo(e.createdAt),
            ]);
          }
        }
        out.print(formatSociTable(rows));
      }),
    );
}

function indexInfoCommand(): Command {
  return new Command("info")
    .description("display an index")
    .argument("[digest]", "SOCI index digest")
    .action(async (arg: string | undefined, _opts: unknown, cmd: Command) =>
      read(cmd, async (s, out) => {
        const digest = parseGoDigest(arg ?? "");
        const entry = getArtifactEntry(s.db, digest);
        if (entry.type === "soci_layer") {
          throw new InvalidArgumentError(
            'the provided digest is of ztoc not SOCI index. Use "soci ztoc info" command to get detailed info of ztoc',
          );
        }
        const bytes = await fetchBlob(await s.contentStore(), digest);
        out.print(goIndent(bytes, "", "  "));
        out.print("\n");
      }),
    );
}

/** `RemoveArtifactEntryByIndexDigest`. */
function removeIndexEntry(s: LocalStore, digest: string): void {
  if (s.db.all().length === 0) throw new NotFoundError("soci_artifacts not found");
  s.db.removeIndex(digest);
}

function indexRemoveCommand(): Command {
  return new Command("remove")
    .alias("rm")
    .description("remove indices from the artifacts database (and from the content store if supported)")
    .argument("[digests...]", "SOCI index digests")
    .option(
      "--ref <image>",
      "only remove indices that are associated with a specific image ref (a digest in the content store)",
    )
    .action(async (digests: string[], opts: { ref?: string }, cmd: Command) =>
      run(cmd, async (s) => {
        if (digests.length > 0 && opts.ref)
          throw new InvalidArgumentError("please provide either index digests or image ref, but not both");
        let cs: ContentStore;
        try {
          cs = await s.contentStore();
        } catch (err) {
          if (err instanceof UnimplementedError) throw err;
          throw wrapped(err, "cannot create local content store");
        }
        let toRemove = digests;
        if (opts.ref) {
          const img = await resolveImage(cs, opts.ref);
          toRemove = walkArtifacts(s.db)
            .filter((e) => e.mediaType === MediaTypeImageManifest && e.imageDigest === img.digest)
            .map((e) => e.digest);
        }
        for (const d of toRemove) {
          removeIndexEntry(s, d);
          parseGoDigest(d);
          // containerd deletes the index blob (its GC then drops the ztocs); the SOCI store keeps blobs, as the reference's does
          await s.deleteBlob(d);
        }
      }),
    );
}

export function indexCommand(): Command {
  return new Command("index")
    .description("manage SOCI indexes")
    .addCommand(indexListCommand())
    .addCommand(indexInfoCommand())
    .addCommand(indexRemoveCommand());
}

// ------------------------------------------------------------------------------------------------
// ztoc

function ztocListCommand(): Command {
  return new Command("list")
    .alias("ls")
    .description("list ztocs")
    .option("--ztoc-digest <digest>", "filter ztocs by digest")
    .option(
      "--image-ref <ref>",
      "filter ztocs to those that are associated with a specific image (a digest in the content store)",
    )
    .option("-q, --quiet", "only display the ztoc digests", false)
    .action(async (opts: { ztocDigest?: string; imageRef?: string; quiet: boolean }, cmd: Command) =>
      read(cmd, async (s, out) => {
        const want = opts.ztocDigest ?? "";
        let entries: ArtifactEntry[];
        if (!opts.imageRef) {
          entries = walkArtifacts(s.db).filter((e) => e.type === "soci_layer" && (want === "" || e.digest === want));
        } else {
          const cs = await s.contentStore();
          const img = await resolveImage(cs, opts.imageRef);
          let platforms: Platform[];
          try {
            platforms = await imagePlatforms(cs, img);
          } catch (err) {
            throw wrapped(err, "failed to get supported platforms for the image");
          }
          const indexes: ArtifactEntry[] = [];
          try {
            const all = walkArtifacts(s.db);
            for (const p of platforms) {
              const desc = await imageManifestFor(cs, img, p);
              if (!desc) throw new InvalidArgumentError(`${img.digest}: not an image manifest or index`);
              indexes.push(...all.filter((e) => e.type === "soci_index" && e.ociDigest === desc.digest));
            }
          } catch (err) {
            throw wrapped(err, "failed to get soci indexes for the image");
          }
          const ztocDigests: string[] = [];
          for (const ix of indexes) {
            if (!(await cs.exists(ix.digest))) continue; // in the artifacts db but not in the content store
            let index: SociIndex;
            try {
              index = parseSociIndex(await cs.get(ix.digest));
            } catch (err) {
              throw wrapped(err, `failed to decode a soci index with digest ${ix.digest}`);
            }
            for (const blob of index.blobs ?? [])
              if (blob.mediaType === SociLayerMediaType) ztocDigests.push(blob.digest);
          }
          entries = [];
          for (const d of ztocDigests) {
            let e: ArtifactEntry;
            try {
              e = getArtifactEntry(s.db, d);
            } catch (err) {
              throw wrapped(err, 'failed to get ztoc from artifacts store (try running "soci rebuild-db" first)');
            }
            if (want === "" || want === e.digest) entries.push(e);
          }
          if (want !== "" && entries.length === 0)
            throw new NotFoundError("the specified ztoc doesn't exist or is not associated with the specified image");
        }
        if (opts.quiet) {
          for (const e of entries) out.print(`${e.digest}\n`);
          return;
        }
        out.print(
          formatSociTable([
            ["DIGEST", "SIZE", "LAYER DIGEST"],
            ...entries.map((e) => [e.digest, String(e.size), e.ociDigest]),
          ]),
        );
      }),
    );
}

function ztocInfoCommand(): Command {
  return new Command("info")
    .description("get detailed info about a ztoc")
    .argument("[digest]", "ztoc digest")
    .action(async (arg: string | undefined, _opts: unknown, cmd: Command) =>
      read(cmd, async (s, out) => {
        const digest = parseGoDigest(arg ?? "");
        const entry = getArtifactEntry(s.db, digest);
        if (entry.type === "soci_index") {
          throw new InvalidArgumentError(
            "the provided digest belongs to a SOCI index. Use `soci index info` to get the detailed information about it",
          );
        }
        const ztoc = decodeZtoc(await fetchBlob(await s.contentStore(), digest));
        out.print(ztocInfoJson(ztoc, entry.size, zinfoOf(ztoc)));
      }),
    );
}

async function readLayerRange(cs: ContentStore, layer: string, start: number, end: number): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  for await (const c of await cs.createReadStream(layer, start, end)) chunks.push(c as Buffer);
  const data = Buffer.concat(chunks);
  if (data.length !== end - start)
    throw new FailedPreconditionError(`unexpected data size. read = ${data.length}, expected = ${end - start}`);
  return data;
}

function ztocGetFileCommand(): Command {
  return new Command("get-file")
    .description("retrieve a file from a local image layer using a specified ztoc")
    .usage("[options] <digest> <file>")
    .argument("[args...]")
    .option("-o, --output <file>", "the file to write the extracted content. Defaults to stdout")
    .action(async (args: string[], opts: { output?: string }, cmd: Command) =>
      read(cmd, async (s, out) => {
        if (args.length !== 2)
          throw new InvalidArgumentError("please provide both a ztoc digest and a filename to extract");
        const ztocDigest = parseGoDigest(args[0]!);
        const file = args[1]!;
        const cs = await s.contentStore();
        const ztoc = decodeZtoc(await fetchBlob(cs, ztocDigest));
        const layer = parseGoDigest(getArtifactEntry(s.db, ztocDigest).ociDigest);
        if (!(await cs.exists(layer))) throw new NotFoundError(`content digest ${layer}: not found`);
        const entry = metadataEntry(ztoc, textEncoder.encode(file));
        const data = await extractFile(ztoc, entry, (start, end) => readLayerRange(cs, layer, start, end));
        if (opts.output) {
          // os.WriteFile(path, data, 0): permission bits 0, and the reference ignores a failed write
          await writeFile(opts.output, data, { mode: 0 }).catch(() => undefined);
          return;
        }
        out.print(data);
        out.print("\n");
      }),
    );
}

export function ztocCommand(): Command {
  return new Command("ztoc")
    .description("inspect ztocs")
    .addCommand(ztocListCommand())
    .addCommand(ztocInfoCommand())
    .addCommand(ztocGetFileCommand());
}

// ------------------------------------------------------------------------------------------------
// prefetch

function prefetchListCommand(): Command {
  return new Command("list")
    .alias("ls")
    .description("list all prefetch artifacts in the local store")
    .option("--json", "output in JSON format", false)
    .action(async (opts: { json: boolean }, cmd: Command) =>
      read(cmd, async (s, out) => {
        const db = s.db;
        const cs = await s.contentStore();
        const rows: { digest: string; layer: string; spans: number; createdAt: string }[] = [];
        for (const e of walkArtifacts(db)) {
          if (e.type !== "soci_prefetch") continue;
          let spans = -1;
          try {
            spans = totalPrefetchSpans(parsePrefetchArtifact(await cs.get(parseGoDigest(e.digest))));
          } catch {
            // listed with limited info (SPANS N/A)
          }
          rows.push({ digest: e.digest, layer: e.ociDigest, spans, createdAt: e.createdAt });
        }
        if (opts.json) {
          const json = goArray(rows.length === 0 ? null : rows, (r) =>
            goStruct([
              ["Digest", goString(r.digest)],
              ["LayerDigest", goString(r.layer)],
              ["TotalSpans", goInt(r.spans)],
              ["CreatedAt", goString(localRfc3339Nano(r.createdAt))],
            ]),
          );
          out.print(goIndent(json, "", "  ") + "\n");
          return;
        }
        out.print(
          formatSociTable([
            ["DIGEST", "LAYER DIGEST", "SPANS", "CREATED"],
            ...rows.map((r) => [r.digest, r.layer, r.spans === -1 ? "N/A" : String(r.spans), createdAgo(r.createdAt)]),
          ]),
        );
      }),
    );
}

function prefetchInfoCommand(): Command {
  return new Command("info")
    .description("get detailed info about a prefetch artifact")
    .argument("[digest]", "prefetch artifact digest")
    .option("--json", "output raw JSON", false)
    .action(async (arg: string | undefined, opts: { json: boolean }, cmd: Command) =>
      read(cmd, async (s, out) => {
        const digest = parseGoDigest(arg ?? "");
        const entry = getArtifactEntry(s.db, digest);
        if (entry.type !== "soci_prefetch")
          throw new InvalidArgumentError(`the provided digest is not a prefetch artifact (type: ${entry.type})`);
        const artifact = parsePrefetchArtifact(await fetchBlob(await s.contentStore(), digest));
        const spans = artifact.prefetchSpans ?? [];
        out.print(`Digest:        ${digest}\n`);
        out.print(`Version:       ${artifact.version}\n`);
        out.print(`Span Ranges:   ${spans.length}\n`);
        out.print(`Layer Digest:  ${entry.ociDigest}\n`);
        out.print(`Size:          ${entry.size} bytes\n`);
        out.print(`Created:       ${localDateTime(entry.createdAt)}\n`);
        out.print("\nPrefetch Spans:\n");
        let total = 0;
        spans.forEach((span, i) => {
          const count = span.endSpan - span.startSpan + 1;
          total += count;
          out.print(`  [${i}] StartSpan: ${span.startSpan}, EndSpan: ${span.endSpan} (covers ${count} spans)\n`);
          if (span.priority) out.print(`      Priority: ${span.priority}\n`);
        });
        out.print(`\nTotal spans to prefetch: ${total}\n`);
        if (opts.json) {
          out.print("\nRaw JSON:\n");
          out.print(goIndent(prefetchArtifactJson(artifact), "", "  ") + "\n");
        }
      }),
    );
}

export function prefetchCommand(): Command {
  return new Command("prefetch")
    .description("inspect prefetch artifacts")
    .addCommand(prefetchListCommand())
    .addCommand(prefetchInfoCommand());
}

// ------------------------------------------------------------------------------------------------
// rebuild-db

/** Go `strconv.ParseInt(s, 10, 64)`. */
function parseInt64(s: string): number {
  if (!/^[+-]?[0-9]+$/.test(s))
    throw new InvalidArgumentError(`strconv.ParseInt: parsing ${JSON.stringify(s)}: invalid syntax`);
  const v = BigInt(s);
  if (v > MAX_DURATION || v < MIN_DURATION)
    throw new InvalidArgumentError(`strconv.ParseInt: parsing ${JSON.stringify(s)}: value out of range`);
  return Number(v);
}

/** Every non-directory under `dir`, in Go `filepath.WalkDir` order (lexical, depth first). */
async function* walkFiles(dir: string): AsyncGenerator<{ path: string; name: string }> {
  const names = (await readdir(dir)).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  for (const name of names) {
    const path = join(dir, name);
    const st = await lstat(path).catch(() => undefined);
    if (!st) continue; // vanished meanwhile
    if (st.isDirectory()) yield* walkFiles(path);
    else yield { path, name };
  }
}

/** The blob's bytes if it could be a JSON object (first non-blank byte `{`), else undefined without reading it all. */
async function readIfJsonObject(path: string): Promise<Uint8Array | undefined> {
  const fh = await open(path, "r").catch(() => undefined);
  if (!fh) return undefined;
  try {
    const head = Buffer.alloc(4096);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    const first = head.subarray(0, bytesRead).find((c) => c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d);
    if (first !== 0x7b) return undefined;
    return new Uint8Array(await fh.readFile());
  } finally {
    await fh.close();
  }
}

/** `images.Platforms` of the subject manifest, from the content store; "" when it cannot be told. */
async function subjectPlatform(cs: ContentStore, manifestDigest: string): Promise<string> {
  try {
    if (!(await cs.exists(manifestDigest))) return "";
    const m = parseManifest(await cs.get(manifestDigest));
    if (!isConfigType(m.config.mediaType) || !(await cs.exists(m.config.digest))) return "";
    return formatPlatform(platformFromImageConfig(await cs.get(m.config.digest)));
  } catch {
    return "";
  }
}

async function removeOldArtifacts(s: LocalStore, cs: ContentStore): Promise<void> {
  const gone: string[] = [];
  for (const e of walkArtifacts(s.db)) {
    let exists: boolean;
    try {
      exists = await cs.exists(e.digest);
    } catch {
      throw new InvalidArgumentError(`${e.digest}: ${e.mediaType}: invalid digest`);
    }
    if (!exists) gone.push(e.digest);
  }
  s.db.removeMany(gone);
}

async function addNewArtifacts(s: LocalStore, cs: ContentStore, blobsDir: string): Promise<void> {
  for await (const { path, name } of walkFiles(blobsDir)) {
    const st = await lstat(path).catch(() => undefined);
    if (!st || st.size < 10) continue; // e.g. the empty config `{}`
    const bytes = await readIfJsonObject(path);
    if (!bytes) continue;
    let index: SociIndex;
    try {
      index = parseSociIndex(bytes);
    } catch {
      continue;
    }
    // only v1 indexes with a subject are rediscovered (v2 indexes never are)
    if (index.mediaType !== MediaTypeImageManifest || index.artifactType !== SociIndexArtifactTypeV1 || !index.subject)
      continue;
    const indexDigest = name.length === 64 ? `sha256:${name}` : `sha512:${name}`;
    if (s.db.find(indexDigest)) continue;
    const manifestDigest = index.subject.digest;
    s.db.put({
      size: bytes.length,
      digest: indexDigest,
      ociDigest: manifestDigest,
      imageDigest: manifestDigest,
      platform: await subjectPlatform(cs, manifestDigest),
      type: "soci_index",
      location: manifestDigest,
      mediaType: index.mediaType,
      artifactType: index.config.mediaType,
    });
    for (const blob of index.blobs ?? []) {
      let spanSize = 0;
      const annotation = blob.annotations?.[IndexAnnotationSpanSize];
      if (annotation !== undefined) {
        try {
          spanSize = parseInt64(annotation);
        } catch (err) {
          throw wrapped(err, `failed to parse span size from annotations for layer  ${blob.digest}`);
        }
      }
      const layer = blob.annotations?.[IndexAnnotationImageLayerDigest] ?? "";
      s.db.put({
        size: blob.size,
        digest: blob.digest,
        ociDigest: layer,
        type: "soci_layer",
        location: layer,
        mediaType: SociLayerMediaType,
        spanSize,
      });
    }
  }
}

export function rebuildDbCommand(): Command {
  return new Command("rebuild-db")
    .description("rebuilds the artifacts database")
    .addHelpText(
      "after",
      `
Use after pulling an image to discover SOCI indices/ztocs or after "index rm"
when using the containerd content store to clear the database of removed zTOCs.`,
    )
    .action(async (_opts: unknown, cmd: Command) =>
      run(cmd, async (s) => {
        void s.db; // opened (created if missing) before the content store, as in the reference
        const cs = await s.contentStore();
        const blobsDir = join(s.contentStorePath(), "blobs");
        try {
          await removeOldArtifacts(s, cs);
        } catch (err) {
          throw wrapped(err, "failed to remove old artifacts from db");
        }
        try {
          await addNewArtifacts(s, cs, blobsDir);
        } catch (err) {
          throw wrapped(err, "failed to add new artifacts to db");
        }
      }),
    );
}
