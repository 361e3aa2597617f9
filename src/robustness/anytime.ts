/**
 * Anytime answers measured: the engine's settling rule (src/engine/settling.ts) replayed on
 * recorded trajectories, so that one computation of every image's dynamics up to the cap
 * answers for any rule. A replay stops where the engine would, with the same answer.
 */
import { argmax } from '../engine/results.js';
import { stoppingPoint, type SettleRule } from '../engine/settling.js';
import type { Trajectory } from './evaluate.js';

export interface Replay {
  count: number;
  correct: number;
  accuracy: number;
  /** timesteps computed after t = 0, averaged over the images */
  meanTimesteps: number;
  /** the share of images that settled before the cap */
  settled: number;
}

export function replay(trajectories: readonly Trajectory[], rule: SettleRule, cap: number): Replay {
  let correct = 0;
  let steps = 0;
  let settled = 0;
  for (const { label, steps: trajectory } of trajectories) {
    const stop = stoppingPoint(trajectory, rule, cap);
    if (argmax(trajectory[stop.t]!.logits) === label) correct++;
    steps += stop.t;
    if (stop.reason === 'settled') settled++;
  }
  const count = trajectories.length;
  return {
    count,
    correct,
    accuracy: correct / count,
    meanTimesteps: steps / count,
    settled: settled / count,
  };
}

/** The same measure for a fixed number of timesteps, on the same trajectories. */
export function fixed(trajectories: readonly Trajectory[], t: number): Replay {
  const correct = trajectories.filter((x) => argmax(x.steps[t]!.logits) === x.label).length;
  const count = trajectories.length;
  return { count, correct, accuracy: correct / count, meanTimesteps: t, settled: 0 };
}

/** The rules tried: each tolerance with each patience. */
export const RULE_GRID: readonly SettleRule[] = [0.001, 0.003, 0.01, 0.03, 0.1, 0.3].flatMap((tolerance) =>
  [1, 2, 3].map((patience) => ({ tolerance, patience })),
);

export interface RulePoint {
  rule: SettleRule;
  clean: Replay;
  noise: Replay;
  /** timesteps after t = 0 per image, over the clean and the noisy images together */
  meanTimesteps: number;
}

export interface AnytimeChoice {
  cap: number;
  /** the fixed T it is held against: the best noise accuracy whose clean accuracy stays within `cleanTolerance` of t = 0 */
  reference: { timesteps: number; clean: number; noise: number };
  /** the rule: the fewest mean timesteps among those within `margin` of the reference on both */
  chosen: RulePoint | undefined;
  points: RulePoint[];
}

export interface ChooseOptions {
  cap: number;
  grid?: readonly SettleRule[];
  /** accuracy a rule may lose against the reference, clean and noisy alike (default 0.002) */
  margin?: number;
  /** clean accuracy the reference T may lose against t = 0 (default 0.005, the calibration's) */
  cleanTolerance?: number;
}

/**
 * Chooses a profile's anytime rule on validation trajectories (never test images). None is
 * chosen when no rule keeps the reference's accuracy: then fixed timesteps are the answer.
 */
export function chooseRule(
  clean: readonly Trajectory[],
  noisy: readonly Trajectory[],
  options: ChooseOptions,
): AnytimeChoice {
  const { cap, grid = RULE_GRID, margin = 0.002, cleanTolerance = 0.005 } = options;
  const cleanAt0 = fixed(clean, 0).accuracy;
  let reference = { timesteps: 0, clean: cleanAt0, noise: fixed(noisy, 0).accuracy };
  for (let t = 1; t <= cap; t++) {
    const c = fixed(clean, t).accuracy;
    const n = fixed(noisy, t).accuracy;
    if (c >= cleanAt0 - cleanTolerance && n > reference.noise)
      reference = { timesteps: t, clean: c, noise: n };
  }
  const all = clean.length + noisy.length;
  const points = grid.map((rule) => {
    const c = replay(clean, rule, cap);
    const n = replay(noisy, rule, cap);
    const meanTimesteps = (c.meanTimesteps * c.count + n.meanTimesteps * n.count) / all;
    return { rule, clean: c, noise: n, meanTimesteps };
  });
  const keeps = points.filter(
    (p) => p.noise.accuracy >= reference.noise - margin && p.clean.accuracy >= reference.clean - margin,
  );
  const chosen = keeps.reduce<RulePoint | undefined>(
    (best, p) => (!best || p.meanTimesteps < best.meanTimesteps ? p : best),
    undefined,
  );
  return { cap, reference, chosen, points };
}
