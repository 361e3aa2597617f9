/**
 * What both steppers share (predictive-step.ts): the model's sizes and update weights, the
 * batch's images and first drive E_1(x) kept while the batch stays the same, and the timed
 * graph call. No dynamics here.
 */
import { coefficientsOf, type Coefficients } from '../model/hyperparameters.js';
import type { LoadedModel } from '../model/load-model.js';
import type { Graph } from '../model/onnx-backend.js';
import { elementCount, type FloatTensor } from '../tensor.js';
import type { PredictiveStepper, SampleState, SampleStep } from './predictive-step.js';
import { gradientScales } from './profiles.js';

/** The update weights of a sample at t = 0: r_i(0) = E_i(r_{i-1}(0)). */
export const FEEDFORWARD: Coefficients = { feedforward: 1, feedback: 0, memory: 0, errorCorrection: 0 };

export abstract class StepperCore implements PredictiveStepper {
  readonly model: LoadedModel;
  readonly inputSize: number;
  /** the model's own update weights per PCoder (a sample may bring a profile's) */
  protected readonly coefficients: Coefficients[];
  protected readonly sizes: number[];
  protected readonly targetSizes: number[];
  /** Batch-level copies of what does not change between timesteps (see images()). */
  protected constant: { samples: SampleState[]; x: Float32Array; drive1: Float32Array } = {
    samples: [],
    x: new Float32Array(0),
    drive1: new Float32Array(0),
  };
  sessionSeconds = 0;

  constructor(model: LoadedModel) {
    this.model = model;
    const { input, pcoders } = model.manifest;
    this.inputSize = input.channels * input.height * input.width;
    this.sizes = pcoders.map((pc) => elementCount(pc.shape));
    this.targetSizes = pcoders.map((pc) => elementCount(pc.targetShape));
    this.coefficients = coefficientsOf(
      pcoders.map((pc) => pc.hyperparameters),
      gradientScales(model.manifest),
    );
  }

  get classes(): number {
    return this.model.manifest.labels.length;
  }

  get pcoderCount(): number {
    return this.sizes.length;
  }

  abstract readonly maxStepsPerCall: number;
  abstract steps(samples: readonly SampleState[], k: number): Promise<SampleStep[][]>;
  abstract step(samples: readonly SampleState[]): Promise<SampleStep[]>;

  /**
   * E_1(x) for the batch: computed once per sample, at its t = 0, for the samples that are new
   * in this step; the others reuse theirs. `images` is the batch's images (images()): when every
   * sample is new, as at T = 0, they are fed as they are rather than gathered a second time.
   */
  protected async firstDrive(samples: readonly SampleState[], images: Float32Array): Promise<Float32Array> {
    const size = this.sizes[0]!;
    const fresh = samples.filter((s) => !s.drive1);
    if (fresh.length > 0) {
      let x = images;
      if (fresh.length < samples.length) {
        x = new Float32Array(fresh.length * this.inputSize);
        fresh.forEach((s, b) => x.set(s.image, b * this.inputSize));
      }
      const out = (
        await this.run(this.model.encoders[0]!, { input: { data: x, dims: this.dims(-1, fresh.length) } })
      ).output!.data;
      fresh.forEach((s, b) => (s.drive1 = out.slice(b * size, (b + 1) * size)));
    }
    if (fresh.length > 0 || this.constant.drive1.length !== samples.length * size) {
      this.constant.drive1 = new Float32Array(samples.length * size);
      samples.forEach((s, b) => this.constant.drive1.set(s.drive1!, b * size));
    }
    return this.constant.drive1;
  }

  /**
   * The batch's images. They and E_1(x) stay the same while the batch does: in steady state
   * (no one joining or leaving) they are reused instead of gathered again every timestep.
   */
  protected images(samples: readonly SampleState[], steady: boolean): Float32Array {
    const c = this.constant;
    if (!steady) {
      c.samples = [...samples];
      c.x = new Float32Array(samples.length * this.inputSize);
      samples.forEach((s, b) => c.x.set(s.image, b * this.inputSize));
      c.drive1 = new Float32Array(0);
    }
    return c.x;
  }

  /** The same samples, in the same order, as the previous step, all past their t = 0. */
  protected isSteady(samples: readonly SampleState[]): boolean {
    const last = this.constant.samples;
    return last.length === samples.length && samples.every((s, b) => s === last[b] && s.drive1);
  }

  protected dims(i: number, batch: number): number[] {
    const { input, pcoders } = this.model.manifest;
    return i < 0 ? [batch, input.channels, input.height, input.width] : [batch, ...pcoders[i]!.shape];
  }

  protected async run(
    graph: Graph,
    feeds: Record<string, FloatTensor>,
    outputs?: readonly string[],
  ): Promise<Record<string, FloatTensor>> {
    const started = performance.now();
    try {
      return await graph.run(feeds, outputs);
    } finally {
      this.sessionSeconds += (performance.now() - started) / 1000;
    }
  }
}
