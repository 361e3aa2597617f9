/**
 * What one sample-timestep costs on a GPU, from the graphs themselves: the bytes the loop
 * moves between host and device with today's per-graph calls (every input copied in, every
 * output copied out, at every call), the FLOPs (scripts/graph_flops.py), and the time each
 * would take on an H200 at peak: PCIe 5 at 55 GB/s each way, 60 TFLOP/s in FP32 and
 * 490 TFLOP/s in TF32. Then the same with the state kept on the device (docs/gpu.md): only
 * the image goes in, once per request, and the logits and errors come out. A paper estimate,
 * printed as one, not a measurement.
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
const resident: (string | number)[][] = [];
for (const name of values.models.split(',')) {
  const dir = name === 'fashion-pc' ? DEFAULT_MODEL : paperModel(name).dir;
  const file = path.join(dir, 'manifest.json');
  const manifest = parseManifest(JSON.parse(readFileSync(file, 'utf8')), file);
  const { report } = flopsOf(name, dir);
  const flops = Object.values(report).reduce((a, f) => a + f.flopsPerSample, 0);
  const { channels, height, width } = manifest.input;
  const sizes = [channels * height * width, ...manifest.pcoders.map((pc) => elementCount(pc.shape))];
  const n = manifest.pcoders.length;
  const classes = manifest.labels.length;
  // A steady step (t >= 1): E_1(x) is kept from t = 0; encoders 2..n take r_{i-1} and give
  // E_i; feedback i takes r_i and r_{i-1} and gives p_i (the size of r_{i-1}), e_i and g_i;
  // the head takes r_n and gives the logits.
  let toDevice = 0;
  let fromDevice = 0;
  for (let i = 1; i <= n; i++) {
    if (i >= 2) {
      toDevice += sizes[i - 1]!;
      fromDevice += sizes[i]!;
    }
    toDevice += sizes[i]! + sizes[i - 1]!;
    fromDevice += sizes[i - 1]! + 1 + sizes[i]!;
  }
  toDevice += sizes[n]!;
  fromDevice += classes;
  const inBytes = toDevice * FLOAT;
  const outBytes = fromDevice * FLOAT;
  // The calls are synchronous: each copies in, computes, copies out; nothing overlaps.
  const transfer = (inBytes + outBytes) / PCIE;
  const fp32 = flops / FP32;
  const tf32 = flops / TF32;
  rows.push([
    name,
    (flops / 1e9).toFixed(flops >= 1e10 ? 0 : 2),
    kb(inBytes),
    kb(outBytes),
    us(transfer),
    us(fp32),
    us(tf32),
    bound(transfer, fp32),
    bound(transfer, tf32),
  ]);
  // State on the device: the image in once per request (spread over its T + 1 steps), the
  // logits and the n errors out at every step.
  const keptBytes = (sizes[0]! / (T + 1) + classes + n) * FLOAT;
  const kept = keptBytes / PCIE;
  resident.push([
    name,
    kb(keptBytes),
    us(kept),
    us(fp32),
    us(tf32),
    bound(kept, tf32),
    `${((inBytes + outBytes) / keptBytes).toFixed(0)}×`,
  ]);
}

console.log(
  `# one sample-timestep on an H200, at peak: PCIe 5 ${PCIE / 1e9} GB/s each way, ${FP32 / 1e12} TFLOP/s FP32, ${TF32 / 1e12} TFLOP/s TF32\n`,
);
console.log('## today: one onnxruntime call per graph, every input and output through the host\n');
console.log(
  table(
    [
      'model',
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
console.log(`\n## the state kept on the device (T = ${T}: the image's copy spread over T + 1 steps)\n`);
console.log(
  table(['model', 'kB moved', 'transfer µs', 'FP32 µs', 'TF32 µs', 'bound, TF32', 'fewer bytes'], resident),
);
