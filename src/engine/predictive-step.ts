/**
 * One timestep of the Predify dynamics (docs/dynamics.md) for a batch of samples
 * that may each be at a different timestep. The loop state lives per sample, so samples can
 * join or leave a batch between timesteps, and no sample's numbers depend on the others.
 *
 * A sample at t = 0 takes the feedforward pass: r_i(0) = E_i(r_{i-1}(0)), which is the
 * update below with beta = 1 and nothing else, so new and running samples share every graph
 * call of a step.
 */
import { stepNames, type LoadedModel } from '../model/load-model.js';
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
   * update, so a step in which every sample is at its last does not ask for them. (onnxruntime
   * computes them all the same, as it does not prune a graph by the outputs asked for; what is
   * saved is handing them back, about 8% of such a step on the shipped model.)
   */
  readonly last?: number;
  /**
   * r_i, p_i, g_i of the last computed timestep (empty before t = 0): the engine's own state.
   * Through the step graph, g_i is the gradient divided by its constant 2 / |p_i| (see
   * scripts/predify/step_graph.py) and p_1 is not kept; r_i is the representation either way.
   */
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

/** Its gradients were not computed at its last timestep: a sample must not go beyond it. */
function refusePastLast(samples: readonly SampleState[], k: number): void {
  const past = samples.find((s) => s.last !== undefined && s.t + k - 1 > s.last);
  if (past) throw new Error(`a sample was stepped past its last timestep ${past.last}`);
}

/** The update weights of a sample at t = 0: r_i(0) = E_i(r_{i-1}(0)). */
const FEEDFORWARD: Coefficients = { feedforward: 1, feedback: 0, memory: 0, errorCorrection: 0 };

export interface StepperOptions {
  /**
   * Run each timestep as one call of the model's step graph when it has one (the default), or
   * graph by graph with the update in TypeScript. Both compute the same numbers.
   */
  stepGraph?: boolean;
}

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
  /** The step graph, when this stepper runs each timestep through it and it is open. */
  readonly #step: Graph | undefined;
  /**
   * The loop graph, when it is open: several timesteps per call, and single timesteps too when
   * the step graph is not open (served models open only the loop graph: graphsToOpen).
   */
  readonly #loop: Graph | undefined;
  readonly #names: { r: string[]; p: string[]; g: string[] };

  constructor(model: LoadedModel, options: StepperOptions = {}) {
    this.model = model;
    const whole = options.stepGraph !== false;
    this.#step = whole ? model.step : undefined;
    this.#loop = whole ? model.loop : undefined;
    const { input, pcoders } = model.manifest;
    if (
      !this.#step &&
      !this.#loop &&
      (model.encoders.length < pcoders.length || model.feedback.length < pcoders.length || !model.head)
    )
      throw new Error(
        `${model.dir}: running graph by graph needs every graph; open the model with loadModel(..., 'all')`,
      );
    this.#names = stepNames(pcoders.length);
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

  /** How many timesteps one call of steps() may compute: more than one through the loop graph. */
  get maxStepsPerCall(): number {
    return this.#loop ? Infinity : 1;
  }

  /**
   * Computes the next k timesteps of every sample in one call (k ≤ maxStepsPerCall, and no
   * sample past its last), the same numbers as k calls of step(); the result is per timestep.
   */
  async steps(samples: readonly SampleState[], k: number): Promise<SampleStep[][]> {
    if (k === 1) return [await this.step(samples)];
    if (!Number.isInteger(k) || k < 1 || k > this.maxStepsPerCall)
      throw new Error(`${k} timesteps in one call: this model runs at most ${this.maxStepsPerCall}`);
    refusePastLast(samples, k);
    const lastStep = samples.every((s) => s.t + k - 1 === s.last);
    const steady = this.#isSteady(samples);
    return this.#wholeSteps(samples, this.#images(samples, steady), k, lastStep);
  }

  /** Computes the next timestep of every sample, in one batch, and advances their t. */
  async step(samples: readonly SampleState[]): Promise<SampleStep[]> {
    const batch = samples.length;
    refusePastLast(samples, 1);
    const lastStep = samples.every((s) => s.t === s.last);
    const steady = this.#isSteady(samples);
    const x = this.#images(samples, steady);
    if (this.#step || this.#loop) return (await this.#wholeSteps(samples, x, 1, lastStep))[0]!;
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

    const logits = (await this.#run(this.model.head!, { input: below })).logits!.data;
    const classes = this.classes;
    return samples.map((s, b) => ({
      t: s.t++,
      logits: logits.slice(b * classes, (b + 1) * classes),
      errors: errors[b]!,
    }));
  }

  /**
   * Timesteps through the step graph (k = 1, when open) or the loop graph: the update of every r_i
   * happens inside the graph, so this only lays out each sample's state and weights as batch
   * tensors, and takes the new state back as views into the graph's outputs.
   */
  async #wholeSteps(
    samples: readonly SampleState[],
    x: Float32Array,
    k: number,
    lastStep: boolean,
  ): Promise<SampleStep[][]> {
    const loop = k > 1 || !this.#step;
    const graph = loop ? this.#loop! : this.#step!;
    const [into, outOf] = loop ? ['init_', 'final_'] : ['', 'next_'];
    const batch = samples.length;
    const n = this.pcoderCount;
    const names = this.#names;
    const drive1 = await this.#firstDrive(samples);
    // Each step's weights: a sample at its t = 0 takes the feed-forward pass.
    const coefficients = new Float32Array(k * batch * n * 4);
    for (let j = 0; j < k; j++)
      samples.forEach((s, b) => {
        const weights = s.coefficients ?? this.#coefficients;
        for (let i = 0; i < n; i++) {
          const c = s.t + j === 0 ? FEEDFORWARD : weights[i]!;
          const at = ((j * batch + b) * n + i) * 4;
          coefficients[at] = c.feedforward;
          coefficients[at + 1] = c.feedback;
          coefficients[at + 2] = c.memory;
          coefficients[at + 3] = c.errorCorrection;
        }
      });
    const feeds: Record<string, FloatTensor> = {
      image: { data: x, dims: this.#dims(-1, batch) },
      drive1: { data: drive1, dims: this.#dims(0, batch) },
      ...(loop
        ? { coefficients_all: { data: coefficients, dims: [k, batch, n, 4] } }
        : { coefficients: { data: coefficients, dims: [batch, n, 4] } }),
    };
    for (let i = 0; i < n; i++) {
      const dims = this.#dims(i, batch);
      feeds[into + names.r[i]!] = { data: this.#batchOf(samples, (s) => s.r[i], this.#sizes[i]!), dims };
      feeds[into + names.g[i]!] = { data: this.#batchOf(samples, (s) => s.g[i], this.#sizes[i]!), dims };
      if (i > 0)
        feeds[into + names.p[i - 1]!] = {
          data: this.#batchOf(samples, (s) => s.p[i], this.#targetSizes[i]!),
          dims: this.#dims(i - 1, batch),
        };
    }
    // After every sample's last step only the answers and the representations are wanted: the
    // rest is not handed back (not copied out).
    const [logitsName, errorsName] = loop ? ['all_logits', 'all_errors'] : ['logits', 'errors'];
    const wanted = lastStep
      ? [logitsName, errorsName, ...names.r.map((r) => outOf + r)]
      : graph.outputs.map((o) => o.name);
    const out = await this.#run(graph, feeds, wanted);
    const view = (name: string, b: number, size: number) =>
      out[outOf + name]!.data.subarray(b * size, (b + 1) * size);
    const logits = out[logitsName]!.data;
    const errors = out[errorsName]!.data;
    const classes = this.classes;
    const steps = Array.from({ length: k }, (_, j) =>
      samples.map((s, b) => ({
        t: s.t + j,
        logits: logits.slice((j * batch + b) * classes, (j * batch + b + 1) * classes),
        errors: errors.slice((j * batch + b) * n, (j * batch + b + 1) * n),
      })),
    );
    samples.forEach((s, b) => {
      s.t += k;
      for (let i = 0; i < n; i++) {
        s.r[i] = view(names.r[i]!, b, this.#sizes[i]!);
        if (lastStep) continue;
        s.g[i] = view(names.g[i]!, b, this.#sizes[i]!);
        if (i > 0) s.p[i] = view(names.p[i - 1]!, b, this.#targetSizes[i]!);
      }
    });
    return steps;
  }

  /**
   * One state tensor of the batch, from each sample's view (zeros for a sample at t = 0). When
   * the views already lie back to back in one buffer, as the previous step's output does while
   * the batch stays the same, that buffer is fed as it is, without a copy.
   */
  #batchOf(
    samples: readonly SampleState[],
    pick: (s: SampleState) => Float32Array | undefined,
    size: number,
  ): Float32Array {
    const first = samples[0] && pick(samples[0]);
    if (
      first &&
      first.byteOffset + samples.length * size * 4 <= first.buffer.byteLength &&
      samples.every((s, b) => {
        const v = pick(s);
        return s.t > 0 && v?.buffer === first.buffer && v.byteOffset === first.byteOffset + b * size * 4;
      })
    )
      return new Float32Array(first.buffer, first.byteOffset, samples.length * size);
    const out = new Float32Array(samples.length * size);
    samples.forEach((s, b) => {
      const v = s.t > 0 ? pick(s) : undefined;
      if (v) out.set(v, b * size);
    });
    return out;
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
