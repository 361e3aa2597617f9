/**
 * The robustness study (npm run eval) as a function: a model's accuracy at t = 0..T on clean
 * images and under ImageNet-C's corruptions, through the serving engine, with every change
 * against t = 0 and its paired interval, mCE(t) / mCE(0) both ways, the normalised mCE against
 * a baseline, timesteps=auto replayed, the served default, and the controls (the same study
 * with the feedback untrained, or a term of the update switched off). It returns the report,
 * its tables and charts, and the lines a person reads; the caller writes and prints them.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { loadConfig, requestDefaults } from '../config/config.js';
import { newSample, runTimesteps, type PredictiveStepper } from '../engine/predictive-step.js';
import { resolveRequest } from '../engine/resolve-request.js';
import type { SettleRule } from '../engine/settling.js';
import type { Coefficients, Hyperparameters } from '../model/hyperparameters.js';
import type { Manifest } from '../model/manifest.js';
import {
  anytimeMarkdown,
  anytimeRows,
  anytimeVerdict,
  RULE_GRID,
  ruleName,
  ruleRecord,
  sameRule,
  servedResults,
} from './anytime.js';
import {
  changesAgainstZero,
  changesBetween,
  describeWithInterval,
  type Change,
  type Changes,
} from './changes.js';
import { accuracyChart, anytimeChart, mceChart, svgToPng } from './chart.js';
import { studySize, type ConditionResult } from './evaluate.js';
import { calibrationImages, cleanImagesOf, digestsOf, SCORE_RECORD } from './held-out.js';
import { ImageSetError, type FashionPart } from './image-set.js';
import { FAMILIES, FAMILY_OF, type Corruption } from './imagenet-c/index.js';
import {
  ALEXNET_ERRORS,
  baselineFromResults,
  benchmarkCovered,
  corruptionErrors,
  meanCorruptionError,
  normalisedMce,
  relativeMce,
  type BaselineErrors,
} from './mce.js';
import { clock } from './progress.js';
import { changeAt, describeChange, markdown, summariseEvaluation, type Summary } from './report.js';
import { localStudy, type StudyEngine } from './study-engine.js';
import { StudyInputs } from './study-inputs.js';
import type { StudyChoice } from './study-plan.js';

/** A study of the same model with one part of the dynamics taken away (docs/robustness.md). */
export interface Control {
  name: string;
  description: string;
  /** the engine it runs on: the model's own, or one whose feedback differs */
  stepper: PredictiveStepper;
  coefficients: readonly Coefficients[];
}

export interface EvalOptions {
  modelDir: string;
  manifest: Manifest;
  profile: string;
  hyperparameters: readonly Hyperparameters[];
  coefficients: readonly Coefficients[];
  /** the profile's recommended timesteps and calibrated anytime rule, when it has them */
  recommendedTimesteps?: number | undefined;
  calibrated: boolean;
  study: StudyChoice;
  inputs: StudyInputs;
  engine: StudyEngine;
  batch: number;
  /** Fashion-MNIST's part of its test set, for the title and the record */
  split?: FashionPart;
  baseline?: { name: string; errors: BaselineErrors };
  /** score a calibrated profile even on the images calibrate read (the title then says so) */
  allowCalibrationImages?: boolean;
  controls?: readonly Control[];
  /** repeat the corruptions with this many seeds (study.seed, +1, ...) and report each change's spread */
  seeds?: number;
  /** measure the engine alone at this batch, for the study's speed against it */
  measureEngine?: boolean;
  onStart?: (line: string) => void;
}

export interface EvalOutcome {
  report: Record<string, unknown>;
  markdown: string;
  charts: { name: string; svg: string }[];
  /** what the command prints: the summary, the served default, the anytime verdict, the controls */
  lines: string[];
}

/** Where a study's results go unless --out says otherwise. */
export function defaultEvalOut(manifest: Manifest, profile: string, quick: boolean, split: FashionPart) {
  return path.join(
    'build',
    'robustness',
    `${manifest.name}-${profile}${quick ? '-quick' : ''}${split === 'final' ? '-final' : ''}`,
  );
}

/**
 * The baseline of --baseline: AlexNet's published errors (only for a model of ImageNet's 1000
 * classes, which is what they are errors on) or another study's results.json (its t = 0).
 * Throws ImageSetError for a refusal.
 */
export async function evalBaseline(
  value: string,
  manifest: Manifest,
  readJson: () => Promise<unknown>,
): Promise<{ name: string; errors: BaselineErrors }> {
  if (value === 'alexnet') {
    if (manifest.labels.length !== 1000 || manifest.input.channels !== 3)
      throw new ImageSetError(
        `--baseline alexnet: AlexNet's published errors are on ImageNet's 1000 classes; model ${manifest.name} has ${manifest.labels.length} classes (${manifest.input.channels === 1 ? 'grey' : 'colour'} ${manifest.input.width} x ${manifest.input.height} inputs), and dividing its errors by ImageNet's would mean nothing`,
      );
    return { name: 'AlexNet (ImageNet-C)', errors: ALEXNET_ERRORS };
  }
  return { name: value, errors: baselineFromResults(await readJson(), value) };
}

/**
 * How many of the study's images npm run calibrate read for this profile or the corruption
 * score. Throws ImageSetError when some did and they are not allowed: a result on them is not
 * held out.
 */
export async function imagesCalibratedOn(o: EvalOptions): Promise<number> {
  const calibratedOn = await calibrationImages(o.modelDir, [o.profile, SCORE_RECORD]);
  if (calibratedOn.size === 0) return 0;
  const studied = await digestsOf(cleanImagesOf(o.study.groups));
  const overlap = studied.filter((d) => calibratedOn.has(d)).length;
  if (overlap > 0 && !o.allowCalibrationImages)
    throw new ImageSetError(
      `${overlap} of the ${studied.length} images this study reads were read by npm run calibrate for profile '${o.profile}' or the corruption score: a result on them is not held out. Study other images, or give --allow-calibration-images (the report then says "not held out")`,
    );
  return overlap;
}

/** The whole study. Throws ImageSetError for a refusal before any work, as planStudy does. */
export async function evalStudy(o: EvalOptions): Promise<EvalOutcome> {
  const { manifest, profile, study } = o;
  const { timesteps } = study;
  const notHeldOut = await imagesCalibratedOn(o);
  if (!study.conditions.some((c) => c.corruption !== 'clean'))
    throw new ImageSetError('the study has no corruption condition: name some with --corruptions');
  // The engine's own rules, from where the engine gets them: what timesteps=auto runs on this
  // profile, and what a request that names no timesteps gets from a server with the default
  // configuration (auto, or fixed timesteps whatever this study's T).
  const defaults = requestDefaults(loadConfig({}));
  const rule: SettleRule = resolveRequest(manifest, defaults, { profile, timesteps: 'auto' }).settle!;
  const unnamed = resolveRequest(manifest, defaults, { profile });
  const profileRule = { ...rule, source: o.calibrated ? 'calibrated' : 'the default, none calibrated' };
  const rules = [...RULE_GRID, ...(RULE_GRID.some((r) => sameRule(r, rule)) ? [] : [rule])];
  o.onStart?.(
    `evaluating ${manifest.name}, profile ${profile}, t = 0..${timesteps}: ${study.describe}; ${studySize(study.groups, timesteps)} sample-timesteps` +
      (o.controls?.length ? `, and again for each of ${o.controls.length} controls` : ''),
  );
  const started = performance.now();
  const call = { timesteps, batch: o.batch, coefficients: o.coefficients, label: 'eval' };
  const run = await o.engine.run(study.groups, call);
  const { results } = run;
  const seconds = (performance.now() - started) / 1000;
  const studyRate = (results.reduce((n, r) => n + r.count, 0) * (timesteps + 1)) / seconds;
  // The study's batches hold several conditions' images: as many as the first group's pairs, up to --batch.
  const engineRate =
    o.engine.stepper && o.measureEngine !== false
      ? await engineAlone(
          o.engine.stepper,
          o.coefficients,
          Math.min(o.batch, study.groups[0]!.images.length * study.groups[0]!.conditions.length),
          timesteps,
          seconds,
        )
      : undefined;
  const served = { rule, profileRule, rules, unnamed };
  const arm = armReport(results, timesteps, o.baseline, served);
  const controls: Record<string, Record<string, unknown>> = {};
  const controlLines: string[] = [];
  // Where the controls are compared in the text: the model's own timestep, or, when that is
  // t = 0 (where every control answers as the model), the last t studied. results.json holds every t.
  const compareAt = arm.marked(o.recommendedTimesteps) > 0 ? arm.marked(o.recommendedTimesteps) : timesteps;
  for (const control of o.controls ?? []) {
    if (!o.engine.stepper)
      throw new ImageSetError('--controls run on the local engine only, not with --endpoint');
    const c = await localStudy(control.stepper, o.inputs).run(study.groups, {
      ...call,
      coefficients: control.coefficients,
      label: `eval (control ${control.name})`,
    });
    const report = armReport(c.results, timesteps, undefined, served);
    // the model against the control at every t, paired over the same images and draws
    const vsModel = changesBetween(results, c.results);
    controls[control.name] = {
      description: control.description,
      ...report.json,
      modelAgainstControl: vsModel,
    };
    controlLines.push(controlLine(control, report.summary, vsModel, compareAt));
  }

  const seeds = o.seeds && o.seeds > 1 ? await seedSpread(o, results, call) : undefined;
  const recommended =
    o.recommendedTimesteps !== undefined && o.recommendedTimesteps <= timesteps
      ? o.recommendedTimesteps
      : undefined;
  const marked = arm.marked(o.recommendedTimesteps);
  const part = study.set.layout === 'fashion-mnist' && o.split ? `, Fashion-MNIST test ${o.split} part` : '';
  const heldOut = notHeldOut > 0 ? ` - not held out: ${notHeldOut} images calibrated on` : '';
  const { summary } = arm;
  const title = `${manifest.name}, profile ${profile}: accuracy over timesteps (${summary.images} images per corruption condition, ${summary.cleanImages} clean${part})${heldOut}`;
  const report = {
    model: manifest.name,
    profile,
    hyperparameters: o.hyperparameters,
    images: {
      source: study.set.root,
      ...(study.set.layout === 'fashion-mnist' && o.split ? { split: `t10k, ${o.split} part` } : {}),
      calibratedOn: notHeldOut,
      layout: study.set.layout,
      classes: study.set.classes,
      perCorruptionCondition: summary.images,
      clean: summary.cleanImages,
      unreadable: o.inputs.unreadable,
      ignoredFiles: study.set.ignored.length,
    },
    timesteps,
    seed: study.seed,
    severities: study.severities,
    recommendedTimesteps: o.recommendedTimesteps ?? null,
    ...arm.json,
    speed: {
      seconds: Math.round(seconds),
      studySampleStepsPerSecond: Math.round(studyRate),
      ...(engineRate !== undefined ? { engineSampleStepsPerSecond: Math.round(engineRate) } : {}),
      batch: o.batch,
      ...(run.endpoints ? { endpoints: run.endpoints, journal: run.journal } : {}),
    },
    ...(o.controls?.length ? { controls } : {}),
    ...(seeds ? { seeds } : {}),
  };
  const { mce, mceAll, allCount, normalised, rows, verdict, covered } = arm;
  const marker = { timesteps: marked, label: recommended !== undefined ? 'recommended' : 'best here' };
  const charts = [
    { name: 'accuracy', svg: accuracyChart(summary, title, marker) },
    {
      name: 'mce',
      svg: mceChart(
        mce.relative,
        mce.interval95,
        `${manifest.name}, profile ${profile}: mCE(t) / mCE(0) ${covered.length < 15 ? `(${covered.length} benchmark corruptions)` : ''}`,
        marker,
      ),
    },
    ...(rows
      ? [
          {
            name: 'anytime',
            svg: anytimeChart(
              rows,
              profileRule,
              `${manifest.name}, profile ${profile}: timesteps=auto against fixed T`,
            ),
          },
        ]
      : []),
  ];
  const percent = (x: number) => (x * 100).toFixed(1);
  const unreadable = o.inputs.unreadable;
  const md =
    markdown(results, summary, title, recommended, [
      { name: 'mCE / mCE(0), 95% low (%)', values: mce.interval95.map(([a]) => a), format: percent },
      { name: 'mCE / mCE(0), 95% high (%)', values: mce.interval95.map(([, b]) => b), format: percent },
      { name: `mCE / mCE(0) over all ${allCount} corruptions (%)`, values: mceAll.relative, format: percent },
      {
        name: `mCE / mCE(0) over all ${allCount}, 95% low (%)`,
        values: mceAll.interval95.map(([a]) => a),
        format: percent,
      },
      {
        name: `mCE / mCE(0) over all ${allCount}, 95% high (%)`,
        values: mceAll.interval95.map(([, b]) => b),
        format: percent,
      },
      ...(normalised && o.baseline
        ? [
            {
              name: `mCE normalised by ${o.baseline.name} (%)`,
              values: normalised.mce,
              format: (x: number) => x.toFixed(1),
            },
          ]
        : []),
    ]) +
    '\n' +
    changesMarkdown(arm.changes, marked) +
    (rows && verdict ? anytimeMarkdown(rows, verdict, profileRule) : '') +
    (o.controls?.length ? controlsMarkdown(o.controls, controls, compareAt) : '') +
    (seeds ? seedsMarkdown(seeds, compareAt) : '') +
    (unreadable.length
      ? `\n## Unreadable images, left out\n\n${unreadable.map((u) => `- ${u.id}: ${u.reason}`).join('\n')}\n`
      : '');

  const lines = [
    `${manifest.name} (${profile}): ` +
      summaryLine(arm, marked, recommended !== undefined) +
      `${unreadable.length ? `${unreadable.length} unreadable images left out. ` : ''}` +
      `${clock(seconds)}: ${Math.round(studyRate)} sample-timesteps/s` +
      (engineRate !== undefined
        ? `, the engine alone ${Math.round(engineRate)}/s at batch ${o.batch} (${((studyRate / engineRate) * 100).toFixed(0)}%).`
        : run.endpoints
          ? ` on ${run.endpoints.map((e) => `${e.url} ${e.images} images, ${e.retries} retries`).join('; ')}.`
          : '.'),
  ];
  if (arm.served) lines.push(servedLine(arm.served, rule));
  else if (rows && !unnamed.settle)
    lines.push(
      `served default (${unnamed.timesteps} timesteps): not measured, this study stops at t = ${timesteps}`,
    );
  if (rows && verdict) {
    const chosen = rows.auto.find((r) => sameRule(r.rule!, profileRule))!;
    const best = verdict.best;
    lines.push(
      `auto (${profileRule.source}: ${ruleName(profileRule)}): clean ${(chosen.clean.accuracy * 100).toFixed(2)}%, corrupted mean ${(chosen.corrupted.accuracy * 100).toFixed(2)}% at ${chosen.clean.meanTimesteps.toFixed(2)} / ${chosen.corrupted.meanTimesteps.toFixed(2)} mean timesteps (clean / corrupted). ` +
        `Against fixed T=${verdict.reference.timesteps}: ` +
        (verdict.reference.timesteps === 0
          ? 'the feedforward answer (T = 0) is as accurate as any here: iterating gains nothing on these images, and no rule can save timesteps.'
          : best
            ? `the cheapest rule keeping its accuracy (${ruleName(best.row.rule!)}) at ${best.meanTimesteps.toFixed(2)} timesteps; the fewest fixed timesteps as accurate: T=${verdict.cheapestFixed}.`
            : 'no rule keeps its accuracy.'),
    );
  }
  lines.push(...controlLines);
  if (seeds) lines.push(seedsLine(seeds, compareAt));
  return { report, markdown: md, charts, lines };
}

type Spread = { values: number[]; mean: number; sd: number; min: number; max: number };

/**
 * The corruptions drawn again with each further seed, on the same images: per t, the change of
 * the corrupted mean and of each family against t = 0 under every seed (the first is the
 * study's own), and their spread. Clean images are not corrupted, so they are not repeated.
 */
async function seedSpread(
  o: EvalOptions,
  first: readonly ConditionResult[],
  call: { timesteps: number; batch: number; coefficients: readonly Coefficients[]; label: string },
) {
  if (!o.engine.stepper)
    throw new ImageSetError('--seeds runs on the local engine only, not with --endpoint');
  const groups = o.study.groups
    .map((g) => ({ ...g, conditions: g.conditions.filter((c) => c.corruption !== 'clean') }))
    .filter((g) => g.conditions.length > 0);
  const runs: Changes[] = [changesAgainstZero(first.filter((r) => r.condition.corruption !== 'clean'))];
  const seedValues = [o.study.seed];
  for (let k = 1; k < o.seeds!; k++) {
    const seed = o.study.seed + k;
    const inputs = new StudyInputs(o.manifest.input, { skipUnreadable: o.study.skipUnreadable, seed });
    const { results } = await localStudy(o.engine.stepper, inputs).run(groups, {
      ...call,
      label: `eval (corruption seed ${seed})`,
    });
    runs.push(changesAgainstZero(results));
    seedValues.push(seed);
  }
  const spread = (xs: number[]): Spread => {
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
    const sd = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(1, xs.length - 1));
    return { values: xs, mean, sd, min: Math.min(...xs), max: Math.max(...xs) };
  };
  const T = o.study.timesteps;
  const over = (pick: (c: Changes) => Change[] | undefined) =>
    Array.from({ length: T + 1 }, (_, t) => spread(runs.map((c) => pick(c)?.[t]?.change ?? NaN)));
  return {
    seeds: seedValues,
    note: 'change against t = 0 (points) under each corruption seed, same images; sd over seeds',
    corruptedMean: over((c) => c.corruptedMean),
    families: Object.fromEntries(Object.keys(runs[0]!.families).map((f) => [f, over((c) => c.families[f])])),
  };
}

function seedsMarkdown(seeds: NonNullable<Awaited<ReturnType<typeof seedSpread>>>, t: number): string {
  const f = (x: number) => `${x >= 0 ? '+' : ''}${x.toFixed(2)}`;
  const row = (name: string, s: Spread) =>
    `| ${name} | ${s.values.map(f).join(', ')} | ${f(s.mean)} | ${s.sd.toFixed(2)} |`;
  return [
    `## Corruption seeds, at t = ${t}`,
    '',
    `The corruptions drawn with ${seeds.seeds.length} seeds (${seeds.seeds.join(', ')}) on the same images: each change against t = 0 under each seed.`,
    '',
    '| | changes (points) | mean | sd |',
    '|---|---|---:|---:|',
    row('**corrupted mean**', seeds.corruptedMean[t]!),
    ...Object.entries(seeds.families).map(([fam, s]) => row(`${fam} (family)`, s[t]!)),
    '',
  ].join('\n');
}

function seedsLine(seeds: NonNullable<Awaited<ReturnType<typeof seedSpread>>>, t: number): string {
  const s = seeds.corruptedMean[t]!;
  return `corruption seeds ${seeds.seeds.join(', ')}: corrupted mean change at t=${t} ${s.values.map((x) => x.toFixed(2)).join(', ')} (sd ${s.sd.toFixed(2)} points)`;
}

/** Writes a study's results.json (numbers to 4 decimals), results.md and each chart as SVG and PNG. */
export async function writeEvalOutcome(out: string, outcome: EvalOutcome): Promise<void> {
  await mkdir(out, { recursive: true });
  const r4 = (x: number) => Math.round(x * 10_000) / 10_000;
  await writeFile(
    path.join(out, 'results.json'),
    JSON.stringify(outcome.report, (_, v) => (typeof v === 'number' && !Number.isInteger(v) ? r4(v) : v), 2) +
      '\n',
  );
  await writeFile(path.join(out, 'results.md'), outcome.markdown);
  for (const { name, svg } of outcome.charts) {
    await writeFile(path.join(out, `${name}.svg`), svg);
    await writeFile(path.join(out, `${name}.png`), await svgToPng(svg));
  }
}

interface ServedContext {
  rule: SettleRule;
  profileRule: SettleRule & { source: string };
  rules: readonly SettleRule[];
  unnamed: ReturnType<typeof resolveRequest>;
}

/** One arm's measures (the model's, or a control's): the same shape for both. */
function armReport(
  results: readonly ConditionResult[],
  timesteps: number,
  baseline: { name: string; errors: BaselineErrors } | undefined,
  served: ServedContext,
) {
  const cleanResult = results.find((r) => r.condition.corruption === 'clean');
  const corrupted = results.filter((r) => r.condition.corruption !== 'clean');
  const summary = summariseEvaluation(results);
  const mce = relativeMce(results);
  // the paper's scripts average every corruption studied, the validation four included
  const mceAll = relativeMce(results, 1000, 1, 'all');
  const changes = changesAgainstZero(results);
  const allCount = new Set(corrupted.map((r) => r.condition.corruption)).size;
  const normalised = baseline && normalisedMce(results, baseline.errors);
  const covered = benchmarkCovered(results);
  const byCorruption: Record<string, Record<string, unknown>> = {};
  for (const r of corrupted) {
    const c = r.condition.corruption;
    byCorruption[c] ??= {};
    byCorruption[c][String(r.condition.severity)] = {
      count: r.count,
      accuracy: r.accuracy,
      correct: r.correct,
      lost: r.lost,
      gained: r.gained,
    };
  }
  // Without clean images (ImageNet-C's release has none) the anytime replay is left out: its
  // yardstick is the clean accuracy.
  const rows = cleanResult ? anytimeRows(results, served.rules, timesteps) : undefined;
  const verdict = rows && anytimeVerdict(rows, summary.recommended.timesteps);
  const servedDefaultResult = servedDefault(
    rows,
    served.unnamed.settle !== undefined,
    served.unnamed.timesteps,
    served.rule,
    results,
  );
  const json = {
    clean: cleanResult
      ? {
          count: cleanResult.count,
          accuracy: cleanResult.accuracy,
          correct: cleanResult.correct,
          lost: cleanResult.lost,
          gained: cleanResult.gained,
          changeSE: summary.cleanChangeSE,
        }
      : null,
    corruptions: byCorruption,
    families: summary.families,
    corruptedMean: summary.corruptedMean,
    ce: Object.fromEntries(corruptionErrors(results)),
    mce: {
      corruptions: covered,
      note:
        covered.length < 15
          ? `over ${covered.length} of ImageNet-C's 15 benchmark corruptions`
          : "over ImageNet-C's 15 benchmark corruptions",
      values: summary.mce,
      relative: mce.relative,
      interval95: mce.interval95,
      bootstrap: `${mce.replicates} replicates over images (percentile interval)`,
      all: {
        note: `over every corruption studied (${allCount}; the Predify paper's scripts average all 19)`,
        values: meanCorruptionError(results, 'all'),
        relative: mceAll.relative,
        interval95: mceAll.interval95,
      },
      ...(normalised && baseline
        ? {
            normalised: {
              baseline: baseline.name,
              percent: normalised.mce,
              corruptions: normalised.corruptions,
              missing: normalised.missing,
            },
          }
        : {}),
    },
    recommended: summary.recommended,
    changesAgainstT0: changes,
    served: servedDefaultResult ?? null,
    anytime:
      rows && verdict
        ? {
            rule: { ...ruleRecord(served.profileRule), source: served.profileRule.source },
            cap: timesteps,
            verdict: {
              reference: verdict.reference,
              best: verdict.best && {
                ...ruleRecord(verdict.best.row.rule!),
                meanTimesteps: verdict.best.meanTimesteps,
                saving: verdict.best.saving,
              },
              met: verdict.met,
              cheapestFixed: verdict.cheapestFixed,
            },
            rows: [...rows.fixed, ...rows.auto].map((r) => (r.rule ? { ...r, rule: ruleRecord(r.rule) } : r)),
          }
        : null,
  };
  return {
    json,
    summary,
    changes,
    mce,
    mceAll,
    allCount,
    normalised,
    covered,
    rows,
    verdict,
    served: servedDefaultResult,
    hasClean: cleanResult !== undefined,
    /** the timestep the text reports: the profile's recommended one if studied, else the best here */
    marked: (recommended: number | undefined) =>
      recommended !== undefined && recommended <= timesteps ? recommended : summary.recommended.timesteps,
  };
}

function summaryLine(arm: ReturnType<typeof armReport>, marked: number, isRecommended: boolean): string {
  const { summary, changes, mce, mceAll, allCount, normalised } = arm;
  const at = changeAt(summary, marked);
  const [lo, hi] = mce.interval95[marked]!;
  const pct = (x: number) => (x * 100).toFixed(1);
  return (
    `${arm.hasClean ? `clean ${(summary.clean[0]! * 100).toFixed(2)}% at t=0, ` : ''}corrupted mean ${(summary.corruptedMean[0]! * 100).toFixed(2)}%. ` +
    `At ${isRecommended ? 'the recommended' : 'the best'} t=${marked}: ${describeChange(at)}; ` +
    (changes.corruptedMean[marked]
      ? `corrupted mean ${describeWithInterval(changes.corruptedMean[marked])}${changes.clean?.[marked] ? `, clean ${describeWithInterval(changes.clean[marked])}` : ''}; `
      : '') +
    `mCE(t)/mCE(0) ${pct(mce.relative[marked]!)}% (95% ${pct(lo)}-${pct(hi)}) over the benchmark corruptions, ` +
    `${pct(mceAll.relative[marked]!)}% (95% ${pct(mceAll.interval95[marked]![0])}-${pct(mceAll.interval95[marked]![1])}) over all ${allCount}` +
    (normalised
      ? `; normalised mCE ${normalised.mce[0]!.toFixed(1)}% at t=0, ${normalised.mce[marked]!.toFixed(1)}% at t=${marked}`
      : '') +
    '. '
  );
}

/** Each family's, the corrupted mean's and clean's change against t = 0 at t, with its interval. */
function changesMarkdown(changes: ReturnType<typeof changesAgainstZero>, t: number): string {
  const row = (name: string, c: Change | undefined) =>
    c ? `| ${name} | ${describeWithInterval(c)} |` : undefined;
  return [
    `### Changes against t = 0 at t = ${t}, with 95% paired bootstrap intervals over images`,
    '',
    '| | change (points) |',
    '|---|---|',
    row('clean', changes.clean?.[t]),
    row('**corrupted mean**', changes.corruptedMean[t]),
    ...Object.entries(changes.families).map(([f, cs]) => row(`${f} (family)`, cs[t])),
    ...Object.entries(changes.corruptions).map(([c, cs]) => row(c, cs[t])),
    '',
    `${changes.replicates} replicates; results.json's changesAgainstT0 holds every t.`,
    '',
  ]
    .filter((l) => l !== undefined)
    .join('\n');
}

function controlsMarkdown(
  controls: readonly Control[],
  reports: Record<string, Record<string, unknown>>,
  t: number,
): string {
  const lines = [
    `## Controls, at t = ${t}`,
    '',
    'The same study with one part of the dynamics taken away. "Model - control" is the model against the control at the same t, paired over the same images: a positive change with an interval above 0 is what the part taken away adds.',
    '',
    '| control | what it takes away | corrupted mean vs its t = 0 | clean vs its t = 0 | model - control, corrupted mean | model - control, clean |',
    '|---|---|---|---|---|---|',
  ];
  for (const c of controls) {
    const r = reports[c.name] as {
      changesAgainstT0: ReturnType<typeof changesAgainstZero>;
      modelAgainstControl: ReturnType<typeof changesAgainstZero>;
    };
    const d = (x: Change | undefined) => (x ? describeWithInterval(x) : 'n/a');
    lines.push(
      `| ${c.name} | ${c.description} | ${d(r.changesAgainstT0.corruptedMean[t])} | ${d(r.changesAgainstT0.clean?.[t])} | ${d(r.modelAgainstControl.corruptedMean[t])} | ${d(r.modelAgainstControl.clean?.[t])} |`,
    );
  }
  return lines.join('\n') + '\n';
}

function controlLine(
  control: Control,
  summary: Summary,
  vsModel: ReturnType<typeof changesBetween>,
  t: number,
): string {
  const corrupted = vsModel.corruptedMean[t];
  const clean = vsModel.clean?.[t];
  return (
    `control ${control.name}: corrupted mean ${(summary.corruptedMean[t]! * 100).toFixed(2)}% at t=${t}; ` +
    `the model against it: corrupted mean ${corrupted ? describeWithInterval(corrupted) : 'n/a'}` +
    (clean ? `, clean ${describeWithInterval(clean)}` : '')
  );
}

/**
 * What a request that names no timesteps gets on this profile: its calibrated anytime rule
 * where the calibration made it the default, else its recommended fixed timesteps; measured on
 * this study's replayed dynamics, against t = 0, per family and as mCE relative to t = 0.
 */
function servedDefault(
  rows: ReturnType<typeof anytimeRows> | undefined,
  auto: boolean,
  fixedT: number,
  rule: SettleRule,
  results: readonly ConditionResult[],
) {
  if (!rows) return undefined;
  const row = auto ? rows.auto.find((r) => sameRule(r.rule!, rule)) : rows.fixed[fixedT];
  const zero = rows.fixed[0]!;
  if (!row) return undefined;
  const replayed = servedResults(
    results,
    auto ? { rule, cap: rows.fixed.length - 1 } : { timesteps: fixedT },
  );
  const served = relativeMce(replayed);
  // the served answer against t = 0 (index 1 against index 0 of the replay), with intervals
  const vs = changesAgainstZero(replayed);
  const familyMean = (r: typeof row, f: string) => {
    const members = Object.keys(r.corruptions).filter((c) => FAMILY_OF[c as Corruption] === f);
    return members.length
      ? members.reduce((s, c) => s + r.corruptions[c]!.accuracy, 0) / members.length
      : undefined;
  };
  const families = Object.fromEntries(
    FAMILIES.flatMap((f) => {
      const a = familyMean(row, f);
      const b = familyMean(zero, f);
      return a !== undefined && b !== undefined
        ? [[f, { accuracy: a, atZero: b, change: (a - b) * 100, vsT0: vs.families[f]?.[1] ?? null }]]
        : [];
    }),
  );
  return {
    policy: auto ? { auto: ruleRecord(rule) } : { timesteps: fixedT },
    clean: {
      accuracy: row.clean.accuracy,
      atZero: zero.clean.accuracy,
      meanTimesteps: row.clean.meanTimesteps,
      vsT0: vs.clean?.[1] ?? null,
    },
    corrupted: {
      accuracy: row.corrupted.accuracy,
      atZero: zero.corrupted.accuracy,
      meanTimesteps: row.corrupted.meanTimesteps,
      vsT0: vs.corruptedMean[1] ?? null,
    },
    families,
    // mCE against t = 0 with its bootstrap interval, from each image's answers where the policy stops
    relativeMce: Number.isFinite(served.relative[1]) ? served.relative[1]! : null,
    relativeMceInterval95: served.replicates ? served.interval95[1]! : null,
  };
}

function servedLine(s: NonNullable<ReturnType<typeof servedDefault>>, rule: SettleRule): string {
  const pts = (a: number, b: number) => `${a >= b ? '+' : ''}${((a - b) * 100).toFixed(2)}`;
  const interval = (c: Change | null) =>
    c ? ` (95% ${c.interval95.map((x) => `${x >= 0 ? '+' : ''}${x.toFixed(2)}`).join(' to ')})` : '';
  return (
    `served default (${'auto' in s.policy ? `auto: ${ruleName(rule)}` : `${s.policy.timesteps} timesteps`}): ` +
    `clean ${pts(s.clean.accuracy, s.clean.atZero)}${interval(s.clean.vsT0)} points, corrupted mean ${pts(s.corrupted.accuracy, s.corrupted.atZero)}${interval(s.corrupted.vsT0)} against t = 0 ` +
    `(${Object.entries(s.families)
      .map(([f, v]) => `${f} ${v.change >= 0 ? '+' : ''}${v.change.toFixed(2)}${interval(v.vsT0)}`)
      .join(
        ', ',
      )}); mCE / mCE(0) ${s.relativeMce !== null ? `${(s.relativeMce * 100).toFixed(1)}%` : 'n/a'}` +
    (s.relativeMceInterval95
      ? ` (95% ${(s.relativeMceInterval95[0] * 100).toFixed(1)}-${(s.relativeMceInterval95[1] * 100).toFixed(1)})`
      : '') +
    '; ' +
    `${s.clean.meanTimesteps.toFixed(2)} / ${s.corrupted.meanTimesteps.toFixed(2)} mean timesteps (clean / corrupted)`
  );
}

/**
 * The engine's own sample-timesteps per second at this batch size: the same calls the study
 * made (t = 0..T for a batch), with nothing else to do. Measured for a tenth of the study's
 * time (2..20 s), so that both numbers come from one run.
 */
async function engineAlone(
  stepper: PredictiveStepper,
  coefficients: readonly Coefficients[],
  n: number,
  T: number,
  studySeconds: number,
): Promise<number> {
  // the engine's time does not depend on the pixels
  const x = new Float32Array(stepper.inputSize);
  const budget = Math.min(20, Math.max(2, studySeconds / 10));
  let steps = 0;
  const started = performance.now();
  while ((performance.now() - started) / 1000 < budget) {
    const samples = Array.from({ length: n }, () => newSample(x, coefficients, T));
    await runTimesteps(stepper, samples, T);
    steps += n * (T + 1);
  }
  return steps / ((performance.now() - started) / 1000);
}
