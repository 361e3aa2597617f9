/**
 * What a study reports: accuracy per corruption, family and timestep, corruption error
 * relative to t = 0, and the timestep to recommend: the best mean accuracy under corruption
 * that keeps clean accuracy within a margin and costs no family anything against t = 0.
 */
import { FAMILIES, FAMILY_OF, type Corruption, type Family } from './imagenet-c/index.js';
import { conditionName, type ConditionResult } from './evaluate.js';
import { meanCorruptionError } from './mce.js';

export interface Summary {
  timesteps: number;
  /** images per corruption condition (the fewest of any) */
  images: number;
  /** images of the clean condition, which may be more: its constraint is a fine margin */
  cleanImages: number;
  /** standard error (points) of the clean change from t = 0, per t */
  cleanChangeSE: number[];
  clean: number[];
  /** per corruption, accuracy at t averaged over its severities */
  corruptions: Partial<Record<Corruption, number[]>>;
  /** per family, accuracy at t averaged over its corruptions' conditions */
  families: Partial<Record<Family, number[]>>;
  /** accuracy at t averaged over every corruption condition */
  corruptedMean: number[];
  /** mCE(t) over the benchmark corruptions studied (errors summed over severities) */
  mce: number[];
  /** mCE(t) / mCE(0), the paper's measure: below 1, the dynamics help */
  relativeMCE: number[];
  recommended: Recommendation;
}

export interface Recommendation {
  timesteps: number;
  /** mean accuracy gain under corruption over t = 0, in points */
  gain: number;
  /** clean accuracy change from t = 0, in points */
  cleanChange: number;
  /** each family's change from t = 0, in points */
  families: Partial<Record<Family, number>>;
  /** iterating only inputs whose largest z of ln e_i(0) is above this (settling.ts); absent: all */
  gate?: number;
}

export const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

export interface RecommendOptions {
  /** points of clean accuracy a timestep may lose against t = 0: one for every t, or one per t */
  cleanTolerance?: number | readonly number[];
  /** points a family's mean may lose against its t = 0 (default 0: none) */
  familyTolerance?: number;
}

/**
 * The timestep with the best mean accuracy under corruption among those whose clean accuracy
 * stays within the tolerance of t = 0 and where no family's mean falls below its own t = 0;
 * the smallest such t on ties (fewer steps cost less); t = 0 when none qualifies.
 */
export function recommend(
  clean: readonly number[],
  corruptedMean: readonly number[],
  families: Partial<Record<Family, readonly number[]>> = {},
  options: RecommendOptions = {},
): Recommendation {
  const { cleanTolerance = 0.5, familyTolerance = 0 } = options;
  const tolerance = (t: number) => (typeof cleanTolerance === 'number' ? cleanTolerance : cleanTolerance[t]!);
  const curves = Object.values(families);
  let best = 0;
  for (let t = 1; t < corruptedMean.length; t++) {
    // (1e-9: a change of exactly the tolerance, e.g. one image in 200, must pass despite rounding)
    const keepsClean = (clean[t]! - clean[0]!) * 100 >= -tolerance(t) - 1e-9;
    const keepsFamilies = curves.every((f) => (f[t]! - f[0]!) * 100 >= -familyTolerance - 1e-9);
    if (keepsClean && keepsFamilies && corruptedMean[t]! > corruptedMean[best]! + 1e-12) best = t;
  }
  return {
    timesteps: best,
    gain: (corruptedMean[best]! - corruptedMean[0]!) * 100,
    cleanChange: (clean[best]! - clean[0]!) * 100,
    families: Object.fromEntries(
      Object.entries(families).map(([f, values]) => [f, (values[best]! - values[0]!) * 100]),
    ) as Recommendation['families'],
  };
}

/**
 * The standard error, in points, of the accuracy change from t = 0 to each t, for paired
 * answers on the same images: sqrt(b + c - (b - c)^2 / n) / n with b images lost and c gained.
 */
export function changeStandardError(result: ConditionResult): number[] {
  const n = result.count;
  return result.lost.map((b, t) => {
    const c = result.gained[t]!;
    return n > 0 ? (Math.sqrt(Math.max(0, b + c - (b - c) ** 2 / n)) / n) * 100 : NaN;
  });
}

export function summariseEvaluation(
  results: readonly ConditionResult[],
  options: RecommendOptions = {},
): Summary {
  const timesteps = results[0]!.accuracy.length - 1;
  const ts = Array.from({ length: timesteps + 1 }, (_, t) => t);
  const cleanResult = results.find((r) => r.condition.corruption === 'clean');
  const clean = cleanResult?.accuracy ?? ts.map(() => NaN);
  const corrupted = results.filter((r) => r.condition.corruption !== 'clean' && r.count > 0);
  const meanOf = (rs: readonly ConditionResult[]) => ts.map((t) => mean(rs.map((r) => r.accuracy[t]!)));
  const corruptions: Summary['corruptions'] = {};
  for (const r of corrupted) {
    const c = r.condition.corruption as Corruption;
    corruptions[c] ??= meanOf(corrupted.filter((x) => x.condition.corruption === c));
  }
  const families: Summary['families'] = {};
  for (const f of FAMILIES) {
    const members = corrupted.filter((r) => FAMILY_OF[r.condition.corruption as Corruption] === f);
    if (members.length) families[f] = meanOf(members);
  }
  const corruptedMean = corrupted.length ? meanOf(corrupted) : ts.map(() => NaN);
  const mce = meanCorruptionError(corrupted);
  return {
    timesteps,
    images: corrupted.length ? Math.min(...corrupted.map((r) => r.count)) : 0,
    cleanImages: cleanResult?.count ?? 0,
    cleanChangeSE: cleanResult ? changeStandardError(cleanResult) : ts.map(() => NaN),
    clean,
    corruptions,
    families,
    corruptedMean,
    mce,
    relativeMCE: mce.map((m) => m / mce[0]!),
    recommended: recommend(clean, corruptedMean, families, options),
  };
}

const pct = (x: number) => (x * 100).toFixed(1);

/** The changes from t = 0 to `t`, in points, and the clean change's SE. */
export function changeAt(summary: Summary, t: number): Recommendation & { cleanChangeSE: number } {
  return {
    timesteps: t,
    gain: (summary.corruptedMean[t]! - summary.corruptedMean[0]!) * 100,
    cleanChange: (summary.clean[t]! - summary.clean[0]!) * 100,
    families: Object.fromEntries(
      Object.entries(summary.families).map(([f, v]) => [f, (v[t]! - v[0]!) * 100]),
    ) as Recommendation['families'],
    cleanChangeSE: summary.cleanChangeSE[t]!,
  };
}

/** A change in points, with its sign. */
export const signed = (x: number) => `${x >= 0 ? '+' : ''}${x.toFixed(2)}`;

/** One line: the changes at a timestep. */
export function describeChange(c: ReturnType<typeof changeAt>): string {
  const families = Object.entries(c.families)
    .map(([f, v]) => `${f} ${signed(v)}`)
    .join(', ');
  return (
    `corrupted mean ${signed(c.gain)} points over t = 0` +
    (families ? ` (${families})` : '') +
    `, clean ${signed(c.cleanChange)}${Number.isFinite(c.cleanChangeSE) ? ` ± ${c.cleanChangeSE.toFixed(2)} SE` : ''}`
  );
}

/**
 * The report's tables; with `recommendedTimesteps` (the profile's, chosen on validation
 * images) also the changes at that timestep, apart from the best one on these images.
 */
export function markdown(
  results: readonly ConditionResult[],
  summary: Summary,
  title: string,
  recommendedTimesteps?: number,
  extraRows: { name: string; values: number[]; format?: (x: number) => string }[] = [],
): string {
  const ts = Array.from({ length: summary.timesteps + 1 }, (_, t) => t);
  const header = `| | ${ts.map((t) => `t=${t}`).join(' | ')} |\n|---|${ts.map(() => '---:').join('|')}|`;
  const row = (name: string, values: readonly number[], fmt = pct) =>
    `| ${name} | ${values.map(fmt).join(' | ')} |`;
  const { recommended: r } = summary;
  return [
    `## ${title}`,
    '',
    `${summary.images} images per corruption condition${summary.cleanImages !== summary.images ? `, ${summary.cleanImages} clean` : ''}. Accuracy (%) per timestep; a corruption's row averages its severities, a family's its corruptions' conditions.`,
    '',
    header,
    row('**clean**', summary.clean),
    row('clean change, SE (points)', summary.cleanChangeSE, (x) => x.toFixed(2)),
    ...Object.entries(summary.families).map(([f, values]) => row(`**${f}** (family mean)`, values)),
    row('**corrupted mean**', summary.corruptedMean),
    ...Object.entries(summary.corruptions).map(([c, values]) => row(`${c} (mean)`, values)),
    row('mCE / mCE(0) (%)', summary.relativeMCE, (x) => (x * 100).toFixed(1)),
    ...extraRows.map((e) => row(e.name, e.values, e.format)),
    '',
    ...(recommendedTimesteps !== undefined && recommendedTimesteps <= summary.timesteps
      ? [
          `At the profile's recommended timesteps, **${recommendedTimesteps}**: ${describeChange(changeAt(summary, recommendedTimesteps))}.`,
          '',
        ]
      : []),
    `Best timestep on these images (corrupted mean, clean within 0.5 points, no family below t = 0): **${r.timesteps}** (${describeChange(changeAt(summary, r.timesteps))}).`,
    '',
    '### Every condition',
    '',
    header,
    ...results.map((res) => row(conditionName(res.condition), res.accuracy)),
    '',
  ].join('\n');
}
