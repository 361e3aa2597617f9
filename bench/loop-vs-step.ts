/**
 * K timesteps as one call of an ONNX Loop graph (scripts/loop_graph.py, the state carried
 * inside) against K calls of the step graph (the state through the host between calls), on
 * the same inputs: the two must give the same numbers, and this says which is faster here.
 * docs/gpu.md says why the Loop matters on a GPU; this measures its cost or gain on the CPU.
 *
 *   npm run bench:loop [-- --model fashion-pc --steps 9 --batches 1,32 --rounds 2]
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
// onnxruntime directly, as the graphs are raced outside any model the loader would open.
import * as ort from 'onnxruntime-node';
import { machine, ROOT, table } from './lib.js';
import { race, raceArgs, SESSION_OPTIONS, stepFixture, viaStepGraph } from './step-fixture.js';

const { values, K, dir } = raceArgs();
const loopFile = path.join(ROOT, 'build', 'loop', `${values.model}.onnx`);
const stepFile = path.join(dir, 'step.onnx');
if (!existsSync(stepFile)) throw new Error(`${dir} has no step graph: re-export it`);
if (!existsSync(loopFile) || statSync(loopFile).mtimeMs < statSync(stepFile).mtimeMs) {
  mkdirSync(path.dirname(loopFile), { recursive: true });
  execFileSync('/usr/bin/python3', [path.join(ROOT, 'scripts', 'loop_graph.py'), dir, loopFile], {
    stdio: 'inherit',
  });
}

const options = SESSION_OPTIONS(Number(values.threads));
const step = await ort.InferenceSession.create(stepFile, options);
const loop = await ort.InferenceSession.create(loopFile, options);
const encoder1 = await ort.InferenceSession.create(path.join(dir, 'encoder1.onnx'), options);

console.log(`# ${values.model}: ${K} timesteps, one Loop call vs ${K} step-graph calls\n# ${machine()}\n`);
const rows: (string | number)[][] = [];
for (const batch of values.batches.split(',').map(Number)) {
  const f = await stepFixture(step, encoder1, batch, K);
  const viaLoop = async () => {
    const init = Object.fromEntries(Object.entries(f.zeroState()).map(([s, t]) => [`init_${s}`, t]));
    const out = await loop.run({
      image: f.image,
      drive1: f.drive1,
      coefficients_all: f.allCoefficients,
      ...init,
    });
    const all = out.all_logits!.data as Float32Array;
    const per = all.length / K;
    return Array.from({ length: K }, (_, k) => all.subarray(k * per, (k + 1) * per));
  };

  const r = await race(() => viaStepGraph(step, f, K), viaLoop, Number(values.rounds));
  rows.push([batch, r.aMs, r.bMs, `${(r.aMs / r.bMs).toFixed(2)}×`, r.diff.toExponential(1)]);
}
console.log(
  table(
    ['batch', `${K} step calls (ms)`, 'one Loop call (ms)', 'Loop speed-up', 'max |logit difference|'],
    rows,
  ),
);
await Promise.all([step.release(), loop.release(), encoder1.release()]);
