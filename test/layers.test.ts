import { describe, expect, it } from "vitest";
import {
  diffCompression,
  isLayerMediaType,
  isNonDistributable,
  LayerCompressionError,
  layerCompression,
  NotLayerTypeError,
  parseMediaType,
  selectLayer,
  UnrecognisedMediaTypeError,
} from "../src/formats/layers.js";

const D = "sha256:6c2c6c487e30cf19f4a01ff221076074a9c7ddade2ed727b7e7dfbcaad1cc067";
const OCI_TAR = "application/vnd.oci.image.layer.v1.tar";
const OCI_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd";
const DOCKER_TAR = "application/vnd.docker.image.rootfs.diff.tar";
const DOCKER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const DOCKER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd";
const DOCKER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar";
const DOCKER_FOREIGN_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
const PREFETCH = "application/vnd.amazon.soci.prefetch.v1+json";

describe("isLayerMediaType (containerd images.IsLayerType; soci_index_test cases)", () => {
  it("not layers", () => {
    for (const mt of [
      "",
      "application/vnd.oci.image.manifest.v1+json",
      "application/octet-stream",
      PREFETCH,
      "application/vnd.oci.image.config.v1+json",
      "application/vnd.docker.image.rootfs.diff.tgz",
      "application/vnd.oci.image.layer",
    ]) {
      expect(isLayerMediaType(mt), mt).toBe(false);
    }
  });

  it("layers", () => {
    for (const mt of [
      OCI_TAR,
      DOCKER_TAR,
      OCI_GZIP,
      OCI_ZSTD,
      "application/vnd.oci.image.layer.",
      DOCKER_GZIP,
      DOCKER_ZSTD,
      DOCKER_FOREIGN,
      DOCKER_FOREIGN_GZIP,
      `${DOCKER_GZIP}+encrypted`,
      `${OCI_GZIP}+encrypted`,
      "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
      "application/vnd.erofs.layer.v1",
      "application/vnd.erofs.layer.v1+zstd",
    ]) {
      expect(isLayerMediaType(mt), mt).toBe(true);
    }
  });

  it("parseMediaType sorts suffixes", () => {
    expect(parseMediaType(`${OCI_TAR}+zstd+encrypted`)).toEqual({ base: OCI_TAR, suffixes: ["encrypted", "zstd"] });
    expect(parseMediaType("")).toEqual({ base: "", suffixes: [] });
    expect(isNonDistributable(DOCKER_FOREIGN_GZIP)).toBe(true);
    expect(isNonDistributable(DOCKER_GZIP)).toBe(false);
  });
});

describe("diffCompression / layerCompression", () => {
  it("maps media types like containerd + SOCI", () => {
    const cases: Array<[string, string, string]> = [
      // media type, containerd DiffCompression, SOCI layerCompression
      [OCI_GZIP, "gzip", "gzip"],
      [OCI_ZSTD, "zstd", "zstd"],
      [OCI_TAR, "", "uncompressed"],
      [DOCKER_GZIP, "gzip", "gzip"],
      [DOCKER_TAR, "unknown", "unknown"],
      [DOCKER_ZSTD, "zstd", "zstd"],
      [DOCKER_FOREIGN, "unknown", "unknown"],
      [DOCKER_FOREIGN_GZIP, "gzip", "gzip"],
      [`${OCI_GZIP}+encrypted`, "gzip", "gzip"], // sorted suffixes: [encrypted gzip], last wins
      [`${OCI_ZSTD}+encrypted`, "zstd", "zstd"],
      [`${OCI_TAR}+encrypted`, "", ""], // only the exact OCI tar type means uncompressed
      [`${DOCKER_GZIP}+encrypted`, "", ""], // wrapped Docker type
      [`${DOCKER_TAR}+x`, "", ""],
      ["application/vnd.oci.image.layer.nondistributable.v1.tar", "", ""],
      ["application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", "gzip", "gzip"],
    ];
    for (const [mt, containerd, soci] of cases) {
      expect(diffCompression(mt), mt).toBe(containerd);
      expect(layerCompression(mt), mt).toBe(soci);
    }
  });

  it("unrecognised media types throw", () => {
    for (const mt of [
      "application/vnd.oci.image.layer.",
      "application/vnd.erofs.layer.v1",
      "application/octet-stream",
      "",
    ]) {
      expect(() => diffCompression(mt), mt).toThrow(UnrecognisedMediaTypeError);
    }
    expect(() => diffCompression("application/vnd.oci.image.layer.")).toThrow(
      "unrecognised mediatype application/vnd.oci.image.layer.: not implemented",
    );
  });
});

describe("selectLayer (buildSociLayer decisions)", () => {
  it("size threshold: strictly less is skipped, equal is built (soci_index_test)", () => {
    expect(selectLayer({ mediaType: OCI_GZIP, digest: D, size: 5223 }, 65535)).toEqual({
      build: false,
      reason: "too-small",
      message: `ztoc skipped - layer ${D} (${OCI_GZIP}) size 5223 is less than min-layer-size 65535`,
    });
    expect(selectLayer({ mediaType: OCI_GZIP, digest: D, size: 65535 }, 65535)).toEqual({
      build: true,
      compression: "gzip",
    });
    expect(selectLayer({ mediaType: OCI_GZIP, digest: D, size: 5000 }, 500)).toEqual({
      build: true,
      compression: "gzip",
    });
    expect(selectLayer({ mediaType: DOCKER_GZIP, digest: D, size: 962 }, 0)).toEqual({
      build: true,
      compression: "gzip",
    });
  });

  it("compressions that are built", () => {
    expect(selectLayer({ mediaType: OCI_TAR, digest: D, size: 1 }, 0)).toEqual({
      build: true,
      compression: "uncompressed",
    });
    expect(selectLayer({ mediaType: DOCKER_TAR, digest: D, size: 1 }, 0)).toEqual({
      build: true,
      compression: "unknown",
    });
    expect(selectLayer({ mediaType: DOCKER_FOREIGN_GZIP, digest: D, size: 1 }, 0)).toEqual({
      build: true,
      compression: "gzip",
    });
    expect(selectLayer({ mediaType: DOCKER_FOREIGN, digest: D, size: 1 }, 0)).toEqual({
      build: true,
      compression: "unknown",
    });
    // gzip+encrypted is "gzip" for containerd: selected (the build then fails on the ciphertext)
    expect(selectLayer({ mediaType: `${OCI_GZIP}+encrypted`, digest: D, size: 1 }, 0)).toEqual({
      build: true,
      compression: "gzip",
    });
  });

  it("zstd and other unsupported compressions are skipped with the reference's message", () => {
    expect(selectLayer({ mediaType: OCI_ZSTD, digest: D, size: 100 }, 10)).toEqual({
      build: false,
      reason: "unsupported",
      compression: "zstd",
      message: `ztoc skipped - layer ${D} (${OCI_ZSTD}) is compressed in an unsupported format. expect: [tar, gzip, unknown] but got "zstd"`,
    });
    expect(selectLayer({ mediaType: DOCKER_ZSTD, digest: D, size: 100 }, 10)).toMatchObject({
      build: false,
      reason: "unsupported",
    });
    const enc = selectLayer({ mediaType: `${OCI_TAR}+encrypted`, digest: D, size: 100 }, 10);
    expect(enc).toMatchObject({ build: false, reason: "unsupported", compression: "" });
    if (!enc.build)
      expect(enc.message).toBe(
        `ztoc skipped - layer ${D} (${OCI_TAR}+encrypted) is compressed in an unsupported format. expect: [tar, gzip, unknown] but got ""`,
      );
    expect(
      selectLayer({ mediaType: "application/vnd.oci.image.layer.nondistributable.v1.tar", digest: D, size: 1 }, 0),
    ).toMatchObject({ build: false, reason: "unsupported", compression: "" });
  });

  it("size check comes before the compression check", () => {
    expect(selectLayer({ mediaType: OCI_ZSTD, digest: D, size: 1 }, 10)).toMatchObject({ reason: "too-small" });
    expect(selectLayer({ mediaType: "application/vnd.oci.image.layer.", digest: D, size: 1 }, 10)).toMatchObject({
      reason: "too-small",
    });
  });

  it("prefetch descriptors are ignored, non-layers fail the build", () => {
    expect(selectLayer({ mediaType: PREFETCH, digest: D, size: 66 }, 0)).toEqual({ build: false, reason: "prefetch" });
    expect(() => selectLayer({ mediaType: "application/octet-stream", digest: D, size: 1 }, 0)).toThrow(
      NotLayerTypeError,
    );
    expect(() => selectLayer({ mediaType: "", digest: D, size: 1 }, 0)).toThrow("not a layer mediaType");
    expect(() =>
      selectLayer({ mediaType: "application/vnd.oci.image.manifest.v1+json", digest: D, size: 1 }, 0),
    ).toThrow("not a layer mediaType");
  });

  it("layer types containerd cannot map to a compression fail the build", () => {
    expect(() => selectLayer({ mediaType: "application/vnd.oci.image.layer.", digest: D, size: 10 }, 0)).toThrow(
      LayerCompressionError,
    );
    expect(() => selectLayer({ mediaType: "application/vnd.oci.image.layer.", digest: D, size: 10 }, 0)).toThrow(
      "could not determine layer compression: unrecognised mediatype application/vnd.oci.image.layer.: not implemented",
    );
    expect(() => selectLayer({ mediaType: "application/vnd.erofs.layer.v1", digest: D, size: 10 }, 0)).toThrow(
      LayerCompressionError,
    );
  });
});
