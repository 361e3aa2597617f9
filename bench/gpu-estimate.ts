/**
 * What one sample-timestep costs on a GPU, from the graphs themselves: the bytes the loop
 * moves between host and device with today's per-graph calls (every input copied in, every
 * output copied out, at every call), the FLOPs (scripts/graph_flops.py), and the time each
 * would take on an H200 at peak: PCIe 5 at 55 GB/s each way, 60 TFLOP/s in FP32 and
 * 490 TFLOP/s in TF32. The same for the step graph (one call a timestep, the state through
 * the host) and for a Loop graph running a whole request with the state on the device
 * (docs/gpu.md). A paper estimate from the model's shapes, printed as one, not a measurement.
 *
 *   npm run bench:gpu-estimate [-- --models fashion-pc,pvgg16,pefficientnet_b0 --timesteps 8]
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { parseManifest } from '../src/model/manifest.js';
import { elementCount } from '../src/tensor.js';
import { DEFAULT_MODEL, flopsOf, paperModel, table } from './lib.js';

const { values } = parseArgs({
  options: {
    models: { type: 'string', default: 'fashion-pc,pvgg16,pefficientnet_b0' },
    timesteps: { type: 'string', default: '8' },
  },
});
const T = Number(values.timesteps);
const PCIE = 55e9; // bytes/s each way
const FP32 = 60e12;
const TF32 = 490e12;
const FLOAT = 4;

const us = (seconds: number) => (seconds * 1e6).toFixed(seconds * 1e6 >= 10 ? 0 : 1);
const kb = (bytes: number) => (bytes / 1e3).toFixed(bytes >= 1e5 ? 0 : 1);
/** Which of transfer and compute takes longer, and by how much. */
const bound = (transfer: number, compute: number) =>
  transfer > compute
    ? `transfer, ${(transfer / compute).toFixed(1)}×`
    : `compute, ${(compute / transfer).toFixed(1)}×`;

const rows: (string | number)[][] = [];
for (const name of values.models.split(',')) {
  const dir = name === 'fashion-pc' ? DEFAULT_MODEL : paperModel(name).dir;
  const file = path.join(dir, 'manifest.json');
  const manifest = parseManifest(JSON.parse(readFileSync(file, 'utf8')), file);
  const { report } = flopsOf(name, dir);
  // One timestep: every graph once (the step graph holds the same work again).
  const flops = Object.entries(report)
    .filter(([graph]) => graph !== manifest.step)
    .reduce((a, [, f]) => a + f.flopsPerSample, 0);
  const { channels, height, width } = manifest.input;
  const sizes = [channels * height * width, ...manifest.pcoders.map((pc) => elementCount(pc.shape))];
  const n = manifest.pcoders.length;
  const classes = manifest.labels.length;
  const sum = (from: number, to: number) => sizes.slice(from, to + 1).reduce((a, b) => a + b, 0);
  // Floats in and out per sample, in a steady step (t >= 1).
  const layouts: [string, number, number][] = [
    // E_1(x) is kept from t = 0; encoders 2..n take r_{i-1} and give E_i; feedback i takes r_i
    // and r_{i-1} and gives p_i (the size of r_{i-1}), e_i and g_i; the head takes r_n.
    [
      'a call per graph',
      sum(1, n - 1) + (sum(1, n) + sum(0, n - 1)) + sizes[n]!,
      sum(2, n) + (sum(0, n - 1) + n + sum(1, n)) + classes,
    ],
    // image, E_1(x), the weights and r, p_2..p_n, g in; the same state, logits and errors out.
    [
      'step graph, state through the host',
      sizes[0]! + sizes[1]! + 4 * n + 2 * sum(1, n) + sum(1, n - 1),
      2 * sum(1, n) + sum(1, n - 1) + classes + n,
    ],
    // A Loop of all T + 1 steps in one call: the image and the weights in once, the logits and
    // errors of every step out.
    [`Loop of T + 1 = ${T + 1} steps, state on the device`, (sizes[0]! + 4 * n) / (T + 1), classes + n],
  ];
  for (const [layout, into, out] of layouts) {
    const inBytes = into * FLOAT;
    const outBytes = out * FLOAT;
    // The calls are synchronous: each copies in, computes, copies out; nothing overlaps.
    const transfer = (inBytes + outBytes) / PCIE;
    rows.push([
      name,
      layout,
      (flops / 1e9).toFixed(flops >= 1e10 ? 0 : 2),
      kb(inBytes),
      kb(outBytes),
      us(transfer),
      us(flops / FP32),
      us(flops / TF32),
      bound(transfer, flops / FP32),
      bound(transfer, flops / TF32),
    ]);
  }
}

console.log(
  `# one sample-timestep on an H200, at peak: PCIe 5 ${PCIE / 1e9} GB/s each way, ${FP32 / 1e12} TFLOP/s FP32, ${TF32 / 1e12} TFLOP/s TF32; T = ${T}\n`,
);
console.log(
  table(
    [
      'model',
      'calls',
      'GFLOP',
      'kB to device',
      'kB from device',
      'transfer µs',
      'FP32 µs',
      'TF32 µs',
      'bound, FP32',
      'bound, TF32',
    ],
    rows,
  ),
);
