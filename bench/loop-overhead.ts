/**
 * Benchmark 2: how much of the engine's wall time is spent inside onnxruntime's session.run,
 * at batch 1 and 32 (T = 8). The rest is the TypeScript loop: gathering and updating state.
 *
 *   npm run bench:overhead [-- --threads 2 --seconds 3]
 */
import { parseArgs } from 'node:util';
import { PredictiveLoop } from '../src/engine/predictive-loop.js';
import { DEFAULT_MODEL, engineThroughput, machine, openModel, table } from './lib.js';

const { values } = parseArgs({
  options: { threads: { type: 'string', default: '2' }, seconds: { type: 'string', default: '3' } },
});
console.log(`# loop overhead: fashion-pc, T = 8, ${values.threads} threads\n# ${machine()}\n`);
const model = await openModel(DEFAULT_MODEL, { intraOpThreads: Number(values.threads) });
const loop = new PredictiveLoop(model);
const rows = [];
for (const batch of [1, 32]) {
  const r = await engineThroughput(loop, batch, 8, Number(values.seconds));
  rows.push([
    batch,
    r.sampleStepsPerSecond,
    `${(r.sessionShare * 100).toFixed(1)}%`,
    `${((1 - r.sessionShare) * 100).toFixed(1)}%`,
  ]);
}
await model.release();
console.log(table(['batch', 'sample-steps/s', 'inside session.run', 'TypeScript glue'], rows));
console.log(`\nshare inside session.run at batch 32: ${rows[1]![2]} (target ≥ 90%)`);
