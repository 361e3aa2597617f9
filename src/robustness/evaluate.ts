/**
 * Accuracy per timestep, clean and under corruptions, through the serving engine itself
 * (PredictiveStepper, the onnxruntime graphs): what the server would answer for these images.
 * Corrupted images are quantised to 8 bits and normalised exactly as the server does a
 * decoded upload.
 */
import type { PredictiveStepper, SampleState } from '../engine/predictive-step.js';
import type { Coefficients } from '../model/hyperparameters.js';
import { newSample } from '../engine/predictive-step.js';
import { normalise } from '../image/preprocess.js';
import type { InputSpec } from '../model/manifest.js';
import { corrupt, corruptionSeed, type Corruption } from './corruptions.js';
import { imageAt, type Dataset } from './fashion-mnist.js';

export type Condition = { corruption: 'clean'; severity: 0 } | { corruption: Corruption; severity: number };

export const conditionName = (c: Condition) =>
  c.corruption === 'clean' ? 'clean' : `${c.corruption}/${c.severity}`;

export interface ConditionResult {
  condition: Condition;
  count: number;
  /** correct answers at t = 0..T */
  correct: number[];
  /** correct[t] / count */
  accuracy: number[];
  /** images right at t = 0 and wrong at t, and the other way round: what the dynamics changed */
  lost: number[];
  gained: number[];
  /** each image's steps (with `record`), for replaying stopping rules on them */
  trajectories?: Trajectory[];
}

/** What one image's dynamics did, step by step: enough to replay any stopping rule. */
export interface Trajectory {
  label: number;
  steps: { logits: Float32Array; errors: Float32Array }[];
}

export interface EvaluateOptions {
  indices: readonly number[];
  conditions: readonly Condition[];
  timesteps: number;
  batch: number;
  /** hyperparameter profile to evaluate; the model's own when absent */
  coefficients?: readonly Coefficients[];
  /** sample-timesteps computed so far, of `total` */
  onProgress?: (done: number, total: number) => void;
  /** keep every image's trajectory in the results */
  record?: boolean;
}

/** The model input for image `index` of `data` under `condition`. */
export function inputFor(data: Dataset, index: number, condition: Condition, spec: InputSpec): Float32Array {
  let pixels = imageAt(data, index);
  if (condition.corruption !== 'clean') {
    const shape = { channels: 1, height: data.height, width: data.width };
    const seed = corruptionSeed(condition.corruption, condition.severity, index);
    pixels = corrupt(pixels, shape, condition.corruption, condition.severity, seed);
  }
  const bytes = new Uint8Array(pixels.length);
  for (let k = 0; k < pixels.length; k++) bytes[k] = Math.round(pixels[k]! * 255);
  return normalise(bytes, 1, spec);
}

export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let k = 1; k < values.length; k++) if (values[k]! > values[best]!) best = k;
  return best;
}

export async function evaluate(
  stepper: PredictiveStepper,
  data: Dataset,
  options: EvaluateOptions,
): Promise<ConditionResult[]> {
  const { indices, conditions, timesteps, batch, coefficients, onProgress, record } = options;
  const spec = stepper.model.manifest.input;
  const total = conditions.length * indices.length * (timesteps + 1);
  let done = 0;
  const results: ConditionResult[] = [];
  for (const condition of conditions) {
    const correct = new Array<number>(timesteps + 1).fill(0);
    const lost = new Array<number>(timesteps + 1).fill(0);
    const gained = new Array<number>(timesteps + 1).fill(0);
    const trajectories: Trajectory[] = [];
    for (let start = 0; start < indices.length; start += batch) {
      const chunk = indices.slice(start, start + batch);
      const samples: SampleState[] = chunk.map((index) =>
        newSample(inputFor(data, index, condition, spec), coefficients, timesteps),
      );
      const rightAtZero: boolean[] = [];
      const recorded = chunk.map((index) => ({
        label: data.labels[index]!,
        steps: [] as Trajectory['steps'],
      }));
      if (record) trajectories.push(...recorded);
      for (let t = 0; t <= timesteps; t++) {
        const outputs = await stepper.step(samples);
        outputs.forEach((out, b) => {
          if (record) recorded[b]!.steps.push({ logits: out.logits, errors: out.errors });
          const right = argmax(out.logits) === data.labels[chunk[b]!];
          if (t === 0) rightAtZero[b] = right;
          if (right) correct[t]!++;
          if (rightAtZero[b] && !right) lost[t]!++;
          if (!rightAtZero[b] && right) gained[t]!++;
        });
        done += chunk.length;
        onProgress?.(done, total);
      }
    }
    results.push({
      condition,
      count: indices.length,
      correct,
      accuracy: correct.map((c) => c / indices.length),
      lost,
      gained,
      ...(record ? { trajectories } : {}),
    });
  }
  return results;
}

/** One condition's results over two disjoint sets of images, as if measured at once. */
export function mergeCounts(a: ConditionResult, b: ConditionResult | undefined): ConditionResult {
  if (!b || b.count === 0) return a;
  const count = a.count + b.count;
  const sum = (x: number[], y: number[]) => x.map((v, t) => v + y[t]!);
  const correct = sum(a.correct, b.correct);
  return {
    condition: a.condition,
    count,
    correct,
    accuracy: correct.map((c) => c / count),
    lost: sum(a.lost, b.lost),
    gained: sum(a.gained, b.gained),
    ...(a.trajectories && b.trajectories ? { trajectories: [...a.trajectories, ...b.trajectories] } : {}),
  };
}

/**
 * `count` indices of `data`, the same number from every class (as far as the data allows),
 * spread over the whole set: a fixed, reproducible subset.
 */
export function stratifiedIndices(data: Dataset, count: number, from = 0, to = data.count): number[] {
  const classes = Math.max(...data.labels.subarray(from, to)) + 1;
  const perClass = Math.ceil(count / classes);
  const taken = new Array<number>(classes).fill(0);
  const out: number[] = [];
  for (let k = from; k < to && out.length < count; k++) {
    const label = data.labels[k]!;
    if (taken[label]! < perClass) {
      taken[label]!++;
      out.push(k);
    }
  }
  return out;
}
