/**
 * One timestep of the Predify dynamics (docs/dynamics.md) for a batch of samples
 * that may each be at a different timestep. The loop state lives per sample, so samples can
 * join or leave a batch between timesteps, and no sample's numbers depend on the others.
 *
 * A sample at t = 0 takes the feedforward pass: r_i(0) = E_i(r_{i-1}(0)), which is the
 * update below with beta = 1 and nothing else, so new and running samples share every graph
 * call of a step.
 */
import type { LoadedModel } from '../model/load-model.js';
import { coefficientsOf, type Coefficients } from '../model/hyperparameters.js';
import { gradientScales } from './profiles.js';
import type { Graph } from '../model/onnx-backend.js';
import { elementCount, type FloatTensor } from '../tensor.js';

export interface SampleState {
  readonly image: Float32Array;
  /** the timestep the next step computes */
  t: number;
  /** E_1(x): the image never changes, so neither does the first PCoder's drive */
  drive1?: Float32Array;
  /** this sample's update coefficients per PCoder (a hyperparameter profile); else the model's */
  coefficients?: readonly Coefficients[];
  /**
   * The last timestep this sample will be stepped to, when known. Its error gradients feed no
   * update, so a step in which every sample is at its last skips computing them.
   */
  readonly last?: number;
  /** r_i, p_i, g_i of the last computed timestep (empty before t = 0) */
  r: Float32Array[];
  p: Float32Array[];
  g: Float32Array[];
}

export interface SampleStep {
  t: number;
  logits: Float32Array;
  /** e_i(t), one per PCoder */
  errors: Float32Array;
}

export function newSample(
  image: Float32Array,
  coefficients?: readonly Coefficients[],
  last?: number,
): SampleState {
  return {
    image,
    t: 0,
    r: [],
    p: [],
    g: [],
    ...(coefficients ? { coefficients } : {}),
    ...(last === undefined ? {} : { last }),
  };
}

const ALL_OUTPUTS = ['prediction', 'error', 'gradient'] as const;
const NO_GRADIENT = ['prediction', 'error'] as const;

export class PredictiveStepper {
  readonly model: LoadedModel;
  readonly inputSize: number;
  readonly #coefficients: Coefficients[];
  readonly #sizes: number[];
  readonly #targetSizes: number[];
  /** Batch-level copies of what does not change between timesteps (see #images). */
  #constant: { samples: SampleState[]; x: Float32Array; drive1: Float32Array } = {
    samples: [],
    x: new Float32Array(0),
    drive1: new Float32Array(0),
  };
  /** Per PCoder, at most two batch buffers for r_i (see #representationBuffer). */
  #buffers: Float32Array[][] = [];
  /** Seconds spent inside onnxruntime, for the loop-overhead benchmark. */
  sessionSeconds = 0;

  constructor(model: LoadedModel) {
    this.model = model;
    const { input, pcoders } = model.manifest;
    this.inputSize = input.channels * input.height * input.width;
    this.#sizes = pcoders.map((pc) => elementCount(pc.shape));
    this.#targetSizes = pcoders.map((pc) => elementCount(pc.targetShape));
    this.#coefficients = coefficientsOf(
      pcoders.map((pc) => pc.hyperparameters),
      gradientScales(model.manifest),
    );
  }

  get classes(): number {
    return this.model.manifest.labels.length;
  }

  get pcoderCount(): number {
    return this.#sizes.length;
  }

  /** Computes the next timestep of every sample, in one batch, and advances their t. */
  async step(samples: readonly SampleState[]): Promise<SampleStep[]> {
    const batch = samples.length;
    const past = samples.find((s) => s.last !== undefined && s.t > s.last);
    if (past) throw new Error(`a sample was stepped past its last timestep ${past.last}`);
    const lastStep = samples.every((s) => s.t === s.last);
    const steady = this.#isSteady(samples);
    const x = this.#images(samples, steady);
    let below: FloatTensor = { data: x, dims: this.#dims(-1, batch) };
    const errors = samples.map(() => new Float32Array(this.pcoderCount));

    for (let i = 0; i < this.pcoderCount; i++) {
      const size = this.#sizes[i]!;
      const drive =
        i === 0
          ? await this.#firstDrive(samples)
          : (await this.#run(this.model.encoders[i]!, { input: below })).output!.data;
      const r = this.#representationBuffer(i, batch * size, steady);
      samples.forEach((s, b) => this.#update(i, s, drive, r, b * size));
      const rTensor: FloatTensor = { data: r, dims: this.#dims(i, batch) };
      const out = await this.#run(
        this.model.feedback[i]!,
        { representation: rTensor, target: below },
        lastStep ? NO_GRADIENT : ALL_OUTPUTS,
      );
      const prediction = out.prediction!.data;
      const gradient = out.gradient?.data;
      const error = out.error!.data;
      const targetSize = this.#targetSizes[i]!;
      samples.forEach((s, b) => {
        s.r[i] = r.subarray(b * size, (b + 1) * size);
        if (gradient) s.g[i] = gradient.subarray(b * size, (b + 1) * size);
        s.p[i] = prediction.subarray(b * targetSize, (b + 1) * targetSize);
        errors[b]![i] = error[b]!;
      });
      below = rTensor;
    }

    const logits = (await this.#run(this.model.head, { input: below })).logits!.data;
    const classes = this.classes;
    return samples.map((s, b) => ({
      t: s.t++,
      logits: logits.slice(b * classes, (b + 1) * classes),
      errors: errors[b]!,
    }));
  }

  /**
   * E_1(x) for the batch: computed once per sample, at its t = 0, for the samples that are new
   * in this step; the others reuse theirs.
   */
  async #firstDrive(samples: readonly SampleState[]): Promise<Float32Array> {
    const size = this.#sizes[0]!;
    const fresh = samples.filter((s) => !s.drive1);
    if (fresh.length > 0) {
      const x = new Float32Array(fresh.length * this.inputSize);
      fresh.forEach((s, b) => x.set(s.image, b * this.inputSize));
      const out = (
        await this.#run(this.model.encoders[0]!, { input: { data: x, dims: this.#dims(-1, fresh.length) } })
      ).output!.data;
      fresh.forEach((s, b) => (s.drive1 = out.slice(b * size, (b + 1) * size)));
    }
    if (fresh.length > 0 || this.#constant.drive1.length !== samples.length * size) {
      this.#constant.drive1 = new Float32Array(samples.length * size);
      samples.forEach((s, b) => this.#constant.drive1.set(s.drive1!, b * size));
    }
    return this.#constant.drive1;
  }

  /**
   * The batch's images. They and E_1(x) stay the same while the batch does: in steady state
   * (no one joining or leaving) they are reused instead of gathered again every timestep.
   */
  #images(samples: readonly SampleState[], steady: boolean): Float32Array {
    const c = this.#constant;
    if (!steady) {
      c.samples = [...samples];
      c.x = new Float32Array(samples.length * this.inputSize);
      samples.forEach((s, b) => c.x.set(s.image, b * this.inputSize));
      c.drive1 = new Float32Array(0);
    }
    return c.x;
  }

  /** The same samples, in the same order, as the previous step, all past their t = 0. */
  #isSteady(samples: readonly SampleState[]): boolean {
    const last = this.#constant.samples;
    return last.length === samples.length && samples.every((s, b) => s === last[b] && s.drive1);
  }

  /**
   * Where r_i(t) of the batch goes. In steady state every sample's r_i(t-1) lies in the buffer
   * written by the previous step, so the one before it is free: two buffers per PCoder
   * alternate. Otherwise some sample may still read from either, so a new one is allocated.
   */
  #representationBuffer(i: number, length: number, steady: boolean): Float32Array {
    const previous = this.#constant.samples[0]?.r[i]?.buffer;
    const pool = steady ? (this.#buffers[i] ?? []).filter((buf) => buf.length === length) : [];
    const spare = pool.find((buf) => buf.buffer !== previous);
    if (spare) return spare;
    const fresh = new Float32Array(length);
    this.#buffers[i] = [...pool.filter((buf) => buf.buffer === previous), fresh];
    return fresh;
  }

  /** r_i(t) of sample `s` into out[offset..], from the drive E_i(r_{i-1}(t)) of the batch. */
  #update(i: number, s: SampleState, drive: Float32Array, out: Float32Array, offset: number): void {
    const size = this.#sizes[i]!;
    if (s.t === 0) {
      out.set(drive.subarray(offset, offset + size), offset);
      return;
    }
    const {
      feedforward: a,
      feedback: l,
      memory: m,
      errorCorrection: e,
    } = (s.coefficients ?? this.#coefficients)[i]!;
    const prev = s.r[i]!;
    const g = s.g[i]!;
    // p_{i+1}(t-1): PCoder i+1 of this sample has not been stepped yet in this timestep.
    const above = i + 1 < this.pcoderCount ? s.p[i + 1]! : undefined;
    if (above) {
      for (let k = 0; k < size; k++)
        out[offset + k] = a * drive[offset + k]! + l * above[k]! + m * prev[k]! - e * g[k]!;
    } else {
      for (let k = 0; k < size; k++) out[offset + k] = a * drive[offset + k]! + m * prev[k]! - e * g[k]!;
    }
  }

  #dims(i: number, batch: number): number[] {
    const { input, pcoders } = this.model.manifest;
    return i < 0 ? [batch, input.channels, input.height, input.width] : [batch, ...pcoders[i]!.shape];
  }

  async #run(
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
