#!/usr/bin/env node
/**
 * npm run eval:signal: the signal study (robustness/signal-study.ts) from the command line.
 * Writes signal.json, signal.md and signal.svg/.png to --out. See docs/anytime.md.
 */
import path from 'node:path';
import { DEFAULT_MODEL_DIR } from '../config/config.js';
import { ImageSetError } from '../robustness/image-set.js';
import { signalStudy, writeSignalOutcome } from '../robustness/signal-study.js';
import { StudyFailure } from '../robustness/study-engine.js';
import { parseCli, studyModel } from './args.js';
import { FLEET_OPTIONS, FLEET_USAGE, studyEngine } from './fleet-args.js';
import { openStudy, STUDY_OPTIONS, STUDY_USAGE, type StudyValues } from './study-args.js';

const usage = `usage: npm run eval:signal -- [--images DIR] [--model DIR] [options]

How well the corruption score tells corrupted images from clean ones at t = 0 (AUROC per
condition), against one minus the softmax confidence.

${STUDY_USAGE}
                 (defaults: all 19 corruptions, severities 1-5; on Fashion-MNIST: its test set,
                 60 images per class corrupted, 500 clean; --timesteps is ignored: t = 0 only)
  --model DIR    model directory (default: the shipped ${path.basename(DEFAULT_MODEL_DIR)})
${FLEET_USAGE}`;

const { values } = parseCli(
  {
    options: {
      ...STUDY_OPTIONS,
      ...FLEET_OPTIONS,
      model: { type: 'string', default: DEFAULT_MODEL_DIR },
      help: { type: 'boolean', short: 'h' },
    },
  },
  usage,
);

const { local, manifest, coefficients, profile } = await studyModel(
  values.model,
  undefined,
  values.endpoint !== undefined,
);
try {
  const { study, inputs } = await openStudy(
    values as StudyValues,
    manifest,
    {
      corruptions: 'all',
      severities: '1-5',
      timesteps: 0,
      fashion: { split: 't10k', perClass: 60, cleanPerClass: 500 },
    },
    usage,
  );
  const out = values.out ?? path.join('build', 'signal', manifest.name);
  const engine = studyEngine({
    stepper: local?.stepper,
    values,
    manifest,
    profile,
    study,
    inputs,
    timesteps: 0,
    out,
  });
  try {
    const outcome = await signalStudy({
      manifest,
      study,
      inputs,
      engine,
      coefficients,
      batch: local ? 100 : 8,
    });
    await writeSignalOutcome(out, outcome);
    console.log(`${outcome.line} Written to ${out}/`);
  } catch (err) {
    if (!(err instanceof ImageSetError) && !(err instanceof StudyFailure)) throw err;
    console.error(err.message);
    process.exitCode = err instanceof StudyFailure ? 1 : 2;
  }
} finally {
  await local?.model.release();
}
