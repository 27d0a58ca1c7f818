import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import {
  addSociIndexDescriptor,
  imageIndexFromBytes,
  imageIndexGcLabels,
  manifestGcLabels,
  newImageIndex,
  reencodeManifest,
  serializeImageIndex,
  setManifestEntry,
  sociIndexV2Descriptor,
  validateMediaType,
} from "../src/formats/convert-docs.js";
import { encodeUtf8 } from "../src/formats/go-json.js";
import {
  digestOf,
  marshalIndex,
  MediaTypeDockerSchema2LayerGzip,
  MediaTypeDockerSchema2Manifest,
  MediaTypeImageIndex,
  MediaTypeImageManifest,
  type Descriptor,
  type Index,
  type Platform,
} from "../src/formats/oci.js";
import {
  dedupePlatforms,
  defaultPlatform,
  formatPlatform,
  formatPlatformAll,
  matchPlatformStrict,
  normalizePlatform,
  parsePlatform,
  platformFromImageConfig,
  type HostInfo,
} from "../src/formats/platform.js";
import {
  cleanPrefetchPath,
  fileSpanRange,
  marshalPrefetchArtifact,
  newPrefetchArtifact,
  normalizePrefetchSpans,
  parsePrefetchArtifact,
  prefetchArtifactJson,
  PrefetchArtifactMediaType,
  totalPrefetchSpans,
} from "../src/formats/prefetch.js";
import {
  buildSociIndex,
  DefaultBuildToolIdentifier,
  DefaultMinLayerSize,
  DefaultSpanSize,
  EmptyConfigBytes,
  EmptyConfigDigest,
  EmptyIndexError,
  ErrEmptyIndexMessage,
  goParseBool,
  marshalSociIndex,
  parseSociIndex,
  prefetchesByLayer,
  shouldDisableXattrs,
  SociIndexArtifactTypeV1,
  SociIndexArtifactTypeV2,
  SociLayerMediaType,
  ztocsByLayer,
} from "../src/formats/soci-index.js";

const td = new TextDecoder();
const text = (b: Uint8Array) => td.decode(b);

// ---- §7.2 V7–V9 expected documents, read from test/vectors/index_vectors.txt --------------------------
const vectorsText = readFileSync(new URL("./vectors/index_vectors.txt", import.meta.url), "utf8");
function vector(title: string): { json: string; digest: string; size: number } {
  const i = vectorsText.indexOf(`== ${title}\n`);
  if (i < 0) throw new Error(`vector ${title} missing`);
  const lines = vectorsText.slice(i).split("\n");
  const m = /^-> (sha256:[0-9a-f]{64}) size (\d+)$/.exec(lines[2]!);
  if (!m) throw new Error(`vector ${title}: bad digest line`);
  return { json: lines[1]!, digest: m[1]!, size: Number(m[2]) };
}

const CONFIG = vector("image config (input)");
const ORIGINAL_MANIFEST = vector("original image manifest (input, Docker schema2)");
const PREFETCH = vector("prefetch artifact");
const V7 = vector("SOCI index manifest v1 (soci create), subject = original manifest");
const V8 = vector("SOCI index manifest v1 with a prefetch layer");
const V9_INDEX = vector("SOCI index manifest v2 (soci convert)");
const V9_MANIFEST = vector("converted image manifest");
const V9_IMAGE_INDEX = vector("converted OCI image index (new image target)");

// Inputs of §7.2: the ztoc of V1 and the layer it indexes.
const ZTOC = {
  ztocDigest: "sha256:7c12f4087882f71fb0ce84553efe617e92839d14ab2bcedcabfd32d34083d3ad",
  ztocSize: 200520,
};
const LAYER_DIGEST = "sha256:6c2c6c487e30cf19f4a01ff221076074a9c7ddade2ed727b7e7dfbcaad1cc067";
const ZTOC_ENTRY = {
  ...ZTOC,
  layerDigest: LAYER_DIGEST,
  layerMediaType: MediaTypeDockerSchema2LayerGzip,
  spanSize: 4096,
};
const MANIFEST_DESC: Descriptor = {
  mediaType: MediaTypeDockerSchema2Manifest,
  digest: ORIGINAL_MANIFEST.digest,
  size: ORIGINAL_MANIFEST.size,
};

describe("vector inputs", () => {
  it("inputs hash to the digests the vectors state", () => {
    expect(digestOf(encodeUtf8(CONFIG.json))).toBe(CONFIG.digest);
    expect(digestOf(encodeUtf8(ORIGINAL_MANIFEST.json))).toBe(
      "sha256:475dcee0b9e48eb4138968110b6da065e04245b6088844e00e12a42073db8030",
    );
    expect(ORIGINAL_MANIFEST.size).toBe(423);
    expect(digestOf(EmptyConfigBytes)).toBe(EmptyConfigDigest);
  });
});

describe("V7 — SOCI index v1 (soci create)", () => {
  const built = buildSociIndex({ version: 1, ztocs: [ZTOC_ENTRY], subject: MANIFEST_DESC });

  it("is byte-identical with its digest and size", () => {
    expect(text(built.bytes)).toBe(V7.json);
    expect(built.digest).toBe("sha256:826bbba15c837d19321807633e9f5b28b13c6e6bf27d6ce949e8f7676a236acc");
    expect(built.size).toBe(887);
    expect(built.descriptor).toEqual({
      mediaType: MediaTypeImageManifest,
      digest: built.digest,
      size: 887,
      artifactType: SociIndexArtifactTypeV1,
    });
  });

  it("parses back and re-marshals to the same bytes", () => {
    const idx = parseSociIndex(V7.json);
    expect(idx.version).toBe(1);
    expect(idx.artifactType).toBe(SociIndexArtifactTypeV1);
    expect(idx.mediaType).toBe(MediaTypeImageManifest);
    expect(idx.subject).toEqual(MANIFEST_DESC);
    expect(idx.annotations).toEqual({ "com.amazon.soci.build-tool-identifier": DefaultBuildToolIdentifier });
    expect(idx.blobs).toHaveLength(1);
    expect(ztocsByLayer(idx).get(LAYER_DIGEST)?.digest).toBe(ZTOC.ztocDigest);
    expect(text(marshalSociIndex(idx))).toBe(V7.json);
  });

  it("v1 without a subject cannot be written", () => {
    expect(() => buildSociIndex({ version: 1, ztocs: [ZTOC_ENTRY] })).toThrow(
      "cannot write soci index: the Refers field is nil",
    );
  });
});

describe("V8 — prefetch artifact and v1 index with prefetch", () => {
  it("prefetch artifact from merged spans [0,0] + [1,2]", () => {
    const spans = normalizePrefetchSpans([
      { startSpan: 1, endSpan: 2 },
      { startSpan: 0, endSpan: 0 },
    ]);
    const art = marshalPrefetchArtifact(newPrefetchArtifact(spans));
    expect(text(art.bytes)).toBe(PREFETCH.json);
    expect(art.digest).toBe("sha256:fae7e200f7ac3515abf897d7c407ef9bac9b5b2e736de1b1f733339ecec84dee");
    expect(art.size).toBe(66);
    expect(art.descriptor).toEqual({ mediaType: PrefetchArtifactMediaType, digest: art.digest, size: 66 });
    const back = parsePrefetchArtifact(art.bytes);
    expect(back).toEqual({ version: "1.0", prefetchSpans: [{ startSpan: 0, endSpan: 2 }] });
    expect(totalPrefetchSpans(back)).toBe(3);
  });

  it("index with the prefetch descriptor after the ztocs", () => {
    const built = buildSociIndex({
      version: 1,
      ztocs: [ZTOC_ENTRY],
      prefetches: [{ digest: PREFETCH.digest, size: PREFETCH.size, layerDigest: LAYER_DIGEST }],
      subject: { ...MANIFEST_DESC, annotations: { ignored: "yes" } } as Descriptor,
    });
    expect(text(built.bytes)).toBe(V8.json);
    expect(built.digest).toBe("sha256:bfb9dd06a4a776fc9712f2a15deeb76c004af9ec726e87275561c8ca9909a21e");
    expect(built.size).toBe(1168);
    const idx = parseSociIndex(built.bytes);
    expect(prefetchesByLayer(idx).get(LAYER_DIGEST)?.digest).toBe(PREFETCH.digest);
    expect(ztocsByLayer(idx).size).toBe(1);
    expect(text(marshalSociIndex(idx))).toBe(V8.json);
  });
});

describe("V9 — soci convert (v2 index, converted manifest, OCI image index)", () => {
  const platform = platformFromImageConfig(CONFIG.json);
  const v2 = buildSociIndex({ version: 2, ztocs: [ZTOC_ENTRY], subject: MANIFEST_DESC });
  const manifest = reencodeManifest(encodeUtf8(ORIGINAL_MANIFEST.json), v2.digest, MediaTypeDockerSchema2Manifest);

  it("platform from the image config", () => {
    expect(platform).toEqual({ architecture: "amd64", os: "linux" });
  });

  it("v2 SOCI index has no subject", () => {
    expect(text(v2.bytes)).toBe(V9_INDEX.json);
    expect(v2.digest).toBe("sha256:9750632ef31706fb3cc4ceee3ac818e386a162558554a5cb8ca3226a8e33fce2");
    expect(v2.size).toBe(714);
    expect(v2.descriptor.artifactType).toBe(SociIndexArtifactTypeV2);
    const idx = parseSociIndex(V9_INDEX.json);
    expect(idx.version).toBe(2);
    expect(idx.subject).toBeUndefined();
    expect(text(marshalSociIndex(idx))).toBe(V9_INDEX.json);
  });

  it("converted image manifest", () => {
    expect(text(manifest.bytes)).toBe(V9_MANIFEST.json);
    expect(manifest.digest).toBe("sha256:646fa30ae24721a9f5448ceeb37e6b461b8a5f02500a9a8679098fa625706ecf");
    expect(manifest.size).toBe(528);
    expect(manifestGcLabels(manifest.manifest)).toEqual({
      "containerd.io/gc.ref.content.config": CONFIG.digest,
      "containerd.io/gc.ref.content.l.0": LAYER_DIGEST,
    });
  });

  it("new OCI image index", () => {
    let index = newImageIndex({ ...MANIFEST_DESC, platform });
    index = setManifestEntry(index, 0, manifest);
    index = addSociIndexDescriptor(index, sociIndexV2Descriptor(v2, platform, manifest.digest), platform);
    const out = serializeImageIndex(index);
    expect(text(out.bytes)).toBe(V9_IMAGE_INDEX.json);
    expect(out.digest).toBe("sha256:706aa66124dd83085d8082aa7ffe90d2b6ab07bf64d7c826b2afca4d228e3a68");
    expect(out.size).toBe(801);
    expect(out.descriptor.mediaType).toBe(MediaTypeImageIndex);
    expect(imageIndexGcLabels(index)).toEqual({
      "containerd.io/gc.ref.content.m.0": manifest.digest,
      "containerd.io/gc.ref.content.m.1": v2.digest,
    });
    // parse back → same bytes
    const back = imageIndexFromBytes(V9_IMAGE_INDEX.json, MediaTypeImageIndex);
    expect(text(marshalIndex(back))).toBe(V9_IMAGE_INDEX.json);
  });

  it("converting the converted image again replaces the SOCI entry in place", () => {
    let index = imageIndexFromBytes(V9_IMAGE_INDEX.json, MediaTypeImageIndex);
    const again = addSociIndexDescriptor(
      index,
      sociIndexV2Descriptor({ digest: "sha256:aaaa", size: 1 }, { os: "linux", architecture: "x86_64" }),
    );
    expect(again.manifests).toHaveLength(2);
    expect(again.manifests![1]!.digest).toBe("sha256:aaaa");
    expect(again.manifests![1]!.platform).toEqual({ os: "linux", architecture: "x86_64" });
    // input untouched
    expect(index.manifests![1]!.digest).toBe(v2.digest);
    index = setManifestEntry(index, 0, { digest: "sha256:bbbb", size: 5 });
    expect(index.manifests![0]).toEqual({
      mediaType: MediaTypeImageManifest,
      digest: "sha256:bbbb",
      size: 5,
      platform,
    });
  });
});

describe("SOCI index parsing and building edge cases", () => {
  it("unknown index version", () => {
    expect(() =>
      parseSociIndex('{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json"}}'),
    ).toThrow("unknown index version: application/vnd.oci.image.config.v1+json");
    expect(() => parseSociIndex("{}")).toThrow("unknown index version: ");
    expect(() => parseSociIndex("nope")).toThrow(/invalid character/);
    // soci.Index is decoded first: a wrong `blobs` type fails even though the manifest ignores it
    expect(() => parseSociIndex(`{"blobs":5,"config":{"mediaType":"${SociIndexArtifactTypeV1}"}}`)).toThrow(
      /cannot unmarshal number/,
    );
  });

  it("a manifest-level artifactType is dropped on re-marshal (the Go snapshotter would re-marshal too)", () => {
    const withAT = V9_INDEX.json.replace(
      '"mediaType":"application/vnd.oci.image.manifest.v1+json",',
      `$&"artifactType":"${SociIndexArtifactTypeV2}",`,
    );
    expect(withAT).not.toBe(V9_INDEX.json);
    expect(text(marshalSociIndex(parseSociIndex(withAT)))).toBe(V9_INDEX.json);
  });

  it("nil layers stay null", () => {
    const idx = parseSociIndex(
      `{"config":{"mediaType":"${SociIndexArtifactTypeV2}","digest":"${EmptyConfigDigest}","size":2}}`,
    );
    expect(idx.blobs).toBeNull();
    expect(text(marshalSociIndex(idx))).toContain('"layers":null');
  });

  it("empty index and disable-xattrs annotation", () => {
    expect(() => buildSociIndex({ version: 2, ztocs: [] })).toThrow(EmptyIndexError);
    expect(() => buildSociIndex({ version: 2, ztocs: [] })).toThrow(ErrEmptyIndexMessage);
    const built = buildSociIndex({ version: 2, ztocs: [{ ...ZTOC_ENTRY, disableXattrs: true }], buildTool: "x" });
    const d = built.index.blobs![0]!;
    expect(d.mediaType).toBe(SociLayerMediaType);
    expect(text(built.bytes)).toContain(
      '"annotations":{"com.amazon.soci.disable-xattrs":"true","com.amazon.soci.image-layer-digest"',
    );
    expect(text(built.bytes)).toContain('"annotations":{"com.amazon.soci.build-tool-identifier":"x"}');
  });

  it("constants", () => {
    expect(DefaultSpanSize).toBe(1 << 22);
    expect(DefaultMinLayerSize).toBe(10 << 20);
  });

  it("disable-xattrs rule (soci_index_test xattr cases)", () => {
    const enc = (s: string) => encodeUtf8(s);
    expect(
      shouldDisableXattrs([{ name: enc("file"), xattrs: [{ key: enc("SCHILY.xattr.user.any"), value: enc("x") }] }]),
    ).toBe(false);
    expect(
      shouldDisableXattrs([
        { name: "dir/", xattrs: [] },
        { name: "dir/.wh..wh..opq", xattrs: [] },
      ]),
    ).toBe(false);
    expect(
      shouldDisableXattrs([
        { name: "dir/", xattrs: [] },
        { name: "dir/file", xattrs: [] },
      ]),
    ).toBe(true);
    // other PAX records (path, mtime) do not count
    expect(shouldDisableXattrs([{ name: "f", xattrs: [{ key: "mtime" }, { key: "path" }] }])).toBe(true);
    expect(shouldDisableXattrs([])).toBe(true);
  });

  it("strconv.ParseBool", () => {
    expect(goParseBool("true")).toBe(true);
    expect(goParseBool("T")).toBe(true);
    expect(goParseBool("0")).toBe(false);
    expect(() => goParseBool("yes")).toThrow(/invalid syntax/);
  });
});

describe("prefetch", () => {
  it("normalizePrefetchSpans (soci_index_test cases)", () => {
    const s = (...r: Array<[number, number]>) => r.map(([startSpan, endSpan]) => ({ startSpan, endSpan }));
    expect(normalizePrefetchSpans([])).toEqual([]);
    expect(normalizePrefetchSpans(s([0, 10]))).toEqual(s([0, 10]));
    expect(normalizePrefetchSpans(s([0, 10], [5, 15]))).toEqual(s([0, 15]));
    expect(normalizePrefetchSpans(s([0, 10], [11, 20]))).toEqual(s([0, 20]));
    expect(normalizePrefetchSpans(s([0, 10], [20, 30]))).toEqual(s([0, 10], [20, 30]));
    expect(normalizePrefetchSpans(s([20, 30], [0, 10], [5, 25]))).toEqual(s([0, 30]));
    expect(normalizePrefetchSpans(s([0, 10], [2, 3]))).toEqual(s([0, 10]));
  });

  it("marshal errors for nil/empty, read errors for bad version/empty/bad JSON", () => {
    expect(() => marshalPrefetchArtifact(null)).toThrow("prefetch artifact is empty");
    expect(() => marshalPrefetchArtifact(newPrefetchArtifact())).toThrow("prefetch artifact is empty");
    expect(() => parsePrefetchArtifact("not-json")).toThrow(
      /^failed to unmarshal prefetch artifact: invalid character/,
    );
    expect(() => parsePrefetchArtifact('{"version":"0.9","prefetch_spans":[{"start_span":1,"end_span":1}]}')).toThrow(
      "unsupported prefetch artifact version: 0.9 (expected 1.0)",
    );
    expect(() => parsePrefetchArtifact('{"version":"1.0","prefetch_spans":[]}')).toThrow("prefetch artifact is empty");
    expect(() => parsePrefetchArtifact('{"version":"1.0"}')).toThrow("prefetch artifact is empty");
  });

  it("priority is omitted when 0 and read back", () => {
    const a = newPrefetchArtifact([
      { startSpan: 5, endSpan: 10, priority: 1 },
      { startSpan: 11, endSpan: 11, priority: 0 },
    ]);
    const json = prefetchArtifactJson(a);
    expect(json).toBe(
      '{"version":"1.0","prefetch_spans":[{"start_span":5,"end_span":10,"priority":1},{"start_span":11,"end_span":11}]}',
    );
    expect(parsePrefetchArtifact(json).prefetchSpans).toEqual([
      { startSpan: 5, endSpan: 10, priority: 1 },
      { startSpan: 11, endSpan: 11 },
    ]);
    expect(prefetchArtifactJson({ version: "1.0", prefetchSpans: null })).toBe(
      '{"version":"1.0","prefetch_spans":null}',
    );
  });

  it("path cleaning", () => {
    expect(cleanPrefetchPath("/app/x")).toBe("app/x");
    expect(cleanPrefetchPath("app/x")).toBe("app/x");
    expect(cleanPrefetchPath("app/dir/")).toBe("app/dir");
    expect(cleanPrefetchPath("./app//./x")).toBe("app/x");
    expect(cleanPrefetchPath("../../etc/passwd")).toBe("etc/passwd");
    expect(cleanPrefetchPath("a/b/../c")).toBe("a/c");
    expect(cleanPrefetchPath("/")).toBe("");
    expect(cleanPrefetchPath("")).toBe("");
  });

  it("file span range uses the exclusive end offset", () => {
    const spanOf = (off: number) => Math.floor(off / 4096);
    expect(fileSpanRange(1024, 3000, spanOf)).toEqual({ startSpan: 0, endSpan: 0 });
    expect(fileSpanRange(6656, 6160, spanOf)).toEqual({ startSpan: 1, endSpan: 3 });
    expect(fileSpanRange(4096, 4096, spanOf)).toEqual({ startSpan: 1, endSpan: 2 }); // ends exactly at a boundary
    expect(fileSpanRange(100, 0, () => 0)).toEqual({ startSpan: 0, endSpan: 0 });
  });
});

describe("platforms", () => {
  const amd64Host: HostInfo = { platform: "linux", arch: "x64" };
  const arm64Host: HostInfo = { platform: "linux", arch: "arm64" };

  it("defaultPlatform maps Node names to OCI names, not normalized", () => {
    expect(defaultPlatform(amd64Host)).toEqual({ os: "linux", architecture: "amd64" });
    expect(defaultPlatform(arm64Host)).toEqual({ os: "linux", architecture: "arm64", variant: "v8" });
    expect(defaultPlatform({ platform: "linux", arch: "arm", armVersion: "6" })).toEqual({
      os: "linux",
      architecture: "arm",
      variant: "v6",
    });
    expect(defaultPlatform({ platform: "win32", arch: "ia32" })).toEqual({ os: "windows", architecture: "386" });
    expect(defaultPlatform({ platform: "linux", arch: "ppc64", endianness: "LE" }).architecture).toBe("ppc64le");
    expect(formatPlatform(defaultPlatform(arm64Host))).toBe("linux/arm64/v8");
  });

  it("parse", () => {
    expect(parsePlatform("linux/amd64", amd64Host)).toEqual({ os: "linux", architecture: "amd64" });
    expect(parsePlatform("linux/x86_64", amd64Host)).toEqual({ os: "linux", architecture: "amd64" });
    expect(parsePlatform("linux/arm64", amd64Host)).toEqual({ os: "linux", architecture: "arm64" });
    expect(parsePlatform("linux/arm64/v8", amd64Host)).toEqual({ os: "linux", architecture: "arm64", variant: "v8" });
    expect(parsePlatform("linux/aarch64/8", amd64Host)).toEqual({ os: "linux", architecture: "arm64", variant: "v8" });
    expect(parsePlatform("linux/arm", amd64Host)).toEqual({ os: "linux", architecture: "arm" });
    expect(parsePlatform("linux/arm/v7", amd64Host)).toEqual({ os: "linux", architecture: "arm", variant: "v7" });
    expect(parsePlatform("linux/armhf", amd64Host)).toEqual({ os: "linux", architecture: "arm" });
    expect(parsePlatform("linux/armel", amd64Host)).toEqual({ os: "linux", architecture: "arm", variant: "v6" });
    expect(parsePlatform("Linux/AMD64", amd64Host)).toEqual({ os: "linux", architecture: "amd64" });
    expect(parsePlatform("linux", arm64Host)).toEqual({ os: "linux", architecture: "arm64" });
    expect(parsePlatform("arm64", amd64Host)).toEqual({ os: "linux", architecture: "arm64" });
    expect(parsePlatform("macos/arm64", amd64Host)).toEqual({ os: "darwin", architecture: "arm64" });
    expect(parsePlatform("windows(10.0.17763+win32k)/amd64", amd64Host)).toEqual({
      os: "windows",
      osVersion: "10.0.17763",
      osFeatures: ["win32k"],
      architecture: "amd64",
    });
    expect(() => parsePlatform("foo", amd64Host)).toThrow(
      '"foo": unknown operating system or architecture: invalid argument',
    );
    expect(() => parsePlatform("linux/*", amd64Host)).toThrow(/wildcards not yet supported/);
    expect(() => parsePlatform("linux/a/b/c", amd64Host)).toThrow(/cannot parse platform specifier/);
    expect(() => parsePlatform("linux/a b", amd64Host)).toThrow(/invalid component/);
  });

  it("normalize and format", () => {
    expect(normalizePlatform({ os: "linux", architecture: "aarch64", variant: "v8" })).toEqual({
      os: "linux",
      architecture: "arm64",
    });
    expect(normalizePlatform({ os: "linux", architecture: "arm" })).toEqual({
      os: "linux",
      architecture: "arm",
      variant: "v7",
    });
    expect(normalizePlatform({ os: "linux", architecture: "x86_64", variant: "v1" })).toEqual({
      os: "linux",
      architecture: "amd64",
    });
    expect(normalizePlatform({ os: "linux", architecture: "i386", variant: "x" })).toEqual({
      os: "linux",
      architecture: "386",
    });
    expect(normalizePlatform({ os: "", architecture: "amd64" }, amd64Host).os).toBe("linux");
    expect(normalizePlatform({ os: "windows", architecture: "amd64", osFeatures: ["b", "a", "b"] }).osFeatures).toEqual(
      ["a", "b"],
    );
    expect(formatPlatform({ os: "linux", architecture: "amd64" })).toBe("linux/amd64");
    expect(formatPlatform({ os: "linux", architecture: "arm64", variant: "v8" })).toBe("linux/arm64/v8");
    expect(formatPlatform({ os: "", architecture: "amd64" })).toBe("unknown");
    expect(formatPlatformAll({ os: "windows", osVersion: "10.0", osFeatures: ["x+y"], architecture: "amd64" })).toBe(
      "windows(10.0+x%2By)/amd64",
    );
  });

  it("strict matching normalizes both sides", () => {
    expect(matchPlatformStrict({ os: "linux", architecture: "amd64" }, { os: "linux", architecture: "x86_64" })).toBe(
      true,
    );
    expect(
      matchPlatformStrict(
        { os: "linux", architecture: "arm64", variant: "v8" },
        { os: "linux", architecture: "arm64" },
      ),
    ).toBe(true);
    expect(
      matchPlatformStrict({ os: "linux", architecture: "arm", variant: "v6" }, { os: "linux", architecture: "arm" }),
    ).toBe(false);
    expect(matchPlatformStrict({ os: "linux", architecture: "amd64" }, { os: "linux", architecture: "386" })).toBe(
      false,
    );
    expect(matchPlatformStrict({ os: "linux", architecture: "amd64" }, { os: "windows", architecture: "amd64" })).toBe(
      false,
    );
  });

  it("DedupePlatforms (ociutil_test cases)", () => {
    const x86: Platform = { os: "linux", architecture: "amd64" };
    const i386: Platform = { os: "linux", architecture: "386" };
    const x86d: Platform = { os: "linux", architecture: "x86_64" };
    expect(dedupePlatforms([x86, i386])).toEqual([x86, i386]);
    expect(dedupePlatforms([x86, x86])).toEqual([x86]);
    expect(dedupePlatforms([x86, x86d])).toEqual([x86]);
    expect(dedupePlatforms([x86d, x86])).toEqual([x86d]); // the first one is kept as given
    expect(dedupePlatforms([])).toEqual([]);
  });
});

describe("OCI image index for convert (soci_convert_test addSociIndexes cases)", () => {
  const linuxX86: Platform = { architecture: "amd64", os: "linux" };
  const imageDesc: Descriptor = {
    mediaType: MediaTypeImageManifest,
    digest: "sha256:1234",
    size: 1234,
    platform: linuxX86,
  };
  const soci1: Descriptor = {
    mediaType: MediaTypeImageManifest,
    artifactType: SociIndexArtifactTypeV2,
    digest: "sha256:5678",
    size: 5678,
  };
  const soci2: Descriptor = {
    mediaType: MediaTypeImageManifest,
    artifactType: SociIndexArtifactTypeV2,
    digest: "sha256:9999",
    size: 9999,
  };
  const base = (manifests: Descriptor[]): Index => ({ schemaVersion: 2, mediaType: MediaTypeImageIndex, manifests });

  it("add soci index → appended with the platform", () => {
    const out = addSociIndexDescriptor(base([imageDesc]), soci1, linuxX86);
    expect(out.manifests).toEqual([imageDesc, { ...soci1, platform: linuxX86 }]);
  });

  it("add an existing soci index → kept once", () => {
    const out = addSociIndexDescriptor(base([imageDesc, { ...soci1, platform: linuxX86 }]), soci1, linuxX86);
    expect(out.manifests).toEqual([imageDesc, { ...soci1, platform: linuxX86 }]);
  });

  it("replace an existing soci index of the same platform in place", () => {
    const out = addSociIndexDescriptor(base([imageDesc, { ...soci1, platform: linuxX86 }]), soci2, linuxX86);
    expect(out.manifests).toEqual([imageDesc, { ...soci2, platform: linuxX86 }]);
  });

  it("v1 entries and other platforms are not replaced", () => {
    const arm: Platform = { architecture: "arm64", os: "linux" };
    const v1 = { ...soci1, artifactType: SociIndexArtifactTypeV1, platform: linuxX86 };
    const out = addSociIndexDescriptor(base([imageDesc, v1, { ...soci1, platform: arm }]), soci2, linuxX86);
    expect(out.manifests).toHaveLength(4);
    expect(out.manifests![3]).toEqual({ ...soci2, platform: linuxX86 });
  });

  it("a platform is required", () => {
    expect(() => addSociIndexDescriptor(base([]), soci1)).toThrow("index does not have a valid platform");
  });

  it("setManifestEntry replaces descriptor annotations with the manifest body's", () => {
    const withAnn = { ...imageDesc, annotations: { old: "x" }, urls: ["u"] };
    const out = setManifestEntry(base([withAnn]), 0, { digest: "sha256:n", size: 9, annotations: { new: "y" } });
    expect(out.manifests![0]).toEqual({
      mediaType: MediaTypeImageManifest,
      digest: "sha256:n",
      size: 9,
      annotations: { new: "y" },
      urls: ["u"],
      platform: linuxX86,
    });
    const out2 = setManifestEntry(base([withAnn]), 0, { digest: "sha256:n", size: 9 });
    expect(out2.manifests![0]!.annotations).toBeUndefined();
    expect(() => setManifestEntry(base([]), 0, { digest: "d", size: 1 })).toThrow(RangeError);
  });

  it("reencodeManifest without a SOCI index only forces the media types and drops unknown fields", () => {
    const src =
      '{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":1,"digest":"sha256:c"},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":2,"digest":"sha256:l","urls":[]}],"foo":1}';
    const r = reencodeManifest(src);
    expect(text(r.bytes)).toBe(
      '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:c","size":1},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"sha256:l","size":2}]}',
    );
    expect(r.manifest.annotations).toBeUndefined();
    // existing annotations are kept and the SOCI one added in sorted position
    const withAnn = reencodeManifest(encodeUtf8(src.replace('"foo":1', '"annotations":{"z":"1","a":"2"}')), "sha256:s");
    expect(text(withAnn.bytes)).toContain('"annotations":{"a":"2","com.amazon.soci.index-digest":"sha256:s","z":"1"}');
  });

  it("imageIndexFromBytes forces the OCI index media type and validates", () => {
    const list =
      '{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":1,"digest":"sha256:a","platform":{"architecture":"amd64","os":"linux","features":["sse4"]}}]}';
    const x = imageIndexFromBytes(list, "application/vnd.docker.distribution.manifest.list.v2+json");
    expect(x.mediaType).toBe(MediaTypeImageIndex);
    expect(text(marshalIndex(x))).toBe(
      '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"sha256:a","size":1,"platform":{"architecture":"amd64","os":"linux"}}]}',
    );
    expect(() => imageIndexFromBytes('{"layers":[]}', MediaTypeImageIndex)).toThrow(
      "media-type: expected index but found manifest (application/vnd.oci.image.index.v1+json)",
    );
    expect(() => validateMediaType('{"manifests":null}', MediaTypeImageManifest)).toThrow(
      "media-type: expected manifest but found index",
    );
    expect(() => validateMediaType('{"fsLayers":[]}', MediaTypeImageManifest)).toThrow(
      "media-type: schema 1 not supported",
    );
    expect(() => validateMediaType(ORIGINAL_MANIFEST.json, MediaTypeDockerSchema2Manifest)).not.toThrow();
    expect(() =>
      reencodeManifest('{"mediaType":"application/vnd.oci.image.index.v1+json"}', undefined, MediaTypeImageManifest),
    ).toThrow(/expected manifest but found index/);
  });
});
