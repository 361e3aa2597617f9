/** Accuracy against timestep as an SVG line chart (and PNG, rendered from it). */
export { svgToPng } from '../image/codecs.js';
import type { SettleRule } from '../engine/settling.js';
import { ruleName, sameRule, type AnytimeRow } from './anytime.js';
import type { Summary } from './report.js';
import type { SignalRow } from './signal.js';

export const COLOURS = ['#1b9e77', '#d95f02', '#7570b3', '#e7298a', '#66a61e', '#e6ab02', '#a6761d'];

const escape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** A chart's opening: the SVG element, a white background and the title. */
function svgHead(width: number, height: number, left: number, title: string): string[] {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans, sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${left}" y="24" font-size="15" font-weight="bold">${escape(title)}</text>`,
  ];
}

/**
 * A series' legend: its accuracy at t = 0 and at the marked timestep, each named, and its best
 * where that is neither (a line that rises and falls back is not read as flat).
 */
function legend(name: string, values: readonly number[], marked: number): string {
  const pct = (v: number) => (v * 100).toFixed(1);
  let best = 0;
  values.forEach((v, t) => {
    if (v > values[best]!) best = t;
  });
  const peak =
    values[best]! > Math.max(values[0]!, values[marked]!) ? `, best ${pct(values[best]!)} at t=${best}` : '';
  return `${name} (t=0 ${pct(values[0]!)}, t=${marked} ${pct(values[marked]!)}${peak})`;
}

/** A marker's label beside its line, on the side with room, so that it is never cut off. */
function markerLabel(at: number, y: number, plot: { left: number; right: number }, text: string): string {
  const right = at > plot.left + 0.6 * (plot.right - plot.left);
  return `<text x="${right ? at - 4 : at + 4}" y="${y}" fill="#555"${right ? ' text-anchor="end"' : ''}>${escape(text)}</text>`;
}

/** The timestep the chart marks, and the legend reads its values at. */
export interface Marker {
  timesteps: number;
  label: string;
}

/**
 * Accuracy against timestep: clean, each corruption family and the mean over every corruption
 * condition; marks `marker` (by default the best
 * timestep on these images) and gives each series' t = 0 and marked values in the legend.
 */
export function accuracyChart(
  summary: Summary,
  title: string,
  marker: Marker = { timesteps: summary.recommended.timesteps, label: 'best here' },
): string {
  const series: Series[] = [
    { name: 'clean', values: summary.clean, colour: '#000000', bold: true },
    ...Object.entries(summary.families).map(([name, values], k) => ({
      name: `${name} (family)`,
      values,
      colour: COLOURS[k % COLOURS.length]!,
    })),
    { name: 'corrupted mean', values: summary.corruptedMean, colour: '#444444', dash: '6 4', bold: true },
  ];
  return lineChart(series, summary.timesteps, title, marker);
}

export interface Series {
  name: string;
  values: number[];
  colour: string;
  dash?: string;
  bold?: boolean;
}

/** Accuracy against timestep for any series, with a marked timestep and a legend of values. */
export function lineChart(series: readonly Series[], T: number, title: string, marker: Marker): string {
  const width = 940;
  const height = 460;
  const plot = { left: 60, top: 40, right: 600, bottom: 400 };
  const all = series.flatMap((s) => s.values).filter(Number.isFinite);
  const lo = Math.max(0, Math.floor(Math.min(...all) * 10) / 10);
  const hi = Math.min(1, Math.ceil(Math.max(...all) * 10) / 10);
  const x = (t: number) => plot.left + ((plot.right - plot.left) * t) / Math.max(1, T);
  const y = (a: number) => plot.bottom - ((plot.bottom - plot.top) * (a - lo)) / Math.max(1e-9, hi - lo);
  const parts: string[] = [...svgHead(width, height, plot.left, title)];
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
    markerLabel(x(marked), plot.bottom - 6, plot, `${marker.label}: t = ${marked}`),
  );
  series.forEach((s, k) => {
    const points = s.values.map((a, t) => `${x(t).toFixed(1)},${y(a).toFixed(1)}`).join(' ');
    parts.push(
      `<polyline fill="none" stroke="${s.colour}" stroke-width="${s.bold ? 3 : 2}"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''} points="${points}"/>`,
    );
    const ly = plot.top + 10 + k * 22;
    parts.push(
      `<line x1="${plot.right + 20}" x2="${plot.right + 50}" y1="${ly}" y2="${ly}" stroke="${s.colour}" stroke-width="${s.bold ? 3 : 2}"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>`,
      `<text x="${plot.right + 58}" y="${ly + 4}">${escape(legend(s.name, s.values, marked))}</text>`,
    );
  });
  parts.push('</svg>');
  return parts.join('\n');
}

/**
 * mCE(t) / mCE(0) against timestep with its 95% bootstrap interval as a band, and the line at
 * 1 (no change from the feedforward answer).
 */
export function mceChart(
  relative: readonly number[],
  interval: readonly (readonly [number, number])[],
  title: string,
  marker?: Marker,
): string {
  const width = 720;
  const height = 420;
  const plot = { left: 70, top: 40, right: 690, bottom: 360 };
  const finite = [...relative, ...interval.flat(), 1].filter(Number.isFinite);
  const step = 0.01;
  const lo = Math.floor(Math.min(...finite) / step) * step;
  const hi = Math.ceil(Math.max(...finite) / step) * step + step;
  const T = relative.length - 1;
  const x = (t: number) => plot.left + ((plot.right - plot.left) * t) / Math.max(1, T);
  const y = (v: number) => plot.bottom - ((plot.bottom - plot.top) * (v - lo)) / Math.max(1e-9, hi - lo);
  const parts: string[] = [...svgHead(width, height, plot.left, title)];
  const ticks = Math.max(1, Math.round((hi - lo) / step / 8));
  for (let k = 0; lo + k * step <= hi + 1e-9; k += ticks) {
    const v = lo + k * step;
    parts.push(
      `<line x1="${plot.left}" x2="${plot.right}" y1="${y(v)}" y2="${y(v)}" stroke="#e0e0e0"/>`,
      `<text x="${plot.left - 8}" y="${y(v) + 4}" text-anchor="end">${(v * 100).toFixed(0)}%</text>`,
    );
  }
  for (let t = 0; t <= T; t++)
    parts.push(`<text x="${x(t)}" y="${plot.bottom + 18}" text-anchor="middle">${t}</text>`);
  const band = interval.every(([a, b]) => Number.isFinite(a) && Number.isFinite(b));
  if (band) {
    const upper = interval.map(([, b], t) => `${x(t).toFixed(1)},${y(b).toFixed(1)}`);
    const lower = interval.map(([a], t) => `${x(t).toFixed(1)},${y(a).toFixed(1)}`).reverse();
    parts.push(
      `<polygon fill="#1b9e77" fill-opacity="0.2" stroke="none" points="${[...upper, ...lower].join(' ')}"/>`,
    );
  }
  parts.push(
    `<line x1="${plot.left}" x2="${plot.right}" y1="${y(1)}" y2="${y(1)}" stroke="#b30006" stroke-dasharray="6 4"/>`,
    `<polyline fill="none" stroke="#1b9e77" stroke-width="3" points="${relative.map((v, t) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(' ')}"/>`,
    `<line x1="${plot.left}" x2="${plot.right}" y1="${plot.bottom}" y2="${plot.bottom}" stroke="#000"/>`,
    `<line x1="${plot.left}" x2="${plot.left}" y1="${plot.top}" y2="${plot.bottom}" stroke="#000"/>`,
    `<text x="${(plot.left + plot.right) / 2}" y="${plot.bottom + 40}" text-anchor="middle">timestep</text>`,
    `<text transform="translate(18 ${(plot.top + plot.bottom) / 2}) rotate(-90)" text-anchor="middle">mCE(t) / mCE(0)${band ? ', 95% bootstrap interval' : ''}</text>`,
  );
  if (marker)
    parts.push(
      `<line x1="${x(marker.timesteps)}" x2="${x(marker.timesteps)}" y1="${plot.top}" y2="${plot.bottom}" stroke="#888" stroke-dasharray="2 3"/>`,
      markerLabel(
        x(marker.timesteps),
        plot.top + 14,
        plot,
        `${marker.label}: t = ${marker.timesteps} (${((relative[marker.timesteps] ?? NaN) * 100).toFixed(1)}%)`,
      ),
    );
  parts.push('</svg>');
  return parts.join('\n');
}

/**
 * Anytime answers against fixed timesteps: accuracy against the mean timesteps used, clean
 * and noise mean side by side; fixed T as a line, each rule as a point, `marked` (the
 * profile's rule) drawn larger.
 */
export function anytimeChart(
  rows: { fixed: AnytimeRow[]; auto: AnytimeRow[] },
  marked: SettleRule,
  title: string,
): string {
  const width = 940;
  const height = 460;
  const cap = rows.fixed.length - 1;
  const panels = [
    { name: 'clean', at: (r: AnytimeRow) => ({ t: r.clean.meanTimesteps, a: r.clean.accuracy }), left: 60 },
    {
      name: 'corrupted mean',
      at: (r: AnytimeRow) => ({ t: r.corrupted.meanTimesteps, a: r.corrupted.accuracy }),
      left: 520,
    },
  ];
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans, sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="60" y="24" font-size="15" font-weight="bold">${escape(title)}</text>`,
  ];
  const isMarked = (r: AnytimeRow) => r.rule !== undefined && sameRule(r.rule, marked);
  for (const panel of panels) {
    const plot = { left: panel.left, right: panel.left + 380, top: 50, bottom: 390 };
    const points = [...rows.fixed, ...rows.auto].map(panel.at);
    const lo = Math.floor(Math.min(...points.map((p) => p.a)) * 100) / 100;
    const hi = Math.ceil(Math.max(...points.map((p) => p.a)) * 100) / 100;
    const step = hi - lo > 0.1 ? 0.02 : hi - lo > 0.04 ? 0.01 : 0.005;
    const x = (t: number) => plot.left + ((plot.right - plot.left) * t) / Math.max(1, cap);
    const y = (a: number) => plot.bottom - ((plot.bottom - plot.top) * (a - lo)) / Math.max(1e-9, hi - lo);
    parts.push(
      `<text x="${plot.left}" y="${plot.top - 10}" font-weight="bold">${panel.name}</text>`,
      `<line x1="${plot.left}" x2="${plot.right}" y1="${plot.bottom}" y2="${plot.bottom}" stroke="#000"/>`,
      `<line x1="${plot.left}" x2="${plot.left}" y1="${plot.top}" y2="${plot.bottom}" stroke="#000"/>`,
      `<text x="${(plot.left + plot.right) / 2}" y="${plot.bottom + 36}" text-anchor="middle">mean timesteps used</text>`,
    );
    for (let a = lo; a <= hi + 1e-9; a += step) {
      parts.push(
        `<line x1="${plot.left}" x2="${plot.right}" y1="${y(a)}" y2="${y(a)}" stroke="#e8e8e8"/>`,
        `<text x="${plot.left - 6}" y="${y(a) + 4}" text-anchor="end">${(a * 100).toFixed(1)}%</text>`,
      );
    }
    for (let t = 0; t <= cap; t++)
      parts.push(`<text x="${x(t)}" y="${plot.bottom + 16}" text-anchor="middle">${t}</text>`);
    const line = rows.fixed.map(panel.at);
    parts.push(
      `<polyline fill="none" stroke="#444" stroke-width="2" points="${line.map((p) => `${x(p.t).toFixed(1)},${y(p.a).toFixed(1)}`).join(' ')}"/>`,
      ...line.map((p) => `<circle cx="${x(p.t).toFixed(1)}" cy="${y(p.a).toFixed(1)}" r="2.5" fill="#444"/>`),
    );
    for (const r of rows.auto) {
      const p = panel.at(r);
      parts.push(
        isMarked(r)
          ? `<circle cx="${x(p.t).toFixed(1)}" cy="${y(p.a).toFixed(1)}" r="6" fill="#d95f02" stroke="#000"/>`
          : `<circle cx="${x(p.t).toFixed(1)}" cy="${y(p.a).toFixed(1)}" r="3.5" fill="none" stroke="#1b9e77" stroke-width="1.5"/>`,
      );
    }
  }
  const ly = height - 24;
  parts.push(
    `<line x1="60" x2="90" y1="${ly}" y2="${ly}" stroke="#444" stroke-width="2"/><text x="96" y="${ly + 4}">fixed T = 0..${cap}</text>`,
    `<circle cx="230" cy="${ly}" r="3.5" fill="none" stroke="#1b9e77" stroke-width="1.5"/><text x="240" y="${ly + 4}">auto, each rule tried</text>`,
    `<circle cx="400" cy="${ly}" r="6" fill="#d95f02" stroke="#000"/><text x="412" y="${ly + 4}">${escape(`auto, the profile's rule (${ruleName(marked)})`)}</text>`,
    '</svg>',
  );
  return parts.join('\n');
}

/** AUROC against severity, per corruption: the score solid, the baseline dashed, in one colour. */
export function signalChart(rows: readonly SignalRow[], title: string): string {
  const width = 940;
  const height = 460;
  const plot = { left: 60, top: 40, right: 600, bottom: 400 };
  const corruptions = [...new Set(rows.map((r) => r.corruption))];
  const severities = [...new Set(rows.map((r) => r.severity))].sort((a, b) => a - b);
  const all = rows.flatMap((r) => [r.score, r.baseline]);
  const lo = Math.min(0.5, Math.floor(Math.min(...all) * 10) / 10);
  const x = (s: number) =>
    plot.left +
    ((plot.right - plot.left) * (s - severities[0]!)) / Math.max(1, severities.at(-1)! - severities[0]!);
  const y = (a: number) => plot.bottom - ((plot.bottom - plot.top) * (a - lo)) / (1 - lo);
  const parts: string[] = [...svgHead(width, height, plot.left, title)];
  for (let a = lo; a <= 1 + 1e-9; a += 0.1) {
    parts.push(
      `<line x1="${plot.left}" x2="${plot.right}" y1="${y(a)}" y2="${y(a)}" stroke="#e0e0e0"/>`,
      `<text x="${plot.left - 8}" y="${y(a) + 4}" text-anchor="end">${a.toFixed(1)}</text>`,
    );
  }
  for (const s of severities)
    parts.push(`<text x="${x(s)}" y="${plot.bottom + 18}" text-anchor="middle">${s}</text>`);
  parts.push(
    `<line x1="${plot.left}" x2="${plot.right}" y1="${plot.bottom}" y2="${plot.bottom}" stroke="#000"/>`,
    `<line x1="${plot.left}" x2="${plot.left}" y1="${plot.top}" y2="${plot.bottom}" stroke="#000"/>`,
    `<text x="${(plot.left + plot.right) / 2}" y="${plot.bottom + 40}" text-anchor="middle">severity</text>`,
    `<text transform="translate(16 ${(plot.top + plot.bottom) / 2}) rotate(-90)" text-anchor="middle">AUROC against clean</text>`,
  );
  corruptions.forEach((c, k) => {
    const colour = COLOURS[k % COLOURS.length]!;
    const of = severities.map((s) => rows.find((r) => r.corruption === c && r.severity === s)!);
    const line = (pick: (r: SignalRow) => number, dash: string) =>
      `<polyline fill="none" stroke="${colour}" stroke-width="2"${dash} points="${of.map((r) => `${x(r.severity).toFixed(1)},${y(pick(r)).toFixed(1)}`).join(' ')}"/>`;
    parts.push(
      line((r) => r.score, ''),
      line((r) => r.baseline, ' stroke-dasharray="6 4"'),
    );
    const ly = plot.top + 10 + k * 22;
    parts.push(
      `<line x1="${plot.right + 20}" x2="${plot.right + 50}" y1="${ly}" y2="${ly}" stroke="${colour}" stroke-width="2"/>`,
      `<text x="${plot.right + 58}" y="${ly + 4}">${escape(c)}</text>`,
    );
  });
  const ly = plot.top + 10 + corruptions.length * 22 + 12;
  parts.push(
    `<line x1="${plot.right + 20}" x2="${plot.right + 50}" y1="${ly}" y2="${ly}" stroke="#444" stroke-width="2"/><text x="${plot.right + 58}" y="${ly + 4}">corruption score</text>`,
    `<line x1="${plot.right + 20}" x2="${plot.right + 50}" y1="${ly + 22}" y2="${ly + 22}" stroke="#444" stroke-width="2" stroke-dasharray="6 4"/><text x="${plot.right + 58}" y="${ly + 26}">baseline: 1 − confidence at t = 0</text>`,
    '</svg>',
  );
  return parts.join('\n');
}
