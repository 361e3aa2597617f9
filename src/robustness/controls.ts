/**
 * The controls of a claim that feedback helps (docs/robustness.md "Controls"): the same study
 * with one part of the dynamics taken away, each run by the engine as it runs any profile.
 *
 * - no-feedback-term: lambda = 0 at every PCoder, the error gradient kept;
 * - no-error-gradient: alpha = 0, the feedback term kept;
 * - untrained-feedback: the same backbone with its feedback as initialised and never trained
 *   (scripts/train_feedback.py --epochs 0 --seed S makes it), at the model's hyperparameters.
 *
 * With lambda = 0 and alpha = 0 together nothing is left but the feedforward drive and a memory
 * that already equals it: every t answers as t = 0 does, which is what the tests check.
 */
import type { LoadedModel } from '../model/load-model.js';
import { coefficientsOf, type Hyperparameters } from '../model/hyperparameters.js';
import type { Manifest } from '../model/manifest.js';
import { gradientScales } from '../engine/profiles.js';
import type { PredictiveStepper } from '../engine/predictive-step.js';
import type { Control } from './eval-study.js';
import { ImageSetError } from './image-set.js';

export const CONTROL_NAMES = ['untrained-feedback', 'no-feedback-term', 'no-error-gradient'] as const;

/** The two controls that switch a term of the update off, on the model's own engine. */
export function termControls(
  stepper: PredictiveStepper,
  manifest: Manifest,
  hyperparameters: readonly Hyperparameters[],
): Control[] {
  const scales = gradientScales(manifest);
  return [
    {
      name: 'no-feedback-term',
      description: 'lambda = 0 at every PCoder: no prediction from above; the error gradient kept',
      stepper,
      coefficients: coefficientsOf(
        hyperparameters.map((h) => ({ ...h, lambda: 0 })),
        scales,
      ),
    },
    {
      name: 'no-error-gradient',
      description:
        "alpha = 0 at every PCoder: no correction by the prediction error's gradient; the feedback term kept",
      stepper,
      coefficients: coefficientsOf(
        hyperparameters.map((h) => ({ ...h, alpha: 0 })),
        scales,
      ),
    },
  ];
}

/**
 * The untrained-feedback control from a model directory that holds it. Refused unless it is
 * the same network with other feedback: the same encoder and head graphs, byte for byte, and
 * the same PCoders (layers and shapes). It runs at the model's hyperparameters, with its own
 * gradient scales (measured on its own predictors).
 */
export function untrainedFeedbackControl(
  control: LoadedModel,
  stepper: PredictiveStepper,
  manifest: Manifest,
  hyperparameters: readonly Hyperparameters[],
  dir: string,
): Control {
  const other = control.manifest;
  const graphOf = (m: Manifest, name: string) => m.graphs[name]?.sha256;
  const differ: string[] = [];
  const shared = [...manifest.pcoders.map((pc) => pc.encoder), manifest.head];
  for (const name of shared)
    if (graphOf(manifest, name) === undefined || graphOf(manifest, name) !== graphOf(other, name))
      differ.push(`graph ${name}`);
  if (
    other.pcoders.length !== manifest.pcoders.length ||
    other.pcoders.some(
      (pc, i) =>
        pc.layer !== manifest.pcoders[i]!.layer ||
        pc.shape.join('x') !== manifest.pcoders[i]!.shape.join('x') ||
        pc.targetShape.join('x') !== manifest.pcoders[i]!.targetShape.join('x') ||
        pc.encoder !== manifest.pcoders[i]!.encoder,
    )
  )
    differ.push('the PCoders');
  if (differ.length)
    throw new ImageSetError(
      `--untrained-feedback ${dir}: not model ${manifest.name} with other feedback (${differ.join(', ')} differ); make it from the same backbone with scripts/train_feedback.py --epochs 0`,
    );
  return {
    name: 'untrained-feedback',
    description: `the feedback as initialised, never trained (${other.name}), at the model's hyperparameters`,
    stepper,
    coefficients: coefficientsOf(hyperparameters, gradientScales(other)),
  };
}
