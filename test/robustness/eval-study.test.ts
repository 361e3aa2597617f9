/**
 * The eval study as a function, in-process, on a small Fashion-MNIST study of the shipped
 * model: its report follows the engine's own rules, its intervals bracket their changes, and
 * its controls show what each must:
 * - lambda = 0 and alpha = 0 together leave every image's answer at every t equal to t = 0's
 *   (nothing is left but the feedforward drive and a memory equal to it);
 * - no-feedback-term and no-error-gradient each answer as the model at t = 0 and differ from it
 *   at some t >= 1 (each switches off a term the model uses);
 * - the model against a control is paired: the control against itself changes nothing.
 * A control on another network is refused, naming what differs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, requestDefaults } from '../../src/config/config.js';
import { openStepper } from '../../src/engine/open-stepper.js';
import type { PredictiveStepper } from '../../src/engine/predictive-step.js';
import { gradientScales } from '../../src/engine/profiles.js';
import { resolveRequest } from '../../src/engine/resolve-request.js';
import { coefficientsOf, type Coefficients } from '../../src/model/hyperparameters.js';
import type { LoadedModel } from '../../src/model/load-model.js';
import { profilesOf } from '../../src/model/manifest.js';
import { changesBetween } from '../../src/robustness/changes.js';
import { termControls, untrainedFeedbackControl } from '../../src/robustness/controls.js';
import { evalStudy, type EvalOutcome } from '../../src/robustness/eval-study.js';
import { ImageSetError } from '../../src/robustness/image-set.js';
import { localStudy } from '../../src/robustness/study-engine.js';
import { StudyInputs } from '../../src/robustness/study-inputs.js';
import { planStudy, type StudyChoice } from '../../src/robustness/study-plan.js';
import type { ConditionResult } from '../../src/robustness/evaluate.js';
import { openModel } from '../helpers.js';
import { DEFAULT_MODEL } from '../paths.js';

let model: LoadedModel;
let stepper: PredictiveStepper;
let study: StudyChoice;
let outcome: EvalOutcome;
const T = 4;

beforeAll(async () => {
  model = await openModel();
  stepper = openStepper(model);
  const { manifest } = model;
  study = await planStudy(
    {
      corruptions: 'gaussian_noise,impulse_noise',
      severities: '4',
      timesteps: String(T),
      'per-class': '4',
      'clean-per-class': '4',
    },
    manifest,
    {
      corruptions: 'all',
      severities: '1-5',
      timesteps: 10,
      fashion: { split: 't10k', part: 'dev', perClass: 60, cleanPerClass: 500 },
    },
  );
  const inputs = new StudyInputs(manifest.input, { seed: 0 });
  const profile = manifest.defaultProfile;
  const p = profilesOf(manifest)[profile]!;
  const hyperparameters = p.hyperparameters;
  const scales = gradientScales(manifest);
  outcome = await evalStudy({
    modelDir: DEFAULT_MODEL,
    manifest,
    profile,
    hyperparameters,
    coefficients: coefficientsOf(hyperparameters, scales),
    recommendedTimesteps: p.recommendedTimesteps,
    calibrated: p.anytime !== undefined,
    study,
    inputs,
    engine: localStudy(stepper, inputs),
    batch: 32,
    split: 'dev',
    measureEngine: false,
    controls: [
      ...termControls(stepper, manifest, hyperparameters),
      {
        name: 'nothing-left',
        description: 'lambda = 0 and alpha = 0',
        stepper,
        coefficients: coefficientsOf(
          hyperparameters.map((h) => ({ ...h, lambda: 0, alpha: 0 })),
          scales,
        ),
      },
    ],
  });
}, 120_000);

afterAll(async () => {
  await model?.release();
});

type Arm = {
  clean: { accuracy: number[] };
  corruptedMean: number[];
  changesAgainstT0: { corruptedMean: { change: number; interval95: [number, number] }[] };
  modelAgainstControl: { corruptedMean: { change: number; interval95: [number, number] }[] };
};

describe('evalStudy', () => {
  it("reports the served default that the engine's own resolveRequest gives a request naming no timesteps", () => {
    const { manifest } = model;
    const unnamed = resolveRequest(manifest, requestDefaults(loadConfig({})), {
      profile: manifest.defaultProfile,
    });
    const served = outcome.report['served'] as { policy: Record<string, unknown> } | null;
    if (unnamed.settle) expect(served?.policy).toHaveProperty('auto');
    else if (unnamed.timesteps <= T) expect(served?.policy).toEqual({ timesteps: unnamed.timesteps });
    else expect(outcome.lines.join('\n')).toContain('not measured');
  });

  it('gives every change against t = 0 an interval that brackets it', () => {
    const changes = outcome.report['changesAgainstT0'] as {
      corruptedMean: { change: number; interval95: [number, number] }[];
      corruptions: Record<string, { change: number; interval95: [number, number] }[]>;
    };
    const all = [
      ...changes.corruptedMean.slice(1),
      ...Object.values(changes.corruptions).flatMap((c) => c.slice(1)),
    ];
    expect(all.length).toBe(T * 3);
    for (const c of all) {
      expect(c.interval95[0]).toBeLessThanOrEqual(c.change);
      expect(c.interval95[1]).toBeGreaterThanOrEqual(c.change);
    }
  });

  it('runs each control through the same report, lambda = 0 with alpha = 0 leaving every t at t = 0', () => {
    const controls = outcome.report['controls'] as Record<string, Arm>;
    expect(Object.keys(controls)).toEqual(['no-feedback-term', 'no-error-gradient', 'nothing-left']);
    const nothing = controls['nothing-left']!;
    for (const a of [nothing.clean.accuracy, nothing.corruptedMean]) for (const x of a) expect(x).toBe(a[0]);
    for (const c of nothing.changesAgainstT0.corruptedMean) expect(c.change).toBe(0);
    expect(outcome.markdown).toContain('## Controls');
    expect(outcome.lines.filter((l) => l.startsWith('control ')).length).toBe(3);
  });

  it('has each control answer as the model at t = 0 and differ from it after, where it switches a term off', async () => {
    const controls = outcome.report['controls'] as Record<string, Arm>;
    const corrupted0 = (outcome.report['corruptedMean'] as number[])[0];
    for (const name of ['no-feedback-term', 'no-error-gradient', 'nothing-left']) {
      expect(controls[name]!.corruptedMean[0]).toBe(corrupted0);
      expect(controls[name]!.modelAgainstControl.corruptedMean[0]!.change).toBe(0);
    }
    // Accuracy is too coarse to show a term switched off on 80 images: the PCoders' errors are not.
    const { manifest } = model;
    const hyperparameters = profilesOf(manifest)[manifest.defaultProfile]!.hyperparameters;
    const inputs = new StudyInputs(manifest.input, { seed: 0 });
    const groups = study.groups.slice(0, 1).map((g) => ({ ...g, images: g.images.slice(0, 10) }));
    const errorsOf = async (coefficients: readonly Coefficients[]) =>
      (
        await localStudy(stepper, inputs).run(groups, {
          timesteps: T,
          batch: 32,
          coefficients,
          label: 'test',
        })
      ).results.flatMap((r) =>
        r.trajectories!.map((tr) => tr.steps.map((s) => Array.from(s.errors).join(','))),
      );
    const own = await errorsOf(coefficientsOf(hyperparameters, gradientScales(manifest)));
    for (const control of termControls(stepper, manifest, hyperparameters)) {
      const theirs = await errorsOf(control.coefficients);
      expect(theirs.length).toBe(own.length);
      expect(theirs.every((steps, i) => steps[0] === own[i]![0])).toBe(true);
      expect(theirs.some((steps, i) => steps.slice(1).some((e, t) => e !== own[i]![t + 1]))).toBe(true);
    }
  });

  it('pairs arms over the same images: an arm against itself changes nothing, and mismatched arms are refused', () => {
    const fake = (accuracy: number[], right: number[]): ConditionResult => ({
      condition: { corruption: 'clean', severity: 0 },
      count: 2,
      correct: accuracy.map((a) => a * 2),
      accuracy,
      lost: accuracy.map(() => 0),
      gained: accuracy.map(() => 0),
      rightAt: Uint8Array.from(right),
      ids: ['a', 'b'],
    });
    const a = [fake([0.5, 1], [1, 1, 0, 1])];
    const b = [fake([0.5, 0.5], [1, 0, 0, 1])];
    const self = changesBetween(a, a);
    expect(self.clean!.map((c) => c.change)).toEqual([0, 0]);
    // image 1 right at t = 1 in a, wrong in b: +50 points for a against b at t = 1
    expect(changesBetween(a, b).clean![1]!.change).toBe(50);
    expect(() => changesBetween(a, [fake([0.5], [1, 0])])).toThrow(/differ/);
  });

  it('draws the corruptions again with --seeds and reports the spread of each change', async () => {
    const { manifest } = model;
    const inputs = new StudyInputs(manifest.input, { seed: 0 });
    const p = profilesOf(manifest)[manifest.defaultProfile]!;
    const small = { ...study, groups: study.groups.map((g) => ({ ...g, images: g.images.slice(0, 20) })) };
    const seeded = await evalStudy({
      modelDir: DEFAULT_MODEL,
      manifest,
      profile: manifest.defaultProfile,
      hyperparameters: p.hyperparameters,
      coefficients: coefficientsOf(p.hyperparameters, gradientScales(manifest)),
      calibrated: false,
      study: small,
      inputs,
      engine: localStudy(stepper, inputs),
      batch: 32,
      measureEngine: false,
      seeds: 2,
    });
    const seeds = seeded.report['seeds'] as {
      seeds: number[];
      corruptedMean: { values: number[]; sd: number }[];
    };
    expect(seeds.seeds).toEqual([0, 1]);
    const atT = seeds.corruptedMean[T]!;
    expect(atT.values).toHaveLength(2);
    // the first seed's change is the study's own
    const own = (seeded.report['changesAgainstT0'] as { corruptedMean: { change: number }[] }).corruptedMean[
      T
    ]!;
    expect(atT.values[0]).toBe(own.change);
    expect(atT.sd).toBeCloseTo(Math.abs(atT.values[0]! - atT.values[1]!) / Math.SQRT2, 10);
    // two draws: the same image corrupted under each seed differs
    const image = small.groups[0]!.images[0]!;
    const draw = async (seed: number) => {
      const i = new StudyInputs(manifest.input, { seed });
      return (await i.inputs([(await i.open(image))!], { corruption: 'gaussian_noise', severity: 4 }))[0]!;
    };
    expect(await draw(1)).not.toEqual(await draw(0));
    expect(seeded.lines.some((l) => l.startsWith('corruption seeds 0, 1:'))).toBe(true);
  });

  it('refuses an untrained-feedback control that is not the same network, naming what differs', async () => {
    const { manifest } = model;
    const other = {
      ...model,
      manifest: {
        ...manifest,
        graphs: { ...manifest.graphs, head: { ...manifest.graphs['head']!, sha256: '0'.repeat(64) } },
      },
    } as LoadedModel;
    const refuse = () =>
      untrainedFeedbackControl(
        other,
        stepper,
        manifest,
        profilesOf(manifest)[manifest.defaultProfile]!.hyperparameters,
        'x',
      );
    expect(refuse).toThrow(ImageSetError);
    expect(refuse).toThrow(/graph head/);
  });
});
