/**
 * The timestep loop of the Predify dynamics (shared/predify-dynamics.md), over a batch of
 * images. Every quantity is per sample, so an image's results do not depend on its batch.
 */
import type { LoadedModel } from '../model/load-model.js';
import type { Graph } from '../model/onnx-backend.js';
import { elementCount, type FloatTensor } from '../tensor.js';
import { errors } from '../errors.js';

/** One timestep's outputs for the whole batch, batch-major. */
export interface StepOutput {
  readonly t: number;
  /** logits[b * classes + k] */
  readonly logits: Float32Array;
  /** errors[b * pcoders + i]: e_i of sample b */
  readonly errors: Float32Array;
}

interface PCoderState {
  r: FloatTensor;
  prediction: FloatTensor;
  gradient: Float32Array;
  error: Float32Array;
}

/** Update coefficients of r_i(t); computed once per model, not per timestep. */
interface Coefficients {
  feedforward: number;
  feedback: number;
  memory: number;
  errorCorrection: number;
}

export class PredictiveLoop {
  readonly #model: LoadedModel;
  readonly #coefficients: Coefficients[];
  readonly #inputDims: readonly number[];

  constructor(model: LoadedModel) {
    this.#model = model;
    const { input, pcoders } = model.manifest;
    this.#inputDims = [input.channels, input.height, input.width];
    this.#coefficients = pcoders.map((pc, i) => {
      const { beta, lambda, alpha } = pc.hyperparameters;
      const isTop = i === pcoders.length - 1;
      const lam = isTop ? 0 : lambda;
      return {
        feedforward: beta,
        feedback: lam,
        memory: 1 - beta - lam,
        errorCorrection: alpha * pc.gradientScale.scale,
      };
    });
  }

  get classes(): number {
    return this.#model.manifest.labels.length;
  }

  get pcoderCount(): number {
    return this.#model.manifest.pcoders.length;
  }

  /**
   * Runs t = 0..timesteps on `batch` preprocessed images laid out back to back in `images`.
   * `onStep` sees each timestep as soon as it is computed.
   */
  async run(
    images: Float32Array,
    batch: number,
    timesteps: number,
    onStep?: (step: StepOutput) => void,
  ): Promise<StepOutput[]> {
    const perImage = elementCount(this.#inputDims);
    if (!Number.isInteger(batch) || batch < 1 || images.length !== batch * perImage) {
      throw errors.inputShape(`${images.length} values for ${batch} image(s) of [${this.#inputDims}]`);
    }
    if (!Number.isInteger(timesteps) || timesteps < 0) {
      throw errors.inputShape(`timesteps must be a non-negative integer, got ${timesteps}`);
    }
    const x: FloatTensor = { data: images, dims: [batch, ...this.#inputDims] };
    const steps: StepOutput[] = [];
    const emit = (step: StepOutput) => {
      steps.push(step);
      onStep?.(step);
    };

    const state = await this.#feedforward(x);
    emit(await this.#readout(0, state));
    for (let t = 1; t <= timesteps; t++) {
      await this.#timestep(x, state);
      emit(await this.#readout(t, state));
    }
    return steps;
  }

  /** t = 0: the plain feedforward pass, plus each PCoder's prediction, error and gradient. */
  async #feedforward(x: FloatTensor): Promise<PCoderState[]> {
    const state: PCoderState[] = [];
    let below = x;
    for (let i = 0; i < this.pcoderCount; i++) {
      const r = await runOne(this.#model.encoders[i]!, { input: below }, 'output');
      state.push({ r, ...(await this.#feedback(i, r, below)) });
      below = r;
    }
    return state;
  }

  /** t >= 1: PCoders updated bottom-up; PCoder i sees PCoder i-1's new representation. */
  async #timestep(x: FloatTensor, state: PCoderState[]): Promise<void> {
    let below = x;
    for (let i = 0; i < state.length; i++) {
      const s = state[i]!;
      const c = this.#coefficients[i]!;
      const drive = (await runOne(this.#model.encoders[i]!, { input: below }, 'output')).data;
      // p_{i+1}(t-1): PCoder i+1 has not been updated yet in this timestep.
      const fromAbove = i + 1 < state.length ? state[i + 1]!.prediction.data : undefined;
      const prev = s.r.data;
      const g = s.gradient;
      const next = new Float32Array(prev.length);
      if (fromAbove) {
        for (let k = 0; k < next.length; k++) {
          next[k] =
            c.feedforward * drive[k]! +
            c.feedback * fromAbove[k]! +
            c.memory * prev[k]! -
            c.errorCorrection * g[k]!;
        }
      } else {
        for (let k = 0; k < next.length; k++) {
          next[k] = c.feedforward * drive[k]! + c.memory * prev[k]! - c.errorCorrection * g[k]!;
        }
      }
      s.r = { data: next, dims: s.r.dims };
      Object.assign(s, await this.#feedback(i, s.r, below));
      below = s.r;
    }
  }

  async #feedback(i: number, r: FloatTensor, below: FloatTensor) {
    const out = await this.#model.feedback[i]!.run({ representation: r, target: below });
    return { prediction: out.prediction!, error: out.error!.data, gradient: out.gradient!.data };
  }

  async #readout(t: number, state: PCoderState[]): Promise<StepOutput> {
    const top = state[state.length - 1]!.r;
    const logits = (await runOne(this.#model.head, { input: top }, 'logits')).data;
    const batch = top.dims[0]!;
    const n = state.length;
    const errorsOut = new Float32Array(batch * n);
    for (let b = 0; b < batch; b++) {
      for (let i = 0; i < n; i++) errorsOut[b * n + i] = state[i]!.error[b]!;
    }
    return { t, logits, errors: errorsOut };
  }
}

async function runOne(
  graph: Graph,
  feeds: Record<string, FloatTensor>,
  output: string,
): Promise<FloatTensor> {
  return (await graph.run(feeds))[output]!;
}
