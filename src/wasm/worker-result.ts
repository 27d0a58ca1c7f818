// How a piscina task's outcome crosses the thread boundary. Errors travel as data, because
// structured clone would drop their class and numeric code; results can move their buffers.
import { Piscina } from "piscina";
import { InflateError } from "./codes.js";

export type WorkerResult<T> = { ok: T } | { err: { name: string; message: string; code?: number } };

/** A failed task, as data. */
export function failed(err: unknown): WorkerResult<never> {
  const e = err as Error & { code?: unknown };
  return { err: { name: e.name, message: e.message, code: typeof e.code === "number" ? e.code : undefined } };
}

/** A successful task whose `buffers` are transferred, not copied. */
export function moved<T>(value: T, buffers: ArrayBufferLike[]): WorkerResult<T> {
  const wrapped = {
    get [Piscina.transferableSymbol]() {
      return buffers;
    },
    get [Piscina.valueSymbol]() {
      return { ok: value };
    },
  };
  return Piscina.move(wrapped as never) as unknown as WorkerResult<T>;
}

/** The task's value, or its error rethrown as the class it had in the worker (where we know it). */
export function unwrap<T>(r: WorkerResult<T>): T {
  if ("ok" in r) return r.ok;
  const { name, message, code } = r.err;
  if (name === "InflateError" && code !== undefined) throw new InflateError(code, message);
  const err = name === "RangeError" ? new RangeError(message) : new Error(message);
  if (name !== err.name) err.name = name;
  throw err;
}
