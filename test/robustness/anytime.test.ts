/**
 * Anytime answers measured on recorded trajectories: a replay scores each image at the step
 * where the engine would stop, and the calibration picks the cheapest rule that keeps the
 * accuracy of the best fixed T, or none when no rule does.
 */
import { describe, expect, it } from 'vitest';
import { readStep } from '../../src/engine/settling.js';
import { chooseRule, fixed, replay, servedResults } from '../../src/robustness/anytime.js';
import type { ConditionResult, Trajectory } from '../../src/robustness/evaluate.js';

/** A trajectory of `label` whose top-1 class at step t is `tops[t]`, with errors `errors[t]`. */
function trajectory(label: number, tops: number[], errors: number[]): Trajectory {
  return {
    label,
    steps: tops.map((top, t) => {
      const logits = new Float32Array(3);
      logits[top] = 1;
      return readStep({ logits, errors: Float32Array.of(errors[t]!) });
    }),
  };
}

// Settles at t = 1 (calm under a tolerance of 0.1) and is right from t = 0.
const easy = trajectory(0, [0, 0, 0, 0], [1, 1.01, 1.02, 1.03]);
// Wrong until t = 2, calm from t = 3 on.
const hard = trajectory(1, [0, 0, 1, 1], [1, 0.5, 0.3, 0.3]);

describe('replay', () => {
  it('scores each image at the step where the rule stops it, and counts its timesteps', () => {
    const r = replay([easy, hard], { tolerance: 0.1, patience: 1 }, 3);
    // easy stops at t = 1 (right), hard at t = 3 (right, calm) => 4 timesteps over 2 images
    expect(r).toEqual({ count: 2, correct: 2, accuracy: 1, meanTimesteps: 2, settled: 1 });
  });

  it('stops at the cap, which counts as not settled, and scores the cap step', () => {
    const r = replay([hard], { tolerance: 0.1, patience: 1 }, 1);
    expect(r).toEqual({ count: 1, correct: 0, accuracy: 0, meanTimesteps: 1, settled: 0 });
  });
});

describe('fixed', () => {
  it('scores every image at step t', () => {
    expect(fixed([easy, hard], 0).accuracy).toBe(0.5);
    expect(fixed([easy, hard], 2).accuracy).toBe(1);
  });
});

describe('chooseRule', () => {
  it('holds rules against the best fixed T and picks the one with the fewest mean timesteps', () => {
    const grid = [
      { tolerance: 0.001, patience: 1 }, // easy never calm: both run to the cap (3)
      { tolerance: 0.1, patience: 1 }, // easy at 1, hard at 3: 2 on average, both right
      { tolerance: 0.1, patience: 2 }, // easy at 2, hard at cap 3: 2.5
    ];
    const choice = chooseRule([easy], [hard], { cap: 3, grid });
    expect(choice.reference).toEqual({ timesteps: 2, clean: 1, corrupted: 1 });
    expect(choice.points.map((p) => p.meanTimesteps)).toEqual([3, 2, 2.5]);
    expect(choice.chosen?.rule).toEqual({ tolerance: 0.1, patience: 1 });
  });

  it('chooses nothing when every rule loses accuracy against the reference', () => {
    // Calm at t = 1 while still wrong: any rule that stops it early loses it, a tight one never stops.
    const early = trajectory(1, [0, 0, 1, 1], [1, 1, 0.2, 0.2]);
    const choice = chooseRule([easy], [early], { cap: 3, grid: [{ tolerance: 0.1, patience: 1 }] });
    expect(choice.reference.timesteps).toBe(2);
    expect(choice.points[0]!.corrupted.accuracy).toBe(0);
    expect(choice.chosen).toBeUndefined();
  });
});

describe('chooseRule with families and a start gate', () => {
  // Clean images: right throughout, errors at clean level (ln e = 0, z = 0).
  const clean = [trajectory(0, [0, 0, 0], [1, 1, 1]), trajectory(1, [1, 1, 1], [1, 1, 1])];
  // Noise raises the errors (z = ln 20 = 3.0) and the dynamics put it right.
  const noisy = [trajectory(2, [0, 2, 2], [20, 5, 5]), trajectory(2, [1, 2, 2], [20, 5, 5])];
  // Blur lowers them (z < 0) and the dynamics put a right answer wrong.
  const blurred = [trajectory(0, [0, 1, 1], [0.5, 0.5, 0.5]), trajectory(1, [1, 1, 1], [0.5, 0.5, 0.5])];
  const norm = { logErrorMean: [0], logErrorStd: [1] };
  const grid = [{ tolerance: 1e-9, patience: 2 }];

  it('takes no fixed T that costs a family, and picks a gated rule that helps noise and spares blur', () => {
    const choice = chooseRule(clean, [...noisy, ...blurred], {
      cap: 2,
      grid,
      families: { noise: noisy, blur: blurred },
      gates: { norm, above: [1, 4] },
    });
    // Fixed T = 1 or 2 gains noise (+2 images) but loses one blurred image: not the reference.
    expect(choice.reference.timesteps).toBe(0);
    // Behind the gate at z > 1 the noisy images run to the cap and the blurred ones stop at t = 0.
    expect(choice.chosen!.rule.gate?.above).toBe(1);
    expect(choice.chosen!.corrupted.accuracy).toBe(1);
    expect(choice.byDefault).toBe(true);
    // z > 4 gates the noise out too: nothing gained, so not chosen.
    const four = choice.points.find((p) => p.rule.gate?.above === 4 && p.rule.patience === 2)!;
    expect(four.corrupted.accuracy).toBe(0.5);
  });
});

describe('servedResults', () => {
  it('gives each image its answer at t = 0 and where the policy stops it', () => {
    const result = {
      condition: { corruption: 'fog', severity: 1 },
      count: 2,
      correct: [1, 1, 2, 2],
      accuracy: [0.5, 0.5, 1, 1],
      lost: [0, 0, 0, 0],
      gained: [0, 0, 1, 1],
      trajectories: [easy, hard],
      ids: ['easy', 'hard'],
    } as ConditionResult;
    // easy settles at t = 1 (right), hard is stopped at the cap 1 (still wrong)
    const [byRule] = servedResults([result], { rule: { tolerance: 0.1, patience: 1 }, cap: 1 });
    expect(Array.from(byRule!.rightAt!)).toEqual([1, 1, 0, 0]);
    expect(byRule!.accuracy).toEqual([0.5, 0.5]);
    const [atTwo] = servedResults([result], { timesteps: 2 });
    expect(Array.from(atTwo!.rightAt!)).toEqual([1, 1, 0, 1]);
  });
});
