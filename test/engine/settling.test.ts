/**
 * The settling rule of timesteps=auto on constructed trajectories: a sample settles after
 * `patience` calm steps in a row, a calm step keeps its top-1 class and moves every PCoder's
 * error by less than the tolerance, and a replay stops where the engine would.
 */
import { describe, expect, it } from 'vitest';
import { largestChange, SettleWatch, settleRuleProblem, stoppingPoint } from '../../src/engine/settling.js';

/** A step whose top-1 class is `top` (of 3) with these PCoder errors. */
const step = (top: number, ...errors: number[]) => {
  const logits = new Float32Array(3);
  logits[top] = 1;
  return { logits, errors: Float32Array.from(errors) };
};

describe('largestChange', () => {
  it('is the largest change of any PCoder relative to its value before', () => {
    expect(largestChange([1, 2], [1.1, 2])).toBeCloseTo(0.1, 6);
    expect(largestChange([1, 2], [1, 1])).toBeCloseTo(0.5, 6);
    expect(largestChange([0, 2], [0, 2])).toBe(0);
    expect(largestChange([0, 2], [1e-3, 2])).toBeGreaterThan(1);
  });
});

describe('the start gate', () => {
  // ln e(0) against clean mean 0 and std 1 per PCoder: z is ln e.
  const gate = { logErrorMean: [0, 0], logErrorStd: [1, 1], above: 1 };
  it('stops a sample at t = 0 whose errors stay at or under it, and says so', () => {
    // z = ln 2 = 0.69 and ln 1 = 0: at most 1
    expect(stoppingPoint([step(0, 2, 1), step(1, 5, 5)], { tolerance: 0.01, patience: 1, gate }, 1)).toEqual({
      t: 0,
      reason: 'gated',
    });
  });
  it('lets a sample whose largest z is above it run as the rule says', () => {
    // z of the second PCoder = ln 3 = 1.1 > 1
    const steps = [step(0, 1, 3), step(0, 1, 3), step(0, 1, 3)];
    expect(stoppingPoint(steps, { tolerance: 0.01, patience: 1, gate }, 2)).toEqual({
      t: 1,
      reason: 'settled',
    });
    expect(settleRuleProblem({ tolerance: 0.1, patience: 1, gate: { ...gate, above: NaN } }, 3)).toMatch(
      /gate/,
    );
  });
});

describe('SettleWatch', () => {
  it('never settles at t = 0: calm needs a step before it', () => {
    expect(new SettleWatch({ tolerance: 1, patience: 1 }).settled(step(0, 1))).toBe(false);
  });

  it('settles after `patience` calm steps in a row, and a change of class starts the count again', () => {
    const rule = { tolerance: 0.05, patience: 2 };
    const trajectory = [
      step(0, 1, 1),
      step(0, 1.01, 1), // calm 1
      step(1, 1.01, 1), // the class changed: 0
      step(1, 1.02, 1.01), // calm 1
      step(1, 1.02, 1.01), // calm 2: settled at t = 4
      step(1, 1.02, 1.01),
    ];
    const watch = new SettleWatch(rule);
    expect(trajectory.map((s) => watch.settled(s))).toEqual([false, false, false, false, true, true]);
    expect(stoppingPoint(trajectory, rule, 5)).toEqual({ t: 4, reason: 'settled' });
  });

  it('counts a step whose errors move by the tolerance or more as not calm', () => {
    const rule = { tolerance: 0.1, patience: 1 };
    const trajectory = [step(2, 1, 1), step(2, 1, 1.1), step(2, 1, 1.15)];
    expect(stoppingPoint(trajectory, rule, 2)).toEqual({ t: 2, reason: 'settled' });
    expect(stoppingPoint(trajectory, { tolerance: 0.01, patience: 1 }, 2)).toEqual({ t: 2, reason: 'cap' });
  });

  it('with a confidence gate, counts a confident step that keeps its class as calm whatever its errors did', () => {
    /** Top-1 class `top` of 3 with softmax probability `p`, and PCoder errors. */
    const sure = (top: number, p: number, ...errors: number[]) => {
      const logits = new Float32Array(3).fill(Math.log((1 - p) / 2));
      logits[top] = Math.log(p);
      return { logits, errors: Float32Array.from(errors) };
    };
    const trajectory = [sure(0, 0.9, 1), sure(0, 0.85, 2), sure(1, 0.95, 4), sure(1, 0.95, 8)];
    const gated = { tolerance: 0.01, patience: 1, confidence: 0.8 };
    // t = 1 keeps class 0 at 0.85 >= 0.8: calm although its error doubled.
    expect(stoppingPoint(trajectory, gated, 3)).toEqual({ t: 1, reason: 'settled' });
    // Above the step's confidence: not calm; a change of class is never calm, however sure.
    expect(stoppingPoint(trajectory, { ...gated, confidence: 0.9 }, 3)).toEqual({ t: 3, reason: 'settled' });
    expect(stoppingPoint(trajectory.slice(0, 3), { ...gated, confidence: 0.9 }, 2)).toEqual({
      t: 2,
      reason: 'cap',
    });
    // Without the gate the errors decide: they never calm down here.
    expect(stoppingPoint(trajectory, { tolerance: 0.01, patience: 1 }, 3)).toEqual({ t: 3, reason: 'cap' });
  });

  it('stops at the cap when the dynamics never settle', () => {
    const moving = Array.from({ length: 5 }, (_, t) => step(t % 3, 1 + t));
    expect(stoppingPoint(moving, { tolerance: 0.1, patience: 1 }, 4)).toEqual({ t: 4, reason: 'cap' });
  });
});

describe('settleRuleProblem', () => {
  it('names what is wrong with a rule for a cap, and nothing for a good one', () => {
    expect(settleRuleProblem({ tolerance: 0.1, patience: 2, confidence: 0.9 }, 10)).toBeUndefined();
    expect(settleRuleProblem({ tolerance: 1, patience: 10 }, 10)).toBeUndefined();
    expect(settleRuleProblem({ tolerance: 0, patience: 1 }, 10)).toMatch(
      /tolerance must be above 0 and at most 1, got 0/,
    );
    expect(settleRuleProblem({ tolerance: 1.5, patience: 1 }, 10)).toMatch(/tolerance .* got 1.5/);
    expect(settleRuleProblem({ tolerance: 0.1, patience: 1, confidence: 0 }, 10)).toMatch(
      /confidence must be above 0/,
    );
    expect(settleRuleProblem({ tolerance: 0.1, patience: 1.5 }, 10)).toMatch(
      /patience must be a whole number/,
    );
    expect(settleRuleProblem({ tolerance: 0.1, patience: 11 }, 10)).toMatch(
      /from 1 to the cap \(10\), got 11/,
    );
  });
});
