/**
 * How the onnxruntime session settings change engine throughput (T = 8, batch 1 and 32):
 * the measurement behind the defaults of ORT_INTRA_OP_THREADS, ORT_GRAPH_OPTIMIZATION and
 * ORT_CPU_MEM_ARENA.
 *
 *   npm run bench:settings [-- --seconds 2]
 */
import { parseArgs } from 'node:util';
import { PredictiveLoop } from '../src/engine/predictive-loop.js';
import type { SessionSettings } from '../src/model/onnx-backend.js';
import { DEFAULT_MODEL, engineThroughput, machine, openModel, table } from './lib.js';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '2' } } });
const variants: [string, Partial<SessionSettings>][] = [
  ['defaults (2 threads, all, arena, no spinning)', { intraOpThreads: 2 }],
  ['1 thread', { intraOpThreads: 1 }],
  ['threads 0 (onnxruntime chooses)', { intraOpThreads: 0 }],
  ['spinning on', { intraOpThreads: 2, spinning: true }],
  ['graph optimisation basic', { intraOpThreads: 2, graphOptimization: 'basic' }],
  ['graph optimisation disabled', { intraOpThreads: 2, graphOptimization: 'disabled' }],
  ['memory arena off', { intraOpThreads: 2, cpuMemArena: false }],
];
console.log(`# onnxruntime session settings: fashion-pc, T = 8\n# ${machine()}\n`);
const rows = [];
for (const [name, settings] of variants) {
  const model = await openModel(DEFAULT_MODEL, settings);
  const loop = new PredictiveLoop(model);
  const b1 = await engineThroughput(loop, 1, 8, Number(values.seconds));
  const b32 = await engineThroughput(loop, 32, 8, Number(values.seconds));
  await model.release();
  rows.push([name, b1.sampleStepsPerSecond, b32.sampleStepsPerSecond]);
}
const base = rows[0]!;
console.log(
  table(
    ['settings', 'batch 1 (sample-steps/s)', 'batch 32 (sample-steps/s)', 'vs defaults (b1, b32)'],
    rows.map((r) => [
      ...r,
      `${((r[1] as number) / (base[1] as number)).toFixed(2)}×, ${((r[2] as number) / (base[2] as number)).toFixed(2)}×`,
    ]),
  ),
);
