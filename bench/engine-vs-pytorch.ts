/**
 * Benchmark 1: the engine against the PyTorch reference implementation of the same model on
 * the same CPU, threads matched, T = 8: sample-timesteps per second at batch 1, 8 and 32.
 *
 *   npm run bench:pytorch [-- --threads 2 --seconds 3]
 */
import { parseArgs } from 'node:util';
import { PredictiveLoop } from '../src/engine/predictive-loop.js';
import {
  DEFAULT_MODEL,
  engineThroughput,
  machine,
  openModel,
  pytorchReference,
  table,
  type Throughput,
} from './lib.js';

const { values } = parseArgs({
  options: { threads: { type: 'string', default: '2' }, seconds: { type: 'string', default: '3' } },
});
const threads = Number(values.threads);
const seconds = Number(values.seconds);
const batches = [1, 8, 32];
const T = 8;

console.log(`# engine vs PyTorch reference: fashion-pc, T = ${T}, ${threads} threads each\n# ${machine()}\n`);
const model = await openModel(DEFAULT_MODEL, { intraOpThreads: threads });
const loop = new PredictiveLoop(model);
const engine: Throughput[] = [];
for (const b of batches) engine.push(await engineThroughput(loop, b, T, seconds));
await model.release();
const ref = pytorchReference([
  '--model',
  DEFAULT_MODEL,
  '--timesteps',
  String(T),
  '--threads',
  String(threads),
  '--seconds',
  String(seconds),
  '--batches',
  ...batches.map(String),
]);

const rows = batches.map((b, k) => {
  const e = engine[k]!.sampleStepsPerSecond;
  const p = ref.results[k]!.sampleStepsPerSecond;
  return [b, e, p, `${(e / p).toFixed(2)}×`];
});
console.log(
  table(
    ['batch', 'engine (sample-steps/s)', `PyTorch ${ref.torch} (sample-steps/s)`, 'engine / PyTorch'],
    rows,
  ),
);
const ratios = rows.map((r) => Number(String(r[3]).replace('×', '')));
console.log(
  `\nratio at batch 1: ${ratios[0]!.toFixed(2)}× (target ≥ 3×); slowest batch size: ${Math.min(...ratios).toFixed(2)}× (target > 1×)`,
);
