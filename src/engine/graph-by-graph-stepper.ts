/**
 * The dynamics written out, graph by graph: each PCoder's encoder E_i and feedback module D_i
 * called in turn, and the update of r_i in TypeScript, in update() below. This is the
 * specification in code (docs/dynamics.md), the reference the compiled path is tested against,
 * and what runs a model exported without a step graph.
 */
import type { LoadedModel } from '../model/load-model.js';
import type { FloatTensor } from '../tensor.js';
import { refusePastLast, type SampleState, type SampleStep } from './predictive-step.js';
import { StepperCore } from './stepper-core.js';

const ALL_OUTPUTS = ['prediction', 'error', 'gradient'] as const;
const NO_GRADIENT = ['prediction', 'error'] as const;

export class GraphByGraphStepper extends StepperCore {
  /** Per PCoder, at most two batch buffers for r_i (see #representationBuffer). */
  #buffers: Float32Array[][] = [];
  readonly maxStepsPerCall = 1;

  constructor(model: LoadedModel) {
    super(model);
    const { pcoders } = model.manifest;
    if (model.encoders.length < pcoders.length || model.feedback.length < pcoders.length || !model.head)
      throw new Error(
        `${model.dir}: running graph by graph needs every graph; open the model with loadModel(..., 'all')`,
      );
  }

  async steps(samples: readonly SampleState[], k: number): Promise<SampleStep[][]> {
    if (k !== 1) throw new Error(`${k} timesteps in one call: this model runs at most 1`);
    return [await this.step(samples)];
  }

  /** Computes the next timestep of every sample, in one batch, and advances their t. */
  async step(samples: readonly SampleState[]): Promise<SampleStep[]> {
    const batch = samples.length;
    refusePastLast(samples, 1);
    const lastStep = samples.every((s) => s.t === s.last);
    const steady = this.isSteady(samples);
    const x = this.images(samples, steady);
    let below: FloatTensor = { data: x, dims: this.dims(-1, batch) };
    const errors = samples.map(() => new Float32Array(this.pcoderCount));

    for (let i = 0; i < this.pcoderCount; i++) {
      const size = this.sizes[i]!;
      const drive =
        i === 0
          ? await this.firstDrive(samples, x)
          : (await this.run(this.model.encoders[i]!, { input: below })).output!.data;
      const r = this.#representationBuffer(i, batch * size, steady);
      samples.forEach((s, b) => this.#update(i, s, drive, r, b * size));
      const rTensor: FloatTensor = { data: r, dims: this.dims(i, batch) };
      const out = await this.run(
        this.model.feedback[i]!,
        { representation: rTensor, target: below },
        lastStep ? NO_GRADIENT : ALL_OUTPUTS,
      );
      const prediction = out.prediction!.data;
      const gradient = out.gradient?.data;
      const error = out.error!.data;
      const targetSize = this.targetSizes[i]!;
      samples.forEach((s, b) => {
        s.r[i] = r.subarray(b * size, (b + 1) * size);
        if (gradient) s.g[i] = gradient.subarray(b * size, (b + 1) * size);
        s.p[i] = prediction.subarray(b * targetSize, (b + 1) * targetSize);
        errors[b]![i] = error[b]!;
      });
      below = rTensor;
    }

    const logits = (await this.run(this.model.head!, { input: below })).logits!.data;
    const classes = this.classes;
    return samples.map((s, b) => ({
      t: s.t++,
      logits: logits.slice(b * classes, (b + 1) * classes),
      errors: errors[b]!,
    }));
  }

  /**
   * Where r_i(t) of the batch goes. In steady state every sample's r_i(t-1) lies in the buffer
   * written by the previous step, so the one before it is free: two buffers per PCoder
   * alternate. Otherwise some sample may still read from either, so a new one is allocated.
   */
  #representationBuffer(i: number, length: number, steady: boolean): Float32Array {
    const previous = this.constant.samples[0]?.r[i]?.buffer;
    const pool = steady ? (this.#buffers[i] ?? []).filter((buf) => buf.length === length) : [];
    const spare = pool.find((buf) => buf.buffer !== previous);
    if (spare) return spare;
    const fresh = new Float32Array(length);
    this.#buffers[i] = [...pool.filter((buf) => buf.buffer === previous), fresh];
    return fresh;
  }

  /** r_i(t) of sample `s` into out[offset..], from the drive E_i(r_{i-1}(t)) of the batch. */
  #update(i: number, s: SampleState, drive: Float32Array, out: Float32Array, offset: number): void {
    const size = this.sizes[i]!;
    if (s.t === 0) {
      out.set(drive.subarray(offset, offset + size), offset);
      return;
    }
    const {
      feedforward: a,
      feedback: l,
      memory: m,
      errorCorrection: e,
    } = (s.coefficients ?? this.coefficients)[i]!;
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
}
