// gRPC services from our .proto files, compiled by `npm run build` (proto/compile.mjs) into JSON
// descriptors in `<package root>/build/proto/` (shipped with the package; found from src/ under
// vitest/tsx and from dist/ alike). Loading a descriptor and building the method definitions
// ourselves costs a process start ~40 ms, where parsing the .proto files with @grpc/proto-loader
// (which also derives reflection data nobody here uses) cost 200–400 ms on this machine.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import protobuf from "protobufjs";
import { FailedPreconditionError, InvalidArgumentError } from "../errors/errors.js";

/** How decoded messages look in JS (protobufjs's `toObject` options). */
export type MessageOptions = protobuf.IConversionOptions;

/**
 * Messages of containerd's APIs and our FUSE host's: camelCase fields, int64 as number (sizes and
 * offsets stay far below 2^53), enums as their names, every field present with its default.
 */
export const PROTO_OPTIONS: MessageOptions = { longs: Number, enums: String, defaults: true, oneofs: true };

/** The descriptor groups proto/compile.mjs writes. */
export type ProtoGroup = "containerd" | "fuse-host" | "cri-api";

/** `<package root>/build/proto/<group>.json`, two levels above this module in src/containerd and dist/containerd alike. */
export function protoDescriptorPath(group: ProtoGroup): string {
  return join(dirname(fileURLToPath(import.meta.url)), "..", "..", "build", "proto", `${group}.json`);
}

const roots = new Map<ProtoGroup, protobuf.Root>();

function rootOf(group: ProtoGroup): protobuf.Root {
  let root = roots.get(group);
  if (!root) {
    const path = protoDescriptorPath(group);
    let json: protobuf.INamespace;
    try {
      json = JSON.parse(readFileSync(path, "utf8")) as protobuf.INamespace;
    } catch (e) {
      throw new FailedPreconditionError(`${path}: ${(e as Error).message} (run \`npm run build\`)`, { cause: e });
    }
    root = protobuf.Root.fromJSON(json);
    roots.set(group, root);
  }
  return root;
}

function serializer(type: protobuf.Type): (value: object) => Buffer {
  return (value) => {
    if (Array.isArray(value)) throw new InvalidArgumentError(`${type.fullName}: an array is not a message`);
    return type.encode(type.fromObject(value)).finish() as Buffer;
  };
}

function deserializer(type: protobuf.Type, options: MessageOptions): (bytes: Buffer) => object {
  return (bytes) => type.toObject(type.decode(bytes), options);
}

/** Built services, per conversion options object (the callers' options are constants). */
const services = new WeakMap<MessageOptions, Map<string, grpc.ServiceClientConstructor>>();

/**
 * Service `name` (full name, e.g. `containerd.services.snapshots.v1.Snapshots`) of `group`: the
 * constructor is a client, its `.service` the definition a server adds. Methods are callable by
 * their proto name and in lowerCamelCase, as with @grpc/proto-loader.
 */
export function grpcService(
  group: ProtoGroup,
  name: string,
  options: MessageOptions = PROTO_OPTIONS,
): grpc.ServiceClientConstructor {
  let built = services.get(options);
  if (!built) {
    built = new Map();
    services.set(options, built);
  }
  const key = `${group}/${name}`;
  let ctor = built.get(key);
  if (ctor) return ctor;
  const service = rootOf(group).lookup(name);
  if (!(service instanceof protobuf.Service)) throw new FailedPreconditionError(`${group} protos: no service ${name}`);
  const definition: Record<string, grpc.MethodDefinition<object, object>> = {};
  for (const m of service.methodsArray) {
    m.resolve();
    const request = m.resolvedRequestType!;
    const response = m.resolvedResponseType!;
    definition[m.name] = {
      path: `/${name}/${m.name}`,
      requestStream: !!m.requestStream,
      responseStream: !!m.responseStream,
      requestSerialize: serializer(request),
      requestDeserialize: deserializer(request, options),
      responseSerialize: serializer(response),
      responseDeserialize: deserializer(response, options),
      originalName: m.name.charAt(0).toLowerCase() + m.name.slice(1),
    };
  }
  ctor = grpc.makeGenericClientConstructor(definition, name);
  built.set(key, ctor);
  return ctor;
}

/** Constructors for each service client. */
export interface ContainerdServices {
  content: grpc.ServiceClientConstructor;
  diff: grpc.ServiceClientConstructor;
  images: grpc.ServiceClientConstructor;
  leases: grpc.ServiceClientConstructor;
  namespaces: grpc.ServiceClientConstructor;
  snapshots: grpc.ServiceClientConstructor;
}

let loaded: ContainerdServices | undefined;

/** containerd's services we call (shared: the snapshotter daemon serves Snapshots from the same definition). */
export function containerdProtos(): { services: ContainerdServices } {
  loaded ??= {
    content: grpcService("containerd", "containerd.services.content.v1.Content"),
    diff: grpcService("containerd", "containerd.services.diff.v1.Diff"),
    images: grpcService("containerd", "containerd.services.images.v1.Images"),
    leases: grpcService("containerd", "containerd.services.leases.v1.Leases"),
    namespaces: grpcService("containerd", "containerd.services.namespaces.v1.Namespaces"),
    snapshots: grpcService("containerd", "containerd.services.snapshots.v1.Snapshots"),
  };
  return { services: loaded };
}
