/**
 * The int8 variant (npm run quantize, docs/int8.md) against its float32 model: engine
 * sample-timesteps/s at batch 1 and 32, alternating in one run, one timestep per call. Makes the
 * variant under build/int8/ first when it is missing or older than the model.
 *
 *   npm run bench:int8 [-- --model DIR --timesteps 8 --rounds 3 --seconds 3 --image-dir DIR]
 *
 * --image-dir: calibration images for a model that does not take Fashion-MNIST's (any images
 * do for a speed measurement; accuracy needs the model's own training images).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { PredictiveLoop } from '../src/engine/predictive-loop.js';
import { DEFAULT_MODEL, engineThroughput, machine, openModel, ROOT, table } from './lib.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: DEFAULT_MODEL },
    timesteps: { type: 'string', default: '8' },
    batches: { type: 'string', default: '1,32' },
    rounds: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '3' },
    'image-dir': { type: 'string' },
  },
});
const source = path.resolve(values.model);
const variant = path.join(ROOT, 'build', 'int8', path.basename(source));
const manifestTime = (dir: string) => statSync(path.join(dir, 'manifest.json')).mtimeMs;
if (!existsSync(path.join(variant, 'manifest.json')) || manifestTime(variant) < manifestTime(source)) {
  execFileSync(
    process.execPath,
    [
      path.join(ROOT, 'dist', 'cli', 'quantize.js'),
      ...['--model', source, '--out', variant],
      ...(values['image-dir'] ? ['--image-dir', values['image-dir'], '--timesteps', '1'] : []),
    ],
    { stdio: 'inherit' },
  );
}
const T = Number(values.timesteps);
const models = { float32: await openModel(source), int8: await openModel(variant) };
const loops = Object.fromEntries(Object.entries(models).map(([k, m]) => [k, new PredictiveLoop(m)]));

console.log(`# ${path.basename(source)}: float32 vs int8, T = ${T}\n# ${machine()}\n`);
const rows: (string | number)[][] = [];
for (const batch of values.batches.split(',').map(Number)) {
  const best: Record<string, number> = { float32: 0, int8: 0 };
  for (let round = 0; round < Number(values.rounds); round++)
    for (const kind of ['float32', 'int8'])
      best[kind] = Math.max(
        best[kind]!,
        (await engineThroughput(loops[kind]!, batch, T, Number(values.seconds))).sampleStepsPerSecond,
      );
  rows.push([batch, best['float32']!, best['int8']!, `${(best['int8']! / best['float32']!).toFixed(2)}×`]);
}
console.log(table(['batch', 'float32 (sample-steps/s)', 'int8 (sample-steps/s)', 'int8 / float32'], rows));
await Promise.all(Object.values(models).map((m) => m.release()));
