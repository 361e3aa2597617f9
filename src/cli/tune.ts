/**
 * npm run tune: the batch size a model serves at, measured as BATCH_MAX_SIZE=auto measures it at
 * start-up but longer, and with --write recorded in its manifest for this provider and
 * machine, so that the server starts without measuring (src/engine/batch-tuning.ts).
 */
import { pino } from 'pino';
import { EXECUTION_PROVIDERS } from '../config/config.js';
import { measureCurve, pickSize, stepperThroughput, tuningRecord, TUNING } from '../engine/batch-tuning.js';
import { openStepper } from '../engine/open-stepper.js';
import { graphSetFor } from '../engine/inference-engine.js';
import { loadModel, timestepProvider } from '../model/load-model.js';
import { editManifest } from '../model/edit-manifest.js';
import type { ExecutionProvider } from '../model/onnx-backend.js';
import { parseCli, wholeNumber } from './args.js';

const usage = `usage: npm run tune -- --model DIR [--write] [options]

Measures the model's sample-steps/s at batch sizes 1, 2, 4 ... ${TUNING.maxSize} through the
graphs the server opens, twice each, and picks the largest size within ${TUNING.tolerance * 100}% of
the best, as the server does at start-up with BATCH_MAX_SIZE=auto, only longer.

  --model DIR        the model directory
  --write            record the curve and the choice in DIR/manifest.json under batchTuning,
                     for the provider used; a server on a machine with as many cores and the
                     same ORT_INTRA_OP_THREADS then starts at that size without measuring
  --ms-per-size MS   time each size over at least this long (default 1000)
  --threads N        ORT_INTRA_OP_THREADS to measure with (default 0, as the server's default)
  --providers LIST   execution providers in order (default cpu)
  --steps-per-call K ENGINE_STEPS_PER_CALL to open the graphs for (default 8)`;

const { values } = parseCli(
  {
    options: {
      model: { type: 'string' },
      write: { type: 'boolean', default: false },
      'ms-per-size': { type: 'string' },
      threads: { type: 'string' },
      providers: { type: 'string', default: 'cpu' },
      'steps-per-call': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  },
  usage,
);
if (!values.model) {
  console.error(`--model is required\n\n${usage}`);
  process.exit(2);
}
const dir = values.model;
const minMs = wholeNumber('ms-per-size', values['ms-per-size'], 1000);
const threads = wholeNumber('threads', values.threads, 0);
const stepsPerCall = wholeNumber('steps-per-call', values['steps-per-call'], 8);
const providers = values.providers.split(',').map((p) => p.trim().toLowerCase());
for (const p of providers)
  if (!(EXECUTION_PROVIDERS as readonly string[]).includes(p)) {
    console.error(`--providers: unknown provider '${p}' (use ${EXECUTION_PROVIDERS.join(', ')})`);
    process.exit(2);
  }

const model = await loadModel(
  dir,
  { providers: providers as ExecutionProvider[], intraOpThreads: threads },
  pino({ level: 'warn' }, pino.destination(2)),
  graphSetFor({ stepsPerCall }),
).catch((err: Error) => {
  console.error(`tune: ${err.message}`);
  process.exit(1);
});
const provider = timestepProvider(model);
const stepper = openStepper(model);
console.error(`tune: ${model.manifest.name} on ${provider}, ${minMs} ms per size and pass`);
// Every size, whatever the first pass suggests: the curve is the record.
const measured = await measureCurve((size) => stepperThroughput(stepper, size, minMs), {
  budgetMs: Number.POSITIVE_INFINITY,
  stopPastPeak: false,
});
await model.release();
const size = pickSize(measured.curve);
const best = Math.max(...measured.curve.map((p) => p.sampleStepsPerSecond));
console.log('| batch | sample-steps/s | of the best |');
console.log('| ----- | -------------- | ----------- |');
for (const p of measured.curve)
  console.log(
    `| ${p.size}${p.size === size ? ' (chosen)' : ''} | ${p.sampleStepsPerSecond.toFixed(1)} | ${((100 * p.sampleStepsPerSecond) / best).toFixed(1)}% |`,
  );
console.log(
  `\n${model.manifest.name}: batch size ${size} on ${provider}${measured.stoppedAt ? ` (measuring stopped ${measured.stoppedAt})` : ''}, ${(measured.ms! / 1000).toFixed(1)} s`,
);

if (values.write) {
  const file = await editManifest(dir, (raw) => {
    raw['batchTuning'] = {
      ...((raw['batchTuning'] ?? {}) as Record<string, unknown>),
      [provider]: tuningRecord(size, measured.curve, threads),
    };
  });
  console.log(`wrote batchTuning.${provider} to ${file}`);
}
