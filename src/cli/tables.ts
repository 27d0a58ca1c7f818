// Go's text/tabwriter (elastic tabstops), byte for byte, for the reference CLI's tables: the `soci`
// list commands use `tabwriter.NewWriter(os.Stdout, 8, 8, 4, ' ', 0)` with every cell, the last
// included, terminated by a tab. Input is taken as UTF-8 bytes; cell widths are rune counts
// (`utf8.RuneCount`: each invalid byte counts as one rune). All flags are supported.
import { goDecodeRune } from "../formats/go-json.js";

/** Ignore html tags and treat entities (`&...;`) as single characters. */
export const FilterHTML = 1 << 0;
/** Strip the Escape characters bracketing escaped text segments. */
export const StripEscape = 1 << 1;
/** Right-align cell content. */
export const AlignRight = 1 << 2;
/** Drop columns that are empty and terminated only by vertical tabs. */
export const DiscardEmptyColumns = 1 << 3;
/** Pad leading empty cells with tabs regardless of padchar. */
export const TabIndent = 1 << 4;
/** Print `|` between columns. */
export const Debug = 1 << 5;

/** Bracket text with this byte to pass it through unformatted (it is not valid UTF-8). */
export const Escape = 0xff;

const TAB = 0x09;
const VTAB = 0x0b;
const NEWLINE = 0x0a;
const FORMFEED = 0x0c;
const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

interface Cell {
  /** bytes */
  size: number;
  /** runes (tags and escapes excluded) */
  width: number;
  /** terminated by a horizontal tab */
  htab: boolean;
}

function runeCount(b: Uint8Array, from: number, to: number): number {
  const s = b.subarray(from, to);
  let n = 0;
  for (let i = 0; i < s.length; n++) {
    if (s[i]! < 0x80) {
      i++;
      continue;
    }
    i += goDecodeRune(s, i)[1];
  }
  return n;
}

/** A growable byte buffer (Go's bytes.Buffer, the part tabwriter uses). */
class ByteBuf {
  bytes = new Uint8Array(256);
  length = 0;

  write(src: Uint8Array): void {
    if (this.length + src.length > this.bytes.length) {
      let cap = this.bytes.length * 2;
      while (cap < this.length + src.length) cap *= 2;
      const next = new Uint8Array(cap);
      next.set(this.bytes.subarray(0, this.length));
      this.bytes = next;
    }
    this.bytes.set(src, this.length);
    this.length += src.length;
  }

  view(from: number, to: number): Uint8Array {
    return this.bytes.subarray(from, to);
  }

  reset(): void {
    this.length = 0;
  }
}

/** `tabwriter.Writer`: `write` text, then `flush` once at the end. */
export class TabWriter {
  private readonly padbyte: number;
  private readonly flags: number;
  private readonly buf = new ByteBuf();
  private pos = 0;
  private cell: Cell = { size: 0, width: 0, htab: false };
  private endChar = 0;
  private lines: Cell[][] = [];
  private widths: number[] = [];

  /**
   * Same parameters as Go's `tabwriter.NewWriter(output, minwidth, tabwidth, padding, padchar, flags)`;
   * `output` receives the formatted bytes. A tab padchar forces left alignment.
   */
  constructor(
    private readonly output: (chunk: Uint8Array) => void,
    private readonly minwidth: number,
    private readonly tabwidth: number,
    private readonly padding: number,
    padchar: string,
    flags = 0,
  ) {
    if (minwidth < 0 || tabwidth < 0 || padding < 0) throw new RangeError("negative minwidth, tabwidth, or padding");
    const pc = padchar.charCodeAt(0);
    if (padchar.length !== 1 || pc > 0x7f) throw new RangeError("padchar must be one ASCII character");
    this.padbyte = pc;
    this.flags = pc === TAB ? flags & ~AlignRight : flags;
    this.reset();
  }

  write(data: string | Uint8Array): void {
    const buf = typeof data === "string" ? textEncoder.encode(data) : data;
    let n = 0;
    for (let i = 0; i < buf.length; i++) {
      const ch = buf[i]!;
      if (this.endChar === 0) {
        // outside escape
        if (ch === TAB || ch === VTAB || ch === NEWLINE || ch === FORMFEED) {
          // end of cell
          this.append(buf.subarray(n, i));
          this.updateWidth();
          n = i + 1;
          const ncells = this.terminateCell(ch === TAB);
          if (ch === NEWLINE || ch === FORMFEED) {
            // terminate line
            this.lines.push([]);
            if (ch === FORMFEED || ncells === 1) {
              // a one-cell line cannot influence the columns of later lines: flush
              this.flush();
              if (ch === FORMFEED && this.flags & Debug) this.output(textEncoder.encode("---\n"));
            }
          }
        } else if (ch === Escape) {
          this.append(buf.subarray(n, i));
          this.updateWidth();
          n = i;
          if (this.flags & StripEscape) n++;
          this.endChar = Escape;
        } else if ((ch === 0x3c || ch === 0x26) && this.flags & FilterHTML) {
          // possibly an html tag (<...>) or entity (&...;)
          this.append(buf.subarray(n, i));
          this.updateWidth();
          n = i;
          this.endChar = ch === 0x3c ? 0x3e : 0x3b;
        }
      } else if (ch === this.endChar) {
        // inside escape: end of tag/entity/escaped text
        let j = i + 1;
        if (ch === Escape && this.flags & StripEscape) j = i;
        this.append(buf.subarray(n, j));
        n = i + 1;
        this.endEscape();
      }
    }
    this.append(buf.subarray(n));
  }

  /** Formats and writes everything buffered; an unterminated last cell ends the last line. */
  flush(): void {
    if (this.cell.size > 0) {
      if (this.endChar !== 0) this.endEscape(); // an incomplete escape counts as complete
      this.terminateCell(false);
    }
    this.format(0, 0, this.lines.length);
    this.reset();
  }

  private reset(): void {
    this.buf.reset();
    this.pos = 0;
    this.cell = { size: 0, width: 0, htab: false };
    this.endChar = 0;
    this.lines = [[]];
    this.widths = [];
  }

  private append(text: Uint8Array): void {
    this.buf.write(text);
    this.cell.size += text.length;
  }

  private updateWidth(): void {
    this.cell.width += runeCount(this.buf.bytes, this.pos, this.buf.length);
    this.pos = this.buf.length;
  }

  private endEscape(): void {
    switch (this.endChar) {
      case Escape:
        this.updateWidth();
        if (!(this.flags & StripEscape)) this.cell.width -= 2; // the Escape bytes have no width
        break;
      case 0x3e: // tag: zero width
        break;
      case 0x3b: // entity: one rune
        this.cell.width++;
        break;
    }
    this.pos = this.buf.length;
    this.endChar = 0;
  }

  private terminateCell(htab: boolean): number {
    this.cell.htab = htab;
    const line = this.lines[this.lines.length - 1]!;
    line.push(this.cell);
    this.cell = { size: 0, width: 0, htab: false };
    return line.length;
  }

  private writePadding(textw: number, cellw: number, useTabs: boolean): void {
    if (this.padbyte === TAB || useTabs) {
      if (this.tabwidth === 0) return; // tabs have no width: no padding possible
      cellw = Math.ceil(cellw / this.tabwidth) * this.tabwidth;
      const n = cellw - textw;
      if (n < 0) throw new Error("tabwriter: internal error");
      this.output(new Uint8Array(Math.ceil(n / this.tabwidth)).fill(TAB));
      return;
    }
    if (cellw > textw) this.output(new Uint8Array(cellw - textw).fill(this.padbyte));
  }

  private writeLines(pos0: number, line0: number, line1: number): number {
    let pos = pos0;
    for (let i = line0; i < line1; i++) {
      const line = this.lines[i]!;
      let useTabs = (this.flags & TabIndent) !== 0;
      for (let j = 0; j < line.length; j++) {
        const c = line[j]!;
        if (j > 0 && this.flags & Debug) this.output(textEncoder.encode("|"));
        if (c.size === 0) {
          if (j < this.widths.length) this.writePadding(c.width, this.widths[j]!, useTabs);
        } else {
          useTabs = false;
          if (!(this.flags & AlignRight)) {
            this.output(this.buf.view(pos, pos + c.size).slice());
            pos += c.size;
            if (j < this.widths.length) this.writePadding(c.width, this.widths[j]!, false);
          } else {
            if (j < this.widths.length) this.writePadding(c.width, this.widths[j]!, false);
            this.output(this.buf.view(pos, pos + c.size).slice());
            pos += c.size;
          }
        }
      }
      if (i + 1 === this.lines.length) {
        // last buffered line: no newline, just the outstanding text
        this.output(this.buf.view(pos, pos + this.cell.size).slice());
        pos += this.cell.size;
      } else {
        this.output(new Uint8Array([NEWLINE]));
      }
    }
    return pos;
  }

  private format(pos0: number, line0: number, line1: number): number {
    let pos = pos0;
    const column = this.widths.length;
    for (let cur = line0; cur < line1; cur++) {
      let line = this.lines[cur]!;
      if (column >= line.length - 1) continue;
      // a cell exists in this column: lines before it are complete
      pos = this.writeLines(pos, line0, cur);
      line0 = cur;
      // column block: consecutive lines with a cell in this column
      let width = this.minwidth;
      let discardable = true;
      for (; cur < line1; cur++) {
        line = this.lines[cur]!;
        if (column >= line.length - 1) break;
        const c = line[column]!;
        const w = c.width + this.padding;
        if (w > width) width = w;
        if (c.width > 0 || c.htab) discardable = false;
      }
      if (discardable && this.flags & DiscardEmptyColumns) width = 0;
      // format the columns to the right, now that this column's width is known
      this.widths.push(width);
      pos = this.format(pos, line0, cur);
      this.widths.pop();
      line0 = cur;
    }
    return this.writeLines(pos, line0, line1);
  }
}

/** Collects a TabWriter's output. */
export class TextSink {
  private readonly chunks: Uint8Array[] = [];
  readonly write = (chunk: Uint8Array): void => {
    if (chunk.length > 0) this.chunks.push(chunk);
  };

  bytes(): Uint8Array {
    return Buffer.concat(this.chunks);
  }

  text(): string {
    return textDecoder.decode(this.bytes());
  }
}

/** `tabwriter.NewWriter(w, 8, 8, 4, ' ', 0)`, the layout of every `soci` list table. */
export function sociTableWriter(output: (chunk: Uint8Array) => void): TabWriter {
  return new TabWriter(output, 8, 8, 4, " ", 0);
}

/**
 * Formats rows the way the soci list commands write them: each row is `cell\t...cell\t\n` (every
 * cell tab-terminated), through `sociTableWriter`. Returns the table text.
 */
export function formatSociTable(rows: readonly (readonly string[])[]): string {
  const sink = new TextSink();
  const w = sociTableWriter(sink.write);
  for (const row of rows) w.write(row.map((c) => c + "\t").join("") + "\n");
  w.flush();
  return sink.text();
}
