/**
 * Inputs for racing a step graph against other forms of the same timesteps (a Loop graph, one
 * graph per PCoder), with onnxruntime directly: a batch of random images, E_1 of them, every
 * step's update weights (the feed-forward pass first, then a running sample's) and a zero state.
 */
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { DEFAULT_MODEL, paperModel } from './lib.js';

export const SESSION_OPTIONS = (threads: number): ort.InferenceSession.SessionOptions => ({
  intraOpNumThreads: threads,
  extra: { session: { intra_op: { allow_spinning: '0' } } },
});

const FIXED = ['image', 'drive1', 'coefficients'];

export interface StepFixture {
  image: ort.Tensor;
  drive1: ort.Tensor;
  /** the step graph's state inputs: r1..rn, p2..pn, g1..gn */
  stateNames: string[];
  /** PCoders */
  n: number;
  /** step k's update weights, [batch, n, 4] */
  coefficients(k: number): ort.Tensor;
  /** all K steps' weights, [K, batch, n, 4] */
  allCoefficients: ort.Tensor;
  zeroState(): Record<string, ort.Tensor>;
}

export async function stepFixture(
  step: ort.InferenceSession,
  encoder1: ort.InferenceSession,
  batch: number,
  K: number,
): Promise<StepFixture> {
  const dims = Object.fromEntries(
    step.inputMetadata.map((m) => [
      m.name,
      (m.isTensor ? m.shape : []).map((d) => (typeof d === 'number' ? d : batch)),
    ]),
  ) as Record<string, number[]>;
  const count = (d: readonly number[]) => d.reduce((a, b) => a * b, 1);
  let seed = 1;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
  const image = new ort.Tensor(
    'float32',
    Float32Array.from({ length: count(dims.image!) }, random),
    dims.image,
  );
  const drive1 = (await encoder1.run({ input: image })).output!;
  const n = dims.coefficients![1]!;
  const weights = new Float32Array(K * batch * n * 4);
  for (let k = 0; k < K; k++)
    for (let j = 0; j < batch * n; j++)
      weights.set(k === 0 ? [1, 0, 0, 0] : [0.8, 0.1, 0.1, 0.05], (k * batch * n + j) * 4);
  const stateNames = step.inputNames.filter((name) => !FIXED.includes(name));
  return {
    image,
    drive1,
    stateNames,
    n,
    coefficients: (k) =>
      new ort.Tensor('float32', weights.subarray(k * batch * n * 4, (k + 1) * batch * n * 4), [batch, n, 4]),
    allCoefficients: new ort.Tensor('float32', weights, [K, batch, n, 4]),
    zeroState: () =>
      Object.fromEntries(
        stateNames.map((s) => [s, new ort.Tensor('float32', new Float32Array(count(dims[s]!)), dims[s])]),
      ),
  };
}

/** Median wall time of five runs of `f`, in ms. */
export async function medianMs(f: () => Promise<unknown>): Promise<number> {
  const times: number[] = [];
  for (let r = 0; r < 5; r++) {
    const started = performance.now();
    await f();
    times.push(performance.now() - started);
  }
  return times.sort((x, y) => x - y)[2]!;
}

/** K timesteps through the step graph, the state handed back and fed again each call: the logits of each. */
export async function viaStepGraph(
  step: ort.InferenceSession,
  f: StepFixture,
  K: number,
): Promise<Float32Array[]> {
  let state = f.zeroState();
  const logits: Float32Array[] = [];
  for (let k = 0; k < K; k++) {
    const out = await step.run({
      image: f.image,
      drive1: f.drive1,
      coefficients: f.coefficients(k),
      ...state,
    });
    logits.push(out.logits!.data as Float32Array);
    state = Object.fromEntries(f.stateNames.map((s) => [s, out[`next_${s}`]!]));
  }
  return logits;
}

/**
 * Two ways of computing the same timesteps, raced: each one's mean over `rounds` of its median
 * of five, alternating, and the largest logit difference between them.
 */
export async function race(
  a: () => Promise<Float32Array[]>,
  b: () => Promise<Float32Array[]>,
  rounds: number,
): Promise<{ aMs: number; bMs: number; diff: number }> {
  const [x, y] = [await a(), await b()];
  const diff = Math.max(...x.flatMap((v, k) => [...v].map((w, j) => Math.abs(w - y[k]![j]!))));
  let [aMs, bMs] = [0, 0];
  for (let round = 0; round < rounds; round++) {
    aMs += await medianMs(a);
    bMs += await medianMs(b);
  }
  return { aMs: aMs / rounds, bMs: bMs / rounds, diff };
}

/**
 * The command line of a race: the model by name (fashion-pc, pvgg16, pefficientnet_b0), K
 * timesteps, the batch sizes, rounds and threads; and the model's directory.
 */
export function raceArgs() {
  const { values } = parseArgs({
    options: {
      model: { type: 'string', default: 'fashion-pc' },
      steps: { type: 'string', default: '9' },
      batches: { type: 'string', default: '1,32' },
      rounds: { type: 'string', default: '2' },
      threads: { type: 'string', default: '2' },
    },
  });
  const dir = values.model === 'fashion-pc' ? DEFAULT_MODEL : paperModel(values.model).dir;
  return { values, K: Number(values.steps), dir };
}
