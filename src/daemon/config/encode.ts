// Config → TOML text exactly as the reference's `config dump` / `config default` print it:
// go-toml v2's Encoder with SetIndentTables(true). Rules reproduced here:
// * a table lists its key/values first, then its sub-tables; a blank line separates the key/values
//   from the first sub-table and each sub-table from the next;
// * headers use the full dotted path; each table level indents its body by two spaces;
// * strings are 'literal' unless they hold a ' or a control character (then "basic", escaped);
// * bare keys when [A-Za-z0-9_-]+, else 'literal' (or "basic") keys;
// * maps are written in key order (Go string order); an empty array of tables is `key = []`.

import { compareUtf8 } from "../../formats/go-json.js";
import type { Field } from "./schema.js";

type Obj = Record<string, unknown>;

interface Table {
  kvs: Array<[key: string, text: string]>;
  tables: Array<[key: string, node: Table | Table[]]>;
}

function needsQuoting(v: string): boolean {
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c === 0x27 || c === 0x0d || c === 0x0a || c === 0x7f || (c < 0x20 && c !== 0x09)) return true;
  }
  return false;
}

function basicString(v: string): string {
  let out = '"';
  for (const ch of v) {
    const c = ch.charCodeAt(0);
    if (ch === "\\") out += "\\\\";
    else if (ch === '"') out += '\\"';
    else if (c === 0x08) out += "\\b";
    else if (c === 0x0c) out += "\\f";
    else if (c === 0x0a) out += "\\n";
    else if (c === 0x0d) out += "\\r";
    else if (c === 0x09) out += "\\t";
    else if (c < 0x20 || c === 0x7f) out += "\\u00" + c.toString(16).toUpperCase().padStart(2, "0");
    else out += ch;
  }
  return out + '"';
}

export function tomlString(v: string): string {
  return needsQuoting(v) ? basicString(v) : `'${v}'`;
}

export function tomlKey(k: string): string {
  if (k === "") return "''";
  if (/^[A-Za-z0-9_-]+$/.test(k)) return k;
  if (k.includes("'") || needsQuoting(k)) return basicString(k);
  return `'${k}'`;
}

function buildTable(fields: Field[], obj: Obj): Table {
  const table: Table = { kvs: [], tables: [] };
  for (const f of fields) {
    const v = obj[f.prop];
    if ("omitWhen" in f && f.omitWhen !== undefined && v === f.omitWhen) continue;
    switch (f.kind) {
      case "string":
        table.kvs.push([f.key, f.dumpAs ?? tomlString(v as string)]);
        break;
      case "bool":
        table.kvs.push([f.key, f.dumpAs ?? String(v as boolean)]);
        break;
      case "int":
        table.kvs.push([f.key, f.dumpAs ?? String(v as number)]);
        break;
      case "strings":
        table.kvs.push([f.key, `[${(v as string[]).map(tomlString).join(", ")}]`]);
        break;
      case "table":
        if (!f.notDumped) table.tables.push([f.key, buildTable(f.fields, v as Obj)]);
        break;
      case "map": {
        if (v === undefined) break; // a nil Go map is not written at all
        const map = v as Record<string, Obj>;
        const inner: Table = { kvs: [], tables: [] };
        for (const name of Object.keys(map).sort(compareUtf8))
          inner.tables.push([name, buildTable(f.entry, map[name]!)]);
        table.tables.push([f.key, inner]);
        break;
      }
      case "tableArray": {
        const list = v as Obj[];
        if (list.length === 0) table.kvs.push([f.key, "[]"]);
        else table.tables.push([f.key, list.map((e) => buildTable(f.entry, e))]);
        break;
      }
    }
  }
  return table;
}

const pad = (level: number): string => "  ".repeat(level);

/** Writes a table's body (key/values then sub-tables) at `indent`. */
function writeBody(out: string[], table: Table, path: string[], indent: number): void {
  for (const [k, text] of table.kvs) out.push(`${pad(indent)}${tomlKey(k)} = ${text}\n`);
  let first = true;
  for (const [k, node] of table.tables) {
    if (!first || table.kvs.length > 0) out.push("\n");
    first = false;
    const sub = [...path, k];
    const header = sub.map(tomlKey).join(".");
    if (Array.isArray(node)) {
      node.forEach((el, i) => {
        if (i > 0) out.push("\n");
        out.push(`${pad(indent)}[[${header}]]\n`);
        writeBody(out, el, sub, indent + 1);
      });
    } else {
      out.push(`${pad(indent)}[${header}]\n`);
      writeBody(out, node, sub, indent + 1);
    }
  }
}

/** TOML text of `obj` laid out by `fields` (the root table). */
export function encodeToml(fields: Field[], obj: Obj): string {
  const out: string[] = [];
  writeBody(out, buildTable(fields, obj), [], 0);
  return out.join("");
}
