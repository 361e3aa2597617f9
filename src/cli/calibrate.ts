/**
 * npm run calibrate: chooses a profile's hyperparameters, recommended timesteps, anytime rule and
 * the corruption score's normalisation on validation images, prints what it chose, writes it to
 * the manifest with --write and to --out.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pino } from 'pino';
import { DEFAULT_MODEL_DIR } from '../config/config.js';
import { openStepper } from '../engine/open-stepper.js';
import { loadModel } from '../model/load-model.js';
import { EXPORTED_PROFILE, profilesOf } from '../model/manifest.js';
import { editManifest } from '../model/edit-manifest.js';
import { cleanImagesOf, digestsOf, recordCalibrationImages, SCORE_RECORD } from '../robustness/held-out.js';
import { coefficientsOf, type Hyperparameters } from '../model/hyperparameters.js';
import { gradientScales } from '../engine/profiles.js';
import { chooseRule, ruleName, ruleRecord, undominated, type AnytimeChoice } from '../robustness/anytime.js';
import { corruptionScore, fitNormalisation } from '../engine/corruption-score.js';
import { quantile } from '../robustness/signal.js';
import {
  calibrate,
  finalRecommendation,
  SEARCH_SPACES,
  type Candidate,
  type Measurement,
} from '../robustness/calibrate.js';
import { signed } from '../robustness/report.js';
import { CLEAN, evaluate, type StudyGroup, type Trajectory } from '../robustness/evaluate.js';
import { FAMILY_OF, type Corruption } from '../robustness/imagenet-c/index.js';
import type { ScoreNormalisation } from '../engine/corruption-score.js';
import { ImageSetError } from '../robustness/image-set.js';
import { StudyInputs } from '../robustness/study-inputs.js';
import { parseCli, wholeNumber } from './args.js';
import {
  describeStudy,
  planStudy,
  STUDY_OPTIONS,
  STUDY_USAGE,
  type StudyChoice,
  type StudyValues,
} from './study-args.js';

/**
 * For the shipped model, the validation split: the last 10 000 Fashion-MNIST training images
 * (the backbone saw them unperturbed). The search draws from its first half, the confirmation
 * of the finalists from its second. A user's --images are split the same way: alternate
 * images of each class (by file name) go to the search and to the confirmation.
 */
const SEARCH = { from: 50_000, to: 55_000 };
const CONFIRM = { from: 55_000, to: 60_000 };

/**
 * The start gates tried: iterate only inputs whose largest z of ln e_i(0) is above one of these
 * (settling.ts). Noise lifts the errors of the shipped model 2 to 5 z above clean; blur and
 * contrast lower them (docs/robustness.md).
 */
const GATES = [0, 0.5, 1, 1.5, 2, 2.5, 3, 4];

const usage = `usage: npm run calibrate -- [--images DIR] [--model DIR] [--name NAME] [--write] [--default] [options]

Chooses a profile's hyperparameters, recommended timesteps and anytime rule, and the
corruption score's normalisation, on validation images (never the images you test on), under
ImageNet-C's benchmark corruptions of every family; --write puts them in the model's manifest.

${STUDY_USAGE}
                 (defaults: benchmark corruptions, severities 2,4, T = 10; on Fashion-MNIST:
                 training images ${SEARCH.from}..${CONFIRM.to - 1}, 10 images per class corrupted, 60 clean for
                 the search, 20 and 500 for the confirmation; a directory: all its images, half each)
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
const batch = Math.max(1, wholeNumber('batch', values.batch, 32));
if (!(values.search in SEARCH_SPACES)) {
  console.error(`--search is full, quick or none, got '${values.search}'\n\n${usage}`);
  process.exit(2);
}
const space = SEARCH_SPACES[values.search as keyof typeof SEARCH_SPACES];
const finalists = wholeNumber('finalists', values.finalists, 5);
const confirmTolerance = nonNegative('confirm-tolerance');
const confirmMargin = nonNegative('confirm-margin');

/** What the command prints, kept for --out: calibration.md (and calibration.json when chosen). */
const printed: string[] = [];
function say(line: string): void {
  console.log(line);
  printed.push(line);
}
async function saveReport(record?: Record<string, unknown>): Promise<void> {
  if (!values.out) return;
  await mkdir(values.out, { recursive: true });
  const md = `# npm run calibrate: ${values.model}\n\n${printed.map((l) => `- ${l}`).join('\n')}\n`;
  await writeFile(path.join(values.out, 'calibration.md'), md);
  if (record)
    await writeFile(path.join(values.out, 'calibration.json'), JSON.stringify(record, null, 2) + '\n');
  console.log(
    `wrote the report to ${path.join(values.out, 'calibration.md')}${record ? ' and calibration.json' : ''}`,
  );
}

const model = await loadModel(
  values.model,
  { providers: ['cpu'], intraOpThreads: 2 },
  pino({ level: 'warn' }),
);
const { manifest } = model;
const stepper = openStepper(model);
let search: StudyChoice;
let confirmStudy: StudyChoice | undefined;
try {
  const plan = (
    fashion: { from: number; to: number; perClass: number; cleanPerClass: number },
    half?: 0 | 1,
  ) =>
    planStudy(values as StudyValues, manifest, {
      corruptions: 'benchmark',
      severities: '2,4',
      timesteps: 10,
      fashion: { split: 'train', ...fashion },
    }).then((choice) =>
      half === undefined || choice.set.layout === 'fashion-mnist' ? choice : halve(choice, half),
    );
  search = await plan({ ...SEARCH, perClass: 10, cleanPerClass: 60 }, finalists > 0 ? 0 : undefined);
  if (finalists > 0)
    confirmStudy = await plan(
      {
        ...CONFIRM,
        perClass: wholeNumber('confirm-per-class', values['confirm-per-class'], 20),
        cleanPerClass: wholeNumber('confirm-clean-per-class', values['confirm-clean-per-class'], 500),
      },
      1,
    );
} catch (err) {
  if (!(err instanceof ImageSetError)) throw err;
  console.error(`${err.message}\n\n${usage}`);
  process.exit(2);
}
const { timesteps } = search;
const inputs = new StudyInputs(manifest.input, { skipUnreadable: search.skipUnreadable, seed: search.seed });
const cleanGroups = search.groups
  .filter((g) => g.conditions.includes(CLEAN))
  .map((g): StudyGroup => ({ ...g, conditions: [CLEAN] }));
if (cleanGroups.length === 0) {
  console.error('calibration needs clean images: an ImageNet-C set needs DIR/clean/<class>/<image>');
  process.exit(2);
}
/** Records which images this calibration read, beside the model (eval refuses to score on them). */
async function recordImages(name: string): Promise<void> {
  const groups = [...search.groups, ...(confirmStudy?.groups ?? [])];
  const file = await recordCalibrationImages(values.model, name, await digestsOf(cleanImagesOf(groups)));
  say(`recorded the images calibrated on in ${file}: npm run eval will not score '${name}' on them`);
}
if (values['score-only']) {
  const score = await fitScore();
  await model.release();
  if (values.write) {
    await writeManifest((raw) => (raw['corruptionScore'] = score), 'the corruption score');
    await recordImages(SCORE_RECORD);
  }
  await saveReport({ corruptionScore: score });
  process.exit(0);
}
if (values['anytime-only']) {
  const profile = profilesOf(manifest)[values.name];
  if (!profile) {
    console.error(`model ${manifest.name} has no profile '${values.name}'`);
    process.exit(2);
  }
  const norm = manifest.corruptionScore;
  const anytime = await chooseAnytime(profile.hyperparameters, norm ? { norm, above: GATES } : undefined);
  await model.release();
  if (values.write) {
    await writeManifest(
      (raw) => setAnytime(raw, values.name, anytime),
      `the anytime rule of profile '${values.name}'`,
    );
    await recordImages(values.name);
  }
  await saveReport({ profile: values.name, anytime });
  process.exit(0);
}

const confirm = confirmStudy
  ? {
      groups: confirmStudy.groups,
      finalists,
      cleanTolerance: confirmTolerance,
      standardErrors: confirmMargin,
      onFinalist: (c: Candidate, k: number) =>
        console.error(`  finalist ${k} ${fmt(c.hyperparameters)}: ${report(c.confirmation!)}`),
    }
  : undefined;
console.error(
  `calibrating ${manifest.name} on validation images, t = 0..${timesteps}: search on ${search.describe}` +
    (confirmStudy ? `; the best ${finalists} confirmed on ${confirmStudy.describe}` : ''),
);
// The corruption score first: the gates the search tries are read against its normalisation.
const score = await fitScore();
const gates = {
  norm: score as unknown as ScoreNormalisation,
  above: GATES,
};
const started = performance.now();
let outcome: Awaited<ReturnType<typeof calibrate>>;
try {
  outcome = await calibrate(
    stepper,
    inputs,
    manifest.pcoders.map((pc) => pc.hyperparameters),
    {
      groups: search.groups,
      timesteps,
      batch,
      space,
      gates,
      onCandidate: (c, k) =>
        console.error(`  #${k} ${c.stage.padEnd(8)} ${fmt(c.hyperparameters)}: ${report(c)}`),
      ...(confirm ? { confirm } : {}),
    },
  );
} catch (err) {
  if (!(err instanceof ImageSetError)) throw err;
  console.error(err.message);
  process.exit(1);
}
const { best, exported, candidates, finalists: finalistsOut } = outcome;
const seconds = Math.round((performance.now() - started) / 1000);
const anytime = await chooseAnytime(best.hyperparameters, gates);
await model.release();
const chosen = finalRecommendation(best);
const exportedChosen = finalRecommendation(exported);
say(
  `best: ${fmt(best.hyperparameters)} (beta, lambda, alpha per PCoder): corrupted mean ${signed(chosen.gain)} points at t=${chosen.timesteps} (${families(chosen)}), clean ${signed(chosen.cleanChange)}; ` +
    `exported: ${signed(exportedChosen.gain)} at t=${exportedChosen.timesteps}${confirm ? ' (on the confirmation images)' : ''}. ${candidates.length} candidates, ${seconds} s.` +
    (inputs.unreadable.length
      ? ` ${inputs.unreadable.length} unreadable images left out: ${inputs.unreadable.map((u) => u.id).join(', ')}`
      : ''),
);

const conditions = search.conditions.map((c) =>
  c.corruption === 'clean' ? 'clean' : `${c.corruption}/${c.severity}`,
);
const calibration = {
  method:
    'coordinate search: shared (beta, lambda), then each PCoder in turn, then alpha; score = the gain in mean accuracy under the corruptions over t = 0 at the best timestep whose clean accuracy stays within 0.5 points of t = 0 and where no corruption family loses against t = 0' +
    (confirm
      ? `; then the ${finalists} best and the exported values measured again on other images, where clean accuracy must stay within ${confirmTolerance} points less ${confirmMargin} standard error(s) of the paired change (and no family lose), and the best there chosen`
      : ''),
  split: search.describe,
  conditions,
  timesteps,
  space,
  validation: {
    ...(chosen.gate !== undefined ? { gate: chosen.gate } : {}),
    gain: round(chosen.gain),
    cleanChange: round(chosen.cleanChange),
    families: roundAll(chosen.families),
    exportedGain: round(exportedChosen.gain),
  },
  ...(confirm && confirmStudy
    ? {
        confirmation: {
          split: confirmStudy.describe,
          cleanTolerance: confirmTolerance,
          standardErrors: confirmMargin,
          finalists: (finalistsOut ?? []).map((c) => ({
            hyperparameters: c.hyperparameters,
            search: {
              timesteps: c.recommended.timesteps,
              gain: round(c.recommended.gain),
              cleanChange: round(c.recommended.cleanChange),
            },
            timesteps: c.confirmation!.recommended.timesteps,
            gain: round(c.confirmation!.recommended.gain),
            cleanChange: round(c.confirmation!.recommended.cleanChange),
            families: roundAll(c.confirmation!.recommended.families),
            clean: c.confirmation!.clean.map(round4),
            cleanChangeSE: c.confirmation!.cleanChangeSE.map(round),
            corruptedMean: c.confirmation!.corruptedMean.map(round4),
          })),
        },
      }
    : {}),
  candidates: candidates.map((c) => ({
    stage: c.stage,
    hyperparameters: c.hyperparameters,
    timesteps: c.recommended.timesteps,
    gain: round(c.recommended.gain),
    cleanChange: round(c.recommended.cleanChange),
  })),
  ...(inputs.unreadable.length ? { unreadable: inputs.unreadable } : {}),
};
if (values.write) {
  let madeDefault = false;
  const file = await editManifest(values.model, (raw) => {
    const profiles = (raw['profiles'] as Record<string, unknown> | undefined) ?? {};
    profiles[values.name] = {
      description: `calibrated under ImageNet-C's corruptions by npm run calibrate (${new Date().toISOString().slice(0, 10)})`,
      hyperparameters: best.hyperparameters,
      // The timesteps of a request that names none and runs fixed: the best for every input alike.
      recommendedTimesteps: finalFixed(best).timesteps,
      calibration,
    };
    raw['profiles'] = profiles;
    raw['recommendedTimesteps'] = finalFixed(exported).timesteps;
    if (values.default && best !== exported && chosen.gain > exportedChosen.gain)
      raw['defaultProfile'] = values.name;
    setAnytime(raw, values.name, anytime);
    raw['corruptionScore'] = score;
    madeDefault = raw['defaultProfile'] === values.name;
  });
  say(`wrote profile '${values.name}' to ${file}${madeDefault ? ' (the default)' : ''}`);
  await recordImages(values.name);
  await recordImages(SCORE_RECORD);
}
await saveReport({
  model: manifest.name,
  profile: values.name,
  hyperparameters: best.hyperparameters,
  recommendedTimesteps: finalFixed(best).timesteps,
  anytime,
  corruptionScore: score,
  calibration,
});

/** The search's images, or the confirmation's: alternate images of each class. */
function halve(choice: StudyChoice, half: 0 | 1): StudyChoice {
  const pick = <T extends { label: number }>(images: readonly T[]) => {
    const seen = new Map<number, number>();
    return images.filter((i) => {
      const k = seen.get(i.label) ?? 0;
      seen.set(i.label, k + 1);
      return k % 2 === half;
    });
  };
  const groups = choice.groups.map((g) => ({ ...g, images: pick(g.images) }));
  if (groups.some((g) => g.images.length === 0))
    throw new ImageSetError(
      `${choice.set.root}: too few images to split into a search half and a confirmation half (each class needs 2 or more); give --finalists 0 to search on them all`,
    );
  const corruptions = new Set(choice.conditions.filter((c) => c !== CLEAN).map((c) => c.corruption)).size;
  const sizes = describeStudy(choice.set, groups, choice.conditions, corruptions, 'train');
  return { ...choice, groups, describe: `${sizes} (${half === 0 ? 'the search' : 'the confirmation'} half)` };
}

/**
 * The anytime rule for these hyperparameters: every search image's trajectory up to T, then
 * the rule with the fewest mean timesteps that keeps the best fixed T's accuracy (chooseRule).
 */
async function chooseAnytime(
  hyperparameters: readonly Hyperparameters[],
  gates: { norm: ScoreNormalisation; above: readonly number[] } | undefined,
): Promise<AnytimeChoice> {
  const coefficients = coefficientsOf(hyperparameters, gradientScales(manifest));
  const results = await evaluate(stepper, inputs, search.groups, {
    timesteps,
    batch,
    coefficients,
    record: true,
  });
  const clean = results.find((r) => r.condition.corruption === 'clean')!;
  const corrupted = results.filter((r) => r.condition.corruption !== 'clean');
  const families: Record<string, Trajectory[]> = {};
  for (const r of corrupted)
    (families[FAMILY_OF[r.condition.corruption as Corruption]] ??= []).push(...r.trajectories!);
  const choice = chooseRule(
    clean.trajectories!,
    corrupted.flatMap((r) => r.trajectories!),
    { cap: timesteps, families, ...(gates ? { gates } : {}) },
  );
  const pct = (x: number) => `${(x * 100).toFixed(2)}%`;
  const ref = choice.reference;
  say(
    `anytime: fixed T=${ref.timesteps} gives clean ${pct(ref.clean)}, corrupted ${pct(ref.corrupted)}; ` +
      (choice.chosen
        ? `${ruleName(choice.chosen.rule)}: clean ${pct(choice.chosen.clean.accuracy)}, corrupted ${pct(choice.chosen.corrupted.accuracy)}, ${choice.chosen.meanTimesteps.toFixed(2)} timesteps on average; ` +
          `the fewest fixed timesteps as accurate: ${choice.cheapestFixed}, so ${choice.byDefault ? 'auto by default' : 'fixed timesteps by default'}`
        : 'no rule keeps that accuracy'),
  );
  return choice;
}

/**
 * The corruption score's normalisation: ln e_i(0) on every clean validation image (the search's
 * and the confirmation's; t = 0 only, so any profile's coefficients do), and the score's
 * quantiles there.
 */
async function fitScore(): Promise<Record<string, unknown>> {
  const groups = [
    ...cleanGroups,
    ...(confirmStudy?.groups ?? [])
      .filter((g) => g.conditions.includes(CLEAN))
      .map((g): StudyGroup => ({ ...g, conditions: [CLEAN] })),
  ];
  const results = await evaluate(stepper, inputs, groups, {
    timesteps: 0,
    batch,
    coefficients: coefficientsOf(
      profilesOf(manifest)[EXPORTED_PROFILE]!.hyperparameters,
      gradientScales(manifest),
    ),
    record: true,
  });
  const errors = results[0]!.trajectories!.map((t) => t.steps[0]!.errors);
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
      split: `${errors.length} clean validation images (${search.set.layout === 'fashion-mnist' ? `Fashion-MNIST training images ${SEARCH.from}..${CONFIRM.to - 1}` : search.set.root})`,
    },
  };
  say(
    `corruption score on ${errors.length} clean validation images: median ${score.cleanQuantiles['p50']}, 95% below ${score.cleanQuantiles['p95']}, 99% below ${score.cleanQuantiles['p99']}`,
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
    ...ruleRecord(choice.chosen.rule),
    maxTimesteps: choice.cap,
    default: choice.byDefault,
    calibration: {
      method:
        'on the search images: fixed T and every rule of the grid, each rule also behind a start gate (iterate only where the largest z of ln e_i(0) is above it); of those whose clean accuracy stays within 0.2 points of the best fixed T (best accuracy under the corruptions with clean within 0.5 points of t = 0 and no family below t = 0) and where no family falls below t = 0, the fewest mean timesteps within 0.2 points of the best accuracy under the corruptions',
      split: search.describe,
      default: `auto by default when the rule beats every such fixed T by more than 0.2 points, or saves at least 30% of the timesteps of the fewest fixed T as accurate (T = ${choice.cheapestFixed})`,
      reference: {
        timesteps: choice.reference.timesteps,
        clean: r4(choice.reference.clean),
        corrupted: r4(choice.reference.corrupted),
      },
      chosen: {
        meanTimesteps: r4(choice.chosen.meanTimesteps),
        clean: r4(choice.chosen.clean.accuracy),
        corrupted: r4(choice.chosen.corrupted.accuracy),
        settled: r4(
          (choice.chosen.clean.settled * choice.chosen.clean.count +
            choice.chosen.corrupted.settled * choice.chosen.corrupted.count) /
            (choice.chosen.clean.count + choice.chosen.corrupted.count),
        ),
      },
      // The front of the tradeoff only: the grid has over a hundred rules.
      points: undominated(choice.points, (p) => p.meanTimesteps, [
        (p) => p.clean.accuracy,
        (p) => p.corrupted.accuracy,
      ]).map((p) => ({
        ...ruleRecord(p.rule),
        meanTimesteps: r4(p.meanTimesteps),
        clean: r4(p.clean.accuracy),
        corrupted: r4(p.corrupted.accuracy),
      })),
    },
  };
}

async function writeManifest(edit: (raw: Record<string, unknown>) => void, what: string): Promise<void> {
  say(`wrote ${what} to ${await editManifest(values.model, edit)}`);
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
  // Exported values come from float32 buffers (0.32499998807907104): four digits say them.
  const n = (x: number) => Number(x.toPrecision(4));
  return hs.map((h) => `(${n(h.beta)}, ${n(h.lambda)}, ${n(h.alpha)})`).join(' ');
}

function report(m: Measurement) {
  const r = m.recommended;
  return (
    `corrupted ${signed(r.gain)} at t=${r.timesteps}${r.gate !== undefined ? ` iterating where z > ${r.gate}` : ''} (${families(r)}), clean ${signed(r.cleanChange)} (SE ${m.cleanChangeSE[r.timesteps]!.toFixed(2)})\n` +
    `     clean ${curve(m.clean)}\n     corrupted ${curve(m.corruptedMean)}`
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

function families(r: { families: Partial<Record<string, number>> }) {
  return Object.entries(r.families)
    .map(([f, v]) => `${f} ${signed(v!)}`)
    .join(', ');
}

function roundAll(xs: Partial<Record<string, number>>) {
  return Object.fromEntries(Object.entries(xs).map(([k, v]) => [k, round(v!)]));
}

/** A candidate's best fixed T for every input alike: its confirmation's where it has one. */
function finalFixed(c: Candidate) {
  return (c.confirmation ?? c).fixed;
}
