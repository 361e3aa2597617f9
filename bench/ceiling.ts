/**
 * Every graph of a model against what onnxruntime can do on this CPU: its FLOPs (counted from
 * the graph by scripts/graph_flops.py), the GFLOP/s it reaches, and the ceiling, measured in
 * the same run on plain stride-1 convolutions doing the same multiply-accumulates (a
 * transposed convolution's ceiling is the stride-1 convolution on its input grid that computes
 * it). The engine's whole step is held against the same ceiling.
 *
 *   npm run bench:ceiling [-- --models fashion-pc,pvgg16,pefficientnet_b0 --threads 2 --seconds 1]
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { PredictiveLoop } from '../src/engine/predictive-loop.js';
import { createGraph, type Graph } from '../src/model/onnx-backend.js';
import {
  DEFAULT_MODEL,
  engineThroughput,
  feedsFor,
  flopsOf,
  machine,
  openModel,
  paperModel,
  quiet,
  table,
} from './lib.js';

const { values } = parseArgs({
  options: {
    models: { type: 'string', default: 'fashion-pc,pvgg16,pefficientnet_b0' },
    threads: { type: 'string', default: '2' },
    seconds: { type: 'string', default: '1' },
  },
});
const threads = Number(values.threads);
const seconds = Number(values.seconds);

/** Seconds per run of `graph` at `batch`: one warm-up, then runs for at least `seconds` (two at least). */
async function secondsPerRun(graph: Graph, batch: number): Promise<number> {
  const feeds = feedsFor(graph, batch);
  await graph.run(feeds);
  let runs = 0;
  const started = performance.now();
  let elapsed: number;
  do {
    await graph.run(feeds);
    runs++;
    elapsed = (performance.now() - started) / 1000;
  } while (elapsed < seconds || runs < 2);
  return elapsed / runs;
}

// timesteps: of the engine's measured runs (t = 0..T); the paper's networks take seconds a step.
const models: Record<string, { dir: string; batches: number[]; timesteps: number }> = {
  'fashion-pc': { dir: DEFAULT_MODEL, batches: [1, 32], timesteps: 8 },
  // At 224 x 224 one batch-32 timestep of PVGG16 takes about half a minute here: batch 4 keeps
  // the run to minutes.
  pvgg16: { dir: '', batches: [1, 4], timesteps: 1 },
  pefficientnet_b0: { dir: '', batches: [1, 32], timesteps: 1 },
};

console.log(`# every graph against the convolution ceiling, ${threads} threads\n# ${machine()}\n`);
const gflops = (flops: number, s: number) => flops / s / 1e9;
const REFERENCE_FLOPS = 2 * 64 * 64 * 9 * 28 * 28;
for (const name of values.models.split(',')) {
  const spec = models[name];
  if (!spec) throw new Error(`unknown model ${name}: one of ${Object.keys(models).join(', ')}`);
  const dir = spec.dir || paperModel(name).dir;
  const { report, out } = flopsOf(name, dir);
  const model = await openModel(dir, { intraOpThreads: threads });
  const byFile = new Map(
    Object.entries(model.manifest.graphs).map(([graphName, g]) => [path.join(dir, g.file), graphName]),
  );
  const graphs = [...model.encoders, ...model.feedback, model.head!];
  const rows: (string | number)[][] = [];
  const total: Record<
    number,
    { flops: number; seconds: number; ceilingFlops: number; ceilingSeconds: number }
  > = {};
  for (const graph of graphs) {
    const graphName = byFile.get(graph.file)!;
    const f = report[graphName]!;
    const ceiling = f.ceiling
      ? await createGraph(path.join(out, f.ceiling), { providers: ['cpu'], intraOpThreads: threads }, quiet)
      : undefined;
    const row: (string | number)[] = [graphName, (f.flopsPerSample / 1e6).toFixed(1)];
    for (const batch of spec.batches) {
      const s = await secondsPerRun(graph, batch);
      const c = ceiling ? await secondsPerRun(ceiling, batch) : NaN;
      const achieved = gflops(f.flopsPerSample * batch, s);
      const limit = gflops(f.ceilingFlopsPerSample * batch, c);
      row.push(achieved.toFixed(0), limit.toFixed(0), `${((achieved / limit) * 100).toFixed(0)}%`);
      const t = (total[batch] ??= { flops: 0, seconds: 0, ceilingFlops: 0, ceilingSeconds: 0 });
      t.flops += f.flopsPerSample * batch;
      t.seconds += s;
      t.ceilingFlops += f.ceilingFlopsPerSample * batch;
      t.ceilingSeconds += ceiling ? c : 0;
    }
    await ceiling?.release?.();
    rows.push(row);
  }
  // One timestep of every graph; the step graph holds the same work again.
  const stepFlops = Object.entries(report)
    .filter(([graph]) => graph !== model.manifest.step)
    .reduce((a, [, f]) => a + f.flopsPerSample, 0);
  const sumRow: (string | number)[] = ['graphs alone, summed', ''];
  // Counted from the step graph itself: it takes E_1(x) as an input, so it holds a little less.
  const stepGraphFlops = model.manifest.step ? report[model.manifest.step]!.flopsPerSample : 0;
  const stepGraphRow: (string | number)[] = ['step graph alone', (stepGraphFlops / 1e6).toFixed(1)];
  // The engine's whole step: the TypeScript loop around the graphs, through the step graph
  // (when the model has one) and graph by graph.
  const engines = [
    ...(model.step ? [['engine step, step graph', new PredictiveLoop(model)] as const] : []),
    ['engine step, graph by graph', new PredictiveLoop(model, { stepGraph: false })] as const,
  ];
  const engineRows = engines.map(
    ([label]) => [`${label} (runs of T = ${spec.timesteps})`, ''] as (string | number)[],
  );
  for (const batch of spec.batches) {
    const t = total[batch]!;
    const ceiling = gflops(t.ceilingFlops, t.ceilingSeconds);
    const summed = gflops(t.flops, t.seconds);
    const ratio = (achieved: number) => [
      achieved.toFixed(0),
      ceiling.toFixed(0),
      `${((achieved / ceiling) * 100).toFixed(0)}%`,
    ];
    sumRow.push(...ratio(summed));
    if (model.step)
      stepGraphRow.push(...ratio(gflops(stepGraphFlops * batch, await secondsPerRun(model.step, batch))));
    for (const [j, [, loop]] of engines.entries()) {
      const run = await engineThroughput(loop, batch, spec.timesteps, seconds * 3);
      engineRows[j]!.push(...ratio((run.sampleStepsPerSecond * stepFlops) / 1e9));
    }
  }
  // The machine's reference: a plain 3x3 convolution, 64 to 64 channels at 28 x 28.
  const reference = await createGraph(
    path.join(out, 'reference.onnx'),
    { providers: ['cpu'], intraOpThreads: threads },
    quiet,
  );
  const referenceRow: (string | number)[] = [
    'plain 3×3 conv 64→64, 28×28',
    (REFERENCE_FLOPS / 1e6).toFixed(1),
  ];
  for (const batch of spec.batches) {
    const achieved = gflops(REFERENCE_FLOPS * batch, await secondsPerRun(reference, batch));
    referenceRow.push(achieved.toFixed(0), '', '');
  }
  await reference.release();
  rows.push(sumRow, ...(model.step ? [stepGraphRow] : []), ...engineRows, referenceRow);
  await model.release();
  console.log(
    `## ${name}: ${(stepFlops / 1e6).toFixed(1)} MFLOP per sample-timestep (${(
      (Object.entries(report)
        .filter(([g]) => g.startsWith('feedback'))
        .reduce((a, [, f]) => a + f.flopsPerSample, 0) /
        stepFlops) *
      100
    ).toFixed(0)}% in the feedback graphs)\n`,
  );
  console.log(
    table(
      [
        'graph',
        'MFLOP/sample',
        ...spec.batches.flatMap((b) => [`GFLOP/s b${b}`, `ceiling b${b}`, `ratio b${b}`]),
      ],
      rows,
    ),
  );
  console.log();
}
