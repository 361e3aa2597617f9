/**
 * What a served model holds in memory against its weight file, and how fast it runs: each
 * model is loaded as the server loads it (E_1 and the loop graph) in a fresh process, which
 * then runs batches through the loop graph. Resident memory is split into anonymous pages
 * (onnxruntime's own copies: they stay) and pages of mapped files (the weight file's bytes the
 * kernel can drop and re-read, shared between processes that map the same file).
 *
 *   npm run bench:memory [-- --models fashion-pc,pefficientnet_b0,pvgg16 --batch 8
 *                            --rounds 3 --seconds 8 --arena true --baseline-root DIR]
 *
 * With --baseline-root, DIR/<model> is another export of the same model (an older layout, say)
 * measured in the same run, interleaved round by round, so that the speeds compare.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { PredictiveLoop } from '../src/engine/predictive-loop.js';
import { loadModel } from '../src/model/load-model.js';
import { DEFAULT_MODEL, engineThroughput, machine, paperModel, quiet, table } from './lib.js';

const { values } = parseArgs({
  options: {
    models: { type: 'string', default: 'fashion-pc,pefficientnet_b0,pvgg16' },
    batch: { type: 'string', default: '8' },
    timesteps: { type: 'string', default: '8' },
    'steps-per-call': { type: 'string', default: '8' },
    seconds: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '3' },
    'baseline-root': { type: 'string' },
    arena: { type: 'string', default: 'true' },
    child: { type: 'string' },
  },
});

interface Pages {
  anon: number;
  file: number;
}

interface Measured {
  loaded: Pages;
  ran: Pages;
  sampleStepsPerSecond: number;
}

function pages(): Pages {
  const status = readFileSync('/proc/self/status', 'utf8');
  const kib = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)?.[1] ?? NaN);
  return { anon: kib('RssAnon') / 1024, file: kib('RssFile') / 1024 };
}

const growth = (after: Pages, before: Pages): Pages => ({
  anon: after.anon - before.anon,
  file: after.file - before.file,
});

async function measure(dir: string): Promise<Measured> {
  const before = pages();
  const settings = { providers: ['cpu'] as const, intraOpThreads: 2, cpuMemArena: values.arena === 'true' };
  const model = await loadModel(dir, settings, quiet, 'served');
  const loaded = growth(pages(), before);
  const loop = new PredictiveLoop(model, { stepsPerCall: Number(values['steps-per-call']) });
  const { sampleStepsPerSecond } = await engineThroughput(
    loop,
    Number(values.batch),
    Number(values.timesteps),
    Number(values.seconds),
  );
  const ran = growth(pages(), before);
  await model.release();
  return { loaded, ran, sampleStepsPerSecond };
}

if (values.child !== undefined) {
  process.stdout.write(JSON.stringify(await measure(values.child)));
  process.exit(0);
}

function inChild(dir: string): Measured {
  const self = fileURLToPath(import.meta.url);
  const args = Object.entries(values).flatMap(([k, v]) =>
    k === 'child' || v === undefined ? [] : [`--${k}`, v],
  );
  return JSON.parse(
    execFileSync(process.execPath, [self, ...args, '--child', dir], { encoding: 'utf8' }),
  ) as Measured;
}

const dirOf = (name: string) => (name === 'fashion-pc' ? DEFAULT_MODEL : paperModel(name).dir);
const weightsMiB = (dir: string) => {
  const manifest = JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as {
    loop?: string;
    graphs: Record<string, { file: string; data?: { file: string } }>;
  };
  const loop = manifest.graphs[manifest.loop ?? '']!;
  return statSync(path.join(dir, loop.data?.file ?? loop.file)).size / 2 ** 20;
};

const runs: { label: string; dir: string }[] = [];
for (const name of values.models.split(',')) {
  runs.push({ label: name, dir: dirOf(name) });
  const baseline = values['baseline-root'] && path.join(values['baseline-root'], name);
  if (baseline && existsSync(baseline)) runs.push({ label: `${name} (baseline)`, dir: baseline });
}

console.log(
  `# resident memory and speed of served models: batch ${values.batch}, T = ${values.timesteps}, ` +
    `${values['steps-per-call']} steps per call, 2 threads, arena ${values.arena}, ${values.rounds} rounds of ${values.seconds} s\n# ${machine()}\n`,
);
const results = new Map<string, Measured[]>(runs.map((r) => [r.label, []]));
for (let round = 0; round < Number(values.rounds); round++) {
  // Alternate the order, so that neither side always runs after the other.
  for (const run of round % 2 ? [...runs].reverse() : runs) results.get(run.label)!.push(inChild(run.dir));
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const times = (x: number) => `${x.toFixed(2)}×`;
const rows = runs.map(({ label, dir }) => {
  const all = results.get(label)!;
  const weights = weightsMiB(dir);
  const ran = { anon: median(all.map((m) => m.ran.anon)), file: median(all.map((m) => m.ran.file)) };
  const loaded = median(all.map((m) => m.loaded.anon + m.loaded.file));
  const speeds = all.map((m) => m.sampleStepsPerSecond);
  return [
    label,
    weights.toFixed(0),
    `${loaded.toFixed(0)} (${times(loaded / weights)})`,
    `${(ran.anon + ran.file).toFixed(0)} (${times((ran.anon + ran.file) / weights)})`,
    `${ran.anon.toFixed(0)} (${times(ran.anon / weights)})`,
    `${ran.file.toFixed(0)}`,
    `${median(speeds).toFixed(1)} (${speeds.map((s) => s.toFixed(1)).join(', ')})`,
  ];
});
console.log(
  table(
    [
      'model',
      'weight file (MiB)',
      'loaded (MiB)',
      'after running (MiB)',
      'of it anonymous',
      'of it file pages',
      'sample-steps/s: median (rounds)',
    ],
    rows,
  ),
);
for (const { label } of runs.filter((r) => r.label.endsWith('(baseline)'))) {
  const name = label.replace(' (baseline)', '');
  const speed = (l: string) => median(results.get(l)!.map((m) => m.sampleStepsPerSecond));
  console.log(`${name}: speed against its baseline ${times(speed(name) / speed(label))} (medians)`);
}
