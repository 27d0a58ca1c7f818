// The error vocabulary (src/errors): each code's gRPC status and exit status, the way back from a
// gRPC status (in memory and over a real gRPC connection), cause chains with cycles, withContext,
// and the subsystem classes keeping the codes they were rebased on.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as grpc from "@grpc/grpc-js";
import {
  AlreadyExistsError,
  CanceledError,
  causeChain,
  DeadlineExceededError,
  DigestMismatchError,
  type ErrorCode,
  errorCodeOf,
  FailedPreconditionError,
  findCause,
  hasCode,
  InvalidArgumentError,
  messageOf,
  NotFoundError,
  PermissionDeniedError,
  ResourceExhaustedError,
  SociError,
  UnauthenticatedError,
  UnavailableError,
  UnimplementedError,
  withContext,
} from "../src/errors/errors.js";
import { errorFromGrpcStatus, exitStatusOf, GrpcStatus, grpcStatusOf } from "../src/errors/status.js";
import { TarError } from "../src/formats/tar.js";
import { ZtocError, decodeZtoc } from "../src/formats/ztoc.js";
import { ZinfoError } from "../src/formats/gzip-zinfo.js";
import { EmptyIndexError, SociIndexError, goParseBool } from "../src/formats/soci-index.js";
import { PrefetchArtifactError } from "../src/formats/prefetch.js";
import { GoJsonSyntaxError, GoJsonTypeError, parseGoJson } from "../src/formats/go-json.js";
import { OciFormatError, parseManifest } from "../src/formats/oci.js";
import { PlatformError, parsePlatform } from "../src/formats/platform.js";
import { LayerCompressionError, NotLayerTypeError, UnrecognisedMediaTypeError } from "../src/formats/layers.js";
import { FilterSyntaxError, parseFilters } from "../src/snapshotter/filters.js";
import { ConfigError, parseConfig } from "../src/daemon/config/index.js";
import { SetupError } from "../src/demo/setup.js";
import { parseLogLevel } from "../src/log/json-logger.js";
import { toStatus } from "../src/snapshotter/service.js";
import { fromGrpcError } from "../src/containerd/errors.js";

/** One error of each class, with the gRPC status it must map to. */
const byCode: [ErrorCode, SociError, number][] = [
  ["InvalidArgument", new InvalidArgumentError("bad"), GrpcStatus.INVALID_ARGUMENT],
  ["NotFound", new NotFoundError("gone"), GrpcStatus.NOT_FOUND],
  ["AlreadyExists", new AlreadyExistsError("there"), GrpcStatus.ALREADY_EXISTS],
  ["FailedPrecondition", new FailedPreconditionError("not now"), GrpcStatus.FAILED_PRECONDITION],
  ["Unavailable", new UnavailableError("down"), GrpcStatus.UNAVAILABLE],
  // containerd's content service answers a commit with the wrong digest this way
  ["DigestMismatch", new DigestMismatchError("sha256:aa", "sha256:bb"), GrpcStatus.FAILED_PRECONDITION],
  ["Unauthenticated", new UnauthenticatedError("who"), GrpcStatus.UNAUTHENTICATED],
  ["PermissionDenied", new PermissionDeniedError("no"), GrpcStatus.PERMISSION_DENIED],
  ["DeadlineExceeded", new DeadlineExceededError("slow"), GrpcStatus.DEADLINE_EXCEEDED],
  ["Canceled", new CanceledError("stop"), GrpcStatus.CANCELLED],
  ["ResourceExhausted", new ResourceExhaustedError("full"), GrpcStatus.RESOURCE_EXHAUSTED],
  ["Unimplemented", new UnimplementedError("later"), GrpcStatus.UNIMPLEMENTED],
  ["Unknown", new SociError("Unknown", "odd"), GrpcStatus.UNKNOWN],
];

describe("codes → gRPC status and exit status", () => {
  it.each(byCode)("%s", (code, err, status) => {
    expect(err.code).toBe(code);
    expect(err).toBeInstanceOf(SociError);
    expect(err).toBeInstanceOf(Error);
    expect(grpcStatusOf(err)).toBe(status);
    expect(exitStatusOf(err)).toBe(code === "Canceled" ? 130 : 1);
    expect(errorCodeOf(err)).toBe(code);
    expect(hasCode(err, code)).toBe(true);
  });

  it("anything unclassified is UNKNOWN and exits 1; gRPC looks at the error itself, the exit status at its causes", () => {
    expect(grpcStatusOf(new Error("plain"))).toBe(GrpcStatus.UNKNOWN);
    expect(grpcStatusOf("a string")).toBe(GrpcStatus.UNKNOWN);
    expect(grpcStatusOf(undefined)).toBe(GrpcStatus.UNKNOWN);
    expect(exitStatusOf(new Error("plain"))).toBe(1);
    expect(exitStatusOf(null)).toBe(1);
    const wrapped = new Error("outer", { cause: new CanceledError("interrupted") });
    expect(grpcStatusOf(wrapped)).toBe(GrpcStatus.UNKNOWN);
    expect(errorCodeOf(wrapped)).toBe("Canceled");
    expect(exitStatusOf(wrapped)).toBe(130);
    expect(hasCode(wrapped, "Canceled")).toBe(false);
  });
});

describe("errorFromGrpcStatus", () => {
  it.each(byCode)("%s survives the round trip through its status", (code, err) => {
    const back = errorFromGrpcStatus(grpcStatusOf(err), err.message);
    // DigestMismatch travels as FAILED_PRECONDITION, the only code that does not come back as itself
    expect(back.code).toBe(code === "DigestMismatch" ? "FailedPrecondition" : code);
    expect(back.message).toBe(err.message);
    expect(grpcStatusOf(back)).toBe(grpcStatusOf(err));
  });

  it("maps the statuses without a class of their own, and keeps HTTP details and the cause", () => {
    expect(errorFromGrpcStatus(GrpcStatus.OUT_OF_RANGE, "x").code).toBe("InvalidArgument");
    for (const s of [GrpcStatus.ABORTED, GrpcStatus.INTERNAL, GrpcStatus.DATA_LOSS, GrpcStatus.UNKNOWN, 99])
      expect(errorFromGrpcStatus(s, "x").code).toBe("Unknown");
    const cause = new Error("wire");
    const e = errorFromGrpcStatus(GrpcStatus.NOT_FOUND, "missing", { cause, httpStatus: 404, url: "http://r/v2/" });
    expect(e).toBeInstanceOf(NotFoundError);
    expect(e.cause).toBe(cause);
    expect(e.httpStatus).toBe(404);
    expect(e.url).toBe("http://r/v2/");
  });

  describe("over a real gRPC connection (the snapshotter's status out, the containerd client's error in)", () => {
    let server: grpc.Server;
    let client: grpc.Client;
    const throwing = new Map<string, Error>();
    const method = {
      path: "/test.Errors/Fail",
      requestStream: false,
      responseStream: false,
      requestSerialize: (s: string) => Buffer.from(s),
      requestDeserialize: (b: Buffer) => b.toString(),
      responseSerialize: (s: string) => Buffer.from(s),
      responseDeserialize: (b: Buffer) => b.toString(),
    };

    beforeAll(async () => {
      server = new grpc.Server();
      server.addService(
        { Fail: method },
        {
          Fail: (call: grpc.ServerUnaryCall<string, string>, cb: grpc.sendUnaryData<string>) => {
            cb(toStatus(throwing.get(call.request)));
          },
        },
      );
      const port = await new Promise<number>((resolve, reject) =>
        server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) =>
          e ? reject(e) : resolve(p),
        ),
      );
      client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    });

    afterAll(() => {
      client?.close();
      server?.forceShutdown();
    });

    const call = (key: string) =>
      new Promise<unknown>((resolve) =>
        client.makeUnaryRequest(method.path, method.requestSerialize, method.responseDeserialize, key, (err) =>
          resolve(err),
        ),
      );

    it.each(byCode)("%s", async (code, err) => {
      throwing.set(code, err);
      const wire = await call(code);
      expect((wire as grpc.ServiceError).code).toBe(grpcStatusOf(err));
      const back = fromGrpcError(wire, "test.Fail", "127.0.0.1");
      if (code === "Unavailable" || code === "DeadlineExceeded") {
        // the client words these two itself (unreachable / no answer in time), class kept
        expect(errorCodeOf(back)).toBe(code);
        return;
      }
      expect(errorCodeOf(back)).toBe(code === "DigestMismatch" ? "FailedPrecondition" : code);
      expect(back.message).toBe(`containerd test.Fail: ${err.message}`);
      expect(back.cause).toBe(wire);
    });

    it("an unclassified error arrives as UNKNOWN", async () => {
      throwing.set("plain", new Error("something broke"));
      const wire = (await call("plain")) as grpc.ServiceError;
      expect(wire.code).toBe(grpc.status.UNKNOWN);
      expect(wire.details).toBe("something broke");
      expect(errorCodeOf(fromGrpcError(wire, "test.Fail", "x"))).toBe("Unknown");
    });
  });
});

describe("cause chains", () => {
  it("walks outermost first and stops at cycles", () => {
    const a = new Error("a");
    const b = new NotFoundError("b", { cause: a });
    const c = new Error("c", { cause: b });
    (a as { cause?: unknown }).cause = c; // a → c → b → a
    expect([...causeChain(c)]).toEqual([c, b, a]);
    expect(findCause(c, (e): e is NotFoundError => e instanceof NotFoundError)).toBe(b);
    expect(findCause(c, (e) => e instanceof TypeError)).toBeUndefined();
    expect(errorCodeOf(c)).toBe("NotFound");
    const self = new Error("self");
    (self as { cause?: unknown }).cause = self;
    expect([...causeChain(self)]).toEqual([self]);
  });

  it("stops at 32 links, and at null/undefined", () => {
    let e: Error = new Error("0");
    for (let i = 1; i < 100; i++) e = new Error(String(i), { cause: e });
    expect([...causeChain(e)]).toHaveLength(32);
    expect([...causeChain(undefined)]).toEqual([]);
    expect([...causeChain(null)]).toEqual([]);
    expect([...causeChain("text")]).toEqual(["text"]);
    // a cycle of non-errors is bounded too
    const x: { cause?: unknown } = {};
    const y = { cause: x };
    x.cause = y;
    expect([...causeChain(x)]).toEqual([x, y]);
  });
});

describe("withContext", () => {
  it("keeps a SociError's class, HTTP details and cause", () => {
    const inner = new UnauthenticatedError("token refused", {
      httpStatus: 401,
      url: "https://r/token",
      registryErrors: [{ code: "UNAUTHORIZED", message: "no" }],
    });
    const outer = withContext(inner, "pulling app:latest");
    expect(outer).toBeInstanceOf(SociError);
    expect((outer as SociError).code).toBe("Unauthenticated");
    expect(outer.message).toBe("pulling app:latest: token refused");
    expect(outer.cause).toBe(inner);
    expect((outer as SociError).httpStatus).toBe(401);
    expect((outer as SociError).url).toBe("https://r/token");
    expect((outer as SociError).registryErrors).toEqual([{ code: "UNAUTHORIZED", message: "no" }]);
    expect(grpcStatusOf(outer)).toBe(GrpcStatus.UNAUTHENTICATED);
    // twice: the chain reaches the original
    const twice = withContext(outer, "soci convert");
    expect(twice.message).toBe("soci convert: pulling app:latest: token refused");
    expect([...causeChain(twice)]).toEqual([twice, outer, inner]);
  });

  it("keeps a subclass's code (the class becomes the base one)", () => {
    const e = withContext(new TarError("unexpected EOF"), "layer sha256:aa");
    expect(errorCodeOf(e)).toBe("InvalidArgument");
    expect(findCause(e, (x): x is TarError => x instanceof TarError)?.kind).toBe("header");
  });

  it("wraps anything else as a plain Error with the cause", () => {
    const plain = new Error("EACCES");
    const e = withContext(plain, "open /x");
    expect(e).not.toBeInstanceOf(SociError);
    expect(e.message).toBe("open /x: EACCES");
    expect(e.cause).toBe(plain);
    expect(withContext("boom", "ctx").message).toBe("ctx: boom");
    expect(messageOf("boom")).toBe("boom");
    expect(messageOf(plain)).toBe("EACCES");
  });
});

describe("subsystem errors keep the project's codes", () => {
  const thrown = (f: () => unknown): unknown => {
    try {
      f();
    } catch (e) {
      return e;
    }
    throw new Error("did not throw");
  };

  it.each<[string, () => unknown, new (...a: never[]) => Error, ErrorCode]>([
    ["a truncated ztoc", () => decodeZtoc(new Uint8Array(3)), ZtocError, "InvalidArgument"],
    ["Go JSON syntax", () => parseGoJson(new TextEncoder().encode("{")), GoJsonSyntaxError, "InvalidArgument"],
    [
      "an OCI manifest of the wrong shape",
      () => parseManifest(new TextEncoder().encode("[]")),
      OciFormatError,
      "InvalidArgument",
    ],
    ["a platform specifier", () => parsePlatform("linux/amd64/v8/x/y"), PlatformError, "InvalidArgument"],
    ["a filter", () => parseFilters(["name=="]), FilterSyntaxError, "InvalidArgument"],
    ["a daemon config", () => parseConfig("[snapshotter]\nmin_layer_size = 'big'\n"), ConfigError, "InvalidArgument"],
    ["a Go bool", () => goParseBool("maybe"), InvalidArgumentError, "InvalidArgument"],
    ["a log level", () => parseLogLevel("chatty"), InvalidArgumentError, "InvalidArgument"],
  ])("%s", (_what, f, cls, code) => {
    const e = thrown(f);
    expect(e).toBeInstanceOf(cls);
    expect(errorCodeOf(e)).toBe(code);
    expect(exitStatusOf(e)).toBe(1);
  });

  it.each<[Error, ErrorCode]>([
    [new TarError("archive/tar: invalid tar header"), "InvalidArgument"],
    [new ZinfoError("x"), "InvalidArgument"],
    [new SociIndexError("x"), "InvalidArgument"],
    [new EmptyIndexError(), "FailedPrecondition"],
    [new PrefetchArtifactError("x"), "InvalidArgument"],
    [new GoJsonTypeError("x"), "InvalidArgument"],
    [new UnrecognisedMediaTypeError("text/plain"), "Unimplemented"],
    [new NotLayerTypeError("text/plain"), "InvalidArgument"],
    [new LayerCompressionError("text/plain", new UnrecognisedMediaTypeError("text/plain")), "Unimplemented"],
    [new SetupError("no fuse"), "FailedPrecondition"],
  ])("%s", (e, code) => {
    expect(e).toBeInstanceOf(SociError);
    expect(errorCodeOf(e)).toBe(code);
    expect(e.name).toBe(e.constructor.name);
  });
});
