/** Accuracy tables, corruption error relative to t = 0, and the timestep to recommend. */
import { CORRUPTIONS, NOISE_CORRUPTIONS, type Corruption } from './corruptions.js';
import { conditionName, type ConditionResult } from './evaluate.js';

export interface Summary {
  timesteps: number;
  /** images per corruption condition */
  images: number;
  /** images of the clean condition, which may be more: its constraint is a fine margin */
  cleanImages: number;
  /** standard error (points) of the clean change from t = 0, per t */
  cleanChangeSE: number[];
  clean: number[];
  /** per corruption, accuracy at t averaged over its severities */
  corruptions: Partial<Record<Corruption, number[]>>;
  /** accuracy at t averaged over every noise corruption and severity */
  noiseMean: number[];
  /**
   * mean corruption error relative to the network's own t = 0, per t (the paper's measure):
   * for each corruption, the error summed over severities at t divided by the same at t = 0,
   * averaged over corruptions. Below 1: the dynamics help.
   */
  relativeMCE: number[];
  /** the same over the noise corruptions only */
  noiseRelativeMCE: number[];
  recommended: Recommendation;
}

export interface Recommendation {
  timesteps: number;
  /** noise-mean accuracy gain over t = 0, in points */
  noiseGain: number;
  /** clean accuracy change from t = 0, in points */
  cleanChange: number;
}

export const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/**
 * The timestep with the best noise-mean accuracy among those whose clean accuracy stays within
 * `cleanTolerance` (points; one for every t, or one per t) of t = 0; the smallest such t on
 * ties (fewer steps cost less).
 */
export function recommend(
  clean: number[],
  noiseMean: number[],
  cleanTolerance: number | readonly number[] = 0.5,
): Recommendation {
  const tolerance = (t: number) => (typeof cleanTolerance === 'number' ? cleanTolerance : cleanTolerance[t]!);
  let best = 0;
  for (let t = 1; t < noiseMean.length; t++) {
    // (1e-9: a change of exactly the tolerance, e.g. one image in 200, must pass despite rounding)
    const keepsClean = (clean[t]! - clean[0]!) * 100 >= -tolerance(t) - 1e-9;
    if (keepsClean && noiseMean[t]! > noiseMean[best]! + 1e-12) best = t;
  }
  return {
    timesteps: best,
    noiseGain: (noiseMean[best]! - noiseMean[0]!) * 100,
    cleanChange: (clean[best]! - clean[0]!) * 100,
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

export function summariseEvaluation(results: readonly ConditionResult[]): Summary {
  const timesteps = results[0]!.accuracy.length - 1;
  const ts = Array.from({ length: timesteps + 1 }, (_, t) => t);
  const cleanResult = results.find((r) => r.condition.corruption === 'clean');
  const clean = cleanResult?.accuracy ?? ts.map(() => NaN);
  const of = (c: Corruption) => results.filter((r) => r.condition.corruption === c);
  const corruptions: Summary['corruptions'] = {};
  for (const c of CORRUPTIONS) {
    const rs = of(c);
    if (rs.length) corruptions[c] = ts.map((t) => mean(rs.map((r) => r.accuracy[t]!)));
  }
  const noisy = results.filter((r) =>
    (NOISE_CORRUPTIONS as readonly string[]).includes(r.condition.corruption),
  );
  const noiseMean = ts.map((t) => mean(noisy.map((r) => r.accuracy[t]!)));
  const relative = (set: readonly Corruption[]) =>
    ts.map((t) => {
      const ratios = set
        .map((c) => of(c))
        .filter((rs) => rs.length > 0)
        .map((rs) => {
          const err = (k: number) => rs.reduce((s, r) => s + 1 - r.accuracy[k]!, 0);
          return err(t) / err(0);
        });
      return mean(ratios);
    });
  return {
    timesteps,
    images: (results.find((r) => r !== cleanResult) ?? results[0]!).count,
    cleanImages: cleanResult?.count ?? 0,
    cleanChangeSE: cleanResult ? changeStandardError(cleanResult) : ts.map(() => NaN),
    clean,
    corruptions,
    noiseMean,
    relativeMCE: relative(CORRUPTIONS),
    noiseRelativeMCE: relative(NOISE_CORRUPTIONS),
    recommended: recommend(clean, noiseMean),
  };
}

const pct = (x: number) => (x * 100).toFixed(1);

/** The noise-mean and clean change from t = 0 to `t`, in points, and the clean change's SE. */
export function changeAt(summary: Summary, t: number): Recommendation & { cleanChangeSE: number } {
  return {
    timesteps: t,
    noiseGain: (summary.noiseMean[t]! - summary.noiseMean[0]!) * 100,
    cleanChange: (summary.clean[t]! - summary.clean[0]!) * 100,
    cleanChangeSE: summary.cleanChangeSE[t]!,
  };
}

/** A change in points, with its sign. */
export const signed = (x: number) => `${x >= 0 ? '+' : ''}${x.toFixed(2)}`;

/** One line: the changes at a timestep. */
export function describeChange(c: ReturnType<typeof changeAt>): string {
  return `noise mean ${signed(c.noiseGain)} points over t = 0, clean ${signed(c.cleanChange)} ± ${c.cleanChangeSE.toFixed(2)} SE`;
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
): string {
  const ts = Array.from({ length: summary.timesteps + 1 }, (_, t) => t);
  const header = `| | ${ts.map((t) => `t=${t}`).join(' | ')} |\n|---|${ts.map(() => '---:').join('|')}|`;
  const row = (name: string, values: number[], fmt = pct) => `| ${name} | ${values.map(fmt).join(' | ')} |`;
  const { recommended: r } = summary;
  return [
    `## ${title}`,
    '',
    `${summary.images} images per condition${summary.cleanImages !== summary.images ? `, ${summary.cleanImages} for clean` : ''}. Accuracy (%) per timestep; corruption means average the severities.`,
    '',
    header,
    row('**clean**', summary.clean),
    row('clean change, SE (points)', summary.cleanChangeSE, (x) => x.toFixed(2)),
    ...Object.entries(summary.corruptions).map(([c, values]) => row(`**${c}** (mean)`, values)),
    row('**noise mean**', summary.noiseMean),
    row('relative mCE, all (%)', summary.relativeMCE, (x) => (x * 100).toFixed(1)),
    row('relative mCE, noise (%)', summary.noiseRelativeMCE, (x) => (x * 100).toFixed(1)),
    '',
    ...(recommendedTimesteps !== undefined && recommendedTimesteps <= summary.timesteps
      ? [
          `At the profile's recommended timesteps, **${recommendedTimesteps}**: ${describeChange(changeAt(summary, recommendedTimesteps))}.`,
          '',
        ]
      : []),
    `Best timestep on these images (noise mean, clean within 0.5 points): **${r.timesteps}** (${describeChange(changeAt(summary, r.timesteps))}).`,
    '',
    '### Every condition',
    '',
    header,
    ...results.map((res) => row(conditionName(res.condition), res.accuracy)),
    '',
  ].join('\n');
}
