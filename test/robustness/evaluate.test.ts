/**
 * The evaluation feeds the engine exactly what the server would for the same test image, and
 * counts correct answers per timestep as the PyTorch reference (golden.json) implies; its
 * summaries and recommendation follow their definitions on hand-worked numbers.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PredictiveStepper } from '../../src/engine/predictive-step.js';
import { preprocess } from '../../src/image/preprocess.js';
import type { LoadedModel } from '../../src/model/load-model.js';
import { readGolden, type Golden } from '../../src/model/golden.js';
import { accuracyChart, svgToPng } from '../../src/robustness/chart.js';
import {
  argmax,
  evaluate,
  inputFor,
  mergeCounts,
  stratifiedIndices,
  type ConditionResult,
} from '../../src/robustness/evaluate.js';
import { loadFashion, type Dataset } from '../../src/robustness/fashion-mnist.js';
import {
  changeStandardError,
  markdown,
  recommend,
  summariseEvaluation,
} from '../../src/robustness/report.js';
import { openModel } from '../helpers.js';
import { DEFAULT_MODEL, SAMPLES } from '../paths.js';

let model: LoadedModel;
let test: Dataset;
let golden: Golden;

beforeAll(async () => {
  model = await openModel();
  test = await loadFashion('t10k');
  golden = await readGolden(DEFAULT_MODEL, model.manifest);
});
afterAll(() => model.release());

/** The shipped samples are test images; their file names start with the index. */
const indexOf = (name: string) => Number(name.slice(0, 4));

describe('evaluation inputs', () => {
  it('are what the server computes from the same image uploaded as a PNG', async () => {
    for (const c of golden.cases) {
      const png = await readFile(path.join(SAMPLES, c.name));
      const served = await preprocess(png, model.manifest.input);
      expect(
        inputFor(test, indexOf(c.name), { corruption: 'clean', severity: 0 }, model.manifest.input),
      ).toEqual(served.tensor);
    }
  });

  it('take the same number of images from every class, in test-set order', () => {
    const indices = stratifiedIndices(test, 100);
    expect(indices).toHaveLength(100);
    const perClass = new Array(10).fill(0);
    for (const k of indices) perClass[test.labels[k]!]++;
    expect(perClass).toEqual(new Array(10).fill(10));
    expect([...indices].sort((a, b) => a - b)).toEqual(indices);
  });
});

describe('evaluate', () => {
  it('counts correct answers per timestep as the PyTorch reference does', async () => {
    const indices = golden.cases.map((c) => indexOf(c.name));
    const [result] = await evaluate(new PredictiveStepper(model), test, {
      indices,
      conditions: [{ corruption: 'clean', severity: 0 }],
      timesteps: 10,
      batch: 3,
    });
    const expected = Array.from(
      { length: 11 },
      (_, t) => golden.cases.filter((c) => argmax(c.logits[t]!) === test.labels[indexOf(c.name)]).length,
    );
    expect(result!.correct).toEqual(expected);
    const right = (c: Golden['cases'][number], t: number) =>
      argmax(c.logits[t]!) === test.labels[indexOf(c.name)];
    expect(result!.lost).toEqual(
      expected.map((_, t) => golden.cases.filter((c) => right(c, 0) && !right(c, t)).length),
    );
    expect(result!.gained).toEqual(
      expected.map((_, t) => golden.cases.filter((c) => !right(c, 0) && right(c, t)).length),
    );
    // 0017-coat (as Shirt) and 0023-ankle-boot (as Sandal) are misclassified: not every count is 8.
    expect(Math.min(...expected)).toBeLessThan(8);
  });

  it('counts a condition over two sets of images as over their union', async () => {
    const stepper = new PredictiveStepper(model);
    const clean = [{ corruption: 'clean', severity: 0 } as const];
    const options = { conditions: clean, timesteps: 2, batch: 8 };
    const all = stratifiedIndices(test, 20);
    const [whole] = await evaluate(stepper, test, { ...options, indices: all });
    const [first] = await evaluate(stepper, test, { ...options, indices: all.slice(0, 7) });
    const [rest] = await evaluate(stepper, test, { ...options, indices: all.slice(7) });
    expect(mergeCounts(first!, rest)).toEqual(whole);
    const [none] = await evaluate(stepper, test, { ...options, indices: [] });
    expect(mergeCounts(whole!, none)).toBe(whole);
  });
});

describe('summaries', () => {
  const result = (corruption: string, severity: number, accuracy: number[]): ConditionResult =>
    ({
      condition: { corruption, severity },
      count: 100,
      correct: accuracy.map((a) => a * 100),
      accuracy,
      lost: accuracy.map(() => 0),
      gained: accuracy.map(() => 0),
    }) as ConditionResult;
  const results = [
    result('clean', 0, [0.9, 0.9, 0.895, 0.88]),
    result('gaussian-noise', 1, [0.6, 0.7, 0.72, 0.75]),
    result('gaussian-noise', 2, [0.4, 0.5, 0.56, 0.6]),
    result('contrast', 1, [0.5, 0.5, 0.4, 0.5]),
  ];

  it('average severities, and give corruption error relative to t = 0', () => {
    const s = summariseEvaluation(results);
    expect(s.corruptions['gaussian-noise']![1]).toBeCloseTo(0.6, 10);
    expect(s.noiseMean[2]).toBeCloseTo(0.64, 10);
    // gaussian: errors (0.4 + 0.6) at t=0, (0.28 + 0.44) at t=2 -> 0.72; contrast: 0.6 / 0.5 = 1.2
    expect(s.noiseRelativeMCE[2]).toBeCloseTo(0.72, 10);
    expect(s.relativeMCE[2]).toBeCloseTo((0.72 + 1.2) / 2, 10);
    expect(s.relativeMCE[0]).toBeCloseTo(1, 10);
  });

  it('recommend the best noise timestep that keeps clean accuracy within 0.5 points', () => {
    // t = 3 has the best noise accuracy but loses 2 clean points; t = 2 loses 0.5.
    expect(summariseEvaluation(results).recommended).toEqual({
      timesteps: 2,
      noiseGain: expect.closeTo(14, 6),
      cleanChange: expect.closeTo(-0.5, 6),
    });
    expect(recommend([0.9, 0.8], [0.5, 0.9]).timesteps).toBe(0);
    expect(recommend([0.9, 0.9, 0.9], [0.5, 0.6, 0.6]).timesteps).toBe(1);
    // A tolerance per timestep: t = 2 (-0.5) qualifies under 0.5 but not under 0.4.
    expect(recommend(results[0]!.accuracy, [0.5, 0.6, 0.7, 0.8], [0.5, 0.5, 0.4, 0.4]).timesteps).toBe(1);
  });

  it('give the standard error of a paired accuracy change from the images lost and gained', () => {
    // 1000 images; at t = 1, 10 lost and 4 gained: sqrt(14 - 36/1000) / 1000 = 0.3737 points.
    const r = { ...results[0]!, count: 1000, lost: [0, 10, 0], gained: [0, 4, 0] };
    const se = changeStandardError(r);
    expect(se[0]).toBe(0);
    expect(se[1]).toBeCloseTo(0.37368, 4);
    expect(se[2]).toBe(0);
  });

  it('count the clean images apart when there are more of them', () => {
    const moreClean = { ...results[0]!, count: 500, correct: results[0]!.accuracy.map((a) => a * 500) };
    const s = summariseEvaluation([moreClean, ...results.slice(1)]);
    expect([s.images, s.cleanImages]).toEqual([100, 500]);
    expect(summariseEvaluation(results).cleanImages).toBe(100);
  });

  it('draw a chart with a line and a legend entry per series', async () => {
    const svg = accuracyChart(summariseEvaluation(results), 'test chart');
    expect(svg.match(/<polyline/g)).toHaveLength(4); // clean, two corruptions, noise mean
    for (const name of ['clean', 'gaussian-noise', 'contrast', 'noise mean', 'best here: t = 2'])
      expect(svg).toContain(name);
    const png = await svgToPng(svg);
    expect(png.subarray(1, 4).toString('ascii')).toBe('PNG');
  });

  it('mark a given timestep instead, with the legend read at it', () => {
    const svg = accuracyChart(summariseEvaluation(results), 'test chart', {
      timesteps: 1,
      label: 'recommended',
    });
    expect(svg).toContain('recommended: t = 1');
    expect(svg).not.toContain('best here');
    expect(svg).toContain('clean (90.0 → 90.0)');
    expect(svg).toContain('gaussian-noise (50.0 → 60.0)');
  });

  it('report the changes at the recommended timestep apart from the best one here', () => {
    const md = markdown(results, summariseEvaluation(results), 'test', 1);
    // t = 1: noise mean (0.7 + 0.5) / 2 = 0.6 against 0.5 at t = 0; clean unchanged.
    expect(md).toContain(
      "At the profile's recommended timesteps, **1**: noise mean +10.00 points over t = 0, clean +0.00 ± 0.00 SE.",
    );
    expect(md).toContain('Best timestep on these images (noise mean, clean within 0.5 points): **2**');
    expect(markdown(results, summariseEvaluation(results), 'test')).not.toContain('recommended timesteps');
  });
});
