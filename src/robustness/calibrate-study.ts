/**
 * npm run calibrate as a function: on validation images, the corruption score's normalisation,
 * a profile's hyperparameters (robustness/calibrate.ts searches them), its recommended
 * timesteps and its anytime rule. It returns what it chose, the record that says how, and the
 * manifest edit that --write applies; the caller prints, edits and writes.
 */
import { corruptionScore, fitNormalisation, type ScoreNormalisation } from '../engine/corruption-score.js';
import type { PredictiveStepper } from '../engine/predictive-step.js';
import { gradientScales } from '../engine/profiles.js';
import { coefficientsOf, type Hyperparameters } from '../model/hyperparameters.js';
import { EXPORTED_PROFILE, profilesOf, type Manifest } from '../model/manifest.js';
import { chooseRule, ruleName, ruleRecord, undominated, type AnytimeChoice } from './anytime.js';
import {
  calibrate,
  finalRecommendation,
  type Candidate,
  type Measurement,
  type SearchSpace,
} from './calibrate.js';
import { CLEAN, evaluate, type StudyGroup, type Trajectory } from './evaluate.js';
import { cleanImagesOf, SCORE_RECORD } from './held-out.js';
import { ImageSetError, type StudyImage } from './image-set.js';
import { FAMILY_OF, type Corruption } from './imagenet-c/index.js';
import { signed } from './report.js';
import { quantile } from './signal.js';
import type { StudyInputs } from './study-inputs.js';
import { describeStudy, planStudy, type StudyChoice, type StudyValues } from './study-plan.js';

/**
 * For the shipped model, the validation split: the last 10 000 Fashion-MNIST training images
 * (the backbone saw them unperturbed). The search draws from its first half, the confirmation
 * of the finalists from its second. A user's --images are split the same way: alternate
 * images of each class (by file name) go to the search and to the confirmation.
 */
export const SEARCH = { from: 50_000, to: 55_000 };
export const CONFIRM = { from: 55_000, to: 60_000 };

/**
 * The start gates tried: iterate only inputs whose largest z of ln e_i(0) is above one of these
 * (settling.ts). Noise lifts the errors of the shipped model 2 to 5 z above clean; blur and
 * contrast lower them (docs/robustness.md).
 */
export const GATES = [0, 0.5, 1, 1.5, 2, 2.5, 3, 4];

/** The search's images and, with finalists, the confirmation's. Throws ImageSetError. */
export async function planCalibration(
  values: StudyValues,
  manifest: Manifest,
  o: { finalists: number; confirmPerClass: number; confirmCleanPerClass: number },
): Promise<{ search: StudyChoice; confirm?: StudyChoice }> {
  const plan = (
    fashion: { from: number; to: number; perClass: number; cleanPerClass: number },
    half?: 0 | 1,
  ) =>
    planStudy(values, manifest, {
      corruptions: 'benchmark',
      severities: '2,4',
      timesteps: 10,
      fashion: { split: 'train', ...fashion },
    }).then((choice) =>
      half === undefined || choice.set.layout === 'fashion-mnist' ? choice : halve(choice, half),
    );
  const search = await plan({ ...SEARCH, perClass: 10, cleanPerClass: 60 }, o.finalists > 0 ? 0 : undefined);
  if (!search.groups.some((g) => g.conditions.includes(CLEAN)))
    throw new ImageSetError(
      'calibration needs clean images: an ImageNet-C set needs DIR/clean/<class>/<image>',
    );
  if (o.finalists === 0) return { search };
  const confirm = await plan(
    { ...CONFIRM, perClass: o.confirmPerClass, cleanPerClass: o.confirmCleanPerClass },
    1,
  );
  return { search, confirm };
}

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

export interface CalibrateStudyOptions {
  manifest: Manifest;
  stepper: PredictiveStepper;
  inputs: StudyInputs;
  search: StudyChoice;
  confirm?: StudyChoice | undefined;
  batch: number;
  /** what to choose: everything, the anytime rule of an existing profile, or the score alone */
  mode: 'full' | 'anytime-only' | 'score-only';
  /** the profile written (full) or whose rule is chosen (anytime-only) */
  name: string;
  space: SearchSpace;
  finalists: number;
  /** points of clean accuracy a finalist may lose on the confirmation images, less K SEs */
  confirmTolerance: number;
  confirmMargin: number;
  /** may the profile become the model's default, if it beats the exported hyperparameters */
  makeDefault: boolean;
  /** a line for the report (what it chose); progress goes to onProgress */
  say: (line: string) => void;
  onProgress?: (line: string) => void;
}

export interface CalibrationOutcome {
  /** calibration.json: what was chosen and how */
  record: Record<string, unknown>;
  /** what --write puts into the raw manifest */
  edit: (raw: Record<string, unknown>) => void;
  /** the records of images read (held-out.ts), by name: the profile's and the score's */
  read: { name: string; images: StudyImage[] }[];
  /** the profile became the default (with makeDefault) */
  madeDefault: boolean;
}

/** Chooses what `mode` asks for. Throws ImageSetError for a refusal, before any work. */
export async function calibrateStudy(o: CalibrateStudyOptions): Promise<CalibrationOutcome> {
  const { manifest, search } = o;
  const groups = [...search.groups, ...(o.confirm?.groups ?? [])];
  const images = cleanImagesOf(groups);
  if (o.mode === 'score-only') {
    const score = await fitScore(o);
    return {
      record: { corruptionScore: score },
      edit: (raw) => (raw['corruptionScore'] = score),
      read: [{ name: SCORE_RECORD, images }],
      madeDefault: false,
    };
  }
  if (o.mode === 'anytime-only') {
    const profile = profilesOf(manifest)[o.name];
    if (!profile) throw new ImageSetError(`model ${manifest.name} has no profile '${o.name}'`);
    const norm = manifest.corruptionScore;
    const anytime = await chooseAnytime(
      o,
      profile.hyperparameters,
      norm ? { norm, above: GATES } : undefined,
    );
    return {
      record: { profile: o.name, anytime },
      edit: (raw) => setAnytime(raw, o.name, anytime, search.describe),
      read: [{ name: o.name, images }],
      madeDefault: false,
    };
  }
  const confirm = o.confirm
    ? {
        groups: o.confirm.groups,
        finalists: o.finalists,
        cleanTolerance: o.confirmTolerance,
        standardErrors: o.confirmMargin,
        onFinalist: (c: Candidate, k: number) =>
          o.onProgress?.(`  finalist ${k} ${fmt(c.hyperparameters)}: ${report(c.confirmation!)}`),
      }
    : undefined;
  o.onProgress?.(
    `calibrating ${manifest.name} on validation images, t = 0..${search.timesteps}: search on ${search.describe}` +
      (o.confirm ? `; the best ${o.finalists} confirmed on ${o.confirm.describe}` : ''),
  );
  // The corruption score first: the gates the search tries are read against its normalisation.
  const score = await fitScore(o);
  const gates = { norm: score as unknown as ScoreNormalisation, above: GATES };
  const started = performance.now();
  const { best, exported, candidates, finalists } = await calibrate(
    o.stepper,
    o.inputs,
    manifest.pcoders.map((pc) => pc.hyperparameters),
    {
      groups: search.groups,
      timesteps: search.timesteps,
      batch: o.batch,
      space: o.space,
      gates,
      onCandidate: (c, k) =>
        o.onProgress?.(`  #${k} ${c.stage.padEnd(8)} ${fmt(c.hyperparameters)}: ${report(c)}`),
      ...(confirm ? { confirm } : {}),
    },
  );
  const seconds = Math.round((performance.now() - started) / 1000);
  const anytime = await chooseAnytime(o, best.hyperparameters, gates);
  const chosen = finalRecommendation(best);
  const exportedChosen = finalRecommendation(exported);
  const unreadable = o.inputs.unreadable;
  o.say(
    `best: ${fmt(best.hyperparameters)} (beta, lambda, alpha per PCoder): corrupted mean ${signed(chosen.gain)} points at t=${chosen.timesteps} (${families(chosen)}), clean ${signed(chosen.cleanChange)}; ` +
      `exported: ${signed(exportedChosen.gain)} at t=${exportedChosen.timesteps}${confirm ? ' (on the confirmation images)' : ''}. ${candidates.length} candidates, ${seconds} s.` +
      (unreadable.length
        ? ` ${unreadable.length} unreadable images left out: ${unreadable.map((u) => u.id).join(', ')}`
        : ''),
  );
  const calibration = {
    method:
      'coordinate search: shared (beta, lambda), then each PCoder in turn, then alpha; score = the gain in mean accuracy under the corruptions over t = 0 at the best timestep whose clean accuracy stays within 0.5 points of t = 0 and where no corruption family loses against t = 0' +
      (confirm
        ? `; then the ${o.finalists} best and the exported values measured again on other images, where clean accuracy must stay within ${o.confirmTolerance} points less ${o.confirmMargin} standard error(s) of the paired change (and no family lose), and the best there chosen`
        : ''),
    split: search.describe,
    conditions: search.conditions.map((c) =>
      c.corruption === 'clean' ? 'clean' : `${c.corruption}/${c.severity}`,
    ),
    timesteps: search.timesteps,
    space: o.space,
    validation: {
      ...(chosen.gate !== undefined ? { gate: chosen.gate } : {}),
      gain: round(chosen.gain),
      cleanChange: round(chosen.cleanChange),
      families: roundAll(chosen.families),
      exportedGain: round(exportedChosen.gain),
    },
    ...(confirm && o.confirm
      ? {
          confirmation: {
            split: o.confirm.describe,
            cleanTolerance: o.confirmTolerance,
            standardErrors: o.confirmMargin,
            finalists: (finalists ?? []).map((c) => ({
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
    ...(unreadable.length ? { unreadable } : {}),
  };
  // The timesteps of a request that names none and runs fixed: the best for every input alike.
  const recommendedTimesteps = finalFixed(best).timesteps;
  const makesDefault = o.makeDefault && best !== exported && chosen.gain > exportedChosen.gain;
  const outcome: CalibrationOutcome = {
    record: {
      model: manifest.name,
      profile: o.name,
      hyperparameters: best.hyperparameters,
      recommendedTimesteps,
      anytime,
      corruptionScore: score,
      calibration,
    },
    edit: (raw) => {
      const profiles = (raw['profiles'] as Record<string, unknown> | undefined) ?? {};
      profiles[o.name] = {
        description: `calibrated under ImageNet-C's corruptions by npm run calibrate (${new Date().toISOString().slice(0, 10)})`,
        hyperparameters: best.hyperparameters,
        recommendedTimesteps,
        calibration,
      };
      raw['profiles'] = profiles;
      raw['recommendedTimesteps'] = finalFixed(exported).timesteps;
      if (makesDefault) raw['defaultProfile'] = o.name;
      setAnytime(raw, o.name, anytime, search.describe);
      raw['corruptionScore'] = score;
      outcome.madeDefault = raw['defaultProfile'] === o.name;
    },
    read: [
      { name: o.name, images },
      { name: SCORE_RECORD, images },
    ],
    madeDefault: false,
  };
  return outcome;
}

/**
 * The anytime rule for these hyperparameters: every search image's trajectory up to T, then
 * the rule with the fewest mean timesteps that keeps the best fixed T's accuracy (chooseRule).
 */
async function chooseAnytime(
  o: CalibrateStudyOptions,
  hyperparameters: readonly Hyperparameters[],
  gates: { norm: ScoreNormalisation; above: readonly number[] } | undefined,
): Promise<AnytimeChoice> {
  const { search } = o;
  const coefficients = coefficientsOf(hyperparameters, gradientScales(o.manifest));
  const results = await evaluate(o.stepper, o.inputs, search.groups, {
    timesteps: search.timesteps,
    batch: o.batch,
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
    { cap: search.timesteps, families, ...(gates ? { gates } : {}) },
  );
  const pct = (x: number) => `${(x * 100).toFixed(2)}%`;
  const ref = choice.reference;
  o.say(
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
async function fitScore(o: CalibrateStudyOptions): Promise<Record<string, unknown>> {
  const cleanOnly = (gs: readonly StudyGroup[]) =>
    gs.filter((g) => g.conditions.includes(CLEAN)).map((g): StudyGroup => ({ ...g, conditions: [CLEAN] }));
  const groups = [...cleanOnly(o.search.groups), ...cleanOnly(o.confirm?.groups ?? [])];
  const results = await evaluate(o.stepper, o.inputs, groups, {
    timesteps: 0,
    batch: o.batch,
    coefficients: coefficientsOf(
      profilesOf(o.manifest)[EXPORTED_PROFILE]!.hyperparameters,
      gradientScales(o.manifest),
    ),
    record: true,
  });
  const errors = results[0]!.trajectories!.map((t) => t.steps[0]!.errors);
  const norm = fitNormalisation(errors);
  const scores = errors.map((e) => corruptionScore(e, norm));
  const cleanQuantiles = { p50: 0.5, p90: 0.9, p95: 0.95, p99: 0.99 };
  const score = {
    logErrorMean: norm.logErrorMean.map(round4),
    logErrorStd: norm.logErrorStd.map(round4),
    cleanQuantiles: Object.fromEntries(
      Object.entries(cleanQuantiles).map(([k, q]) => [k, round4(quantile(scores, q))]),
    ),
    calibration: {
      method:
        'ln e_i(0) per PCoder on clean validation images: mean and standard deviation; the score is the largest |z| over the PCoders, and its quantiles on the same images',
      split: `${errors.length} clean validation images (${o.search.set.layout === 'fashion-mnist' ? `Fashion-MNIST training images ${SEARCH.from}..${CONFIRM.to - 1}` : o.search.set.root})`,
    },
  };
  o.say(
    `corruption score on ${errors.length} clean validation images: median ${score.cleanQuantiles['p50']}, 95% below ${score.cleanQuantiles['p95']}, 99% below ${score.cleanQuantiles['p99']}`,
  );
  return score;
}

/** Writes the rule into profile `name` of a raw manifest (the exported one: at the top). */
function setAnytime(raw: Record<string, unknown>, name: string, choice: AnytimeChoice, split: string): void {
  const target =
    name === EXPORTED_PROFILE
      ? raw
      : ((raw['profiles'] as Record<string, Record<string, unknown>>)[name] as Record<string, unknown>);
  if (!choice.chosen) {
    delete target['anytime'];
    return;
  }
  target['anytime'] = {
    ...ruleRecord(choice.chosen.rule),
    maxTimesteps: choice.cap,
    default: choice.byDefault,
    calibration: {
      method:
        'on the search images: fixed T and every rule of the grid, each rule also behind a start gate (iterate only where the largest z of ln e_i(0) is above it); of those whose clean accuracy stays within 0.2 points of the best fixed T (best accuracy under the corruptions with clean within 0.5 points of t = 0 and no family below t = 0) and where no family falls below t = 0, the fewest mean timesteps within 0.2 points of the best accuracy under the corruptions',
      split,
      default: `auto by default when the rule beats every such fixed T by more than 0.2 points, or saves at least 30% of the timesteps of the fewest fixed T as accurate (T = ${choice.cheapestFixed})`,
      reference: {
        timesteps: choice.reference.timesteps,
        clean: round4(choice.reference.clean),
        corrupted: round4(choice.reference.corrupted),
      },
      chosen: {
        meanTimesteps: round4(choice.chosen.meanTimesteps),
        clean: round4(choice.chosen.clean.accuracy),
        corrupted: round4(choice.chosen.corrupted.accuracy),
        settled: round4(
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
        meanTimesteps: round4(p.meanTimesteps),
        clean: round4(p.clean.accuracy),
        corrupted: round4(p.corrupted.accuracy),
      })),
    },
  };
}

function fmt(hs: readonly { beta: number; lambda: number; alpha: number }[]) {
  // Exported values come from float32 buffers (0.32499998807907104): four digits say them.
  const n = (x: number) => Number(x.toPrecision(4));
  return hs.map((h) => `(${n(h.beta)}, ${n(h.lambda)}, ${n(h.alpha)})`).join(' ');
}

function report(m: Measurement) {
  const r = m.recommended;
  const curve = (values: number[]) => values.map((v) => (v * 100).toFixed(1)).join(' ');
  return (
    `corrupted ${signed(r.gain)} at t=${r.timesteps}${r.gate !== undefined ? ` iterating where z > ${r.gate}` : ''} (${families(r)}), clean ${signed(r.cleanChange)} (SE ${m.cleanChangeSE[r.timesteps]!.toFixed(2)})\n` +
    `     clean ${curve(m.clean)}\n     corrupted ${curve(m.corruptedMean)}`
  );
}

const round = (x: number) => Math.round(x * 100) / 100;
const round4 = (x: number) => Math.round(x * 10_000) / 10_000;

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
