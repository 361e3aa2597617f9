#!/usr/bin/env node
/**
 * Runs a model directory's golden cases through the engine, one at a time and as one batch,
 * and compares with the PyTorch reference. Exit 1 when any value is off by more than the
 * tolerance (logits relative to their scale, errors relative); through the loop graph as well
 * when the model has one. Used by the Python exporter tests on freshly exported models.
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
const model = await loadModel(
  dir,
  { providers: ['cpu'], intraOpThreads: 0 },
  pino({ level: 'warn' }, pino.destination(2)),
);
const golden = await readGolden(dir, model.manifest);
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
