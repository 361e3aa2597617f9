/**
 * Accuracy per timestep, clean and under corruptions, through the serving engine itself
 * (PredictiveStepper, the onnxruntime graphs): what the server would answer for these images
 * (study-inputs.ts says how each input is made).
 */
import type { PredictiveStepper, SampleState } from '../engine/predictive-step.js';
import { newSample, runTimesteps } from '../engine/predictive-step.js';
import type { Coefficients } from '../model/hyperparameters.js';
import { readStep, type StepReading } from '../engine/settling.js';
import type { StudyImage } from './image-set.js';
import { conditionName, type Condition, type OpenImage, type StudyInputs } from './study-inputs.js';

export { CLEAN, conditionName, type Condition } from './study-inputs.js';

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
  /**
   * each image's answers, right (1) or wrong (0), at t = 0..T (image-major), and the images'
   * ids in that order: what the bootstrap resamples
   */
  rightAt?: Uint8Array;
  ids?: string[];
}

/** What one image's dynamics did, step by step: enough to replay any stopping rule. */
export interface Trajectory {
  label: number;
  steps: StepReading[];
}

/**
 * Images and the conditions to study them under. A group of clean images can be studied under
 * any conditions (the corruptions are made from them); images already corrupted (ImageNet-C's
 * layout) form a group of their own, studied under the one condition they show, as they are.
 */
export interface StudyGroup {
  images: readonly StudyImage[];
  conditions: readonly Condition[];
  asIs?: boolean;
}

export interface EvaluateOptions {
  timesteps: number;
  batch: number;
  /** hyperparameter profile to evaluate; the model's own when absent */
  coefficients?: readonly Coefficients[];
  /** sample-timesteps computed so far, of `total` */
  onProgress?: (done: number, total: number) => void;
  /** keep every image's trajectory in the results */
  record?: boolean;
}

export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let k = 1; k < values.length; k++) if (values[k]! > values[best]!) best = k;
  return best;
}

/** Sample-timesteps a study of these groups computes (before unreadable images are left out). */
export const studySize = (groups: readonly StudyGroup[], timesteps: number) =>
  groups.reduce((n, g) => n + g.images.length * g.conditions.length, 0) * (timesteps + 1);

/**
 * Every group's images under each of its conditions for t = 0..T, `batch` images stepped
 * together; an image is decoded once for all its conditions. One result per condition, over
 * every group that holds it, in the order the conditions first appear.
 */
export async function evaluate(
  stepper: PredictiveStepper,
  inputs: StudyInputs,
  groups: readonly StudyGroup[],
  options: EvaluateOptions,
): Promise<ConditionResult[]> {
  const { timesteps, batch, coefficients, onProgress, record } = options;
  const total = studySize(groups, timesteps);
  let done = 0;
  const byName = new Map<string, Accumulator>();
  const accumulator = (condition: Condition) => {
    const name = conditionName(condition);
    let acc = byName.get(name);
    if (!acc) byName.set(name, (acc = new Accumulator(condition, timesteps, record ?? false)));
    return acc;
  };
  for (const group of groups) {
    for (const c of group.conditions) accumulator(c);
    for (let start = 0; start < group.images.length; start += batch) {
      const chunk = group.images.slice(start, start + batch);
      const opened = (await Promise.all(chunk.map((image) => inputs.open(image)))).filter(
        (o): o is OpenImage => o !== undefined,
      );
      // Images left out (unreadable) still count as done: the progress total was fixed first.
      done += (chunk.length - opened.length) * group.conditions.length * (timesteps + 1);
      // Every (condition, image) pair of the chunk, stepped `batch` at a time: a full chunk
      // makes one batch per condition, and the last, short one fills its batches with several
      // conditions rather than running them small.
      const pairs = group.conditions.flatMap((condition) => opened.map((open) => ({ condition, open })));
      for (let from = 0; from < pairs.length; from += batch) {
        const slice = pairs.slice(from, from + batch);
        const tensors: Float32Array[] = new Array<Float32Array>(slice.length);
        for (const condition of new Set(slice.map((p) => p.condition))) {
          const at = slice.flatMap((p, k) => (p.condition === condition ? [k] : []));
          const os = at.map((k) => slice[k]!.open);
          const xs = group.asIs ? os.map((o) => o.clean) : await inputs.inputs(os, condition);
          at.forEach((k, j) => (tensors[k] = xs[j]!));
        }
        const samples: SampleState[] = tensors.map((x) => newSample(x, coefficients, timesteps));
        const rows = slice.map((p) => accumulator(p.condition).add(p.open.image));
        await runTimesteps(stepper, samples, timesteps, (calls) => {
          for (const outputs of calls) {
            outputs.forEach((out, b) => rows[b]!(out.t, readStep(out)));
            done += slice.length;
          }
          onProgress?.(done, total);
        });
      }
    }
  }
  return [...byName.values()].map((a) => a.result());
}

/**
 * The results of readings obtained elsewhere (a fleet's answers, from a study's journal), in
 * the order a local evaluation makes them: each condition's images in the groups' order, so
 * that everything computed from the results (the bootstrap's resampling included) is the same.
 * An image without readings (unreadable) is left out, as a local evaluation leaves it out.
 */
export function resultsFromReadings(
  groups: readonly StudyGroup[],
  timesteps: number,
  record: boolean,
  readings: (image: StudyImage, condition: Condition) => readonly StepReading[] | undefined,
): ConditionResult[] {
  const byName = new Map<string, Accumulator>();
  for (const group of groups)
    for (const condition of group.conditions) {
      const name = conditionName(condition);
      let acc = byName.get(name);
      if (!acc) byName.set(name, (acc = new Accumulator(condition, timesteps, record)));
      for (const image of group.images) {
        const steps = readings(image, condition);
        if (!steps) continue;
        const add = acc.add(image);
        steps.forEach((step, t) => add(t, step));
      }
    }
  return [...byName.values()].map((a) => a.result());
}

class Accumulator {
  #correct: number[];
  #lost: number[];
  #gained: number[];
  #right: number[] = [];
  #ids: string[] = [];
  #trajectories: Trajectory[] = [];

  constructor(
    readonly condition: Condition,
    readonly timesteps: number,
    readonly record: boolean,
  ) {
    this.#correct = new Array<number>(timesteps + 1).fill(0);
    this.#lost = new Array<number>(timesteps + 1).fill(0);
    this.#gained = new Array<number>(timesteps + 1).fill(0);
  }

  /** A new image: returns what takes its answer at each timestep. */
  add(image: StudyImage) {
    const base = this.#right.length;
    this.#right.push(...new Array<number>(this.timesteps + 1).fill(0));
    this.#ids.push(image.id);
    const trajectory: Trajectory = { label: image.label, steps: [] };
    if (this.record) this.#trajectories.push(trajectory);
    let rightAtZero = false;
    return (t: number, step: StepReading) => {
      if (this.record) trajectory.steps.push(step);
      const right = step.top === image.label;
      if (t === 0) rightAtZero = right;
      if (right) {
        this.#correct[t]!++;
        this.#right[base + t] = 1;
      }
      if (rightAtZero && !right) this.#lost[t]!++;
      if (!rightAtZero && right) this.#gained[t]!++;
    };
  }

  result(): ConditionResult {
    const count = this.#ids.length;
    return {
      condition: this.condition,
      count,
      correct: this.#correct,
      accuracy: this.#correct.map((c) => (count ? c / count : NaN)),
      lost: this.#lost,
      gained: this.#gained,
      rightAt: Uint8Array.from(this.#right),
      ids: this.#ids,
      ...(this.record ? { trajectories: this.#trajectories } : {}),
    };
  }
}
