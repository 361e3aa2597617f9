#!/usr/bin/env node
/**
 * The robustness evaluation: Fashion-MNIST test images, clean and under every corruption and
 * severity, through the serving engine for t = 0..T. Writes results.json, results.md and
 * accuracy.svg/.png to --out. See docs/robustness.md.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { DEFAULT_MODEL_DIR } from '../config.js';
import { accuracyChart, svgToPng } from '../robustness/chart.js';
import { CORRUPTIONS, SEVERITIES } from '../robustness/corruptions.js';
import { evaluate, stratifiedIndices, type Condition } from '../robustness/evaluate.js';
import { loadFashion } from '../robustness/fashion-mnist.js';
import { progressReporter } from '../robustness/progress.js';
import { markdown, summarise } from '../robustness/report.js';
import { openModelWithProfile, parseCli, wholeNumber } from './args.js';

const usage = `usage: npm run eval -- [--quick] [--profile NAME] [--images N] [--timesteps T] [--model DIR] [--out DIR]

  --quick      100 images per condition, severities 1, 3 and 5 (about a minute)
  --images     test images per condition, the same number from every class (default 600)
  --timesteps  T: accuracy is reported for t = 0..T (default 10)
  --profile    the model's hyperparameter profile (default: the model's default profile)
  --model      model directory (default: the shipped ${path.basename(DEFAULT_MODEL_DIR)})
  --out        output directory (default: build/robustness/<model>-<profile>[-quick])
  --batch      samples stepped together (default 100)
  --threads    onnxruntime threads per session (default 2)`;

const { values } = parseCli(
  {
    options: {
      quick: { type: 'boolean', default: false },
      images: { type: 'string' },
      timesteps: { type: 'string' },
      profile: { type: 'string' },
      model: { type: 'string', default: DEFAULT_MODEL_DIR },
      out: { type: 'string' },
      batch: { type: 'string' },
      threads: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  },
  usage,
);

// 600 keeps the full run under 15 minutes on 2 cores with the shipped model's predictors.
const images = wholeNumber('images', values.images, values.quick ? 100 : 600);
const timesteps = wholeNumber('timesteps', values.timesteps, 10);
const batch = Math.max(1, wholeNumber('batch', values.batch, 100));
const threads = wholeNumber('threads', values.threads, 2);
const severities = values.quick ? [1, 3, 5] : [1, 2, 3, 4, 5];

const { model, stepper, profile, hyperparameters } = await openModelWithProfile(
  values.model,
  values.profile,
  threads,
);
try {
  const { manifest } = model;
  const data = await loadFashion('t10k');
  const indices = stratifiedIndices(data, images);
  const conditions: Condition[] = [
    { corruption: 'clean', severity: 0 },
    ...CORRUPTIONS.flatMap((corruption) => severities.map((severity) => ({ corruption, severity }))),
  ];
  const out =
    values.out ??
    path.join('build', 'robustness', `${manifest.name}-${profile}${values.quick ? '-quick' : ''}`);
  console.error(
    `evaluating ${manifest.name}, profile ${profile}: ${indices.length} test images x ${conditions.length} conditions x t = 0..${timesteps}`,
  );
  const started = performance.now();
  const results = await evaluate(stepper, data, {
    indices,
    conditions,
    timesteps,
    batch,
    coefficients: stepper.profile(profile),
    onProgress: progressReporter('eval'),
  });
  const seconds = (performance.now() - started) / 1000;
  const summary = summarise(results);
  const title = `${manifest.name}, profile ${profile}: accuracy over timesteps (${indices.length} test images per condition)`;
  await mkdir(out, { recursive: true });
  const report = {
    model: manifest.name,
    profile,
    hyperparameters,
    split: 't10k',
    images: indices.length,
    selection: 'the first images of the test set, the same number from every class',
    timesteps,
    severities: Object.fromEntries(CORRUPTIONS.map((c) => [c, { ...SEVERITIES[c], used: severities }])),
    seconds: Math.round(seconds),
    summary,
    conditions: results.map((r) => ({ ...r.condition, accuracy: r.accuracy, correct: r.correct })),
  };
  const svg = accuracyChart(summary, title);
  await writeFile(path.join(out, 'results.json'), JSON.stringify(report, null, 2) + '\n');
  await writeFile(path.join(out, 'results.md'), markdown(results, summary, title));
  await writeFile(path.join(out, 'accuracy.svg'), svg);
  await writeFile(path.join(out, 'accuracy.png'), await svgToPng(svg));
  const r = summary.recommended;
  console.log(
    `${manifest.name} (${profile}): clean ${(summary.clean[0]! * 100).toFixed(2)}% at t=0; noise mean ${(summary.noiseMean[0]! * 100).toFixed(2)}% at t=0, ` +
      `${(summary.noiseMean[r.timesteps]! * 100).toFixed(2)}% at t=${r.timesteps} (${r.noiseGain >= 0 ? '+' : ''}${r.noiseGain.toFixed(2)} points, clean ${r.cleanChange >= 0 ? '+' : ''}${r.cleanChange.toFixed(2)}); ` +
      `relative mCE at t=${r.timesteps}: ${(summary.relativeMCE[r.timesteps]! * 100).toFixed(1)}%. ${Math.round(seconds)} s. Written to ${out}/`,
  );
} finally {
  await model.release();
}
