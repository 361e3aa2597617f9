/**
 * The compiled path: timesteps through the model's step graph (one whole timestep a call) or
 * its loop graph (several a call, the state kept inside), where the update of every r_i happens
 * inside the graph. This file only lays out each sample's state and weights as batch tensors
 * and takes the new state back as views into the graph's outputs; the numbers are those of
 * graph-by-graph-stepper.ts (the goldens and the batch-invariance tests run through both).
 */
import { stepNames, type LoadedModel } from '../model/load-model.js';
import type { Graph } from '../model/onnx-backend.js';
import type { FloatTensor } from '../tensor.js';
import { refusePastLast, type SampleState, type SampleStep } from './predictive-step.js';
import { FEEDFORWARD, StepperCore } from './stepper-core.js';

export class CompiledStepper extends StepperCore {
  /** The step graph, when open: single timesteps through it. */
  readonly #step: Graph | undefined;
  /**
   * The loop graph, when open: several timesteps per call, and single timesteps too when the
   * step graph is not open (served models open only the loop graph: graphsToOpen).
   */
  readonly #loop: Graph | undefined;
  readonly #names: { r: string[]; p: string[]; g: string[] };

  constructor(model: LoadedModel) {
    super(model);
    if (!model.step && !model.loop) throw new Error(`${model.dir}: no step or loop graph is open`);
    this.#step = model.step;
    this.#loop = model.loop;
    this.#names = stepNames(model.manifest.pcoders.length);
  }

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
    const steady = this.isSteady(samples);
    return this.#wholeSteps(samples, this.images(samples, steady), k, lastStep);
  }

  async step(samples: readonly SampleState[]): Promise<SampleStep[]> {
    refusePastLast(samples, 1);
    const lastStep = samples.every((s) => s.t === s.last);
    const x = this.images(samples, this.isSteady(samples));
    return (await this.#wholeSteps(samples, x, 1, lastStep))[0]!;
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
    const drive1 = await this.firstDrive(samples, x);
    // Each step's weights: a sample at its t = 0 takes the feed-forward pass.
    const coefficients = new Float32Array(k * batch * n * 4);
    for (let j = 0; j < k; j++)
      samples.forEach((s, b) => {
        const weights = s.coefficients ?? this.coefficients;
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
      image: { data: x, dims: this.dims(-1, batch) },
      drive1: { data: drive1, dims: this.dims(0, batch) },
      ...(loop
        ? { coefficients_all: { data: coefficients, dims: [k, batch, n, 4] } }
        : { coefficients: { data: coefficients, dims: [batch, n, 4] } }),
    };
    for (let i = 0; i < n; i++) {
      const dims = this.dims(i, batch);
      feeds[into + names.r[i]!] = { data: this.#batchOf(samples, (s) => s.r[i], this.sizes[i]!), dims };
      feeds[into + names.g[i]!] = { data: this.#batchOf(samples, (s) => s.g[i], this.sizes[i]!), dims };
      if (i > 0)
        feeds[into + names.p[i - 1]!] = {
          data: this.#batchOf(samples, (s) => s.p[i], this.targetSizes[i]!),
          dims: this.dims(i - 1, batch),
        };
    }
    // After every sample's last step only the answers and the representations are wanted: the
    // rest is not handed back (not copied out).
    const [logitsName, errorsName] = loop ? ['all_logits', 'all_errors'] : ['logits', 'errors'];
    const wanted = lastStep
      ? [logitsName, errorsName, ...names.r.map((r) => outOf + r)]
      : graph.outputs.map((o) => o.name);
    const out = await this.run(graph, feeds, wanted);
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
        s.r[i] = view(names.r[i]!, b, this.sizes[i]!);
        if (lastStep) continue;
        s.g[i] = view(names.g[i]!, b, this.sizes[i]!);
        if (i > 0) s.p[i] = view(names.p[i - 1]!, b, this.targetSizes[i]!);
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
}
