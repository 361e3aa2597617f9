#!/usr/bin/env node
/**
 * npm run calibrate: the calibration study (robustness/calibrate-study.ts) from the command
 * line. Prints what it chose, writes it into the manifest with --write (and records the images
 * it read, so that eval will not score the profile on them), and its report to --out.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { DEFAULT_MODEL_DIR } from '../config/config.js';
import { editManifest } from '../model/edit-manifest.js';
import { SEARCH_SPACES } from '../robustness/calibrate.js';
import { calibrateStudy, CONFIRM, planCalibration, SEARCH } from '../robustness/calibrate-study.js';
import { digestsOf, recordCalibrationImages } from '../robustness/held-out.js';
import { ImageSetError } from '../robustness/image-set.js';
import { StudyFailure } from '../robustness/study-engine.js';
import { StudyInputs } from '../robustness/study-inputs.js';
import { openModelWithProfile, parseCli, wholeNumber } from './args.js';
import { STUDY_OPTIONS, STUDY_USAGE, type StudyValues } from './study-args.js';

const usage = `usage: npm run calibrate -- [--images DIR] [--model DIR] [--name NAME] [--write] [--default] [options]

Chooses a profile's hyperparameters, recommended timesteps and anytime rule, and the
corruption score's normalisation, on validation images (never the images you test on), under
ImageNet-C's benchmark corruptions of every family; --write puts them in the model's manifest.

${STUDY_USAGE}
                 (defaults: benchmark corruptions, severities 2,4, T = 10; on Fashion-MNIST:
                 training images ${SEARCH.from}..${CONFIRM.to - 1}, 10 images per class corrupted, 60 clean for
                 the search, 20 and 500 for the confirmation; a directory: all its images, half each)
                 --out DIR: calibration.md, what it chose, and calibration.json, how
  --name NAME    profile to write (default robust)
  --search full|quick|none  the hyperparameters tried: full (the default: shared (beta, lambda),
                 then each PCoder's, then alpha: about 6 candidates a PCoder), quick (the
                 shared pairs only: 3 candidates) or none (the exported values only)
  --finalists N  the search's best candidates measured again on the other half (default 5; 0: none)
  --confirm-per-class N / --confirm-clean-per-class N   Fashion-MNIST's confirmation images
  --confirm-tolerance P   points of clean accuracy a finalist may lose there (default 0.5)...
  --confirm-margin K      ...less K standard errors of the paired clean change (default 1)
  --write        write the profile, its anytime rule and the corruption score into the manifest
  --default      also make it the model's default profile, if it beats the exported hyperparameters
  --anytime-only no search: choose only the anytime rule of profile --name (exported included)
  --score-only   no search: measure only the corruption score's normalisation (clean images)
  --model DIR    model directory (default: the shipped ${path.basename(DEFAULT_MODEL_DIR)})
  --batch N      images stepped together (default 32)`;

const { values } = parseCli(
  {
    options: {
      ...STUDY_OPTIONS,
      name: { type: 'string', default: 'robust' },
      search: { type: 'string', default: 'full' },
      finalists: { type: 'string' },
      'confirm-per-class': { type: 'string' },
      'confirm-clean-per-class': { type: 'string' },
      'confirm-tolerance': { type: 'string', default: '0.5' },
      'confirm-margin': { type: 'string', default: '1' },
      model: { type: 'string', default: DEFAULT_MODEL_DIR },
      write: { type: 'boolean', default: false },
      default: { type: 'boolean', default: false },
      'anytime-only': { type: 'boolean', default: false },
      'score-only': { type: 'boolean', default: false },
      batch: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  },
  usage,
);
function refuse(message: string): never {
  console.error(`${message}\n\n${usage}`);
  process.exit(2);
}
const batch = Math.max(1, wholeNumber('batch', values.batch, 32));
if (!(values.search in SEARCH_SPACES)) refuse(`--search is full, quick or none, got '${values.search}'`);
const finalists = wholeNumber('finalists', values.finalists, 5);
const nonNegative = (name: 'confirm-tolerance' | 'confirm-margin') => {
  const x = Number(values[name]);
  if (!(x >= 0)) refuse(`--${name} takes a number >= 0, got '${values[name]}'`);
  return x;
};
const confirmTolerance = nonNegative('confirm-tolerance');
const confirmMargin = nonNegative('confirm-margin');

/** What the command prints, kept for --out: calibration.md (and calibration.json). */
const printed: string[] = [];
const say = (line: string) => {
  console.log(line);
  printed.push(line);
};

const { model, stepper } = await openModelWithProfile(values.model, undefined);
try {
  const { manifest } = model;
  let outcome;
  try {
    const { search, confirm } = await planCalibration(values as StudyValues, manifest, {
      finalists,
      confirmPerClass: wholeNumber('confirm-per-class', values['confirm-per-class'], 20),
      confirmCleanPerClass: wholeNumber('confirm-clean-per-class', values['confirm-clean-per-class'], 500),
    });
    outcome = await calibrateStudy({
      manifest,
      stepper,
      inputs: new StudyInputs(manifest.input, { skipUnreadable: search.skipUnreadable, seed: search.seed }),
      search,
      confirm,
      batch,
      mode: values['score-only'] ? 'score-only' : values['anytime-only'] ? 'anytime-only' : 'full',
      name: values.name,
      space: SEARCH_SPACES[values.search as keyof typeof SEARCH_SPACES],
      finalists,
      confirmTolerance,
      confirmMargin,
      makeDefault: values.default,
      say,
      onProgress: (line) => console.error(line),
    });
  } catch (err) {
    if (err instanceof StudyFailure) {
      console.error(err.message);
      process.exit(1);
    }
    if (!(err instanceof ImageSetError)) throw err;
    refuse(err.message);
  }
  if (values.write) {
    const file = await editManifest(values.model, outcome.edit);
    const what = values['score-only']
      ? 'the corruption score'
      : values['anytime-only']
        ? `the anytime rule of profile '${values.name}'`
        : `profile '${values.name}'${outcome.madeDefault ? ' (the default)' : ''}`;
    say(`wrote ${what} to ${file}`);
    for (const { name, images } of outcome.read) {
      const recorded = path.join(
        values.model,
        await recordCalibrationImages(values.model, name, await digestsOf(images)),
      );
      say(`recorded the images calibrated on in ${recorded}: npm run eval will not score '${name}' on them`);
    }
  }
  if (values.out) {
    await mkdir(values.out, { recursive: true });
    const md = `# npm run calibrate: ${values.model}\n\n${printed.map((l) => `- ${l}`).join('\n')}\n`;
    await writeFile(path.join(values.out, 'calibration.md'), md);
    await writeFile(
      path.join(values.out, 'calibration.json'),
      JSON.stringify(outcome.record, null, 2) + '\n',
    );
    console.log(`wrote the report to ${path.join(values.out, 'calibration.md')} and calibration.json`);
  }
} finally {
  await model.release();
}
