/**
 * The shipped loop graph (scripts/predify/loop_graph.py, its weights shared with the step graph
 * in step.onnx.data): K timesteps in one call of an ONNX Loop around the step graph give the
 * numbers of K step-graph calls, for a batch in which a sample starts inside the chunk.
 */
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { expect, it } from 'vitest';
import { DEFAULT_MODEL } from '../paths.js';

it('runs K timesteps with the numbers of K step-graph calls', async () => {
  const file = path.join(DEFAULT_MODEL, 'loop.onnx');
  const options = { intraOpNumThreads: 1 };
  const step = await ort.InferenceSession.create(path.join(DEFAULT_MODEL, 'step.onnx'), options);
  const loop = await ort.InferenceSession.create(file, options);
  const encoder1 = await ort.InferenceSession.create(path.join(DEFAULT_MODEL, 'encoder1.onnx'), options);
  const batch = 2;
  const K = 3;
  const dims = Object.fromEntries(
    step.inputMetadata.map((m) => [
      m.name,
      (m.isTensor ? m.shape : []).map((d) => (typeof d === 'number' ? d : batch)),
    ]),
  ) as Record<string, number[]>;
  const count = (d: readonly number[]) => d.reduce((a, b) => a * b, 1);
  const image = new ort.Tensor(
    'float32',
    Float32Array.from({ length: count(dims.image!) }, (_, k) => Math.sin(k) * 0.8),
    dims.image,
  );
  const drive1 = (await encoder1.run({ input: image })).output!;
  const n = dims.coefficients![1]!;
  // Sample 0 starts at step 0, sample 1 at step 1 (zero state and weights until then).
  const weights = new Float32Array(K * batch * n * 4);
  for (let k = 0; k < K; k++)
    for (let b = 0; b < batch; b++)
      for (let i = 0; i < n; i++) {
        const t = k - b;
        const w = t < 0 ? [0, 0, 0, 0] : t === 0 ? [1, 0, 0, 0] : [0.7, 0.2, 0.1, 0.05];
        weights.set(w, ((k * batch + b) * n + i) * 4);
      }
  const stateNames = step.inputNames.filter((s) => !['image', 'drive1', 'coefficients'].includes(s));
  const zeros = () =>
    Object.fromEntries(
      stateNames.map((s) => [s, new ort.Tensor('float32', new Float32Array(count(dims[s]!)), dims[s])]),
    );

  let state: Record<string, ort.Tensor> = zeros();
  const stepped: Float32Array[] = [];
  for (let k = 0; k < K; k++) {
    const coefficients = new ort.Tensor(
      'float32',
      weights.slice(k * batch * n * 4, (k + 1) * batch * n * 4),
      [batch, n, 4],
    );
    const out = await step.run({ image, drive1, coefficients, ...state });
    stepped.push(out.logits!.data as Float32Array);
    state = Object.fromEntries(stateNames.map((s) => [s, out[`next_${s}`]!]));
  }
  const looped = await loop.run({
    image,
    drive1,
    coefficients_all: new ort.Tensor('float32', weights, [K, batch, n, 4]),
    ...Object.fromEntries(Object.entries(zeros()).map(([s, t]) => [`init_${s}`, t])),
  });
  const all = looped.all_logits!.data as Float32Array;
  expect(looped.all_logits!.dims).toEqual([K, batch, 10]);
  stepped.forEach((logits, k) =>
    logits.forEach((v, j) => expect(Math.abs(v - all[k * logits.length + j]!)).toBeLessThanOrEqual(1e-6)),
  );
  for (const s of stateNames) {
    const a = state[s]!.data as Float32Array;
    const b = looped[`final_${s}`]!.data as Float32Array;
    expect(b.length).toBe(a.length);
    let diff = 0;
    a.forEach((v, j) => (diff = Math.max(diff, Math.abs(v - b[j]!))));
    expect(diff, s).toBeLessThanOrEqual(1e-6);
  }
  await Promise.all([step.release(), loop.release(), encoder1.release()]);
});
