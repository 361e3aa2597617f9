/**
 * How fast each ImageNet-C corruption runs here: images per second at severity 3 on a
 * 224 x 224 RGB picture and on a 28 x 28 grey one (Fashion-MNIST's size), one thread, and the
 * ratio to the engine's own images per second for the shipped model (t = 0..10, batch 32) in
 * the same run: below 1 a study at that size waits on the corruption.
 *
 *   npm run bench:corruptions [-- --seconds 1]
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { newSample, runTimesteps } from '../src/engine/predictive-step.js';
import { openStepper } from '../src/engine/open-stepper.js';
import {
  CORRUPTIONS,
  corruptPixels,
  loadCorruptionAssets,
  type Pixels,
} from '../src/robustness/imagenet-c/index.js';
import { Random } from '../src/robustness/imagenet-c/random.js';
import { DEFAULT_MODEL, openModel, ROOT, table } from './lib.js';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '1' } } });
const budget = Number(values.seconds);

/** A picture with smooth areas, edges and texture, so that no corruption meets a trivial image. */
function picture(size: number, channels: 1 | 3): Pixels {
  const rng = new Random(size);
  const data = new Uint8Array(size * size * channels);
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++)
      for (let c = 0; c < channels; c++) {
        const v =
          128 + 60 * Math.sin(x / 9 + c) * Math.cos(y / 13) + (x > size / 2 && y > size / 3 ? 50 : -30);
        data[(y * size + x) * channels + c] = Math.max(0, Math.min(255, Math.round(v + rng.normal() * 8)));
      }
  return { width: size, height: size, channels, data };
}

async function rate(run: (k: number) => Promise<unknown>): Promise<number> {
  await run(0);
  let n = 0;
  const started = performance.now();
  while (performance.now() - started < budget * 1000) await run(++n);
  return n / ((performance.now() - started) / 1000);
}

// Built under build/bench/, so the frost photographs are found from the repository root.
const assets = await loadCorruptionAssets(path.join(ROOT, 'third_party', 'imagecorruptions', 'frost'));
const big = picture(224, 3);
const small = picture(28, 1);

// The engine's images per second for a study of the shipped model: 11 timesteps an image.
const model = await openModel(DEFAULT_MODEL);
const stepper = openStepper(model);
const x = new Float32Array(stepper.inputSize);
const engine = await rate(async () => {
  const samples = Array.from({ length: 32 }, () => newSample(x, undefined, 10));
  await runTimesteps(stepper, samples, 10);
});
await model.release();
const engineImages = engine * 32;

const rows: (string | number)[][] = [];
for (const c of CORRUPTIONS) {
  const at224 = await rate((k) => corruptPixels(big, c, 3, k, assets));
  const at28 = await rate((k) => corruptPixels(small, c, 3, k, assets));
  rows.push([c, at224, at28, at28 / engineImages]);
  process.stderr.write('.');
}
process.stderr.write('\n');
console.log(
  `The shipped model's engine: ${engineImages.toFixed(0)} images/s (t = 0..10, batch 32). Corruptions at severity 3, one thread:\n`,
);
console.log(
  table(['corruption', 'images/s at 224 RGB', 'images/s at 28 grey', '28 px: corruption / engine'], rows),
);
