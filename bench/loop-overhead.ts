/**
 * Benchmark 2: how much of the engine's wall time is spent inside onnxruntime's session.run,
 * at batch 1 and 32 (T = 8), with each timestep run as one call of the step graph and graph by
 * graph (the update in TypeScript), measured in alternation in one run. The rest of the wall
 * time is the TypeScript loop: laying out state, the update when it runs there, copies.
 *
 *   npm run bench:overhead [-- --threads 2 --seconds 3 --rounds 2]
 */
import { parseArgs } from 'node:util';
import { PredictiveLoop } from '../src/engine/predictive-loop.js';
import { DEFAULT_MODEL, engineThroughput, machine, openModel, table } from './lib.js';

const { values } = parseArgs({
  options: {
    threads: { type: 'string', default: '2' },
    seconds: { type: 'string', default: '3' },
    rounds: { type: 'string', default: '2' },
  },
});
const rounds = Number(values.rounds);
console.log(`# loop overhead: fashion-pc, T = 8, ${values.threads} threads\n# ${machine()}\n`);
const model = await openModel(DEFAULT_MODEL, { intraOpThreads: Number(values.threads) });
if (!model.step) throw new Error('the model has no step graph: re-export it');
const paths = [
  ['step graph', new PredictiveLoop(model)],
  ['graph by graph', new PredictiveLoop(model, { stepGraph: false })],
] as const;
const rows = [];
const rates: Record<string, Record<number, number>> = {};
for (const batch of [1, 32]) {
  const sums = paths.map(() => ({ rate: 0, share: 0 }));
  for (let k = 0; k < rounds; k++)
    for (const [j, [, loop]] of paths.entries()) {
      const r = await engineThroughput(loop, batch, 8, Number(values.seconds) / rounds);
      sums[j]!.rate += r.sampleStepsPerSecond / rounds;
      sums[j]!.share += r.sessionShare / rounds;
    }
  for (const [j, [name]] of paths.entries()) {
    (rates[name] ??= {})[batch] = sums[j]!.rate;
    rows.push([
      name,
      batch,
      sums[j]!.rate,
      `${(sums[j]!.share * 100).toFixed(1)}%`,
      `${((1 - sums[j]!.share) * 100).toFixed(1)}%`,
    ]);
  }
}
await model.release();
console.log(table(['path', 'batch', 'sample-steps/s', 'inside session.run', 'TypeScript glue'], rows));
const share = rows.find((r) => r[0] === 'step graph' && r[1] === 32)![3];
console.log(
  `\nstep graph / graph by graph: ${[1, 32].map((b) => `${(rates['step graph']![b]! / rates['graph by graph']![b]!).toFixed(2)}× at batch ${b}`).join(', ')}` +
    `\nshare inside session.run at batch 32, step graph: ${share} (target ≥ 97%)`,
);
