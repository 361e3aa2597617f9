/**
 * Runs t = 0..T for a fixed batch of images: the simplest client of the stepper, used by the
 * CLI, the golden checks and the benchmarks.
 */
import { errors } from '../errors.js';
import type { LoadedModel } from '../model/load-model.js';
import { newSample, type StepperOptions, type PredictiveStepper } from './predictive-step.js';
import { openStepper } from './open-stepper.js';

/** One timestep's outputs for the whole batch, batch-major. */
export interface StepOutput {
  readonly t: number;
  /** logits[b * classes + k] */
  readonly logits: Float32Array;
  /** errors[b * pcoders + i]: e_i of sample b */
  readonly errors: Float32Array;
}

export interface LoopOptions extends StepperOptions {
  /** most timesteps per onnxruntime call, for a model with a loop graph (default 1) */
  stepsPerCall?: number;
}

export class PredictiveLoop {
  readonly stepper: PredictiveStepper;
  readonly #stepsPerCall: number;

  constructor(model: LoadedModel, options: LoopOptions = {}) {
    this.stepper = openStepper(model, options);
    this.#stepsPerCall = Math.min(options.stepsPerCall ?? 1, this.stepper.maxStepsPerCall);
  }

  get classes(): number {
    return this.stepper.classes;
  }

  get pcoderCount(): number {
    return this.stepper.pcoderCount;
  }

  /** Runs t = 0..timesteps on `batch` preprocessed images laid out back to back in `images`. */
  async run(images: Float32Array, batch: number, timesteps: number): Promise<StepOutput[]> {
    const size = this.stepper.inputSize;
    if (!Number.isInteger(batch) || batch < 1 || images.length !== batch * size) {
      throw errors.inputShape(`${images.length} values for ${batch} image(s) of ${size} values`);
    }
    if (!Number.isInteger(timesteps) || timesteps < 0) {
      throw errors.inputShape(`timesteps must be a non-negative integer, got ${timesteps}`);
    }
    const samples = Array.from({ length: batch }, (_, b) =>
      newSample(images.subarray(b * size, (b + 1) * size), undefined, timesteps),
    );
    const classes = this.classes;
    const n = this.pcoderCount;
    const steps: StepOutput[] = [];
    for (let t = 0; t <= timesteps;) {
      const k = Math.min(this.#stepsPerCall, timesteps + 1 - t);
      for (const out of await this.stepper.steps(samples, k)) {
        const logits = new Float32Array(batch * classes);
        const errs = new Float32Array(batch * n);
        out.forEach((s, b) => {
          logits.set(s.logits, b * classes);
          errs.set(s.errors, b * n);
        });
        steps.push({ t: t++, logits, errors: errs });
      }
    }
    return steps;
  }
}
