#!/usr/bin/env node
/**
 * Classify images, or directories of them, with a model directory or a running server, and
 * print per-timestep predictions.
 */
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { pino } from 'pino';
import { DEFAULT_MODEL_DIR, EXECUTION_PROVIDERS } from '../config/config.js';
import type { ExecutionProvider } from '../model/onnx-backend.js';
import { progressReporter } from '../robustness/progress.js';
import { parseCli, wholeNumber } from './args.js';
import {
  IMAGE_EXTENSIONS,
  ImageError,
  localSource,
  serverSource,
  UsageError,
  type CliResult,
  type ClassifySource,
} from './classify-source.js';

const usage = `usage: predify-classify <image or directory>... [--model DIR | --server URL] [options]

  --model      model directory (default: the shipped ${path.basename(DEFAULT_MODEL_DIR)})
  --server     classify with a running server instead, e.g. http://localhost:8080
  --model-name with --server: which of the server's models (default: its default model)
  --api-key    the server's API key (default: $PREDIFY_API_KEY)
  --timesteps  predictive-coding timesteps after the feedforward pass, or auto: until
               the dynamics settle (default: the profile's default, auto where its
               calibration chose it, else its recommended timesteps)
  --max-timesteps  with --timesteps auto: the cap (default: the profile's, else 10)
  --profile    hyperparameter profile (default: the model's default profile)
  --topk       classes listed per timestep with --json (default: the service's, 5;
               with --server, that server's DEFAULT_TOPK)
  --providers  execution providers for --model, e.g. cuda,cpu (default cpu)
  --json       one JSON object per image instead of tables

A directory is searched recursively for ${IMAGE_EXTENSIONS.join(' ')} files. With more than one
image, progress goes to stderr and each image gets one summary line (t = 0 and the last
timestep); a single image gets its full per-timestep table.`;

const { values, positionals } = parseCli(
  {
    allowPositionals: true,
    options: {
      model: { type: 'string' },
      server: { type: 'string' },
      'model-name': { type: 'string' },
      'api-key': { type: 'string' },
      timesteps: { type: 'string' },
      'max-timesteps': { type: 'string' },
      profile: { type: 'string' },
      topk: { type: 'string' },
      providers: { type: 'string', default: 'cpu' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  },
  usage,
);

function fail(message: string, code = 2): never {
  console.error(`predify-classify: ${message}`);
  process.exit(code);
}

if (positionals.length === 0) fail(`no image given\n\n${usage}`);
if (values.model && values.server) fail('give --model or --server, not both');
if (values['model-name'] && !values.server)
  fail("--model-name picks one of a server's models: give --server");
const timesteps: number | 'auto' | undefined =
  values.timesteps === undefined || values.timesteps === 'auto'
    ? values.timesteps
    : wholeNumber('timesteps', values.timesteps, 0);
const maxTimesteps =
  values['max-timesteps'] === undefined
    ? undefined
    : wholeNumber('max-timesteps', values['max-timesteps'], 0);
// checked against the model where every path checks it (resolveRequest), not here
const topk = values.topk === undefined ? undefined : wholeNumber('topk', values.topk, 1);
const providers = values.providers.split(',').map((p) => p.trim().toLowerCase());
for (const p of providers)
  if (!(EXECUTION_PROVIDERS as readonly string[]).includes(p))
    fail(`--providers: unknown provider '${p}' (use ${EXECUTION_PROVIDERS.join(', ')})`);

/** The image files named, directories expanded (recursively, sorted). */
async function imageFiles(args: string[]): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    const entries = (await readdir(dir, { withFileTypes: true })).sort((a, b) =>
      a.name.localeCompare(b.name),
    );
    for (const e of entries) {
      const full = path.join(dir, e.name);
      if (e.isDirectory()) await walk(full);
      else if (IMAGE_EXTENSIONS.includes(path.extname(e.name).toLowerCase())) out.push(full);
    }
  };
  for (const arg of args) {
    const info = await stat(arg).catch(() => fail(`${arg}: no such file or directory`, 1));
    if (info.isDirectory()) await walk(arg);
    else out.push(arg);
  }
  return out;
}

const pct = (p: number) => `${(p * 100).toFixed(1)}%`;

function printTable(file: string, r: CliResult): void {
  const names = Object.keys(r.steps[0]?.errors ?? {});
  const { label, confidence } = r.prediction;
  console.log(
    `${file}: ${label} (${pct(confidence)}) after ${r.timesteps} timestep${r.timesteps === 1 ? '' : 's'}${r.stop ? ` (${r.stop.reason})` : ''}, profile ${r.profile}, ${typeof r.corruptionScore === 'number' ? `corruption score ${r.corruptionScore.toFixed(2)}, ` : ''}${r.inferenceMs.toFixed(1)} ms`,
  );
  console.log(
    ['   t', 'prediction'.padEnd(16), 'confidence', ...names.map((n) => n.padStart(10))].join('  '),
  );
  for (const step of r.steps) {
    console.log(
      [
        String(step.t).padStart(4),
        step.label.padEnd(16),
        `${(step.confidence * 100).toFixed(2)}%`.padStart(10),
        ...names.map((n) => step.errors[n]!.toExponential(3).padStart(10)),
      ].join('  '),
    );
  }
}

function summaryLine(file: string, r: CliResult, width: number): string {
  const first = r.steps[0]!;
  const changed = first.index !== r.prediction.index ? '  (changed)' : '';
  return `${file.padEnd(width)}  t=0 ${first.label.padEnd(12)} ${pct(first.confidence).padStart(6)}  →  t=${r.timesteps} ${r.prediction.label.padEnd(12)} ${pct(r.prediction.confidence).padStart(6)}${changed}`;
}

const files = await imageFiles(positionals);
if (files.length === 0) fail('no image files found', 1);
const log = pino({ level: 'warn' }, pino.destination(2));
let source: ClassifySource;
try {
  source = values.server
    ? serverSource(values.server, values['api-key'] ?? process.env['PREDIFY_API_KEY'], values['model-name'])
    : await localSource(values.model ?? DEFAULT_MODEL_DIR, providers as ExecutionProvider[], 8, log);
} catch (err) {
  fail((err as Error).message, 1);
}

const many = files.length > 1;
const progress = many ? progressReporter(`classifying with ${source.description}`, 'images') : undefined;
const width = Math.min(60, Math.max(...files.map((f) => f.length)));
const request = {
  ...(topk !== undefined ? { topk } : {}),
  ...(timesteps !== undefined ? { timesteps } : {}),
  ...(maxTimesteps !== undefined ? { maxTimesteps } : {}),
  ...(values.profile ? { profile: values.profile } : {}),
};

// Up to 8 images in flight: they share batches in the engine or the server. Answers are
// printed in the order the files were given.
const limit = concurrencyLimit(8);
const results = files.map((file) => {
  const answer = limit(() => source.classify(file, request));
  answer.catch(() => {}); // awaited in order below; a failure must not go unhandled meanwhile
  return answer;
});
let failed = 0;
try {
  for (const [k, file] of files.entries()) {
    try {
      const r = await results[k]!;
      if (values.json) console.log(JSON.stringify({ file, ...r }));
      else if (many) console.log(summaryLine(file, r, width));
      else printTable(file, r);
    } catch (err) {
      if (!(err instanceof ImageError)) throw err;
      failed++;
      if (values.json) console.log(JSON.stringify({ file, error: err.message }));
      else console.error(`${file}: ${err.message}`);
    }
    progress?.(k + 1, files.length);
  }
} catch (err) {
  await source.close();
  fail((err as Error).message, err instanceof UsageError ? 2 : 1);
}
await source.close();
if (many && !values.json) console.error(`${files.length - failed} of ${files.length} images classified`);
process.exit(failed > 0 ? 1 : 0);

/** Runs at most `n` of the functions given to it at a time. */
function concurrencyLimit(n: number) {
  let running = 0;
  const waiting: (() => void)[] = [];
  return async <T>(task: () => Promise<T>): Promise<T> => {
    if (running >= n) await new Promise<void>((resolve) => waiting.push(resolve));
    running++;
    try {
      return await task();
    } finally {
      running--;
      waiting.shift()?.();
    }
  };
}
