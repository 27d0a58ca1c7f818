import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import {
  compareUtf8,
  encodeUtf8,
  goArray,
  goBase64,
  goDecodeUtf8,
  goIndent,
  goInt,
  goJsonValid,
  goMap,
  goString,
  goStruct,
  GoJsonSyntaxError,
  type JsonNumber,
  JsonObject,
  omitEmpty,
  parseGoJson,
} from "../src/formats/go-json.js";
import {
  digestOf,
  marshalDescriptor,
  marshalIndex,
  marshalManifest,
  parseDescriptor,
  parseIndex,
  parseManifest,
  OciFormatError,
  type Manifest,
} from "../src/formats/oci.js";

const td = new TextDecoder();
const b = (...xs: number[]) => new Uint8Array(xs);

describe("goString (Go encoding/json string escaping)", () => {
  // Expected values are what Go 1.22+ json.Marshal writes for the same Go string.
  const cases: Array<[string, string | Uint8Array, string]> = [
    ["plain ASCII", "hello world", '"hello world"'],
    ["quote and backslash", 'a"b\\c', '"a\\"b\\\\c"'],
    ["slash is not escaped", "a/b", '"a/b"'],
    ["HTML characters", "<a href='x'>&amp;</a>", "\"\\u003ca href='x'\\u003e\\u0026amp;\\u003c/a\\u003e\""],
    ["short escapes incl. \\b and \\f", "\b\f\n\r\t", '"\\b\\f\\n\\r\\t"'],
    ["other control characters", "\u0000\u0001\u001f\u000b", '"\\u0000\\u0001\\u001f\\u000b"'],
    ["DEL is literal", "\u007f", '"\u007f"'],
    ["line/paragraph separators", "a\u2028b\u2029c", '"a\\u2028b\\u2029c"'],
    ["non-ASCII literal", "café ☕ 😀 \u00ad \u0085", '"café ☕ 😀 \u00ad \u0085"'],
    ["U+FFFD literal", "\ufffd", '"\ufffd"'],
    ["lone surrogate → literal U+FFFD", "a\ud800b\udc00", '"a\ufffdb\ufffd"'],
    ["bytes: valid UTF-8", encodeUtf8("café 😀"), '"café 😀"'],
    ["bytes: invalid byte", b(0x61, 0xff, 0x62), '"a\\ufffdb"'],
    ["bytes: encoded surrogate, one \\ufffd per byte", b(0xed, 0xa0, 0x80), '"\\ufffd\\ufffd\\ufffd"'],
    ["bytes: truncated sequence", b(0xe2, 0x82, 0x41), '"\\ufffd\\ufffdA"'],
    ["bytes: overlong NUL", b(0xc0, 0x80), '"\\ufffd\\ufffd"'],
    ["bytes: above U+10FFFF", b(0xf4, 0x90, 0x80, 0x80), '"\\ufffd\\ufffd\\ufffd\\ufffd"'],
    ["bytes: U+2028 encoded", b(0xe2, 0x80, 0xa8), '"\\u2028"'],
    ["bytes: valid U+FFFD literal", b(0xef, 0xbf, 0xbd), '"\ufffd"'],
    ["bytes: control and HTML", b(0x00, 0x3c, 0x0c), '"\\u0000\\u003c\\f"'],
  ];
  for (const [name, input, want] of cases) {
    it(name, () => {
      expect(goString(input)).toBe(want);
    });
  }
});

describe("Go-JSON building blocks", () => {
  it("integers", () => {
    expect(goInt(0)).toBe("0");
    expect(goInt(-0)).toBe("0");
    expect(goInt(200520)).toBe("200520");
    expect(goInt(-5)).toBe("-5");
    expect(goInt(9007199254740993n)).toBe("9007199254740993");
    expect(() => goInt(1.5)).toThrow();
    expect(() => goInt(2 ** 60)).toThrow();
  });

  it("maps: keys sorted by UTF-8 bytes, nil → null, empty → {}", () => {
    expect(goMap({ b: "2", a: "1", B: "0", é: "4", z: "3" })).toBe('{"B":"0","a":"1","b":"2","z":"3","é":"4"}');
    // UTF-16 order would put the emoji (D83D…) before U+FFFF; UTF-8 order puts EF BF BF first.
    expect(goMap({ "😀": "x", "\uffff": "y" })).toBe('{"\uffff":"y","😀":"x"}');
    expect(compareUtf8("\uffff", "😀")).toBeLessThan(0);
    expect(goMap(new Map([["k<", "v>"]]))).toBe('{"k\\u003c":"v\\u003e"}');
    expect(goMap(null)).toBe("null");
    expect(goMap({})).toBe("{}");
    expect(goMap({ n: 1, m: 2 }, goInt)).toBe('{"m":2,"n":1}');
  });

  it("a __proto__ key is an ordinary key", () => {
    const annotations = parseDescriptor('{"annotations":{"__proto__":"x","a":"y"}}').annotations!;
    expect(Object.keys(annotations)).toEqual(["__proto__", "a"]);
    expect(goMap(annotations)).toBe('{"__proto__":"x","a":"y"}');
  });

  it("arrays, structs, omitempty", () => {
    expect(goArray(null, goInt)).toBe("null");
    expect(goArray([], goInt)).toBe("[]");
    expect(goArray([1, 2], goInt)).toBe("[1,2]");
    expect(
      goStruct([
        ["a", goInt(1)],
        ["b", undefined],
        ["c", goString("")],
      ]),
    ).toBe('{"a":1,"c":""}');
    expect(omitEmpty.string("")).toBeUndefined();
    expect(omitEmpty.map({})).toBeUndefined();
    expect(omitEmpty.map(null)).toBeUndefined();
    expect(omitEmpty.array([], goInt)).toBeUndefined();
    expect(omitEmpty.int(0)).toBeUndefined();
    expect(omitEmpty.bytes(new Uint8Array())).toBeUndefined();
    expect(goBase64(b(0, 1, 2, 0xff))).toBe('"AAEC/w=="');
  });
});

describe("goIndent (json.Indent / MarshalIndent layout)", () => {
  it("indents objects and arrays with two spaces, keeps empty ones compact", () => {
    const src = '{"a":1,"b":[1,{"c":"x, y: {z}"}],"e":{},"f":[],"g":null}';
    expect(goIndent(src)).toBe(
      '{\n  "a": 1,\n  "b": [\n    1,\n    {\n      "c": "x, y: {z}"\n    }\n  ],\n  "e": {},\n  "f": [],\n  "g": null\n}',
    );
  });

  it("drops leading whitespace, keeps trailing whitespace, keeps escapes verbatim", () => {
    expect(goIndent(' \n{"a" : "\\u003c\\"]"} \n')).toBe('{\n  "a": "\\u003c\\"]"\n} \n');
    expect(goIndent("[]")).toBe("[]");
    expect(goIndent("5")).toBe("5");
  });

  it("prefix goes after every newline only", () => {
    expect(goIndent('{"a":[1]}', ">", "\t")).toBe('{\n>\t"a": [\n>\t\t1\n>\t]\n>}');
  });

  it("works on bytes, copying invalid UTF-8 through", () => {
    const src = new Uint8Array([...encodeUtf8('{"a":"'), 0xff, ...encodeUtf8('"}')]);
    const out = goIndent(src);
    expect(out).toBeInstanceOf(Uint8Array);
    expect([...out]).toEqual([...encodeUtf8('{\n  "a": "'), 0xff, ...encodeUtf8('"\n}')]);
  });

  it("reproduces the MarshalIndent output of `soci ztoc info` (vector za4096.info.json)", () => {
    const want = readFileSync(new URL("./vectors/za4096.info.json", import.meta.url));
    // json.Compact: drop whitespace outside strings
    let compact = "";
    let inStr = false;
    const s = want.toString("utf8");
    for (let i = 0; i < s.length; i++) {
      const c = s[i]!;
      if (inStr) {
        compact += c;
        if (c === "\\") compact += s[++i];
        else if (c === '"') inStr = false;
      } else if (c === '"') {
        inStr = true;
        compact += c;
      } else if (!" \n\t\r".includes(c)) compact += c;
    }
    expect(compact.length).toBeLessThan(s.length);
    expect(goIndent(compact) + "\n").toBe(s);
    expect(Buffer.from(goIndent(encodeUtf8(compact))).toString("utf8") + "\n").toBe(s);
  });

  it("rejects invalid JSON", () => {
    expect(() => goIndent('{"a":1,}')).toThrow(GoJsonSyntaxError);
  });
});

describe("parseGoJson (Go decoder semantics)", () => {
  it("syntax errors carry Go's messages", () => {
    const msg = (s: string) => {
      try {
        parseGoJson(s);
      } catch (e) {
        return (e as Error).message;
      }
      return "no error";
    };
    expect(msg("")).toBe("unexpected end of JSON input");
    expect(msg('{"a":')).toBe("unexpected end of JSON input");
    expect(msg("x")).toBe("invalid character 'x' looking for beginning of value");
    expect(msg('{"a":1,}')).toBe("invalid character '}' looking for beginning of object key string");
    expect(msg('{"a" 1}')).toBe("invalid character '1' after object key");
    expect(msg('{"a":1 "b"}')).toBe("invalid character '\"' after object key:value pair");
    expect(msg("[1 2]")).toBe("invalid character '2' after array element");
    expect(msg("{} x")).toBe("invalid character 'x' after top-level value");
    expect(msg("tru")).toBe("unexpected end of JSON input");
    expect(msg("trux")).toBe("invalid character 'x' in literal true (expecting 'e')");
    expect(msg("01")).toBe("invalid character '1' after top-level value");
    expect(msg("1.")).toBe("unexpected end of JSON input");
    expect(msg("1.x")).toBe("invalid character 'x' after decimal point in numeric literal");
    expect(msg('"\\x"')).toBe("invalid character 'x' in string escape code");
    expect(msg('"a\nb"')).toBe("invalid character '\\n' in string literal");
    expect(msg("not-json")).toBe("invalid character 'o' in literal null (expecting 'u')");
    expect(goJsonValid('{"a":[1,2.5e-3,true,false,null,"x"]}')).toBe(true);
  });

  it("strings: escapes, surrogate pairs, invalid UTF-8 like Go", () => {
    expect(parseGoJson('"\\ud83d\\ude00 \\u00e9 \\/"')).toBe("😀 é /");
    expect(parseGoJson('"\\ud800x"')).toBe("\ufffdx");
    expect(parseGoJson('"\\udc00\\ud800\\u0041"')).toBe("\ufffd\ufffdA");
    expect(parseGoJson(new Uint8Array([0x22, 0xe2, 0x82, 0x41, 0x22]))).toBe("\ufffd\ufffdA");
    expect(goDecodeUtf8(b(0xed, 0xa0, 0x80))).toBe("\ufffd\ufffd\ufffd");
  });

  it("numbers stay literal, objects keep duplicates in order", () => {
    const v = parseGoJson('{"a":1.50,"a":2}') as JsonObject;
    expect(v).toBeInstanceOf(JsonObject);
    expect(v.entries.length).toBe(2);
    expect((v.entries[0]![1] as JsonNumber).text).toBe("1.50");
    expect((v.get("a") as JsonNumber).text).toBe("2");
  });
});

describe("OCI types: Go-JSON encoding", () => {
  it("descriptor: mediaType always written, field order, omitempty", () => {
    const d = marshalDescriptor({ mediaType: "", digest: "sha256:x", size: 0 });
    expect(td.decode(d)).toBe('{"mediaType":"","digest":"sha256:x","size":0}');
    const full = marshalDescriptor({
      artifactType: "at",
      platform: { variant: "v8", osFeatures: ["f"], osVersion: "1", os: "linux", architecture: "arm64" },
      data: b(1, 2, 3),
      annotations: { z: "1", a: "2" },
      urls: ["https://x/<y>"],
      size: 3,
      digest: "sha256:d",
      mediaType: "m",
    });
    expect(td.decode(full)).toBe(
      '{"mediaType":"m","digest":"sha256:d","size":3,"urls":["https://x/\\u003cy\\u003e"],"annotations":{"a":"2","z":"1"},' +
        '"data":"AQID","platform":{"architecture":"arm64","os":"linux","os.version":"1","os.features":["f"],"variant":"v8"},"artifactType":"at"}',
    );
    // empty annotations / urls / data are omitted like absent ones
    expect(
      td.decode(
        marshalDescriptor({ mediaType: "m", digest: "d", size: 1, annotations: {}, urls: [], data: new Uint8Array() }),
      ),
    ).toBe('{"mediaType":"m","digest":"d","size":1}');
  });

  it("manifest: layers null vs [], annotations empty vs absent", () => {
    const base: Manifest = { schemaVersion: 2, config: { mediaType: "c", digest: "d", size: 2 }, layers: null };
    expect(td.decode(marshalManifest(base))).toBe(
      '{"schemaVersion":2,"config":{"mediaType":"c","digest":"d","size":2},"layers":null}',
    );
    expect(td.decode(marshalManifest({ ...base, layers: [], annotations: {} }))).toBe(
      '{"schemaVersion":2,"config":{"mediaType":"c","digest":"d","size":2},"layers":[]}',
    );
    expect(td.decode(marshalManifest({ ...base, annotations: { k: "v" }, mediaType: "mt", artifactType: "" }))).toBe(
      '{"schemaVersion":2,"mediaType":"mt","config":{"mediaType":"c","digest":"d","size":2},"layers":null,"annotations":{"k":"v"}}',
    );
  });

  it("index: manifests null vs []", () => {
    expect(td.decode(marshalIndex({ schemaVersion: 2, manifests: null }))).toBe('{"schemaVersion":2,"manifests":null}');
    expect(td.decode(marshalIndex({ schemaVersion: 2, manifests: [], mediaType: "m" }))).toBe(
      '{"schemaVersion":2,"mediaType":"m","manifests":[]}',
    );
  });

  it("digestOf", () => {
    expect(digestOf(encodeUtf8("{}"))).toBe("sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
  });
});

describe("OCI types: tolerant decoding (json.Unmarshal semantics)", () => {
  it("unknown fields dropped, re-marshal in Go order", () => {
    const src =
      '{"layers":[{"size":962,"digest":"sha256:l","mediaType":"lt","extra":1}],"x":{"y":[]},"config":{"size":1,"digest":"sha256:c","mediaType":"ct"},"schemaVersion":2}';
    const m = parseManifest(src);
    expect(td.decode(marshalManifest(m))).toBe(
      '{"schemaVersion":2,"config":{"mediaType":"ct","digest":"sha256:c","size":1},"layers":[{"mediaType":"lt","digest":"sha256:l","size":962}]}',
    );
  });

  it("absent layers → null, [] → [], null subject/annotations → absent", () => {
    expect(parseManifest('{"schemaVersion":2}').layers).toBeNull();
    expect(parseManifest('{"layers":[]}').layers).toEqual([]);
    const m = parseManifest('{"subject":null,"annotations":null,"mediaType":null}');
    expect(m.subject).toBeUndefined();
    expect(m.annotations).toBeUndefined();
    expect(m.mediaType).toBeUndefined();
    expect(parseIndex("{}").manifests).toBeNull();
  });

  it("keys match case-insensitively when no exact match; duplicates merge like Go", () => {
    const m = parseManifest(
      '{"SchemaVersion":2,"CONFIG":{"MediaType":"x","ſize":7},"Annotations":{"a":"1"},"annotations":{"b":"2"}}',
    );
    expect(m.schemaVersion).toBe(2);
    expect(m.config).toEqual({ mediaType: "x", digest: "", size: 7 });
    expect(m.annotations).toEqual({ a: "1", b: "2" });
    const d = parseDescriptor('{"platform":{"os":"linux"},"platform":{"architecture":"amd64"}}');
    expect(d.platform).toEqual({ os: "linux", architecture: "amd64" });
  });

  it("type errors are clear", () => {
    expect(() => parseManifest('{"config":{"size":"962"}}')).toThrow(
      /json: cannot unmarshal string into Go struct field Descriptor\.config\.size of type int64/,
    );
    expect(() => parseManifest('{"layers":{}}')).toThrow(
      /cannot unmarshal object into Go struct field Manifest\.layers/,
    );
    expect(() => parseManifest("[1]")).toThrow(/cannot unmarshal array into Go value of type v1\.Manifest/);
    expect(() => parseManifest('{"config":{"size":1.5}}')).toThrow(/cannot unmarshal number 1\.5/);
    expect(() => parseManifest('{"annotations":{"a":1}}')).toThrow(/cannot unmarshal number/);
    expect(() => parseManifest("{")).toThrow(OciFormatError);
    expect(() => parseManifest("{")).toThrow("invalid manifest: unexpected end of JSON input");
    expect(() => parseIndex('{"manifests":[1]}')).toThrow(
      /cannot unmarshal number into Go struct field Index\.manifests of type v1\.Descriptor/,
    );
  });

  it("data is base64; a null annotation value stores an empty string", () => {
    const d = parseDescriptor('{"data":"AQID","annotations":{"k":null}}');
    expect([...d.data!]).toEqual([1, 2, 3]);
    expect(d.annotations).toEqual({ k: "" });
    expect(() => parseDescriptor('{"data":"!!"}')).toThrow(/illegal base64/);
  });
});
