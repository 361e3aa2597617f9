#!/usr/bin/env node
/** Classify image files with a model directory and print per-timestep predictions. */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { pino } from 'pino';
import { DEFAULT_MODEL_DIR } from '../config.js';
import { Classifier } from '../engine/classifier.js';
import { LocalEngine } from '../engine/local-engine.js';
import { preprocess } from '../image/preprocess.js';
import type { ExecutionProvider } from '../model/onnx-backend.js';
import { parseCli, wholeNumber } from './args.js';

const usage = `usage: predify-classify <image>... [--model DIR] [--timesteps N] [--topk K] [--providers cpu|cuda,cpu] [--json]

  --model      model directory (default: the shipped ${path.basename(DEFAULT_MODEL_DIR)})
  --timesteps  predictive-coding timesteps after the feedforward pass (default 8)
  --topk       classes listed per timestep with --json (default 3)
  --json       print the full result as JSON instead of a table`;

const { values, positionals } = parseCli(
  {
    allowPositionals: true,
    options: {
      model: { type: 'string', default: DEFAULT_MODEL_DIR },
      timesteps: { type: 'string' },
      topk: { type: 'string' },
      providers: { type: 'string', default: 'cpu' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  },
  usage,
);

if (positionals.length === 0) {
  console.error(usage);
  process.exit(2);
}
const timesteps = wholeNumber('timesteps', values.timesteps, 8);
const topk = wholeNumber('topk', values.topk, 3);
const providers = values.providers.split(',') as ExecutionProvider[];
const logger = pino({ level: 'warn' }, pino.destination(2));

try {
  const engine = await LocalEngine.open(
    {
      modelDir: values.model,
      providers,
      intraOpThreads: 0,
      maxBatch: 1,
      maxDelayMs: 0,
      continuous: false,
      maxQueue: 0,
    },
    logger,
  );
  const classifier = new Classifier(engine);
  const names = classifier.manifest.pcoders.map((pc) => pc.name);
  for (const file of positionals) {
    const image = await preprocess(await readFile(file), classifier.manifest.input);
    const result = await classifier.classify(image.tensor, { timesteps, topk });
    const { inferenceMs } = result;
    if (values.json) {
      console.log(JSON.stringify({ file, model: classifier.name, timesteps, ...result, inferenceMs }));
      continue;
    }
    const { label, confidence } = result.prediction;
    console.log(
      `${file}: ${label} (${(confidence * 100).toFixed(1)}%) after ${timesteps} timestep${timesteps === 1 ? '' : 's'}, ${inferenceMs.toFixed(1)} ms`,
    );
    console.log(
      ['   t', 'prediction'.padEnd(16), 'confidence', ...names.map((n) => n.padStart(10))].join('  '),
    );
    for (const step of result.steps) {
      const errs = names.map((n) => step.errors[n]!.toExponential(3).padStart(10));
      console.log(
        [
          String(step.t).padStart(4),
          step.label.padEnd(16),
          `${(step.confidence * 100).toFixed(2)}%`.padStart(10),
          ...errs,
        ].join('  '),
      );
    }
  }
  await classifier.close();
} catch (err) {
  console.error(`predify-classify: ${(err as Error).message}`);
  process.exit(1);
}
