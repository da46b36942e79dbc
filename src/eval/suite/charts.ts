/**
 * Small inline SVG charts for `report.html`, written by hand so the report is one self-contained file
 * that opens offline: horizontal bars, line curves and histograms. Every label goes through
 * {@link escapeHtml}; numbers are formatted here, never taken as markup.
 */

/** Text made safe for HTML element content and quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"'`]/gu, (character) => `&#${character.charCodeAt(0)};`);
}

const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563"];

const fmt = (value: number, digits = 2) => (Number.isFinite(value) ? value.toFixed(digits) : "–");

/** Horizontal bars of values in 0–1, one per label, with the value and a count written beside each. */
export function barChart({
  bars,
  title,
  width = 520,
}: {
  bars: ReadonlyArray<{ label: string; value: number; note?: string }>;
  title: string;
  width?: number;
}): string {
  const rowHeight = 24;
  const labelWidth = 130;
  const plotWidth = width - labelWidth - 110;
  const height = bars.length * rowHeight + 36;
  const rows = bars
    .map((bar, index) => {
      const y = 28 + index * rowHeight;
      const length = Math.max(0, Math.min(1, bar.value)) * plotWidth;
      return [
        `<text x="${labelWidth - 8}" y="${y + 14}" text-anchor="end">${escapeHtml(bar.label)}</text>`,
        `<rect x="${labelWidth}" y="${y + 2}" width="${fmt(length, 1)}" height="${rowHeight - 8}" fill="${PALETTE[0]}"><title>${escapeHtml(bar.label)}: ${fmt(bar.value, 3)}</title></rect>`,
        `<text x="${labelWidth + length + 6}" y="${y + 14}">${fmt(bar.value, 3)}${bar.note === undefined ? "" : ` ${escapeHtml(bar.note)}`}</text>`,
      ].join("");
    })
    .join("");
  return `<svg role="img" aria-label="${escapeHtml(title)}" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" class="chart"><text x="4" y="16" class="title">${escapeHtml(title)}</text><line x1="${labelWidth}" y1="26" x2="${labelWidth}" y2="${height - 6}" stroke="#999"/>${rows}</svg>`;
}

/** Curves of values in 0–1 over shared x values (recall@k over k), one colour per series, with a legend. */
export function lineChart({
  series,
  title,
  xLabel,
  width = 520,
  height = 260,
}: {
  series: ReadonlyArray<{ name: string; points: ReadonlyArray<{ x: number; y: number }> }>;
  title: string;
  xLabel: string;
  width?: number;
  height?: number;
}): string {
  const left = 40;
  const right = 150;
  const top = 28;
  const bottom = 36;
  const xs = series.flatMap((entry) => entry.points.map((point) => point.x));
  const minX = Math.min(...xs, 1);
  const maxX = Math.max(...xs, minX + 1);
  const plotWidth = width - left - right;
  const plotHeight = height - top - bottom;
  const px = (x: number) => left + ((x - minX) / (maxX - minX)) * plotWidth;
  const py = (y: number) => top + (1 - Math.max(0, Math.min(1, y))) * plotHeight;
  const grid = [0, 0.25, 0.5, 0.75, 1]
    .map(
      (y) =>
        `<line x1="${left}" y1="${fmt(py(y), 1)}" x2="${left + plotWidth}" y2="${fmt(py(y), 1)}" stroke="#e5e7eb"/><text x="${left - 6}" y="${fmt(py(y) + 4, 1)}" text-anchor="end">${fmt(y, 2)}</text>`,
    )
    .join("");
  const ticks = [...new Set(xs)]
    .sort((a, b) => a - b)
    .map((x) => `<text x="${fmt(px(x), 1)}" y="${height - bottom + 16}" text-anchor="middle">${x}</text>`)
    .join("");
  const lines = series
    .map((entry, index) => {
      const colour = PALETTE[index % PALETTE.length];
      const path = entry.points.map((point) => `${fmt(px(point.x), 1)},${fmt(py(point.y), 1)}`).join(" ");
      const dots = entry.points
        .map(
          (point) =>
            `<circle cx="${fmt(px(point.x), 1)}" cy="${fmt(py(point.y), 1)}" r="3" fill="${colour}"><title>${escapeHtml(entry.name)} @${point.x}: ${fmt(point.y, 3)}</title></circle>`,
        )
        .join("");
      const legendY = top + 10 + index * 18;
      return `<polyline points="${path}" fill="none" stroke="${colour}" stroke-width="2"/>${dots}<rect x="${width - right + 12}" y="${legendY - 9}" width="10" height="10" fill="${colour}"/><text x="${width - right + 26}" y="${legendY}">${escapeHtml(entry.name)}</text>`;
    })
    .join("");
  return `<svg role="img" aria-label="${escapeHtml(title)}" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" class="chart"><text x="4" y="16" class="title">${escapeHtml(title)}</text>${grid}${ticks}<text x="${left + plotWidth / 2}" y="${height - 4}" text-anchor="middle">${escapeHtml(xLabel)}</text>${lines}</svg>`;
}

/** Bins of a histogram: `bins` equal widths from 0 to the largest value. */
export function histogramBins({
  values,
  bins = 12,
}: {
  values: readonly number[];
  bins?: number;
}): Array<{ from: number; to: number; count: number }> {
  const max = values.reduce((most, value) => Math.max(most, value), 0);
  const width = max > 0 ? max / bins : 1;
  const counts = Array.from({ length: bins }, (_unused, index) => ({
    from: index * width,
    to: (index + 1) * width,
    count: 0,
  }));
  for (const value of values) {
    const index = Math.min(bins - 1, Math.max(0, Math.floor(value / width)));
    (counts[index] as { count: number }).count += 1;
  }
  return counts;
}

/** A histogram of millisecond values, with p50 and p95 marked. */
export function histogramChart({
  values,
  title,
  p50,
  p95,
  width = 320,
  height = 170,
}: {
  values: readonly number[];
  title: string;
  p50: number;
  p95: number;
  width?: number;
  height?: number;
}): string {
  const bins = histogramBins({ values });
  const left = 30;
  const top = 28;
  const bottom = 30;
  const plotWidth = width - left - 10;
  const plotHeight = height - top - bottom;
  const most = bins.reduce((peak, bin) => Math.max(peak, bin.count), 1);
  const max = bins.at(-1)?.to ?? 1;
  const barWidth = plotWidth / bins.length;
  const px = (ms: number) => left + (ms / max) * plotWidth;
  const bars = bins
    .map((bin, index) => {
      const barHeight = (bin.count / most) * plotHeight;
      return `<rect x="${fmt(left + index * barWidth + 1, 1)}" y="${fmt(top + plotHeight - barHeight, 1)}" width="${fmt(barWidth - 2, 1)}" height="${fmt(barHeight, 1)}" fill="${PALETTE[5]}"><title>${fmt(bin.from, 1)}–${fmt(bin.to, 1)} ms: ${bin.count}</title></rect>`;
    })
    .join("");
  const marker = (ms: number, label: string, colour: string) =>
    `<line x1="${fmt(px(ms), 1)}" y1="${top}" x2="${fmt(px(ms), 1)}" y2="${top + plotHeight}" stroke="${colour}" stroke-dasharray="3 2"/><text x="${fmt(px(ms) + 3, 1)}" y="${top + 10}" fill="${colour}">${label}</text>`;
  return `<svg role="img" aria-label="${escapeHtml(title)}" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" class="chart"><text x="4" y="16" class="title">${escapeHtml(title)} (n=${values.length}, p50 ${fmt(p50, 1)} ms, p95 ${fmt(p95, 1)} ms)</text>${bars}<text x="${left}" y="${height - 8}">0</text><text x="${left + plotWidth}" y="${height - 8}" text-anchor="end">${fmt(max, 0)} ms</text><text x="4" y="${top + 10}">${most}</text>${marker(p50, "p50", PALETTE[2] as string)}${marker(p95, "p95", PALETTE[1] as string)}</svg>`;
}
