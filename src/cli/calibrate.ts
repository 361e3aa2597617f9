#!/usr/bin/env node
/**
 * Calibrates a model's hyperparameters on a validation split carved from the Fashion-MNIST
 * training images, under the noise corruptions (never on the test set), and writes the result
 * into the model's manifest as a named profile, with how it was chosen. See docs/robustness.md.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pino } from 'pino';
import { DEFAULT_MODEL_DIR } from '../config.js';
import { PredictiveStepper } from '../engine/predictive-step.js';
import { loadModel } from '../model/load-model.js';
import { MANIFEST_FILE, parseManifest } from '../model/manifest.js';
import { calibrate, DEFAULT_SPACE } from '../robustness/calibrate.js';
import { NOISE_CORRUPTIONS } from '../robustness/corruptions.js';
import { stratifiedIndices, type Condition } from '../robustness/evaluate.js';
import { loadFashion } from '../robustness/fashion-mnist.js';
import { parseCli, wholeNumber } from './args.js';

/** The validation split: the last 10 000 training images (the backbone saw them unperturbed). */
const VALIDATION = { from: 50_000, to: 60_000 };

const usage = `usage: npm run calibrate -- [--name NAME] [--images N] [--timesteps T] [--model DIR] [--write] [--default]

  --name       profile to write (default robust)
  --images     validation images per noise condition (default 200), from training images ${VALIDATION.from}..${VALIDATION.to - 1}
  --clean-images  validation images for the clean condition (default 600): the clean constraint is a fine margin
  --severities noise severities evaluated (default 2,4)
  --timesteps  T (default 10)
  --write      write the profile (and the exported hyperparameters' recommended timesteps) into the manifest
  --default    also make it the model's default profile, if it beats the exported hyperparameters
  --model      model directory (default: the shipped ${path.basename(DEFAULT_MODEL_DIR)})`;

const { values } = parseCli(
  {
    options: {
      name: { type: 'string', default: 'robust' },
      images: { type: 'string' },
      'clean-images': { type: 'string' },
      severities: { type: 'string', default: '2,4' },
      timesteps: { type: 'string' },
      model: { type: 'string', default: DEFAULT_MODEL_DIR },
      write: { type: 'boolean', default: false },
      default: { type: 'boolean', default: false },
      batch: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  },
  usage,
);
const images = wholeNumber('images', values.images, 200);
const cleanImages = wholeNumber('clean-images', values['clean-images'], 600);
const timesteps = wholeNumber('timesteps', values.timesteps, 10);
const batch = wholeNumber('batch', values.batch, 100);
const severities = values.severities.split(',').map(Number);
if (severities.some((s) => !Number.isInteger(s) || s < 1 || s > 5)) {
  console.error(`--severities takes numbers 1..5, got '${values.severities}'`);
  process.exit(2);
}

const model = await loadModel(
  values.model,
  { providers: ['cpu'], intraOpThreads: 2 },
  pino({ level: 'warn' }),
);
const { manifest } = model;
const stepper = new PredictiveStepper(model);
const data = await loadFashion('train');
const indices = stratifiedIndices(data, images, VALIDATION.from, VALIDATION.to);
const cleanIndices = stratifiedIndices(data, cleanImages, VALIDATION.from, VALIDATION.to);
const conditions: Condition[] = NOISE_CORRUPTIONS.flatMap((corruption) =>
  severities.map((severity) => ({ corruption, severity })),
);
console.error(
  `calibrating ${manifest.name} on validation images: ${cleanIndices.length} clean, ${indices.length} x ${conditions.length} noise conditions; t = 0..${timesteps}`,
);
const fmt = (hs: { beta: number; lambda: number; alpha: number }[]) =>
  hs.map((h) => `(${h.beta}, ${h.lambda}, ${h.alpha})`).join(' ');
const started = performance.now();
const { best, exported, candidates } = await calibrate(
  stepper,
  data,
  manifest.pcoders.map((pc) => pc.hyperparameters),
  {
    indices,
    cleanIndices,
    conditions,
    timesteps,
    batch,
    space: DEFAULT_SPACE,
    onCandidate: (c, k) =>
      console.error(
        `  #${k} ${c.stage.padEnd(8)} ${fmt(c.hyperparameters)}: noise ${c.recommended.noiseGain >= 0 ? '+' : ''}${c.recommended.noiseGain.toFixed(2)} at t=${c.recommended.timesteps}, clean ${c.recommended.cleanChange >= 0 ? '+' : ''}${c.recommended.cleanChange.toFixed(2)}\n` +
          `     clean ${curve(c.clean)}\n     noise ${curve(c.noiseMean)}`,
      ),
  },
);
await model.release();
const seconds = Math.round((performance.now() - started) / 1000);
console.log(
  `best: ${fmt(best.hyperparameters)} (beta, lambda, alpha per PCoder): noise mean +${best.recommended.noiseGain.toFixed(2)} points at t=${best.recommended.timesteps}, clean ${best.recommended.cleanChange.toFixed(2)}; ` +
    `exported: +${exported.recommended.noiseGain.toFixed(2)} at t=${exported.recommended.timesteps}. ${candidates.length} candidates, ${seconds} s.`,
);

if (values.write) {
  const file = path.join(values.model, MANIFEST_FILE);
  const raw = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  const calibration = {
    method:
      'coordinate search: shared (beta, lambda), then each PCoder in turn, then alpha; score = noise-mean accuracy gain over t = 0 at the best timestep whose clean accuracy stays within 0.5 points of t = 0',
    split: `Fashion-MNIST training images ${VALIDATION.from}..${VALIDATION.to - 1}: ${cleanIndices.length} clean, ${indices.length} per noise condition (the same number per class)`,
    conditions: ['clean', ...conditions.map((c) => `${c.corruption}/${c.severity}`)],
    timesteps,
    space: DEFAULT_SPACE,
    validation: {
      noiseGain: round(best.recommended.noiseGain),
      cleanChange: round(best.recommended.cleanChange),
      exportedNoiseGain: round(exported.recommended.noiseGain),
    },
    candidates: candidates.map((c) => ({
      stage: c.stage,
      hyperparameters: c.hyperparameters,
      timesteps: c.recommended.timesteps,
      noiseGain: round(c.recommended.noiseGain),
      cleanChange: round(c.recommended.cleanChange),
    })),
  };
  const profiles = (raw['profiles'] as Record<string, unknown> | undefined) ?? {};
  profiles[values.name] = {
    description: `calibrated for noisy inputs by npm run calibrate (${new Date().toISOString().slice(0, 10)})`,
    hyperparameters: best.hyperparameters,
    recommendedTimesteps: best.recommended.timesteps,
    calibration,
  };
  raw['profiles'] = profiles;
  raw['recommendedTimesteps'] = exported.recommended.timesteps;
  if (values.default && best !== exported && best.recommended.noiseGain > exported.recommended.noiseGain)
    raw['defaultProfile'] = values.name;
  parseManifest(raw, file); // never write a manifest the server would refuse
  await writeFile(file, JSON.stringify(raw, null, 2) + '\n');
  console.log(
    `wrote profile '${values.name}' to ${file}${raw['defaultProfile'] === values.name ? ' (the default)' : ''}`,
  );
}

function curve(values: number[]) {
  return values.map((v) => (v * 100).toFixed(1)).join(' ');
}

function round(x: number) {
  return Math.round(x * 100) / 100;
}
