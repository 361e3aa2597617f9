/**
 * changesAgainstZero: every change against t = 0 with a paired bootstrap interval over images.
 * Pinned against cases whose answer is known by hand: a change made only of gains has an
 * interval above 0; gains and losses that cancel give 0 and an interval holding it; a family
 * and the corrupted mean average their conditions as the summary does.
 */
import { describe, expect, it } from 'vitest';
import type { ConditionResult } from '../../src/robustness/evaluate.js';
import { changesAgainstZero, describeWithInterval } from '../../src/robustness/changes.js';

/** 100 images, two timesteps: `right0` right at t = 0, then `gained` more and `lost` fewer at t = 1. */
function condition(
  corruption: string,
  severity: number,
  right0: number,
  gained: number,
  lost: number,
): ConditionResult {
  const n = 100;
  const rightAt = new Uint8Array(n * 2);
  for (let i = 0; i < n; i++) {
    const at0 = i < right0 ? 1 : 0;
    // the lost among the first right ones, the gained among the first wrong ones
    const at1 = at0 ? (i < lost ? 0 : 1) : i < right0 + gained ? 1 : 0;
    rightAt[i * 2] = at0;
    rightAt[i * 2 + 1] = at1;
  }
  const correct = [right0, right0 + gained - lost];
  return {
    condition: { corruption: corruption as never, severity },
    count: n,
    correct,
    accuracy: correct.map((c) => c / n),
    lost: [0, lost],
    gained: [0, gained],
    rightAt,
    ids: Array.from({ length: n }, (_, i) => `img${i}`),
  };
}

describe('changes against t = 0', () => {
  const results = [
    condition('clean', 0, 90, 5, 0),
    condition('gaussian_noise', 3, 40, 10, 10),
    condition('contrast', 3, 50, 8, 2),
  ];
  const changes = changesAgainstZero(results, 400);

  it('of gains alone: the change, and an interval above 0', () => {
    const c = changes.clean![1]!;
    expect(c.change).toBe(5);
    expect(c.interval95[0]).toBeGreaterThan(0);
    expect(c.interval95[1]).toBeGreaterThanOrEqual(5);
    expect(describeWithInterval(c)).toMatch(/^\+5\.00 points \(95% \+[\d.]+ to \+[\d.]+\): a gain$/);
    // at t = 0 nothing changed, and the interval says so
    expect(changes.clean![0]).toEqual({ change: 0, interval95: [0, 0] });
  });

  it('of gains and losses that cancel: 0, and an interval holding it', () => {
    const c = changes.corruptions['gaussian_noise']![1]!;
    expect(c.change).toBe(0);
    expect(c.interval95[0]).toBeLessThan(0);
    expect(c.interval95[1]).toBeGreaterThan(0);
    expect(describeWithInterval(c)).toMatch(/its interval holds 0: no change shown$/);
  });

  it('by family and for the corrupted mean, conditions averaged as the summary averages them', () => {
    expect(changes.families['noise']![1]!.change).toBe(0);
    expect(changes.families['digital']![1]!.change).toBe(6);
    expect(changes.corruptedMean[1]!.change).toBe(3);
    const [lo, hi] = changes.corruptedMean[1]!.interval95;
    expect(lo).toBeLessThan(3);
    expect(hi).toBeGreaterThan(3);
    expect(changes.replicates).toBe(400);
  });
});
