/**
 * K timesteps as one call of an ONNX Loop graph (scripts/loop_graph.py, the state carried
 * inside) against K calls of the step graph (the state through the host between calls), on
 * the same inputs: the two must give the same numbers, and this says which is faster here.
 * docs/gpu.md says why the Loop matters on a GPU; this measures its cost or gain on the CPU.
 *
 *   npm run bench:loop [-- --model fashion-pc --steps 9 --batches 1,32 --rounds 2]
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
// onnxruntime directly, as the graphs are raced outside any model the loader would open.
import * as ort from 'onnxruntime-node';
import { DEFAULT_MODEL, machine, paperModel, ROOT, table } from './lib.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'fashion-pc' },
    steps: { type: 'string', default: '9' },
    batches: { type: 'string', default: '1,32' },
    rounds: { type: 'string', default: '2' },
    threads: { type: 'string', default: '2' },
  },
});
const K = Number(values.steps);
const dir = values.model === 'fashion-pc' ? DEFAULT_MODEL : paperModel(values.model).dir;
const loopFile = path.join(ROOT, 'build', 'loop', `${values.model}.onnx`);
const stepFile = path.join(dir, 'step.onnx');
if (!existsSync(stepFile)) throw new Error(`${dir} has no step graph: re-export it`);
if (!existsSync(loopFile) || statSync(loopFile).mtimeMs < statSync(stepFile).mtimeMs) {
  mkdirSync(path.dirname(loopFile), { recursive: true });
  execFileSync('/usr/bin/python3', [path.join(ROOT, 'scripts', 'loop_graph.py'), dir, loopFile], {
    stdio: 'inherit',
  });
}

const options: ort.InferenceSession.SessionOptions = {
  intraOpNumThreads: Number(values.threads),
  extra: { session: { intra_op: { allow_spinning: '0' } } },
};
const step = await ort.InferenceSession.create(stepFile, options);
const loop = await ort.InferenceSession.create(loopFile, options);
const encoder1 = await ort.InferenceSession.create(path.join(dir, 'encoder1.onnx'), options);
const FIXED = ['image', 'drive1', 'coefficients'];
const stateNames = step.inputNames.filter((name) => !FIXED.includes(name));
const count = (dims: readonly number[]) => dims.reduce((a, b) => a * b, 1);

console.log(`# ${values.model}: ${K} timesteps, one Loop call vs ${K} step-graph calls\n# ${machine()}\n`);
const rows: (string | number)[][] = [];
for (const batch of values.batches.split(',').map(Number)) {
  const dims = Object.fromEntries(
    step.inputMetadata.map((m) => [
      m.name,
      (m.isTensor ? m.shape : []).map((d) => (typeof d === 'number' ? d : batch)),
    ]),
  ) as Record<string, number[]>;
  let seed = 1;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
  const image = new ort.Tensor(
    'float32',
    Float32Array.from({ length: count(dims.image!) }, random),
    dims.image,
  );
  const drive1 = (await encoder1.run({ input: image })).output!;
  const n = dims.coefficients![1]!;
  // The first step is the feed-forward pass (1, 0, 0, 0); then weights of a running sample.
  const weights = new Float32Array(K * batch * n * 4);
  for (let k = 0; k < K; k++)
    for (let j = 0; j < batch * n; j++)
      weights.set(k === 0 ? [1, 0, 0, 0] : [0.8, 0.1, 0.1, 0.05], (k * batch * n + j) * 4);
  const zeros = () =>
    Object.fromEntries(
      stateNames.map((s) => [s, new ort.Tensor('float32', new Float32Array(count(dims[s]!)), dims[s])]),
    );

  const viaSteps = async () => {
    let state: Record<string, ort.Tensor> = zeros();
    const logits: Float32Array[] = [];
    for (let k = 0; k < K; k++) {
      const coefficients = new ort.Tensor(
        'float32',
        weights.subarray(k * batch * n * 4, (k + 1) * batch * n * 4),
        [batch, n, 4],
      );
      const out = await step.run({ image, drive1, coefficients, ...state });
      logits.push(out.logits!.data as Float32Array);
      state = Object.fromEntries(stateNames.map((s) => [s, out[`next_${s}`]!]));
    }
    return logits;
  };
  const viaLoop = async () => {
    const init = Object.fromEntries(Object.entries(zeros()).map(([s, t]) => [`init_${s}`, t]));
    const out = await loop.run({
      image,
      drive1,
      coefficients_all: new ort.Tensor('float32', weights, [K, batch, n, 4]),
      ...init,
    });
    const all = out.all_logits!.data as Float32Array;
    const per = all.length / K;
    return Array.from({ length: K }, (_, k) => all.subarray(k * per, (k + 1) * per));
  };

  const [a, b] = [await viaSteps(), await viaLoop()];
  const diff = Math.max(...a.flatMap((x, k) => [...x].map((v, j) => Math.abs(v - b[k]![j]!))));
  const median = async (f: () => Promise<unknown>) => {
    const times: number[] = [];
    for (let r = 0; r < 5; r++) {
      const started = performance.now();
      await f();
      times.push(performance.now() - started);
    }
    return times.sort((x, y) => x - y)[2]!;
  };
  let [stepsMs, loopMs] = [0, 0];
  for (let round = 0; round < Number(values.rounds); round++) {
    stepsMs += await median(viaSteps);
    loopMs += await median(viaLoop);
  }
  rows.push([
    batch,
    stepsMs / Number(values.rounds),
    loopMs / Number(values.rounds),
    `${(stepsMs / loopMs).toFixed(2)}×`,
    diff.toExponential(1),
  ]);
}
console.log(
  table(
    ['batch', `${K} step calls (ms)`, 'one Loop call (ms)', 'Loop speed-up', 'max |logit difference|'],
    rows,
  ),
);
await Promise.all([step.release(), loop.release(), encoder1.release()]);
