/**
 * Benchmark 5: the paper's networks at full size (224 x 224, random weights, imported from
 * models/predify/*.toml into build/bench-models on first use, never committed). Per model: the cost of one timestep
 * relative to the feedforward pass, images/s at T = 0, 4 and 8 (batch 1), and the engine
 * against the PyTorch reference on the same model and threads.
 *
 *   npm run bench:paper [-- --models pvgg16,pefficientnet_b0 --threads 2]
 */
import { parseArgs } from 'node:util';
import { PredictiveLoop } from '../src/engine/predictive-loop.js';
import type { FloatTensor } from '../src/tensor.js';
import { machine, openModel, paperModel, pytorchReference, randomImages, table } from './lib.js';

const { values } = parseArgs({
  options: {
    models: { type: 'string', default: 'pvgg16,pefficientnet_b0' },
    threads: { type: 'string', default: '2' },
  },
});
const threads = Number(values.threads);
console.log(
  `# the paper's networks at 224 x 224 (random weights), batch 1, ${threads} threads\n# ${machine()}\n`,
);

const rows = [];
for (const name of values.models.split(',')) {
  const { dir, toml, backbone } = paperModel(name);
  const model = await openModel(dir, { intraOpThreads: threads });
  const loop = new PredictiveLoop(model);
  const image = randomImages(loop, 1);
  const { channels, height, width } = model.manifest.input;
  const inputDims = [channels, height, width];
  await loop.run(image, 1, 0); // warm-up
  const seconds: Record<number, number> = {};
  for (const T of [0, 4, 8]) {
    const runs = T === 0 ? 3 : 1;
    const started = performance.now();
    for (let k = 0; k < runs; k++) await loop.run(image, 1, T);
    seconds[T] = (performance.now() - started) / 1000 / runs;
  }
  // The plain feedforward pass: E_1..E_n and H, none of the feedback graphs.
  const plainRuns = 3;
  const plainStart = performance.now();
  for (let k = 0; k < plainRuns; k++) {
    let h: FloatTensor = { data: image, dims: [1, ...inputDims] };
    for (const e of model.encoders) h = (await e.run({ input: h })).output!;
    await model.head!.run({ input: h });
  }
  const plain = (performance.now() - plainStart) / 1000 / plainRuns;
  await model.release();
  const stepCost = (seconds[8]! - seconds[0]!) / 8 / plain;
  console.log(
    `${name}: engine ${(1 / seconds[0]!).toFixed(2)} / ${(1 / seconds[4]!).toFixed(2)} / ${(1 / seconds[8]!).toFixed(2)} images/s at T = 0 / 4 / 8; one timestep = ${stepCost.toFixed(2)}x the plain feedforward pass (${(plain * 1000).toFixed(0)} ms)`,
  );
  // The PyTorch reference is slow at this size (Debian's CPU build runs ConvTranspose2d
  // several times slower than Conv2d): one run of T = 2, no warm-up, is what it can afford.
  const refArgs = [
    '--model',
    toml,
    '--backbone',
    backbone,
    '--input-size',
    '224',
    '--batches',
    '1',
    '--timesteps',
    '2',
  ];
  const ref = pytorchReference([...refArgs, '--warmup', '0', '--threads', String(threads), '--seconds', '0']);
  const engineRate = 9 / seconds[8]!;
  const torchRate = ref.results[0]!.sampleStepsPerSecond;
  rows.push([
    name,
    `${stepCost.toFixed(2)}×`,
    1 / seconds[0]!,
    1 / seconds[4]!,
    1 / seconds[8]!,
    engineRate,
    torchRate,
    `${(engineRate / torchRate).toFixed(2)}×`,
  ]);
}
console.log(
  table(
    [
      'model',
      'one timestep / plain feedforward',
      'images/s T=0',
      'images/s T=4',
      'images/s T=8',
      'engine sample-steps/s (T=8)',
      'PyTorch sample-steps/s (T=2)',
      'engine / PyTorch',
    ],
    rows,
  ),
);
