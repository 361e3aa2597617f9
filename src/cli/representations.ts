#!/usr/bin/env node
/**
 * npm run eval:representations: the representation study (robustness/representations.ts)
 * from the command line. Writes results.json and results.md to --out and prints the tables.
 * See docs/robustness.md.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { DEFAULT_MODEL_DIR } from '../config/config.js';
import { ImageSetError } from '../robustness/image-set.js';
import { representationsStudy } from '../robustness/representations.js';
import { openModelWithProfile, parseCli } from './args.js';
import { openStudy, STUDY_OPTIONS, STUDY_USAGE, type StudyValues } from './study-args.js';

const usage = `usage: npm run eval:representations -- [--images DIR] [--corruptions NAMES] [--severities LIST] [--model DIR] [--profile NAME]

${STUDY_USAGE}
                 (defaults: gaussian_noise at severity 3, T = 10; on Fashion-MNIST: 20 test images per class)
  --model DIR    model directory (default: the shipped ${path.basename(DEFAULT_MODEL_DIR)})
  --profile NAME the model's hyperparameter profile (default: its default profile)`;

const { values } = parseCli(
  {
    options: {
      ...STUDY_OPTIONS,
      profile: { type: 'string' },
      model: { type: 'string', default: DEFAULT_MODEL_DIR },
      help: { type: 'boolean', short: 'h' },
    },
  },
  usage,
);

const { model, stepper, profile, coefficients } = await openModelWithProfile(values.model, values.profile);
try {
  const { manifest } = model;
  const { study, inputs } = await openStudy(
    values as StudyValues,
    manifest,
    {
      corruptions: 'gaussian_noise',
      severities: '3',
      timesteps: 10,
      fashion: { split: 't10k', perClass: 20, cleanPerClass: 20 },
    },
    usage,
  );
  let outcome;
  try {
    outcome = await representationsStudy({ stepper, manifest, profile, coefficients, study, inputs });
  } catch (err) {
    if (!(err instanceof ImageSetError)) throw err;
    console.error(err.message);
    process.exit(2);
  }
  const out = values.out ?? path.join('build', 'robustness', `${manifest.name}-${profile}-representations`);
  await mkdir(out, { recursive: true });
  await writeFile(path.join(out, 'results.json'), JSON.stringify(outcome.report, null, 2) + '\n');
  await writeFile(path.join(out, 'results.md'), outcome.markdown);
  console.log(outcome.markdown);
} finally {
  await model.release();
}
