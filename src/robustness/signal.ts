/** Telling corrupted inputs from clean ones by a score: the measures npm run eval:signal reports. */
import { softmax } from '../engine/results.js';
import { FAMILY_OF, type Corruption } from './imagenet-c/index.js';
import { mean } from './report.js';

/** The q-quantile (0..1) of values, by linear interpolation between the nearest ranks. */
export function quantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (sorted.length - 1) * q;
  const lo = Math.floor(at);
  const hi = Math.ceil(at);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (at - lo);
}

/**
 * The area under the ROC curve for telling `positive` scores from `negative` ones: the chance
 * that a random positive scores above a random negative, ties counting a half.
 */
export function auroc(negative: readonly number[], positive: readonly number[]): number {
  const all = [
    ...negative.map((v) => ({ v, positive: false })),
    ...positive.map((v) => ({ v, positive: true })),
  ].sort((a, b) => a.v - b.v);
  // Mann-Whitney U from midranks: O(n log n) rather than comparing every pair.
  let rankSum = 0;
  for (let k = 0; k < all.length;) {
    let end = k;
    while (end + 1 < all.length && all[end + 1]!.v === all[k]!.v) end++;
    const midrank = (k + end) / 2 + 1;
    for (let j = k; j <= end; j++) if (all[j]!.positive) rankSum += midrank;
    k = end + 1;
  }
  const p = positive.length;
  return (rankSum - (p * (p + 1)) / 2) / (p * negative.length);
}

/** The baseline every score must beat: one minus the softmax confidence at t = 0. */
export function unconfidence(logits: ArrayLike<number>): number {
  return 1 - Math.max(...softmax(logits));
}

/** One corruption and severity: each signal's AUROC against the clean images. */
export interface SignalRow {
  corruption: string;
  severity: number;
  score: number;
  baseline: number;
}

/** The AUROC table, severity by severity, and which signal wins on each noise on average. */
export function signalMarkdown(rows: readonly SignalRow[], title: string): string {
  const corruptions = [...new Set(rows.map((r) => r.corruption))];
  const severities = [...new Set(rows.map((r) => r.severity))].sort((a, b) => a - b);
  const cell = (score: number, baseline: number) =>
    score > baseline
      ? `**${score.toFixed(3)}** / ${baseline.toFixed(3)}`
      : `${score.toFixed(3)} / **${baseline.toFixed(3)}**`;
  const lines = corruptions.map((c) => {
    const of = rows.filter((r) => r.corruption === c);
    const at = severities.map((s) => of.find((r) => r.severity === s)!);
    return `| ${c} | ${at.map((r) => cell(r.score, r.baseline)).join(' | ')} | ${cell(mean(of.map((r) => r.score)), mean(of.map((r) => r.baseline)))} |`;
  });
  const noise = rows.filter((r) => FAMILY_OF[r.corruption as Corruption] === 'noise');
  return [
    `## ${title}`,
    '',
    'AUROC, corruption score / baseline (one minus the softmax confidence at t = 0); the better in bold. 0.5 is chance, 1 tells every corrupted image from every clean one.',
    '',
    `| | ${severities.map((s) => `severity ${s}`).join(' | ')} | mean |`,
    `|---|${severities.map(() => '---:').join('|')}|---:|`,
    ...lines,
    `| **noise family mean** | ${severities
      .map((s) => {
        const at = noise.filter((r) => r.severity === s);
        return cell(mean(at.map((r) => r.score)), mean(at.map((r) => r.baseline)));
      })
      .join(' | ')} | ${cell(mean(noise.map((r) => r.score)), mean(noise.map((r) => r.baseline)))} |`,
    '',
  ].join('\n');
}
