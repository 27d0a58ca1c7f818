// TOML document → config fields, with go-toml v2's decoding rules: keys match a field exactly, else
// case-insensitively; unknown keys are ignored (and reported to the caller by their dotted name, so
// a typo does not go unnoticed); a value of the wrong TOML type is an error naming the key. Values
// land on top of what the target already holds (the defaults).

import { parse, TomlDate, TomlError } from "smol-toml";
import { ConfigError } from "./errors.js";
import type { Field } from "./schema.js";

type Obj = Record<string, unknown>;

/** Parses TOML text; integers stay distinct from floats (bigint vs number). */
export function parseToml(text: string): Obj {
  try {
    return parse(text, { integersAsBigInt: true }) as Obj;
  } catch (e) {
    if (e instanceof TomlError) {
      // smol-toml's message ends with a code excerpt; keep its first line plus the position
      const first = e.message.split("\n")[0] ?? e.message;
      throw new ConfigError(`toml: line ${e.line} column ${e.column}: ${first}`);
    }
    throw e;
  }
}

function isTable(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof TomlDate);
}

function describe(v: unknown): string {
  if (typeof v === "bigint") return "an integer";
  if (typeof v === "number") return "a float";
  if (typeof v === "string") return "a string";
  if (typeof v === "boolean") return "a boolean";
  if (v instanceof TomlDate) return "a date/time";
  if (Array.isArray(v)) return "an array";
  return "a table";
}

function join(path: string, key: string): string {
  const k = /^[A-Za-z0-9_-]+$/.test(key) ? key : JSON.stringify(key);
  return path === "" ? k : `${path}.${k}`;
}

function findField(fields: Field[], key: string): Field | undefined {
  const exact = fields.find((f) => f.key === key);
  if (exact) return exact;
  const lower = key.toLowerCase();
  return fields.find((f) => f.key.toLowerCase() === lower);
}

/**
 * Decodes `table` into `target` following `fields`; `path` names the table in messages. Each key
 * no field takes is skipped, as the reference does, and passed to `onUnknown` by its full name
 * (`background_fetch.silence_perid_msec`).
 */
export function decodeTable(
  table: Obj,
  fields: Field[],
  target: Obj,
  path: string,
  onUnknown: (key: string) => void = () => undefined,
): void {
  for (const [key, value] of Object.entries(table)) {
    const field = findField(fields, key);
    const at = join(path, key);
    if (!field) {
      onUnknown(at);
      continue;
    }
    const expect = (what: string): never => {
      throw new ConfigError(`${at}: expected ${what}, got ${describe(value)}`);
    };
    switch (field.kind) {
      case "string":
        if (typeof value !== "string") expect("a string");
        target[field.prop] = value;
        break;
      case "bool":
        if (typeof value !== "boolean") expect("a boolean");
        target[field.prop] = value;
        break;
      case "int": {
        if (typeof value !== "bigint") expect("an integer");
        const n = Number(value);
        if (!Number.isSafeInteger(n)) throw new ConfigError(`${at}: integer ${value} is out of range`);
        target[field.prop] = n;
        break;
      }
      case "table":
        if (!isTable(value)) expect("a table");
        decodeTable(value as Obj, field.fields, target[field.prop] as Obj, at, onUnknown);
        break;
      case "map": {
        if (!isTable(value)) expect("a table");
        const map = (target[field.prop] as Obj | undefined) ?? {};
        for (const [name, entry] of Object.entries(value as Obj)) {
          const entryPath = join(at, name);
          if (!isTable(entry)) throw new ConfigError(`${entryPath}: expected a table, got ${describe(entry)}`);
          const into = (map[name] as Obj | undefined) ?? field.make();
          decodeTable(entry, field.entry, into, entryPath, onUnknown);
          map[name] = into;
        }
        target[field.prop] = map;
        break;
      }
      case "tableArray": {
        if (!Array.isArray(value)) expect("an array of tables");
        target[field.prop] = (value as unknown[]).map((entry, i) => {
          const entryPath = `${at}[${i}]`;
          if (!isTable(entry)) throw new ConfigError(`${entryPath}: expected a table, got ${describe(entry)}`);
          const into = field.make();
          decodeTable(entry, field.entry, into, entryPath, onUnknown);
          return into;
        });
        break;
      }
      case "strings": {
        if (!Array.isArray(value)) expect("an array of strings");
        target[field.prop] = (value as unknown[]).map((v, i) => {
          if (typeof v !== "string") throw new ConfigError(`${at}[${i}]: expected a string, got ${describe(v)}`);
          return v;
        });
        break;
      }
    }
  }
}
