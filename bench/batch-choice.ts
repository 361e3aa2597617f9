/**
 * BATCH_MAX_SIZE=auto against fixed sizes, and the served model against the Predify-style
 * PyTorch loop, in one run: 32 connections POST /classify?timesteps=8 to a server started with
 * each batch setting in turn (fixed 8, 16, 32, and auto), and the PyTorch reference loop
 * (scripts/bench_reference.py, 2 threads, no HTTP) classifies the same model at batch 1, 8 and
 * 32. Each of these runs once per round, in turn; the figures are medians over the rounds.
 * Reports images/s, p50, the size auto chose, auto against the best fixed size, and the server
 * against PyTorch at its best batch size.
 *
 *   npm run bench:batch [-- --model models/fashion-pc --duration 10 --connections 32 --rounds 3]
 *
 * With `--rate N`, the connections send N requests a second between them, whatever the
 * answers' pace (an open loop, as from many users); the p50 and p99 then say what each setting
 * costs in latency at that load.
 *
 * The PyTorch loop needs the model's checkpoint.pt (our own models); imported models are
 * compared across batch settings only (`--no-reference`).
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import {
  classifyLoad,
  DEFAULT_MODEL,
  machine,
  meanBatchSize,
  paperModel,
  pytorchReference,
  startServer,
  table,
} from './lib.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: DEFAULT_MODEL },
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '32' },
    sizes: { type: 'string', default: '8,16,32' },
    rounds: { type: 'string', default: '3' },
    rate: { type: 'string' },
    'no-reference': { type: 'boolean', default: false },
  },
});
const T = 8;
const duration = Number(values.duration);
const connections = Number(values.connections);
const rounds = Number(values.rounds);
const rate = values.rate === undefined ? undefined : Number(values.rate);
// "pefficientnet_b0" or "pvgg16": the paper's network at 224, imported on first use.
const modelDir = existsSync(values.model) ? path.resolve(values.model) : paperModel(values.model).dir;
const sample = existsSync(path.join(modelDir, 'samples'))
  ? path.join(modelDir, 'samples', '0000-ankle-boot.png')
  : path.join(DEFAULT_MODEL, 'samples', '0000-ankle-boot.png');
const body = await readFile(sample);

console.log(
  `# batch size by measurement: ${path.basename(modelDir)}, ${connections} connections${rate ? ` at ${rate} requests/s` : ''}, T = ${T}, ${duration} s each, ${rounds} rounds\n# ${machine()}\n`,
);

interface Run {
  chosen: number;
  rps: number;
  p50: number;
  p99: number;
  meanBatch: number;
  failures: number;
}

async function serve(setting: string): Promise<Run> {
  const server = await startServer({ MODEL_DIR: modelDir, BATCH_MAX_SIZE: setting });
  const models = (await (await fetch(`${server.base}/models`)).json()) as {
    models: { batch: { size: number } }[];
  };
  // PEfficientNetB0 at 224 answers in seconds under load; a timeout is a failure, not an answer.
  const r = await classifyLoad(server.base, body, {
    timesteps: T,
    connections,
    duration,
    timeout: 120,
    ...(rate ? { rate } : {}),
  });
  const meanBatch = meanBatchSize(await server.metrics());
  await server.stop();
  return {
    chosen: models.models[0]!.batch.size,
    rps: r.requests.average,
    p50: r.latency.p50,
    p99: r.latency.p99,
    meanBatch,
    failures: r.non2xx + r.errors,
  };
}

const batches = [1, 8, 32];
function reference(): number[] {
  const r = pytorchReference([
    '--model',
    modelDir,
    '--timesteps',
    String(T),
    '--threads',
    '2',
    '--seconds',
    '5',
    '--batches',
    ...batches.map(String),
  ]);
  torchVersion = r.torch;
  return r.results.map((x) => x.sampleStepsPerSecond / (T + 1));
}
let torchVersion = '';

// Every setting (and the PyTorch loop) once per round, the order reversed every other round:
// this machine's speed drifts by more than the differences measured, so each figure below is
// the median over rounds, and each round's numbers are shown beside it.
const settings = [...values.sizes.split(',').map((s) => `fixed ${s}`), 'auto'];
const withReference = !values['no-reference'] && existsSync(path.join(modelDir, 'checkpoint.pt'));
const runs = new Map<string, Run[]>(settings.map((s) => [s, []]));
const referenceRuns: number[][] = [];
for (let round = 0; round < rounds; round++) {
  const order = round % 2 ? [...settings].reverse() : settings;
  if (withReference && round % 2) referenceRuns.push(reference());
  for (const setting of order) runs.get(setting)!.push(await serve(setting.replace('fixed ', '')));
  if (withReference && !(round % 2)) referenceRuns.push(reference());
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const rows = settings.map((setting) => {
  const all = runs.get(setting)!;
  return {
    setting,
    chosen: [...new Set(all.map((r) => r.chosen))].join(', '),
    rps: median(all.map((r) => r.rps)),
    each: all.map((r) => r.rps.toFixed(1) + (setting === 'auto' ? ` (${r.chosen})` : '')).join(', '),
    p50: median(all.map((r) => r.p50)),
    p99: median(all.map((r) => r.p99)),
    meanBatch: median(all.map((r) => r.meanBatch)),
    failures: all.reduce((n, r) => n + r.failures, 0),
  };
});
type Row = (typeof rows)[number];
const fixed = rows.filter((r) => r.setting !== 'auto');
const bestFixed = fixed.reduce((a, b) => (b.rps > a.rps ? b : a));
const auto = rows.find((r) => r.setting === 'auto')!;
console.log(
  table(
    [
      'BATCH_MAX_SIZE',
      'batch size',
      'images/s (median)',
      'each round',
      'p50 (ms)',
      'p99 (ms)',
      'mean batch',
      'failures',
    ],
    rows.map((r) => [r.setting, r.chosen, r.rps, r.each, r.p50, r.p99, r.meanBatch, r.failures]),
  ),
);
console.log(
  `\nauto (chose ${auto.chosen}) / best fixed (${bestFixed.setting}): ${(auto.rps / bestFixed.rps).toFixed(3)}× images/s, medians (target ≥ 0.95×)`,
);

if (withReference) {
  const images = batches.map((_, k) => median(referenceRuns.map((r) => r[k]!)));
  const best = Math.max(...images);
  const bestBatch = batches[images.indexOf(best)]!;
  console.log(
    `\nPyTorch ${torchVersion} reference loop, 2 threads, no HTTP, medians: ${batches
      .map(
        (b, k) =>
          `batch ${b} ${images[k]!.toFixed(1)} (${referenceRuns.map((r) => r[k]!.toFixed(1)).join(', ')})`,
      )
      .join('; ')} images/s (best: batch ${bestBatch})`,
  );
  const fixed32 = rows.find((r) => r.setting === 'fixed 32');
  for (const r of [fixed32, auto, bestFixed].filter((x): x is Row => x !== undefined))
    console.log(
      `served ${r.setting} / PyTorch at batch ${bestBatch}: ${(r.rps / best).toFixed(2)}× (target ≥ 1.2×)`,
    );
}
if (rows.some((r) => r.failures > 0)) process.exitCode = 1;
