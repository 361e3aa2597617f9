/**
 * Rehearsals only (ENGINE_FAULTS with ENGINE_STAND_IN): a stepper that runs none of the model's
 * graphs, standing in for an accelerator on a machine without one. Each call gathers the batch's
 * images into one input tensor, as a call to a GPU is fed, then waits its step time without
 * using a core, as a thread waiting on a GPU does. What remains on the host's cores is what a
 * GPU node's host does for every image: receive, normalise, batch, answer. So the images a
 * second this host can feed a GPU are measured here, for the model's own input size
 * (bench:handoff). Its answers mean nothing: every logit 0, every error 1.
 */
import type { LoadedModel } from '../model/load-model.js';
import { refusePastLast, type SampleState, type SampleStep } from './predictive-step.js';
import { StepperCore } from './stepper-core.js';

/** Marks a sample as past its first step, so that a batch that stays the same is not gathered again. */
const NO_DRIVE = new Float32Array(0);

export class StandInStepper extends StepperCore {
  readonly maxStepsPerCall = 1;
  readonly #stepMs: number;
  readonly #clock = new Int32Array(new SharedArrayBuffer(4));

  constructor(model: LoadedModel, stepMs: number) {
    super(model);
    this.#stepMs = stepMs;
  }

  async steps(samples: readonly SampleState[], k: number): Promise<SampleStep[][]> {
    if (k !== 1) throw new Error(`${k} timesteps in one call: the stand-in runs one`);
    return [await this.step(samples)];
  }

  step(samples: readonly SampleState[]): Promise<SampleStep[]> {
    refusePastLast(samples, 1);
    this.images(samples, this.isSteady(samples));
    const started = performance.now();
    // session.run blocks its thread; so does this, without computing.
    if (this.#stepMs > 0) Atomics.wait(this.#clock, 0, 0, this.#stepMs);
    this.sessionSeconds += (performance.now() - started) / 1000;
    return Promise.resolve(
      samples.map((s) => {
        s.drive1 ??= NO_DRIVE;
        return {
          t: s.t++,
          logits: new Float32Array(this.classes),
          errors: new Float32Array(this.pcoderCount).fill(1),
        };
      }),
    );
  }
}
