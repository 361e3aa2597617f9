#!/usr/bin/env node
/**
 * npm run eval: the robustness study (robustness/eval-study.ts) from the command line. Parses
 * the options, opens the model (and a control's), runs the study here or on servers, writes
 * results.json, results.md and the charts to --out and prints the summary.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { DEFAULT_MODEL_DIR } from '../config/config.js';
import { termControls, untrainedFeedbackControl } from '../robustness/controls.js';
import {
  defaultEvalOut,
  evalBaseline,
  evalStudy,
  writeEvalOutcome,
  type Control,
} from '../robustness/eval-study.js';
import { svgToPng } from '../robustness/chart.js';
import { gaussianSweep, parseSigmas } from '../robustness/gaussian-sweep.js';
import { ImageSetError, type FashionPart } from '../robustness/image-set.js';
import { StudyFailure } from '../robustness/study-engine.js';
import { openModelWithProfile, parseCli, studyModel, wholeNumber } from './args.js';
import { FLEET_OPTIONS, FLEET_USAGE, studyEngine } from './fleet-args.js';
import { openStudy, STUDY_OPTIONS, STUDY_USAGE, type StudyValues } from './study-args.js';

const usage = `usage: npm run eval -- [--images DIR] [--model DIR] [--profile NAME] [options]

Accuracy at t = 0..T, clean and under ImageNet-C's corruptions, through the serving engine.

${STUDY_USAGE}
                 (defaults: all 19 corruptions, severities 1-5, T = 10, build/robustness/<model>-<profile>[-quick];
                 on Fashion-MNIST: its test set, 60 images per class corrupted, 500 clean)
${FLEET_USAGE}
  --quick        severities 1, 3, 5 and 10 images per class (Fashion-MNIST) for a first look
  --split dev|final  Fashion-MNIST's test set: dev, the first 500 images of each class (the
                 default: what design and checks read), or final, the last 500 (read once, for
                 the figures reported when every choice is made)
  --allow-calibration-images  score a calibrated profile even on images npm run calibrate read
                 for it (refused otherwise); the report's title then says "not held out"
  --baseline FILE|alexnet  also ImageNet-C's normalised mCE (%), against AlexNet's published
                 errors or another study's results.json (its t = 0 errors)
  --controls     the same study again with lambda = 0 (no-feedback-term) and with alpha = 0
                 (no-error-gradient), and with --untrained-feedback DIR the feedback untrained;
                 each against the model, paired, with intervals (local engine only)
  --seeds K      draw the corruptions again with K seeds (--seed, +1, ...) on the same images and
                 report each change's spread over them (local engine only)
  --gaussian-sweep S1,S2,...  the Predify paper's first experiment instead: accuracy at t = 0..T
                 under additive Gaussian noise of each standard deviation (pixel units, in (0, 1]),
                 and clean, with intervals; writes sweep.json, sweep.md, sweep.svg/.png
  --untrained-feedback DIR  the untrained-feedback control: the same backbone with feedback
                 never trained (scripts/train_feedback.py ... --epochs 0 --seed S --out ...)
  --model DIR    model directory (default: the shipped ${path.basename(DEFAULT_MODEL_DIR)})
  --profile NAME the model's hyperparameter profile (default: its default profile)
  --batch N      images stepped together (default 32; with --endpoint, images per request, default 8)
  --threads N    onnxruntime threads per session (default 2)`;

const { values } = parseCli(
  {
    options: {
      ...STUDY_OPTIONS,
      ...FLEET_OPTIONS,
      quick: { type: 'boolean', default: false },
      split: { type: 'string', default: 'dev' },
      'allow-calibration-images': { type: 'boolean', default: false },
      baseline: { type: 'string' },
      controls: { type: 'boolean', default: false },
      seeds: { type: 'string' },
      'gaussian-sweep': { type: 'string' },
      'untrained-feedback': { type: 'string' },
      profile: { type: 'string' },
      model: { type: 'string', default: DEFAULT_MODEL_DIR },
      batch: { type: 'string' },
      threads: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  },
  usage,
);
function refuse(message: string): never {
  console.error(`${message}\n\n${usage}`);
  process.exit(2);
}
if (values.split !== 'dev' && values.split !== 'final') refuse(`--split ${values.split}: dev or final`);
const split = values.split as FashionPart;
const remote = values.endpoint !== undefined;
if (remote && (values.controls || values['untrained-feedback']))
  refuse('--controls run on the local engine only: leave out --endpoint');
if (values['untrained-feedback'] && !values.controls)
  refuse('--untrained-feedback is a control: add --controls');
const seeds = wholeNumber('seeds', values.seeds, 1);
if (seeds < 1) refuse('--seeds takes a whole number of at least 1');
if (remote && seeds > 1) refuse('--seeds runs on the local engine only: leave out --endpoint');
let sigmas: number[] | undefined;
try {
  sigmas = values['gaussian-sweep'] !== undefined ? parseSigmas(values['gaussian-sweep']) : undefined;
} catch (err) {
  refuse((err as Error).message);
}
if (sigmas && (values.controls || seeds > 1 || values.baseline))
  refuse('--gaussian-sweep is a study of its own: without --controls, --seeds or --baseline');
const batch = Math.max(1, wholeNumber('batch', values.batch, remote ? 8 : 32));
const threads = wholeNumber('threads', values.threads, 2);

const opened = await studyModel(values.model, values.profile, remote, threads);
const { local, manifest, profile, hyperparameters, coefficients, recommendedTimesteps, anytime } = opened;
const released: { release(): Promise<void> }[] = local ? [local.model] : [];
try {
  const { study, inputs } = await openStudy(
    values as StudyValues,
    manifest,
    {
      corruptions: 'all',
      severities: values.quick ? '1,3,5' : '1-5',
      timesteps: 10,
      fashion: {
        split: 't10k',
        part: split,
        perClass: values.quick ? 10 : 60,
        cleanPerClass: values.quick ? 10 : 500,
      },
    },
    usage,
  );
  const out =
    values.out ??
    (sigmas
      ? path.join(
          'build',
          'robustness',
          `${manifest.name}-${profile}-gaussian-sweep${split === 'final' ? '-final' : ''}`,
        )
      : defaultEvalOut(manifest, profile, values.quick, split));
  const controls: Control[] = [];
  let baseline;
  try {
    if (values.baseline !== undefined)
      baseline = await evalBaseline(values.baseline, manifest, () => readJson(values.baseline!));
    if (values.controls && local) {
      if (values['untrained-feedback']) {
        const control = await openModelWithProfile(values['untrained-feedback'], undefined, threads);
        released.push(control.model);
        controls.push(
          untrainedFeedbackControl(
            control.model,
            control.stepper,
            manifest,
            hyperparameters,
            values['untrained-feedback'],
          ),
        );
      } else
        console.error(
          'controls: untrained-feedback left out (give --untrained-feedback DIR, made by scripts/train_feedback.py --epochs 0)',
        );
      controls.push(...termControls(local.stepper, manifest, hyperparameters));
    }
  } catch (err) {
    if (!(err instanceof ImageSetError)) throw err;
    refuse(err.message);
  }
  const engine = studyEngine({
    stepper: local?.stepper,
    values,
    manifest,
    profile,
    study,
    inputs,
    timesteps: study.timesteps,
    out,
  });
  if (sigmas) {
    try {
      const sweep = await gaussianSweep({
        manifest,
        profile,
        coefficients,
        study,
        inputs,
        engine,
        sigmas,
        batch,
      });
      await writeSweep(out, sweep);
      console.log(`${sweep.line}. Written to ${out}/`);
    } catch (err) {
      if (!(err instanceof ImageSetError) && !(err instanceof StudyFailure)) throw err;
      console.error(err.message);
      process.exitCode = err instanceof StudyFailure ? 1 : 2;
    }
  } else {
    let outcome;
    try {
      outcome = await evalStudy({
        modelDir: values.model,
        manifest,
        profile,
        hyperparameters,
        coefficients,
        recommendedTimesteps,
        calibrated: anytime !== undefined,
        study,
        inputs,
        engine,
        batch,
        split,
        ...(baseline ? { baseline } : {}),
        allowCalibrationImages: values['allow-calibration-images'],
        controls,
        seeds,
        onStart: (line) => console.error(line),
      });
    } catch (err) {
      if (err instanceof StudyFailure) {
        console.error(`\n${err.message}`);
        process.exit(1);
      }
      if (!(err instanceof ImageSetError)) throw err;
      refuse(err.message);
    }
    if (!study.groups.some((g) => g.conditions.some((c) => c.corruption === 'clean')))
      console.error(
        'no clean images (an ImageNet-C set may hold them in DIR/clean/<class>/): clean accuracy and the anytime replay are left out',
      );
    await writeEvalOutcome(out, outcome);
    const [first, ...rest] = outcome.lines;
    console.log(`${first} Written to ${out}/`);
    for (const line of rest) console.log(line);
  }
} finally {
  for (const m of released) await m.release();
}

async function readJson(file: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    throw new ImageSetError(`--baseline ${file}: ${(err as Error).message}`);
  }
}

async function writeSweep(out: string, sweep: Awaited<ReturnType<typeof gaussianSweep>>): Promise<void> {
  await mkdir(out, { recursive: true });
  await writeFile(path.join(out, 'sweep.json'), JSON.stringify(sweep.report, null, 2) + '\n');
  await writeFile(path.join(out, 'sweep.md'), sweep.markdown);
  await writeFile(path.join(out, 'sweep.svg'), sweep.svg);
  await writeFile(path.join(out, 'sweep.png'), await svgToPng(sweep.svg));
}
