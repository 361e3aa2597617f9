/**
 * A study feeds the engine exactly what the server would for the same image, clean or
 * corrupted, counts correct answers per timestep as the PyTorch reference (golden.json)
 * implies, and its summaries follow their definitions on hand-worked numbers.
 */
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStepper } from '../../src/engine/open-stepper.js';
import { preprocess } from '../../src/image/preprocess.js';
import type { LoadedModel } from '../../src/model/load-model.js';
import { readGolden, type Golden } from '../../src/model/golden.js';
import { accuracyChart, mceChart, svgToPng } from '../../src/robustness/chart.js';
import { argmax, CLEAN, evaluate, type ConditionResult } from '../../src/robustness/evaluate.js';
import { FASHION_MNIST, readImageSet, type ImageSet } from '../../src/robustness/image-set.js';
import {
  corruptionSeed,
  corruptPixels,
  loadCorruptionAssets,
} from '../../src/robustness/imagenet-c/index.js';
import {
  ALEXNET_ERRORS,
  corruptionErrors,
  meanCorruptionError,
  normalisedMce,
  relativeMce,
} from '../../src/robustness/mce.js';
import {
  changeStandardError,
  markdown,
  recommend,
  summariseEvaluation,
} from '../../src/robustness/report.js';
import { StudyInputs } from '../../src/robustness/study-inputs.js';
import { buildTestApp, openModel } from '../helpers.js';
import { DEFAULT_MODEL, SAMPLES } from '../paths.js';

let model: LoadedModel;
let golden: Golden;
let dir: string;
let folder: ImageSet;

/** The shipped samples as an ImageFolder: DIR/<label>/<file>, one of them as a large RGB JPEG. */
beforeAll(async () => {
  model = await openModel();
  golden = await readGolden(DEFAULT_MODEL, model.manifest);
  dir = await mkdtemp(path.join(tmpdir(), 'study-'));
  for (const c of golden.cases) {
    const label = model.manifest.labels[c.label!]!;
    await mkdir(path.join(dir, label.replace('/', '_')), { recursive: true });
    await copyFile(path.join(SAMPLES, c.name), path.join(dir, label.replace('/', '_'), c.name));
  }
  const first = golden.cases[0]!;
  const label = model.manifest.labels[first.label!]!.replace('/', '_');
  await sharp(path.join(SAMPLES, first.name))
    .resize(112, 112)
    .toColourspace('srgb')
    .jpeg({ quality: 95 })
    .toFile(path.join(dir, label, 'big.jpg'));
  folder = await readImageSet(dir, { labels: model.manifest.labels });
});
afterAll(async () => {
  await model.release();
  await rm(dir, { recursive: true, force: true });
});

describe('study inputs', () => {
  it('of Fashion-MNIST test images are what the server computes from the same images as PNGs', async () => {
    const set = await readImageSet(FASHION_MNIST, {
      labels: model.manifest.labels,
      fashion: { split: 't10k' },
    });
    const inputs = new StudyInputs(model.manifest.input);
    for (const c of golden.cases) {
      const image = set.clean[Number(c.name.slice(0, 4))]!;
      const served = await preprocess(await readFile(path.join(SAMPLES, c.name)), model.manifest.input);
      expect((await inputs.open(image))!.clean).toEqual(served.tensor);
    }
  });

  it('under a corruption are what the server computes from the corrupted image, grey or coloured', async () => {
    const inputs = new StudyInputs(model.manifest.input, { seed: 4 });
    const assets = await loadCorruptionAssets();
    const image = folder.clean.find((i) => i.id.endsWith('.png'))!;
    const source = await sharp(path.join(dir, image.id)).raw().toBuffer({ resolveWithObject: true });
    const pixels = {
      width: 28,
      height: 28,
      channels: source.info.channels,
      data: new Uint8Array(source.data),
    };
    const opened = (await inputs.open(image))!;
    // fog keeps a grey image grey, frost colours it
    for (const corruption of ['fog', 'frost'] as const) {
      const corrupted = await corruptPixels(
        pixels,
        corruption,
        3,
        corruptionSeed(corruption, 3, image.id, 4),
        assets,
      );
      const png = await sharp(corrupted.data, { raw: { width: 28, height: 28, channels: 3 } })
        .png()
        .toBuffer();
      const [ours] = await inputs.inputs([opened], { corruption, severity: 3 });
      expect(ours, corruption).toEqual((await preprocess(png, model.manifest.input)).tensor);
    }
  });
});

describe('evaluate on an ImageFolder', () => {
  it('gives the same t = 0 answers as POST /classify on the same files', async () => {
    const stepper = openStepper(model);
    const [clean] = await evaluate(
      stepper,
      new StudyInputs(model.manifest.input),
      [{ images: folder.clean, conditions: [CLEAN] }],
      {
        timesteps: 0,
        batch: 4,
        record: true,
      },
    );
    const { app } = await buildTestApp();
    try {
      expect(clean!.ids).toHaveLength(golden.cases.length + 1);
      for (const [k, id] of clean!.ids!.entries()) {
        const res = await (app as FastifyInstance).inject({
          method: 'POST',
          url: '/classify?timesteps=0',
          headers: { 'content-type': id.endsWith('.jpg') ? 'image/jpeg' : 'image/png' },
          payload: await readFile(path.join(dir, id)),
        });
        expect(res.statusCode).toBe(200);
        expect(clean!.trajectories![k]!.steps[0]!.top, id).toBe(res.json().steps[0].index);
      }
    } finally {
      await app.close();
    }
  });

  it('counts correct answers per timestep as the PyTorch reference does', async () => {
    const images = folder.clean.filter((i) => i.id.endsWith('.png'));
    const [result] = await evaluate(
      openStepper(model),
      new StudyInputs(model.manifest.input),
      [{ images, conditions: [CLEAN] }],
      {
        timesteps: 10,
        batch: 3,
      },
    );
    const caseOf = (id: string) => golden.cases.find((c) => id.endsWith(c.name))!;
    const right = (c: Golden['cases'][number], t: number) => argmax(c.logits[t]!) === c.label;
    const expected = Array.from({ length: 11 }, (_, t) => golden.cases.filter((c) => right(c, t)).length);
    expect(result!.correct).toEqual(expected);
    expect(result!.lost).toEqual(
      expected.map((_, t) => golden.cases.filter((c) => right(c, 0) && !right(c, t)).length),
    );
    expect(result!.gained).toEqual(
      expected.map((_, t) => golden.cases.filter((c) => !right(c, 0) && right(c, t)).length),
    );
    // every image's answers, in the order of its id
    result!.ids!.forEach((id, i) => {
      for (let t = 0; t <= 10; t++) expect(result!.rightAt![i * 11 + t]).toBe(right(caseOf(id), t) ? 1 : 0);
    });
    // 0017-coat (as Shirt) and 0023-ankle-boot (as Sandal) are misclassified: not every count is 8.
    expect(Math.min(...expected)).toBeLessThan(8);
  });

  it('counts a condition over two groups of images as over their union, images decoded once for all conditions', async () => {
    const stepper = openStepper(model);
    const inputs = new StudyInputs(model.manifest.input);
    const conditions = [CLEAN, { corruption: 'contrast', severity: 2 } as const];
    const options = { timesteps: 2, batch: 4 };
    const whole = await evaluate(stepper, inputs, [{ images: folder.clean, conditions }], options);
    const split = await evaluate(
      stepper,
      inputs,
      [
        { images: folder.clean.slice(0, 5), conditions },
        { images: folder.clean.slice(5), conditions },
      ],
      options,
    );
    expect(split.map((r) => [r.condition, r.correct, r.lost, r.gained, r.count])).toEqual(
      whole.map((r) => [r.condition, r.correct, r.lost, r.gained, r.count]),
    );
  });

  it('stops at an undecodable image with its path, or leaves it out and lists it', async () => {
    const bad = await mkdtemp(path.join(tmpdir(), 'study-bad-'));
    try {
      await mkdir(path.join(bad, 'Coat'));
      await copyFile(
        path.join(
          SAMPLES,
          (await readdir(SAMPLES)).find((f) => f.endsWith('coat.png'))!,
        ),
        path.join(bad, 'Coat', 'a.png'),
      );
      await rm(path.join(bad, 'Coat', 'b.png'), { force: true });
      await sharp({ create: { width: 4, height: 4, channels: 3, background: 'red' } })
        .png()
        .toFile(path.join(bad, 'Coat', 'c.png'));
      const { writeFile } = await import('node:fs/promises');
      await writeFile(path.join(bad, 'Coat', 'b.png'), 'not a png');
      const set = await readImageSet(bad, { labels: model.manifest.labels });
      const stepper = openStepper(model);
      const group = [{ images: set.clean, conditions: [CLEAN] }];
      await expect(
        evaluate(stepper, new StudyInputs(model.manifest.input), group, { timesteps: 0, batch: 8 }),
      ).rejects.toThrow(/Coat\/b\.png: .*--skip-unreadable/);
      const lenient = new StudyInputs(model.manifest.input, { skipUnreadable: true });
      const [result] = await evaluate(stepper, lenient, group, { timesteps: 0, batch: 8 });
      expect(result!.count).toBe(2);
      expect(lenient.unreadable.map((u) => u.id)).toEqual([path.join('Coat', 'b.png')]);
    } finally {
      await rm(bad, { recursive: true, force: true });
    }
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
    result('gaussian_noise', 1, [0.6, 0.7, 0.72, 0.75]),
    result('gaussian_noise', 2, [0.4, 0.5, 0.56, 0.6]),
    result('contrast', 1, [0.5, 0.5, 0.4, 0.5]),
  ];

  it('average severities and families, and give CE, mCE and mCE relative to t = 0', () => {
    const s = summariseEvaluation(results);
    expect(s.corruptions['gaussian_noise']![1]).toBeCloseTo(0.6, 10);
    expect(s.families['noise']![2]).toBeCloseTo(0.64, 10);
    expect(s.families['digital']![2]).toBeCloseTo(0.4, 10);
    expect(s.corruptedMean[2]).toBeCloseTo((0.72 + 0.56 + 0.4) / 3, 10);
    // CE: gaussian (0.4 + 0.6) at t=0, (0.28 + 0.44) at t=2; contrast 0.5 and 0.6
    const ce = corruptionErrors(results);
    expect(ce.get('gaussian_noise')![2]).toBeCloseTo(0.72, 10);
    expect(meanCorruptionError(results)[2]).toBeCloseTo((0.72 + 0.6) / 2, 10);
    expect(s.relativeMCE[2]).toBeCloseTo((0.72 + 0.6) / 2 / ((1 + 0.5) / 2), 10);
    expect(s.relativeMCE[0]).toBeCloseTo(1, 10);
  });

  it("average mCE over the 15 benchmark corruptions, or over every one studied (the paper's 19)", () => {
    const withValidation = [...results, result('speckle_noise', 1, [0.2, 0.3, 0.4, 0.5])];
    // the benchmark mCE leaves speckle noise (a validation corruption) out
    expect(meanCorruptionError(withValidation)).toEqual(meanCorruptionError(results));
    const all = meanCorruptionError(withValidation, 'all');
    // gaussian 1.0, contrast 0.5, speckle 0.8 at t = 0
    expect(all[0]).toBeCloseTo((1.0 + 0.5 + 0.8) / 3, 10);
    const relative = relativeMce(withValidation, 200, 1, 'all');
    expect(relative.relative[3]).toBeCloseTo(all[3]! / all[0]!, 10);
    expect(relativeMce(withValidation, 200, 1).relative[3]).toBeCloseTo(
      meanCorruptionError(results)[3]! / meanCorruptionError(results)[0]!,
      10,
    );
  });

  it('recommend the best timestep that keeps clean within 0.5 points and costs no family anything', () => {
    // t = 1: contrast holds (0.5), noise gains; t = 2: contrast loses 10 points; t = 3: clean loses 2.
    const r = summariseEvaluation(results).recommended;
    expect(r.timesteps).toBe(1);
    expect(r.gain).toBeCloseTo(((0.7 + 0.5 + 0.5) / 3 - 0.5) * 100, 6);
    expect(r.families).toEqual({ noise: expect.closeTo(10, 6), digital: expect.closeTo(0, 6) });
    expect(recommend([0.9, 0.8], [0.5, 0.9]).timesteps).toBe(0);
    expect(recommend([0.9, 0.9, 0.9], [0.5, 0.6, 0.6]).timesteps).toBe(1);
    // A family below its t = 0 rules a timestep out whatever the mean gains.
    expect(recommend([0.9, 0.9], [0.5, 0.7], { noise: [0.4, 0.9], blur: [0.6, 0.59] }).timesteps).toBe(0);
    // A tolerance per timestep: t = 2 (-0.5) qualifies under 0.5 but not under 0.4.
    expect(
      recommend(results[0]!.accuracy, [0.5, 0.6, 0.7, 0.8], {}, { cleanTolerance: [0.5, 0.5, 0.4, 0.4] })
        .timesteps,
    ).toBe(1);
  });

  it('give the standard error of a paired accuracy change from the images lost and gained', () => {
    // 1000 images; at t = 1, 10 lost and 4 gained: sqrt(14 - 36/1000) / 1000 = 0.3737 points.
    const r = { ...results[0]!, count: 1000, lost: [0, 10, 0], gained: [0, 4, 0] };
    const se = changeStandardError(r);
    expect(se[0]).toBe(0);
    expect(se[1]).toBeCloseTo(0.37368, 4);
    expect(se[2]).toBe(0);
  });

  it('normalise mCE by a baseline only over corruptions studied at all five severities', () => {
    const five = [1, 2, 3, 4, 5].map((s) => result('fog', s, [0.5, 0.6]));
    const n = normalisedMce([...five, results[1]!], ALEXNET_ERRORS);
    // fog: error 0.5 at each severity against AlexNet's 0.819324 average: 61.03%
    expect(n.mce[0]).toBeCloseTo((100 * 0.5) / 0.819324, 6);
    expect(n.mce[1]).toBeCloseTo((100 * 0.4) / 0.819324, 6);
    expect(n.missing).toContain('gaussian_noise');
  });

  it('bootstrap mCE / mCE(0) over images: a change every image shares has a point interval', () => {
    // Every image right at t = 0, half of them wrong at t = 1, the same half under each corruption.
    const n = 40;
    const make = (corruption: string, flip: (i: number) => boolean): ConditionResult => {
      const rightAt = new Uint8Array(n * 2);
      for (let i = 0; i < n; i++) {
        rightAt[i * 2] = 0;
        rightAt[i * 2 + 1] = flip(i) ? 1 : 0;
      }
      const correct = [0, Array.from({ length: n }, (_, i) => flip(i)).filter(Boolean).length];
      return {
        condition: { corruption, severity: 1 },
        count: n,
        correct,
        accuracy: correct.map((c) => c / n),
        lost: [0, 0],
        gained: [0, correct[1]!],
        rightAt,
        ids: Array.from({ length: n }, (_, i) => String(i)),
      } as ConditionResult;
    };
    const all = relativeMce([make('fog', () => true)], 300);
    expect(all.relative).toEqual([1, 0]);
    expect(all.interval95[1]).toEqual([0, 0]);
    const half = relativeMce([make('fog', (i) => i % 2 === 0), make('snow', (i) => i % 2 === 0)], 300);
    expect(half.relative[1]).toBeCloseTo(0.5, 10);
    const [lo, hi] = half.interval95[1]!;
    expect(lo).toBeLessThan(0.5);
    expect(hi).toBeGreaterThan(0.5);
    // 40 images: the binomial spread of a half is about 0.08 either side
    expect(hi - lo).toBeGreaterThan(0.2);
    expect(hi - lo).toBeLessThan(0.45);
  });

  it('draw charts with a line per family and the mCE band', async () => {
    const svg = accuracyChart(summariseEvaluation(results), 'test chart');
    expect(svg.match(/<polyline/g)).toHaveLength(4); // clean, two families, corrupted mean
    for (const name of ['clean', 'noise (family)', 'digital (family)', 'corrupted mean', 'best here: t = 1'])
      expect(svg).toContain(name);
    const png = await svgToPng(svg);
    expect(png.subarray(1, 4).toString('ascii')).toBe('PNG');
    const mce = mceChart(
      [1, 0.95, 0.9],
      [
        [1, 1],
        [0.9, 1],
        [0.85, 0.95],
      ],
      'mce',
      { timesteps: 1, label: 'recommended' },
    );
    expect(mce).toContain('<polygon');
    expect(mce).toContain('recommended: t = 1 (95.0%)');
    // a marker at the last timestep puts its label on its left, inside the chart
    const last = mceChart([1, 0.95, 0.9], [], 'mce', { timesteps: 2, label: 'best here' });
    expect(last).toMatch(
      /<text x="[\d.]+" y="[\d.]+" fill="#555" text-anchor="end">best here: t = 2 \(90\.0%\)<\/text>/,
    );
  });

  it('legends name the timesteps they read, and a peak between them', () => {
    const svg = accuracyChart(summariseEvaluation(results), 'legend', { timesteps: 0, label: 'recommended' });
    // read at t = 0 (the marker): the corrupted mean rises to 61.7% at t = 3 and says so; clean
    // peaks where it is read and needs nothing more
    expect(svg).toContain('clean (t=0 90.0, t=0 90.0)</text>');
    expect(svg).toContain('corrupted mean (t=0 50.0, t=0 50.0, best 61.7 at t=3)</text>');
    expect(svg).not.toContain('→');
  });

  it('report the changes at the recommended timestep apart from the best one here', () => {
    const md = markdown(results, summariseEvaluation(results), 'test', 2);
    expect(md).toContain("At the profile's recommended timesteps, **2**: corrupted mean");
    expect(md).toContain('(noise +14.00, digital -10.00)');
    expect(md).toContain('no family below t = 0): **1**');
    expect(markdown(results, summariseEvaluation(results), 'test')).not.toContain('recommended timesteps');
  });
});
