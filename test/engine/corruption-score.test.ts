/**
 * The corruption score: ln e_i(0) per PCoder as a z-score against clean images, the largest in
 * size. Its normalisation is fitted on clean images' errors; the AUROC that measures it is the
 * Mann-Whitney statistic.
 */
import { describe, expect, it } from 'vitest';
import { corruptionScore, fitNormalisation } from '../../src/engine/corruption-score.js';
import { auroc, quantile, unconfidence } from '../../src/robustness/signal.js';

describe('fitNormalisation', () => {
  it('is the mean and sample standard deviation of ln e_i(0), per PCoder', () => {
    // ln e: PCoder 0 at -1, 0, 1 (mean 0, sd 1); PCoder 1 at 2, 2, 5 (mean 3, sd sqrt(3)).
    const errors = [
      [Math.exp(-1), Math.exp(2)],
      [1, Math.exp(2)],
      [Math.E, Math.exp(5)],
    ];
    const norm = fitNormalisation(errors);
    expect(norm.logErrorMean[0]).toBeCloseTo(0, 12);
    expect(norm.logErrorStd[0]).toBeCloseTo(1, 12);
    expect(norm.logErrorMean[1]).toBeCloseTo(3, 12);
    expect(norm.logErrorStd[1]).toBeCloseTo(Math.sqrt(3), 12);
  });

  it('needs two images at least', () => {
    expect(() => fitNormalisation([[1]])).toThrow(/at least 2/);
  });
});

describe('corruptionScore', () => {
  const norm = { logErrorMean: [0, 3], logErrorStd: [1, 2] };

  it('is 0 for errors at the clean means', () => {
    expect(corruptionScore([1, Math.exp(3)], norm)).toBeCloseTo(0, 12);
  });

  it('is the largest |z| over the PCoders, above the clean errors and below them alike', () => {
    expect(corruptionScore([Math.exp(2.5), Math.exp(3)], norm)).toBeCloseTo(2.5, 12);
    // PCoder 1 at ln e = -3: z = -3; larger in size than PCoder 0's 0.5
    expect(corruptionScore([Math.exp(0.5), Math.exp(-3)], norm)).toBeCloseTo(3, 12);
  });

  it('is finite for an error of exactly 0', () => {
    const score = corruptionScore([0, Math.exp(3)], norm);
    expect(Number.isFinite(score)).toBe(true);
    expect(score).toBeGreaterThan(700);
  });
});

describe('auroc', () => {
  /** Every pair compared: the definition the midrank computation must equal. */
  const pairwise = (neg: number[], pos: number[]) =>
    pos.reduce((w, p) => w + neg.reduce((v, n) => v + (p > n ? 1 : p === n ? 0.5 : 0), 0), 0) /
    (neg.length * pos.length);

  it('is 1 when every positive is above every negative, 0 the other way, 0.5 for equal sets', () => {
    expect(auroc([1, 2, 3], [4, 5])).toBe(1);
    expect(auroc([4, 5], [1, 2, 3])).toBe(0);
    expect(auroc([1, 2, 3], [1, 2, 3])).toBe(0.5);
  });

  it('counts ties a half, as comparing every pair does', () => {
    const neg = [0.1, 0.4, 0.4, 0.7, 0.9, 0.2, 0.4];
    const pos = [0.4, 0.8, 0.1, 0.95, 0.4, 0.6];
    expect(auroc(neg, pos)).toBeCloseTo(pairwise(neg, pos), 12);
  });
});

describe('quantile and unconfidence', () => {
  it('interpolates between the nearest ranks', () => {
    expect(quantile([3, 1, 2, 4], 0.5)).toBe(2.5);
    expect(quantile([3, 1, 2, 4], 1)).toBe(4);
    expect(quantile([5], 0.99)).toBe(5);
  });

  it('is one minus the top softmax probability', () => {
    expect(unconfidence([0, 0])).toBeCloseTo(0.5, 12);
    expect(unconfidence([Math.log(3), 0])).toBeCloseTo(0.25, 12);
  });
});
