/**
 * A model as exported today against the same model exported by an earlier exporter (a model
 * directory kept under build/), in one run: every graph's time at one batch size, and the
 * engine's sample-timesteps per second on each, measured in alternation so that both see the
 * same machine. Both run under this checkout's engine: the ratio is the exporter's.
 *
 *   npm run bench:baseline -- --baseline build/baseline-480f8bb/pvgg16 [--model pvgg16 --batch 1 --timesteps 8 --rounds 2]
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { PredictiveLoop } from '../src/engine/predictive-loop.js';
import type { Graph } from '../src/model/onnx-backend.js';
import { DEFAULT_MODEL, engineThroughput, feedsFor, machine, openModel, paperModel, table } from './lib.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'pvgg16' },
    baseline: { type: 'string' },
    batch: { type: 'string', default: '1' },
    timesteps: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '2' },
    threads: { type: 'string', default: '2' },
  },
});
if (!values.baseline) throw new Error('--baseline DIR: the model directory exported by the earlier exporter');
const batch = Number(values.batch);
const T = Number(values.timesteps);
const rounds = Number(values.rounds);
const threads = Number(values.threads);
// A name (fashion-pc, pvgg16, pefficientnet_b0) or a model directory, e.g. an int8 variant.
const dir = values.model.includes('/')
  ? path.resolve(values.model)
  : values.model === 'fashion-pc'
    ? DEFAULT_MODEL
    : paperModel(values.model).dir;

console.log(
  `# ${values.model}: this exporter against ${path.relative(process.cwd(), values.baseline)}, batch ${batch}, T = ${T}, ${threads} threads\n# ${machine()}\n`,
);
const current = await openModel(dir, { intraOpThreads: threads });
const baseline = await openModel(values.baseline, { intraOpThreads: threads });

/** Median seconds of `rounds` runs of each graph, the two alternating. */
async function race(a: Graph, b: Graph): Promise<[number, number]> {
  const fa = feedsFor(a, batch);
  const fb = feedsFor(b, batch);
  await a.run(fa);
  await b.run(fb);
  const ta: number[] = [];
  const tb: number[] = [];
  for (let k = 0; k < Math.max(3, rounds); k++) {
    let t = performance.now();
    await a.run(fa);
    ta.push(performance.now() - t);
    t = performance.now();
    await b.run(fb);
    tb.push(performance.now() - t);
  }
  const median = (xs: number[]) => xs.sort((x, y) => x - y)[Math.floor(xs.length / 2)]! / 1000;
  return [median(ta), median(tb)];
}

const graphs = (m: typeof current) => [
  ...m.encoders.map((g, i) => [`encoder${i + 1}`, g] as const),
  ...m.feedback.map((g, i) => [`feedback${i + 1}`, g] as const),
  ['head', m.head!] as const,
];
const rows: (string | number)[][] = [];
const baselineGraphs = new Map(graphs(baseline));
for (const [name, graph] of graphs(current)) {
  const [now, before] = await race(graph, baselineGraphs.get(name)!);
  rows.push([name, (before * 1000).toFixed(1), (now * 1000).toFixed(1), `${(before / now).toFixed(2)}×`]);
}

const loops = [new PredictiveLoop(baseline), new PredictiveLoop(current)];
const rates = [0, 0];
for (let k = 0; k < rounds; k++) {
  for (const j of [0, 1]) rates[j]! += (await engineThroughput(loops[j]!, batch, T, 1)).sampleStepsPerSecond;
}
const [before, now] = rates.map((r) => r / rounds) as [number, number];
rows.push([
  `engine, sample-steps/s (runs of T = ${T})`,
  before.toFixed(3),
  now.toFixed(3),
  `${(now / before).toFixed(2)}×`,
]);
console.log(table(['graph', 'baseline ms', 'this export ms', 'speed-up'], rows));
await current.release();
await baseline.release();
