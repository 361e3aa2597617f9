/** Accuracy against timestep as an SVG line chart (and PNG, rendered from it by sharp). */
import sharp from 'sharp';
import type { Summary } from './report.js';

const COLOURS = ['#1b9e77', '#d95f02', '#7570b3', '#e7298a', '#66a61e', '#e6ab02', '#a6761d'];

const escape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** The timestep the chart marks, and the legend reads its values at. */
export interface Marker {
  timesteps: number;
  label: string;
}

/**
 * Accuracy against timestep, one line per series; marks `marker` (by default the best
 * timestep on these images) and gives each series' t = 0 and marked values in the legend.
 */
export function accuracyChart(
  summary: Summary,
  title: string,
  marker: Marker = { timesteps: summary.recommended.timesteps, label: 'best here' },
): string {
  const width = 940;
  const height = 460;
  const plot = { left: 60, top: 40, right: 600, bottom: 400 };
  const series: { name: string; values: number[]; colour: string; dash?: string; bold?: boolean }[] = [
    { name: 'clean', values: summary.clean, colour: '#000000', bold: true },
    ...Object.entries(summary.corruptions).map(([name, values], k) => ({
      name,
      values,
      colour: COLOURS[k % COLOURS.length]!,
    })),
    { name: 'noise mean', values: summary.noiseMean, colour: '#444444', dash: '6 4', bold: true },
  ];
  const all = series.flatMap((s) => s.values).filter(Number.isFinite);
  const lo = Math.max(0, Math.floor(Math.min(...all) * 10) / 10);
  const hi = Math.min(1, Math.ceil(Math.max(...all) * 10) / 10);
  const T = summary.timesteps;
  const x = (t: number) => plot.left + ((plot.right - plot.left) * t) / Math.max(1, T);
  const y = (a: number) => plot.bottom - ((plot.bottom - plot.top) * (a - lo)) / Math.max(1e-9, hi - lo);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans, sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${plot.left}" y="24" font-size="15" font-weight="bold">${escape(title)}</text>`,
  ];
  for (let a = lo; a <= hi + 1e-9; a += 0.1) {
    parts.push(
      `<line x1="${plot.left}" x2="${plot.right}" y1="${y(a)}" y2="${y(a)}" stroke="#e0e0e0"/>`,
      `<text x="${plot.left - 8}" y="${y(a) + 4}" text-anchor="end">${Math.round(a * 100)}%</text>`,
    );
  }
  for (let t = 0; t <= T; t++) {
    parts.push(`<text x="${x(t)}" y="${plot.bottom + 18}" text-anchor="middle">${t}</text>`);
  }
  parts.push(
    `<line x1="${plot.left}" x2="${plot.right}" y1="${plot.bottom}" y2="${plot.bottom}" stroke="#000"/>`,
    `<line x1="${plot.left}" x2="${plot.left}" y1="${plot.top}" y2="${plot.bottom}" stroke="#000"/>`,
    `<text x="${(plot.left + plot.right) / 2}" y="${plot.bottom + 40}" text-anchor="middle">timestep</text>`,
    `<text transform="translate(16 ${(plot.top + plot.bottom) / 2}) rotate(-90)" text-anchor="middle">accuracy</text>`,
  );
  const marked = marker.timesteps;
  parts.push(
    `<line x1="${x(marked)}" x2="${x(marked)}" y1="${plot.top}" y2="${plot.bottom}" stroke="#888" stroke-dasharray="2 3"/>`,
    `<text x="${x(marked) + 4}" y="${plot.bottom - 6}" fill="#555">${escape(marker.label)}: t = ${marked}</text>`,
  );
  series.forEach((s, k) => {
    const points = s.values.map((a, t) => `${x(t).toFixed(1)},${y(a).toFixed(1)}`).join(' ');
    parts.push(
      `<polyline fill="none" stroke="${s.colour}" stroke-width="${s.bold ? 3 : 2}"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''} points="${points}"/>`,
    );
    const ly = plot.top + 10 + k * 22;
    parts.push(
      `<line x1="${plot.right + 20}" x2="${plot.right + 50}" y1="${ly}" y2="${ly}" stroke="${s.colour}" stroke-width="${s.bold ? 3 : 2}"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>`,
      `<text x="${plot.right + 58}" y="${ly + 4}">${escape(s.name)} (${(s.values[0]! * 100).toFixed(1)} → ${(s.values[marked]! * 100).toFixed(1)})</text>`,
    );
  });
  parts.push('</svg>');
  return parts.join('\n');
}

export function svgToPng(svg: string): Promise<Buffer> {
  return sharp(Buffer.from(svg)).png().toBuffer();
}
