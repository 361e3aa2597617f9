/**
 * Hyperparameter search on validation images: shared beta/lambda first, then each PCoder's
 * own (coordinate descent from the best shared set, from the top PCoder down: what a PCoder
 * feeds back depends on the ones above it), then alpha. A candidate's score is the gain in
 * mean accuracy under corruption over t = 0 at its best timestep among those that keep clean
 * accuracy within 0.5 points and cost no corruption family anything (report.ts, recommend).
 *
 * Every candidate sits at the edge of that constraint (most choose the last timestep that
 * still keeps clean accuracy), and the search picks the luckiest of them on its own images,
 * so the winner's clean change on new images lands on either side of the edge. The
 * confirmation stage measures the finalists again on images the search never saw, where a
 * timestep qualifies only if its clean change stays within the tolerance by a margin of
 * standard errors of that change, and the best of them there wins.
 */
import type { PredictiveStepper } from '../engine/predictive-step.js';
import { gradientScales } from '../engine/profiles.js';
import { coefficientsOf, type Hyperparameters } from '../model/hyperparameters.js';
import { largestErrorZ, type ScoreNormalisation } from '../engine/corruption-score.js';
import { evaluate, type ConditionResult, type StudyGroup } from './evaluate.js';
import { recommend, summariseEvaluation, type Recommendation } from './report.js';
import type { StudyInputs } from './study-inputs.js';

export interface Measurement {
  /** the best of fixed T and, with gates, of fixed T behind each gate */
  recommended: Recommendation;
  /** the best fixed T for every input alike (no gate) */
  fixed: Recommendation;
  /** mean accuracy under corruption, each family's, and clean accuracy, per timestep */
  corruptedMean: number[];
  families: Partial<Record<string, number[]>>;
  clean: number[];
  /** standard error (points) of the clean change from t = 0, per timestep */
  cleanChangeSE: number[];
}

export interface Candidate extends Measurement {
  stage: string;
  hyperparameters: Hyperparameters[];
  /** the same measured on the confirmation images, for the finalists */
  confirmation?: Measurement;
}

export interface SearchSpace {
  /** shared (beta, lambda) pairs tried first; alpha stays at the exported value */
  shared: [number, number][];
  /** (beta, lambda) pairs tried for each PCoder in turn (lambda forced to 0 for the top) */
  perPCoder: [number, number][];
  /** alpha values tried for every PCoder at once, last */
  alpha: number[];
}

export const DEFAULT_SPACE: SearchSpace = {
  shared: [
    [0.6, 0.2],
    [0.4, 0.4],
  ],
  perPCoder: [
    [1, 0],
    [0.9, 0.1],
    [0.8, 0.2],
    [0.7, 0.3],
    [0.6, 0.4],
    [0.5, 0.5],
  ],
  alpha: [0, 0.1],
};

/** The shared pairs only: a search of three candidates for a model whose timesteps are dear. */
export const QUICK_SPACE: SearchSpace = { shared: DEFAULT_SPACE.shared, perPCoder: [], alpha: [] };

/** No search: the exported values measured, for their recommended timesteps and anytime rule. */
export const NO_SPACE: SearchSpace = { shared: [], perPCoder: [], alpha: [] };

export const SEARCH_SPACES = { full: DEFAULT_SPACE, quick: QUICK_SPACE, none: NO_SPACE } as const;

export interface CalibrationOptions {
  /** the search's images and conditions, the clean condition among them (it may have more images: its constraint is a fine margin) */
  groups: readonly StudyGroup[];
  timesteps: number;
  batch: number;
  space: SearchSpace;
  /**
   * also score each candidate behind a start gate at each of these z (settling.ts): only inputs
   * whose errors at t = 0 rise above it are iterated, the others answered at t = 0
   */
  gates?: { norm: ScoreNormalisation; above: readonly number[] };
  /** called after each candidate */
  onCandidate?: (candidate: Candidate, index: number) => void;
  /** re-measure the finalists on other images; the best there wins */
  confirm?: ConfirmOptions;
}

export interface ConfirmOptions {
  /** images and conditions none of which the search saw */
  groups: readonly StudyGroup[];
  /** how many of the search's best candidates to confirm (the exported values always are) */
  finalists: number;
  /** clean accuracy may fall at most this many points below t = 0 on these images... */
  cleanTolerance: number;
  /** ...less this many standard errors of the change (0: the estimate alone decides) */
  standardErrors: number;
  /** called after each finalist */
  onFinalist?: (candidate: Candidate, index: number) => void;
}

const key = (hs: readonly Hyperparameters[]) => JSON.stringify(hs.map((h) => [h.beta, h.lambda, h.alpha]));
const betterThan = (a: Recommendation, b: Recommendation) =>
  a.gain > b.gain + 1e-9 || (Math.abs(a.gain - b.gain) <= 1e-9 && a.timesteps < b.timesteps);
const better = (a: Candidate, b: Candidate) => betterThan(a.recommended, b.recommended);

/** What a candidate is judged by: its confirmation where it has one. */
export const finalRecommendation = (c: Candidate) => (c.confirmation ?? c).recommended;

export async function calibrate(
  stepper: PredictiveStepper,
  inputs: StudyInputs,
  start: Hyperparameters[],
  options: CalibrationOptions,
): Promise<{ best: Candidate; exported: Candidate; candidates: Candidate[]; finalists?: Candidate[] }> {
  const measure = async (
    hyperparameters: Hyperparameters[],
    groups: readonly StudyGroup[],
    margin?: { cleanTolerance: number; standardErrors: number },
  ): Promise<Measurement> => {
    const { gates } = options;
    const results = await evaluate(stepper, inputs, groups, {
      timesteps: options.timesteps,
      batch: options.batch,
      coefficients: coefficientsOf(hyperparameters, gradientScales(stepper.model.manifest)),
      record: gates !== undefined,
    });
    const score = (rs: readonly ConditionResult[]) => {
      const summary = summariseEvaluation(rs);
      const { cleanChangeSE } = summary;
      return {
        // Without a margin, the summary's own recommendation (clean within 0.5 points) is the score.
        recommended: margin
          ? recommend(summary.clean, summary.corruptedMean, summary.families, {
              cleanTolerance: cleanChangeSE.map((se) => margin.cleanTolerance - margin.standardErrors * se),
            })
          : summary.recommended,
        corruptedMean: summary.corruptedMean,
        families: summary.families,
        clean: summary.clean,
        cleanChangeSE,
      };
    };
    const plain = score(results);
    let best: Measurement = { ...plain, fixed: plain.recommended };
    for (const above of gates?.above ?? []) {
      const gated = score(gatedResults(results, gates!.norm, above));
      if (betterThan(gated.recommended, best.recommended))
        best = { ...gated, fixed: plain.recommended, recommended: { ...gated.recommended, gate: above } };
    }
    return best;
  };
  const n = start.length;
  const top = n - 1;
  const seen = new Map<string, Candidate>();
  const candidates: Candidate[] = [];
  const tryIt = async (stage: string, hyperparameters: Hyperparameters[]) => {
    const k = key(hyperparameters);
    const known = seen.get(k);
    if (known) return known;
    const candidate: Candidate = {
      stage,
      hyperparameters,
      ...(await measure(hyperparameters, options.groups)),
    };
    seen.set(k, candidate);
    candidates.push(candidate);
    options.onCandidate?.(candidate, candidates.length);
    return candidate;
  };
  const withPair = (hs: Hyperparameters[], i: number, [beta, lambda]: [number, number]) =>
    hs.map((h, j) => (j === i ? { ...h, beta, lambda: i === top ? 0 : lambda } : h));

  const exported = await tryIt('exported', start);
  let best = exported;
  for (const pair of options.space.shared) {
    const hs = start.map((h, i) => ({ ...h, beta: pair[0], lambda: i === top ? 0 : pair[1] }));
    const c = await tryIt('shared', hs);
    if (better(c, best)) best = c;
  }
  for (let i = n - 1; i >= 0; i--) {
    const base = best.hyperparameters;
    // At the top lambda is 0, so pairs differing only in lambda are one candidate (seen once).
    for (const pair of options.space.perPCoder) {
      const c = await tryIt(`pcoder${i + 1}`, withPair(base, i, pair));
      if (better(c, best)) best = c;
    }
  }
  for (const alpha of options.space.alpha) {
    const c = await tryIt(
      'alpha',
      best.hyperparameters.map((h) => ({ ...h, alpha })),
    );
    if (better(c, best)) best = c;
  }
  const { confirm } = options;
  if (!confirm) return { best, exported, candidates };

  const ranked = candidates.filter((c) => c.recommended.gain > 0).sort((a, b) => (better(a, b) ? -1 : 1));
  const finalists = ranked.slice(0, confirm.finalists);
  if (!finalists.includes(exported)) finalists.push(exported);
  let confirmedBest = exported;
  for (const [k, c] of finalists.entries()) {
    c.confirmation = await measure(c.hyperparameters, confirm.groups, confirm);
    confirm.onFinalist?.(c, k + 1);
  }
  for (const c of finalists)
    if (betterThan(finalRecommendation(c), finalRecommendation(confirmedBest))) confirmedBest = c;
  return { best: confirmedBest, exported, candidates, finalists };
}

/**
 * Results as a start gate would make them: an image whose largest z of ln e_i(0) is at most
 * `above` keeps its t = 0 answer at every t (it would not be iterated). From recorded
 * trajectories, so that one computation answers for every gate.
 */
export function gatedResults(
  results: readonly ConditionResult[],
  norm: ScoreNormalisation,
  above: number,
): ConditionResult[] {
  return results.map((r) => {
    const T = r.accuracy.length - 1;
    const correct = new Array<number>(T + 1).fill(0);
    const lost = new Array<number>(T + 1).fill(0);
    const gained = new Array<number>(T + 1).fill(0);
    for (const { label, steps } of r.trajectories!) {
      const iterate = largestErrorZ(steps[0]!.errors, norm) > above;
      const atZero = steps[0]!.top === label;
      for (let t = 0; t <= T; t++) {
        const right = iterate ? steps[t]!.top === label : atZero;
        if (right) correct[t]!++;
        if (atZero && !right) lost[t]!++;
        if (!atZero && right) gained[t]!++;
      }
    }
    return { ...r, correct, accuracy: correct.map((c) => c / r.count), lost, gained };
  });
}
