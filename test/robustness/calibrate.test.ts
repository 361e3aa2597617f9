/** The calibration search: its stages, its bookkeeping, and that it never picks something worse. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStepper } from '../../src/engine/open-stepper.js';
import type { LoadedModel } from '../../src/model/load-model.js';
import { calibrate, finalRecommendation } from '../../src/robustness/calibrate.js';
import { CLEAN, type StudyGroup } from '../../src/robustness/evaluate.js';
import { FASHION_MNIST, readImageSet } from '../../src/robustness/image-set.js';
import { correlationDistance, representationDistances } from '../../src/robustness/representations.js';
import { StudyInputs } from '../../src/robustness/study-inputs.js';
import { firstPerClass } from '../../src/robustness/study-plan.js';
import { openModel } from '../helpers.js';

let model: LoadedModel;
beforeAll(async () => (model = await openModel()));

/** Fashion-MNIST images of [from, to): `perClass` under the conditions, `cleanPerClass` clean. */
async function groups(
  split: 'train' | 't10k',
  from: number,
  to: number,
  perClass: number,
  cleanPerClass: number,
  conditions: StudyGroup['conditions'],
): Promise<StudyGroup[]> {
  const set = await readImageSet(FASHION_MNIST, {
    labels: model.manifest.labels,
    perClass: Math.max(perClass, cleanPerClass),
    fashion: { split, from, to },
  });
  const studied = firstPerClass(set.clean, perClass);
  const clean = firstPerClass(set.clean, cleanPerClass);
  const both = studied.filter((i) => clean.includes(i));
  const only = (xs: typeof studied, ys: typeof studied) => xs.filter((i) => !ys.includes(i));
  return [
    { images: both, conditions: [CLEAN, ...conditions] },
    { images: only(studied, both), conditions },
    { images: only(clean, both), conditions: [CLEAN] },
  ].filter((g) => g.images.length > 0 && g.conditions.length > 0);
}
afterAll(() => model.release());

describe('calibrate', () => {
  it('starts from the exported values, tries each stage once per distinct candidate, keeps the best', async () => {
    const stepper = openStepper(model);
    const start = model.manifest.pcoders.map((pc) => pc.hyperparameters);
    const inputs = new StudyInputs(model.manifest.input);
    const { best, exported, candidates } = await calibrate(stepper, inputs, start, {
      groups: await groups('train', 50_000, 60_000, 2, 2, [{ corruption: 'gaussian_noise', severity: 3 }]),
      timesteps: 2,
      batch: 20,
      space: {
        shared: [[0.8, 0.1]],
        perPCoder: [
          [1, 0],
          [0.5, 0.5],
        ],
        alpha: [0],
      },
    });
    expect(candidates[0]).toBe(exported);
    expect(exported.hyperparameters).toEqual(start);
    // (0.8, 0.1) shared is the exported set again: evaluated once.
    expect(candidates.map((c) => c.stage)).not.toContain('shared');
    const keys = candidates.map((c) => JSON.stringify(c.hyperparameters));
    expect(new Set(keys).size).toBe(keys.length);
    expect(candidates.map((c) => c.stage)).toEqual(
      expect.arrayContaining(['pcoder1', 'pcoder2', 'pcoder3', 'alpha']),
    );
    for (const c of candidates) {
      expect(c.hyperparameters[2]!.lambda).toBe(0);
      expect(best.recommended.gain).toBeGreaterThanOrEqual(c.recommended.gain);
    }
  }, 60_000);

  it('confirms the best candidates and the exported values on other images, and picks the best there', async () => {
    const stepper = openStepper(model);
    const start = model.manifest.pcoders.map((pc) => pc.hyperparameters);
    const seen: number[] = [];
    const inputs = new StudyInputs(model.manifest.input);
    const { best, exported, candidates, finalists } = await calibrate(stepper, inputs, start, {
      groups: await groups('train', 50_000, 55_000, 6, 2, [{ corruption: 'gaussian_noise', severity: 3 }]),
      timesteps: 3,
      batch: 20,
      space: {
        shared: [[0.6, 0.3]],
        perPCoder: [
          [1, 0],
          [0.8, 0.2],
        ],
        alpha: [],
      },
      confirm: {
        groups: await groups('train', 55_000, 60_000, 3, 4, [{ corruption: 'gaussian_noise', severity: 2 }]),
        finalists: 2,
        // Not one clean image of 40 may change its answer.
        cleanTolerance: 0,
        standardErrors: 0,
        onFinalist: (_, k) => seen.push(k),
      },
    });
    expect(finalists).toBeDefined();
    expect(finalists).toContain(exported);
    expect(seen).toEqual(finalists!.map((_, k) => k + 1));
    const ranked = candidates.filter((c) => c.recommended.gain > 0 && c !== exported);
    expect(ranked.length).toBeGreaterThan(2); // so that the choice of finalists is tested
    expect(finalists!.length).toBe(3);
    for (const c of candidates) expect(c.confirmation !== undefined).toBe(finalists!.includes(c));
    // Finalists are the search's best: none left out scored above one taken.
    const minTaken = Math.min(...finalists!.filter((c) => c !== exported).map((c) => c.recommended.gain));
    for (const c of ranked.filter((c) => !finalists!.includes(c)))
      expect(c.recommended.gain).toBeLessThanOrEqual(minTaken);
    for (const c of finalists!) {
      const m = c.confirmation!;
      const t = m.recommended.timesteps;
      // The confirmed recommendation is recomputed from the confirmation's own curves, under its tolerance.
      expect(m.recommended.cleanChange).toBeCloseTo((m.clean[t]! - m.clean[0]!) * 100, 9);
      expect(m.recommended.gain).toBeCloseTo((m.corruptedMean[t]! - m.corruptedMean[0]!) * 100, 9);
      expect(m.recommended.cleanChange).toBeGreaterThanOrEqual(-1e-9);
      expect(m.cleanChangeSE).toHaveLength(4);
      expect(m.cleanChangeSE[0]).toBe(0);
      expect(finalRecommendation(best).gain).toBeGreaterThanOrEqual(m.recommended.gain);
    }
    expect(finalists).toContain(best);
  }, 120_000);
});

describe('representation distances', () => {
  it('follow the definition of correlation distance', () => {
    expect(correlationDistance([1, 2, 3], [2, 4, 6])).toBeCloseTo(0, 12);
    expect(correlationDistance([1, 2, 3], [3, 2, 1])).toBeCloseTo(2, 12);
    expect(correlationDistance([1, 0, -1, 0], [0, 1, 0, -1])).toBeCloseTo(1, 12);
  });

  it('are zero when the "noisy" image is the clean one, and grow with noise', async () => {
    const stepper = openStepper(model);
    const [group] = await groups('t10k', 0, 10_000, 1, 1, []);
    const inputs = new StudyInputs(model.manifest.input);
    const none = await representationDistances(stepper, inputs, group!.images, {
      noise: CLEAN,
      timesteps: 2,
      batch: 10,
    });
    for (const row of none.toCleanSameStep) for (const v of row) expect(v).toBeCloseTo(0, 6);
    const noisy = await representationDistances(stepper, inputs, group!.images, {
      noise: { corruption: 'gaussian_noise', severity: 5 },
      timesteps: 2,
      batch: 10,
    });
    for (const row of noisy.toCleanSameStep) expect(row[0]).toBeGreaterThan(0.01);
    // At t = 0 the clean image's t = 0 is the same reference either way.
    expect(noisy.toCleanFeedforward.map((r) => r[0])).toEqual(noisy.toCleanSameStep.map((r) => r[0]));
  });
});
