#!/usr/bin/env node
/**
 * Calibrates a model's hyperparameters on a validation split carved from the Fashion-MNIST
 * training images, under the noise corruptions (never on the test set), and writes the result
 * into the model's manifest as a named profile, with how it was chosen. See docs/robustness.md.
 * The profile's anytime rule (timesteps=auto) is chosen on the same images: docs/anytime.md.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pino } from 'pino';
import { DEFAULT_MODEL_DIR } from '../config.js';
import { PredictiveStepper } from '../engine/predictive-step.js';
import { loadModel } from '../model/load-model.js';
import { EXPORTED_PROFILE, MANIFEST_FILE, parseManifest, profilesOf } from '../model/manifest.js';
import { coefficientsOf, type Hyperparameters } from '../model/hyperparameters.js';
import { gradientScales } from '../engine/profiles.js';
import { chooseRule, ruleName, undominated, type AnytimeChoice } from '../robustness/anytime.js';
import { corruptionScore, fitNormalisation } from '../engine/corruption-score.js';
import { quantile } from '../robustness/signal.js';
import {
  calibrate,
  DEFAULT_SPACE,
  finalRecommendation,
  type Candidate,
  type Measurement,
} from '../robustness/calibrate.js';
import { NOISE_CORRUPTIONS } from '../robustness/corruptions.js';
import { signed } from '../robustness/report.js';
import { evaluate, stratifiedIndices, type Condition } from '../robustness/evaluate.js';
import { loadFashion } from '../robustness/fashion-mnist.js';
import { parseCli, wholeNumber } from './args.js';

/**
 * The validation split: the last 10 000 training images (the backbone saw them unperturbed).
 * The search draws from its first half, the confirmation of the finalists from its second.
 */
const VALIDATION = { from: 50_000, to: 60_000 };
const SEARCH = { from: VALIDATION.from, to: 55_000 };
/** clean images the corruption score is normalised on: the whole search split (t = 0 only: seconds) */
const SCORE_IMAGES = 5000;
const CONFIRM = { from: 55_000, to: VALIDATION.to };

const usage = `usage: npm run calibrate -- [--name NAME] [--images N] [--timesteps T] [--model DIR] [--write] [--default]

  --name       profile to write (default robust)
  --images     search images per noise condition (default 200), from training images ${SEARCH.from}..${SEARCH.to - 1}
  --clean-images  search images for the clean condition (default 600): the clean constraint is a fine margin
  --severities noise severities evaluated (default 2,4)
  --finalists  the search's best candidates measured again on training images ${CONFIRM.from}..${CONFIRM.to - 1} (default 5; 0: no confirmation)
  --confirm-images        confirmation images per noise condition (default 400)
  --confirm-clean-images  confirmation images for the clean condition (default 5000: all of them)
  --confirm-tolerance     points of clean accuracy a finalist may lose on them (default 0.5, the target)...
  --confirm-margin        ...less this many standard errors of the paired clean change (default 1)
  --timesteps  T (default 10)
  --write      write the profile (and the exported hyperparameters' recommended timesteps) into the manifest
  --default    also make it the model's default profile, if it beats the exported hyperparameters
  --anytime-only  no search: choose only the anytime rule of profile --name (exported included), as it is
  --score-only    no search: measure only the corruption score's normalisation (on ${SCORE_IMAGES} clean images)
  --model      model directory (default: the shipped ${path.basename(DEFAULT_MODEL_DIR)})`;

const { values } = parseCli(
  {
    options: {
      name: { type: 'string', default: 'robust' },
      images: { type: 'string' },
      'clean-images': { type: 'string' },
      severities: { type: 'string', default: '2,4' },
      finalists: { type: 'string' },
      'confirm-images': { type: 'string' },
      'confirm-clean-images': { type: 'string' },
      'confirm-tolerance': { type: 'string', default: '0.5' },
      'confirm-margin': { type: 'string', default: '1' },
      timesteps: { type: 'string' },
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
const images = wholeNumber('images', values.images, 200);
const cleanImages = wholeNumber('clean-images', values['clean-images'], 600);
const timesteps = wholeNumber('timesteps', values.timesteps, 10);
const batch = wholeNumber('batch', values.batch, 100);
const finalists = wholeNumber('finalists', values.finalists, 5);
const confirmImages = wholeNumber('confirm-images', values['confirm-images'], 400);
const confirmCleanImages = wholeNumber('confirm-clean-images', values['confirm-clean-images'], 5000);
const confirmTolerance = nonNegative('confirm-tolerance');
const confirmMargin = nonNegative('confirm-margin');
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
const indices = stratifiedIndices(data, images, SEARCH.from, SEARCH.to);
const cleanIndices = stratifiedIndices(data, cleanImages, SEARCH.from, SEARCH.to);
const conditions: Condition[] = NOISE_CORRUPTIONS.flatMap((corruption) =>
  severities.map((severity) => ({ corruption, severity })),
);
if (values['score-only']) {
  const score = await fitScore();
  await model.release();
  if (values.write) await writeManifest((raw) => (raw['corruptionScore'] = score), 'the corruption score');
  process.exit(0);
}
if (values['anytime-only']) {
  const profile = profilesOf(manifest)[values.name];
  if (!profile) {
    console.error(`model ${manifest.name} has no profile '${values.name}'`);
    process.exit(2);
  }
  const anytime = await chooseAnytime(profile.hyperparameters);
  await model.release();
  if (values.write)
    await writeManifest(
      (raw) => setAnytime(raw, values.name, anytime),
      `the anytime rule of profile '${values.name}'`,
    );
  process.exit(0);
}

const confirm =
  finalists > 0
    ? {
        indices: stratifiedIndices(data, confirmImages, CONFIRM.from, CONFIRM.to),
        cleanIndices: stratifiedIndices(data, confirmCleanImages, CONFIRM.from, CONFIRM.to),
        finalists,
        cleanTolerance: confirmTolerance,
        standardErrors: confirmMargin,
        onFinalist: (c: Candidate, k: number) =>
          console.error(`  finalist ${k} ${fmt(c.hyperparameters)}: ${report(c.confirmation!)}`),
      }
    : undefined;
console.error(
  `calibrating ${manifest.name} on validation images: ${cleanIndices.length} clean, ${indices.length} x ${conditions.length} noise conditions; t = 0..${timesteps}` +
    (confirm
      ? `; the best ${finalists} confirmed on ${confirm.cleanIndices.length} clean and ${confirm.indices.length} x ${conditions.length} other images`
      : ''),
);
const started = performance.now();
const {
  best,
  exported,
  candidates,
  finalists: finalistsOut,
} = await calibrate(
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
      console.error(`  #${k} ${c.stage.padEnd(8)} ${fmt(c.hyperparameters)}: ${report(c)}`),
    ...(confirm ? { confirm } : {}),
  },
);
const seconds = Math.round((performance.now() - started) / 1000);
const anytime = await chooseAnytime(best.hyperparameters);
const score = await fitScore();
await model.release();
const chosen = finalRecommendation(best);
const exportedChosen = finalRecommendation(exported);
console.log(
  `best: ${fmt(best.hyperparameters)} (beta, lambda, alpha per PCoder): noise mean ${signed(chosen.noiseGain)} points at t=${chosen.timesteps}, clean ${signed(chosen.cleanChange)}; ` +
    `exported: ${signed(exportedChosen.noiseGain)} at t=${exportedChosen.timesteps}${confirm ? ' (on the confirmation images)' : ''}. ${candidates.length} candidates, ${seconds} s.`,
);

if (values.write) {
  const file = path.join(values.model, MANIFEST_FILE);
  const raw = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  const calibration = {
    method:
      'coordinate search: shared (beta, lambda), then each PCoder in turn, then alpha; score = noise-mean accuracy gain over t = 0 at the best timestep whose clean accuracy stays within 0.5 points of t = 0' +
      (confirm
        ? `; then the ${finalists} best and the exported values measured again on other images, where clean accuracy must stay within ${confirmTolerance} points less ${confirmMargin} standard error(s) of the paired change, and the best there chosen`
        : ''),
    split: `Fashion-MNIST training images ${SEARCH.from}..${SEARCH.to - 1}: ${cleanIndices.length} clean, ${indices.length} per noise condition (the same number per class)`,
    conditions: ['clean', ...conditions.map((c) => `${c.corruption}/${c.severity}`)],
    timesteps,
    space: DEFAULT_SPACE,
    validation: {
      noiseGain: round(chosen.noiseGain),
      cleanChange: round(chosen.cleanChange),
      exportedNoiseGain: round(exportedChosen.noiseGain),
    },
    ...(confirm
      ? {
          confirmation: {
            split: `Fashion-MNIST training images ${CONFIRM.from}..${CONFIRM.to - 1}: ${confirm.cleanIndices.length} clean, ${confirm.indices.length} per noise condition`,
            cleanTolerance: confirmTolerance,
            standardErrors: confirmMargin,
            finalists: (finalistsOut ?? []).map((c) => ({
              hyperparameters: c.hyperparameters,
              search: {
                timesteps: c.recommended.timesteps,
                noiseGain: round(c.recommended.noiseGain),
                cleanChange: round(c.recommended.cleanChange),
              },
              timesteps: c.confirmation!.recommended.timesteps,
              noiseGain: round(c.confirmation!.recommended.noiseGain),
              cleanChange: round(c.confirmation!.recommended.cleanChange),
              clean: c.confirmation!.clean.map(round4),
              cleanChangeSE: c.confirmation!.cleanChangeSE.map(round),
              noiseMean: c.confirmation!.noiseMean.map(round4),
            })),
          },
        }
      : {}),
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
    recommendedTimesteps: chosen.timesteps,
    calibration,
  };
  raw['profiles'] = profiles;
  raw['recommendedTimesteps'] = exportedChosen.timesteps;
  if (values.default && best !== exported && chosen.noiseGain > exportedChosen.noiseGain)
    raw['defaultProfile'] = values.name;
  setAnytime(raw, values.name, anytime);
  raw['corruptionScore'] = score;
  parseManifest(raw, file); // never write a manifest the server would refuse
  await writeFile(file, JSON.stringify(raw, null, 2) + '\n');
  console.log(
    `wrote profile '${values.name}' to ${file}${raw['defaultProfile'] === values.name ? ' (the default)' : ''}`,
  );
}

/**
 * The anytime rule for these hyperparameters: every search image's trajectory up to T, then
 * the rule with the fewest mean timesteps that keeps the best fixed T's accuracy (chooseRule).
 */
async function chooseAnytime(hyperparameters: readonly Hyperparameters[]): Promise<AnytimeChoice> {
  const coefficients = coefficientsOf(hyperparameters, gradientScales(manifest));
  const run = (idx: number[], cs: Condition[]) =>
    evaluate(stepper, data, { indices: idx, conditions: cs, timesteps, batch, coefficients, record: true });
  const [clean] = await run(cleanIndices, [{ corruption: 'clean', severity: 0 }]);
  const noisy = await run(indices, conditions);
  const choice = chooseRule(
    clean!.trajectories!,
    noisy.flatMap((r) => r.trajectories!),
    { cap: timesteps },
  );
  const pct = (x: number) => `${(x * 100).toFixed(2)}%`;
  const ref = choice.reference;
  console.log(
    `anytime: fixed T=${ref.timesteps} gives clean ${pct(ref.clean)}, noise ${pct(ref.noise)}; ` +
      (choice.chosen
        ? `${ruleName(choice.chosen.rule)}: clean ${pct(choice.chosen.clean.accuracy)}, noise ${pct(choice.chosen.noise.accuracy)}, ${choice.chosen.meanTimesteps.toFixed(2)} timesteps on average; ` +
          `the fewest fixed timesteps as accurate: ${choice.cheapestFixed}, so ${choice.byDefault ? 'auto by default' : 'fixed timesteps by default'}`
        : 'no rule keeps that accuracy'),
  );
  return choice;
}

/**
 * The corruption score's normalisation: ln e_i(0) on every clean image of the search split
 * (t = 0 only, so any profile's coefficients do), and the score's quantiles there.
 */
async function fitScore(): Promise<Record<string, unknown>> {
  const scoreIndices = stratifiedIndices(data, SCORE_IMAGES, SEARCH.from, SEARCH.to);
  const [clean] = await evaluate(stepper, data, {
    indices: scoreIndices,
    conditions: [{ corruption: 'clean', severity: 0 }],
    timesteps: 0,
    batch,
    coefficients: coefficientsOf(
      profilesOf(manifest)[EXPORTED_PROFILE]!.hyperparameters,
      gradientScales(manifest),
    ),
    record: true,
  });
  const errors = clean!.trajectories!.map((t) => t.steps[0]!.errors);
  const norm = fitNormalisation(errors);
  const scores = errors.map((e) => corruptionScore(e, norm));
  const r4 = (x: number) => Math.round(x * 10_000) / 10_000;
  const cleanQuantiles = { p50: 0.5, p90: 0.9, p95: 0.95, p99: 0.99 };
  const score = {
    logErrorMean: norm.logErrorMean.map(r4),
    logErrorStd: norm.logErrorStd.map(r4),
    cleanQuantiles: Object.fromEntries(
      Object.entries(cleanQuantiles).map(([k, q]) => [k, r4(quantile(scores, q))]),
    ),
    calibration: {
      method:
        'ln e_i(0) per PCoder on clean validation images: mean and standard deviation; the score is the largest |z| over the PCoders, and its quantiles on the same images',
      split: `Fashion-MNIST training images ${SEARCH.from}..${SEARCH.to - 1}: ${scoreIndices.length} clean`,
    },
  };
  console.log(
    `corruption score on ${scoreIndices.length} clean validation images: median ${score.cleanQuantiles['p50']}, 95% below ${score.cleanQuantiles['p95']}, 99% below ${score.cleanQuantiles['p99']}`,
  );
  return score;
}

/** Writes the rule into profile `name` of a raw manifest (the exported one: at the top). */
function setAnytime(raw: Record<string, unknown>, name: string, choice: AnytimeChoice): void {
  const target =
    name === EXPORTED_PROFILE
      ? raw
      : ((raw['profiles'] as Record<string, Record<string, unknown>>)[name] as Record<string, unknown>);
  if (!choice.chosen) {
    delete target['anytime'];
    return;
  }
  const r4 = (x: number) => Math.round(x * 10_000) / 10_000;
  target['anytime'] = {
    ...choice.chosen.rule,
    maxTimesteps: choice.cap,
    default: choice.byDefault,
    calibration: {
      method:
        'on the search images: the rule with the fewest mean timesteps whose clean and noise accuracy stay within 0.2 points of the best fixed T (best noise accuracy with clean within 0.5 points of t = 0)',
      split: `Fashion-MNIST training images ${SEARCH.from}..${SEARCH.to - 1}: ${cleanIndices.length} clean, ${indices.length} per noise condition`,
      default: `auto by default when the rule saves at least 30% of the timesteps of the fewest fixed T as accurate (T = ${choice.cheapestFixed})`,
      reference: {
        timesteps: choice.reference.timesteps,
        clean: r4(choice.reference.clean),
        noise: r4(choice.reference.noise),
      },
      chosen: {
        meanTimesteps: r4(choice.chosen.meanTimesteps),
        clean: r4(choice.chosen.clean.accuracy),
        noise: r4(choice.chosen.noise.accuracy),
        settled: r4(
          (choice.chosen.clean.settled * choice.chosen.clean.count +
            choice.chosen.noise.settled * choice.chosen.noise.count) /
            (choice.chosen.clean.count + choice.chosen.noise.count),
        ),
      },
      // The front of the tradeoff only: the grid has over a hundred rules.
      points: undominated(choice.points, (p) => p.meanTimesteps, [
        (p) => p.clean.accuracy,
        (p) => p.noise.accuracy,
      ]).map((p) => ({
        ...p.rule,
        meanTimesteps: r4(p.meanTimesteps),
        clean: r4(p.clean.accuracy),
        noise: r4(p.noise.accuracy),
      })),
    },
  };
}

async function writeManifest(edit: (raw: Record<string, unknown>) => void, what: string): Promise<void> {
  const file = path.join(values.model, MANIFEST_FILE);
  const raw = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  edit(raw);
  parseManifest(raw, file); // never write a manifest the server would refuse
  await writeFile(file, JSON.stringify(raw, null, 2) + '\n');
  console.log(`wrote ${what} to ${file}`);
}

function nonNegative(name: 'confirm-tolerance' | 'confirm-margin') {
  const x = Number(values[name]);
  if (!(x >= 0)) {
    console.error(`--${name} takes a number >= 0, got '${values[name]}'`);
    process.exit(2);
  }
  return x;
}

function fmt(hs: { beta: number; lambda: number; alpha: number }[]) {
  return hs.map((h) => `(${h.beta}, ${h.lambda}, ${h.alpha})`).join(' ');
}

function report(m: Measurement) {
  const r = m.recommended;
  return (
    `noise ${signed(r.noiseGain)} at t=${r.timesteps}, clean ${signed(r.cleanChange)} (SE ${m.cleanChangeSE[r.timesteps]!.toFixed(2)})\n` +
    `     clean ${curve(m.clean)}\n     noise ${curve(m.noiseMean)}`
  );
}

function curve(values: number[]) {
  return values.map((v) => (v * 100).toFixed(1)).join(' ');
}

function round(x: number) {
  return Math.round(x * 100) / 100;
}

function round4(x: number) {
  return Math.round(x * 10_000) / 10_000;
}
