// Shapes shared by the containerd service wrappers (camelCase, as containerd/proto.ts decodes them).

export interface Timestamp {
  seconds: number;
  nanos: number;
}

export type Labels = Record<string, string>;

/** containerd.types.Descriptor (no platform or urls on this wire type). */
export interface ProtoDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Labels;
}

/** containerd.types.Mount */
export interface Mount {
  type: string;
  source: string;
  target?: string;
  options: string[];
}

export function toDate(ts: Timestamp | null | undefined): Date | undefined {
  if (!ts || (ts.seconds === 0 && ts.nanos === 0)) return undefined;
  return new Date(ts.seconds * 1000 + Math.floor(ts.nanos / 1e6));
}

export function fromDate(d: Date): Timestamp {
  const ms = d.getTime();
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: (ms - seconds * 1000) * 1e6 };
}

/** A field mask that touches only the given labels (`labels.<key>`), as containerd's clients send. */
export function labelPaths(labels: Labels): string[] {
  return Object.keys(labels).map((k) => `labels.${k}`);
}
