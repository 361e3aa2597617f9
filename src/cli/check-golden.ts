#!/usr/bin/env node
/**
 * Runs a model directory's golden cases through the engine, one at a time and as one batch,
 * and compares with the PyTorch reference. Exit 1 when any value is off by more than the
 * tolerance (logits relative to their scale, errors relative); through the loop graph as well
 * when the model has one; exit 2, with one line, when the model cannot be checked. Used by the
 * Python exporter tests on freshly exported models, and by `npm run check-golden`.
 *
 * The tolerance (1e-4 by default) is for float32 computed two ways: PyTorch and onnxruntime
 * sum in different orders, and the differences grow with depth. The shipped and the paper's
 * networks agree to a few times 1e-6; deep torchvision networks at random weights come to
 * 1e-5..1e-4 (ResNeXt-50 reached 5.3e-5). Past 1e-4, the graphs do not compute the model.
 */
import { pino } from 'pino';
import { PredictiveLoop } from '../engine/predictive-loop.js';
import { readGolden } from '../model/golden.js';
import { loadModel } from '../model/load-model.js';
import { compareWithGolden } from '../engine/golden-check.js';
import { parseCli } from './args.js';

const usage = 'usage: check-golden <model-dir> [--tolerance 1e-4]';
const { values, positionals } = parseCli(
  {
    allowPositionals: true,
    options: { tolerance: { type: 'string', default: '1e-4' }, help: { type: 'boolean' } },
  },
  usage,
);
const dir = positionals[0];
if (!dir) {
  console.error(usage);
  process.exit(2);
}
const tolerance = Number(values.tolerance);
if (!(tolerance > 0)) {
  console.error(`check-golden: --tolerance ${values.tolerance} is not a positive number\n\n${usage}`);
  process.exit(2);
}
/** A model that cannot be checked is one line, not a stack trace. */
function cannot(err: unknown): never {
  console.error(`check-golden: ${dir}: ${(err as Error).message.split('\n')[0]}`);
  process.exit(2);
}
const model = await loadModel(
  dir,
  { providers: ['cpu'], intraOpThreads: 0 },
  pino({ level: 'warn' }, pino.destination(2)),
).catch(cannot);
if (!model.manifest.golden) {
  await model.release();
  cannot(new Error('the model has no golden cases (imported with --golden 0?): there is nothing to check'));
}
const golden = await readGolden(dir, model.manifest).catch(cannot);
const report = await compareWithGolden(new PredictiveLoop(model), golden);
// The server runs full batches through the loop graph: it must match too, across calls (4 steps each).
const loop = model.loop && (await compareWithGolden(new PredictiveLoop(model, { stepsPerCall: 4 }), golden));
console.log(JSON.stringify({ model: model.manifest.name, tolerance, ...report, ...(loop ? { loop } : {}) }));
await model.release();
// Logits are compared relative to their own scale: random test networks have logits of ~10.
const pass = [report, ...(loop ? [loop] : [])].every(
  (r) => r.maxLogitScaledDiff <= tolerance && r.maxErrorRelDiff <= tolerance && r.maxBatchDiff <= 1e-5,
);
process.exit(pass ? 0 : 1);
