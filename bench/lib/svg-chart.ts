// A hand-written SVG bar chart (no dependency): groups of horizontal bars on a shared scale per
// panel, a value label at the end of each bar, and a legend.
export interface ChartPanel {
  title: string;
  unit: string;
  /** Group label → one value per series (same order as `series`). */
  groups: Array<{ label: string; values: number[]; note?: string }>;
  /** Digits after the decimal point in value labels. */
  digits?: number;
}

export interface Chart {
  title: string;
  subtitle?: string;
  series: Array<{ name: string; color: string }>;
  panels: ChartPanel[];
}

const esc = (s: string): string =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

export function barChartSvg(chart: Chart): string {
  const width = 860;
  const labelW = 150;
  const barH = 18;
  const gap = 4;
  const groupGap = 14;
  const plotW = width - labelW - 120;
  const out: string[] = [];
  let y = 30;
  out.push(`<text x="16" y="${y}" font-size="18" font-weight="bold">${esc(chart.title)}</text>`);
  if (chart.subtitle) {
    y += 20;
    out.push(`<text x="16" y="${y}" font-size="12" fill="#555">${esc(chart.subtitle)}</text>`);
  }
  y += 22;
  let lx = 16;
  for (const s of chart.series) {
    out.push(
      `<rect x="${lx}" y="${y - 11}" width="14" height="14" fill="${s.color}"/>`,
      `<text x="${lx + 20}" y="${y}" font-size="13">${esc(s.name)}</text>`,
    );
    lx += 30 + s.name.length * 7.5;
  }
  for (const panel of chart.panels) {
    y += 34;
    out.push(`<text x="16" y="${y}" font-size="15" font-weight="bold">${esc(panel.title)}</text>`);
    y += 12;
    const max = Math.max(...panel.groups.flatMap((g) => g.values), 1e-9);
    const top = y;
    for (const g of panel.groups) {
      const h = g.values.length * (barH + gap) - gap;
      out.push(`<text x="${labelW - 10}" y="${y + h / 2 + 5}" font-size="13" text-anchor="end">${esc(g.label)}</text>`);
      if (g.note)
        out.push(
          `<text x="${labelW - 10}" y="${y + h / 2 + 19}" font-size="11" fill="#555" text-anchor="end">${esc(g.note)}</text>`,
        );
      g.values.forEach((v, i) => {
        const w = Math.max(1, (v / max) * plotW);
        const by = y + i * (barH + gap);
        out.push(
          `<rect x="${labelW}" y="${by}" width="${w.toFixed(1)}" height="${barH}" fill="${chart.series[i]!.color}"/>`,
        );
        out.push(
          `<text x="${(labelW + w + 6).toFixed(1)}" y="${by + barH - 4}" font-size="12">${v.toFixed(panel.digits ?? 1)} ${esc(panel.unit)}</text>`,
        );
      });
      y += h + groupGap;
    }
    out.push(`<line x1="${labelW}" y1="${top - 4}" x2="${labelW}" y2="${y - groupGap + 4}" stroke="#333"/>`);
  }
  y += 10;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}" viewBox="0 0 ${width} ${y}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    ...out,
    "</svg>",
    "",
  ].join("\n");
}
