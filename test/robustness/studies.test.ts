/**
 * The smaller studies as functions, in-process, on the shipped model:
 * - eval:signal: heavy Gaussian noise lifts the corruption score far above clean images' (the
 *   docs' claim: AUROC near 1), and a model without a score is refused;
 * - eval --gaussian-sweep: the noise has the standard deviation asked for, in pixel units, and
 *   strong noise costs accuracy at t = 0 on the same images as clean;
 * - eval:representations: at t = 0 both distances compare with the clean image's feedforward
 *   pass, so they are equal by definition;
 * - calibrate --score-only: the normalisation has one mean and spread per PCoder, --write puts it
 *   at the manifest's top, and the images it read are recorded under the score's name; an
 *   unknown profile for --anytime-only is refused before any work.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStepper } from '../../src/engine/open-stepper.js';
import type { PredictiveStepper } from '../../src/engine/predictive-step.js';
import { profileCoefficients } from '../../src/engine/profiles.js';
import type { LoadedModel } from '../../src/model/load-model.js';
import { calibrateStudy } from '../../src/robustness/calibrate-study.js';
import { NO_SPACE } from '../../src/robustness/calibrate.js';
import { SCORE_RECORD } from '../../src/robustness/held-out.js';
import { ImageSetError } from '../../src/robustness/image-set.js';
import { representationsStudy } from '../../src/robustness/representations.js';
import { signalStudy } from '../../src/robustness/signal-study.js';
import { localStudy } from '../../src/robustness/study-engine.js';
import { ADDITIVE_GAUSSIAN, StudyInputs } from '../../src/robustness/study-inputs.js';
import { gaussianSweep, parseSigmas } from '../../src/robustness/gaussian-sweep.js';
import { planStudy, type StudyValues } from '../../src/robustness/study-plan.js';
import { openModel } from '../helpers.js';

let model: LoadedModel;
let stepper: PredictiveStepper;

beforeAll(async () => {
  model = await openModel();
  stepper = openStepper(model);
});
afterAll(async () => {
  await model?.release();
});

const plan = (values: StudyValues, timesteps = 0) =>
  planStudy(values, model.manifest, {
    corruptions: 'gaussian_noise',
    severities: '5',
    timesteps,
    fashion: { split: 't10k', part: 'dev', perClass: 5, cleanPerClass: 5 },
  });
const coefficients = () => profileCoefficients(model.manifest).get(model.manifest.defaultProfile)!;

describe('signalStudy', () => {
  it('tells heavy Gaussian noise from clean images by the corruption score', async () => {
    const study = await plan({ 'per-class': '5', 'clean-per-class': '10' });
    const inputs = new StudyInputs(model.manifest.input, { seed: 0 });
    const s = await signalStudy({
      manifest: model.manifest,
      study,
      inputs,
      engine: localStudy(stepper, inputs),
      coefficients: coefficients(),
      batch: 50,
    });
    expect(s.rows).toHaveLength(1);
    expect(s.rows[0]!.score).toBeGreaterThan(0.9);
    expect(s.line).toMatch(/noise (0\.9\d\d|1\.000) \(baseline /);
    expect(s.markdown).toContain('gaussian_noise');
  });

  it('refuses a model with no corruption score', async () => {
    const study = await plan({ 'per-class': '1', 'clean-per-class': '1' });
    const inputs = new StudyInputs(model.manifest.input, { seed: 0 });
    const manifest = { ...model.manifest };
    delete manifest.corruptionScore;
    await expect(
      signalStudy({
        manifest,
        study,
        inputs,
        engine: localStudy(stepper, inputs),
        coefficients: coefficients(),
        batch: 50,
      }),
    ).rejects.toThrow(/no corruption score.*--score-only/);
  });
});

describe('gaussianSweep', () => {
  it('adds noise of the standard deviation asked for, in pixel units, one draw per seed', async () => {
    const study = await plan({ 'per-class': '1', 'clean-per-class': '1' });
    const { spec, opened, noisy } = await noisyInputs(study, 0.05, 0);
    const again = (await noisyInputs(study, 0.05, 1)).noisy;
    const std = spec.std[0]!;
    // pixels well inside (0, 1), where clipping cannot bite: the difference is the noise
    const diffs: number[] = [];
    opened.forEach((o, i) =>
      o.clean.forEach((x, k) => {
        const p = x * std + spec.mean[0]!;
        if (p > 0.25 && p < 0.75) diffs.push((noisy[i]![k]! - x) * std);
      }),
    );
    expect(diffs.length).toBeGreaterThan(500);
    const mean = diffs.reduce((a, b) => a + b, 0) / diffs.length;
    const sd = Math.sqrt(diffs.reduce((a, b) => a + (b - mean) ** 2, 0) / diffs.length);
    // 8-bit truncation lowers the mean by half a level and adds its own small spread
    expect(sd).toBeGreaterThan(0.045);
    expect(sd).toBeLessThan(0.055);
    expect(again[0]).not.toEqual(noisy[0]);
  });

  it('runs clean and every sigma on the same images, strong noise costing accuracy at t = 0', async () => {
    const study = await plan({ 'per-class': '5', 'clean-per-class': '5', timesteps: '2' });
    const inputs = new StudyInputs(model.manifest.input, { seed: 0 });
    const sweep = await gaussianSweep({
      manifest: model.manifest,
      profile: model.manifest.defaultProfile,
      coefficients: coefficients(),
      study,
      inputs,
      engine: localStudy(stepper, inputs),
      sigmas: parseSigmas('0.5,0.05'),
      batch: 50,
    });
    const rows = sweep.report['sigmas'] as { sigma: number; count: number; accuracy: number[] }[];
    const clean = sweep.report['clean'] as { accuracy: number[] };
    expect(rows.map((r) => r.sigma)).toEqual([0.05, 0.5]);
    expect(rows.every((r) => r.count === 50 && r.accuracy.length === 3)).toBe(true);
    expect(rows[1]!.accuracy[0]).toBeLessThan(clean.accuracy[0]! - 0.2);
    expect(sweep.markdown).toContain('| sigma 0.5 |');
    expect(() => parseSigmas('0.1,1.5')).toThrow(/'1.5' is not one/);
  });
});

async function noisyInputs(study: Awaited<ReturnType<typeof plan>>, sigma: number, seed: number) {
  const spec = model.manifest.input;
  const inputs = new StudyInputs(spec, { seed });
  const opened = (await Promise.all(study.groups[0]!.images.map((i) => inputs.open(i)))).filter(
    (o) => o !== undefined,
  );
  const noisy = await inputs.inputs(opened, { corruption: ADDITIVE_GAUSSIAN, severity: sigma });
  return { spec, opened, noisy };
}

describe('representationsStudy', () => {
  it("compares with the clean image's feedforward pass at t = 0 both ways", async () => {
    const study = await plan({ 'per-class': '2', 'clean-per-class': '2', timesteps: '2' });
    const inputs = new StudyInputs(model.manifest.input, { seed: 0 });
    const { report } = await representationsStudy({
      stepper,
      manifest: model.manifest,
      profile: model.manifest.defaultProfile,
      coefficients: coefficients(),
      study,
      inputs,
    });
    const [r] = report['results'] as { toCleanSameStep: number[][]; toCleanFeedforward: number[][] }[];
    expect(r!.toCleanSameStep).toHaveLength(model.manifest.pcoders.length);
    r!.toCleanSameStep.forEach((row, i) => {
      expect(row).toHaveLength(3);
      expect(row[0]).toBe(r!.toCleanFeedforward[i]![0]);
      expect(row[0]).toBeGreaterThan(0);
    });
  });
});

describe('calibrateStudy', () => {
  const options = async (mode: 'score-only' | 'anytime-only', name = 'robust') => {
    const search = await plan({ 'per-class': '2', 'clean-per-class': '4', timesteps: '2' });
    const said: string[] = [];
    return {
      said,
      o: {
        manifest: model.manifest,
        stepper,
        inputs: new StudyInputs(model.manifest.input, { seed: 0 }),
        search,
        batch: 32,
        mode,
        name,
        space: NO_SPACE,
        finalists: 0,
        confirmTolerance: 0.5,
        confirmMargin: 1,
        makeDefault: false,
        say: (l: string) => said.push(l),
      },
    };
  };

  it('fits the score on the clean images and says where --write puts it', async () => {
    const { o, said } = await options('score-only');
    const outcome = await calibrateStudy(o);
    const score = outcome.record['corruptionScore'] as { logErrorMean: number[]; logErrorStd: number[] };
    expect(score.logErrorMean).toHaveLength(model.manifest.pcoders.length);
    expect(score.logErrorStd.every((s) => s > 0)).toBe(true);
    const raw: Record<string, unknown> = {};
    outcome.edit(raw);
    expect(raw['corruptionScore']).toBe(score);
    expect(outcome.read.map((r) => r.name)).toEqual([SCORE_RECORD]);
    expect(outcome.read[0]!.images).toHaveLength(40);
    expect(said[0]).toMatch(/^corruption score on 40 clean validation images/);
  });

  it('refuses --anytime-only for a profile the model lacks', async () => {
    const { o } = await options('anytime-only', 'nonesuch');
    await expect(calibrateStudy(o)).rejects.toThrow(ImageSetError);
  });
});
