/**
 * Issue 13 asked to measure both ways of moving the state update into the graphs: one graph
 * per PCoder (n + 1 calls a timestep: each PCoder's update, prediction, error and gradient, then
 * the head) or one graph for the whole timestep (the step graph, which the engine uses). This
 * cuts the step graph into the per-PCoder graphs (scripts/split_step_graph.py, the same nodes) and
 * races K timesteps both ways on the same inputs.
 *
 *   npm run bench:pcoder-graphs [-- --model fashion-pc --steps 9 --batches 1,32 --rounds 2]
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
// onnxruntime directly, as the graphs are raced outside any model the loader would open.
import * as ort from 'onnxruntime-node';
import { machine, ROOT, table } from './lib.js';
import { race, raceArgs, SESSION_OPTIONS, stepFixture, viaStepGraph } from './step-fixture.js';

const { values, K, dir } = raceArgs();
const out = path.join(ROOT, 'build', 'pcoder-graphs', values.model);
const parts = JSON.parse(
  execFileSync('/usr/bin/python3', [path.join(ROOT, 'scripts', 'split_step_graph.py'), dir, out], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }),
) as { file: string; inputs: string[]; outputs: string[] }[];

const options = SESSION_OPTIONS(Number(values.threads));
const step = await ort.InferenceSession.create(path.join(dir, 'step.onnx'), options);
const encoder1 = await ort.InferenceSession.create(path.join(dir, 'encoder1.onnx'), options);
const graphs = await Promise.all(
  parts.map((p) => ort.InferenceSession.create(path.join(out, p.file), options)),
);

console.log(
  `# ${values.model}: ${K} timesteps, one step-graph call vs ${parts.length} per-PCoder calls a timestep\n# ${machine()}\n`,
);
const rows: (string | number)[][] = [];
for (const batch of values.batches.split(',').map(Number)) {
  const f = await stepFixture(step, encoder1, batch, K);
  const viaPCoders = async () => {
    // Each part reads what it names from the fixed inputs, the state and its parts below.
    let state = f.zeroState();
    const logits: Float32Array[] = [];
    for (let k = 0; k < K; k++) {
      const known: Record<string, ort.Tensor> = {
        image: f.image,
        drive1: f.drive1,
        coefficients: f.coefficients(k),
        ...state,
      };
      for (const [j, graph] of graphs.entries()) {
        const o = await graph.run(Object.fromEntries(parts[j]!.inputs.map((name) => [name, known[name]!])));
        Object.assign(known, o);
      }
      logits.push(known.logits!.data as Float32Array);
      state = Object.fromEntries(f.stateNames.map((s) => [s, known[`next_${s}`]!]));
    }
    return logits;
  };

  const r = await race(() => viaStepGraph(step, f, K), viaPCoders, Number(values.rounds));
  rows.push([batch, r.aMs, r.bMs, `${(r.bMs / r.aMs).toFixed(2)}×`, r.diff.toExponential(1)]);
}
console.log(
  table(
    [
      'batch',
      `${K} step-graph calls (ms)`,
      `${K} × ${parts.length} per-PCoder calls (ms)`,
      'step graph speed-up',
      'max |logit difference|',
    ],
    rows,
  ),
);
await Promise.all([step, encoder1, ...graphs].map((s) => s.release()));
