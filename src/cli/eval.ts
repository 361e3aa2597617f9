#!/usr/bin/env node
/**
 * The robustness study: a model's accuracy at t = 0..T on clean images and under ImageNet-C's
 * corruptions, through the serving engine, with the paper's mCE(t) / mCE(0) and its bootstrap
 * interval, ImageNet-C's normalised mCE against a baseline, and timesteps=auto replayed on the
 * same dynamics. Writes results.json, results.md, accuracy.svg/.png, mce.svg/.png and
 * anytime.svg/.png to --out. See docs/robustness.md and docs/anytime.md.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { DEFAULT_MODEL_DIR, loadConfig, requestDefaults } from '../config/config.js';
import { newSample, runTimesteps, type PredictiveStepper } from '../engine/predictive-step.js';
import { resolveRequest } from '../engine/resolve-request.js';
import type { SettleRule } from '../engine/settling.js';
import {
  anytimeMarkdown,
  anytimeRows,
  anytimeVerdict,
  RULE_GRID,
  ruleName,
  ruleRecord,
  servedResults,
  sameRule,
} from '../robustness/anytime.js';
import { accuracyChart, anytimeChart, mceChart, svgToPng } from '../robustness/chart.js';
import { studySize, type ConditionResult } from '../robustness/evaluate.js';
import { ImageSetError, type FashionPart } from '../robustness/image-set.js';
import { FAMILIES, FAMILY_OF, type Corruption } from '../robustness/imagenet-c/index.js';
import {
  ALEXNET_ERRORS,
  baselineFromResults,
  benchmarkCovered,
  meanCorruptionError,
  corruptionErrors,
  normalisedMce,
  relativeMce,
  type BaselineErrors,
} from '../robustness/mce.js';
import { clock } from '../robustness/progress.js';
import { changeAt, describeChange, markdown, summariseEvaluation } from '../robustness/report.js';
import { StudyInputs } from '../robustness/study-inputs.js';
import { calibrationImages, cleanImagesOf, digestsOf, SCORE_RECORD } from '../robustness/held-out.js';
import { changesAgainstZero, describeWithInterval, type Change } from '../robustness/changes.js';
import { parseCli, studyModel, wholeNumber } from './args.js';
import { FLEET_OPTIONS, FLEET_USAGE, studyResults } from './fleet-args.js';
import { planStudy, STUDY_OPTIONS, STUDY_USAGE, type StudyValues } from './study-args.js';

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
      profile: { type: 'string' },
      model: { type: 'string', default: DEFAULT_MODEL_DIR },
      batch: { type: 'string' },
      threads: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  },
  usage,
);
if (values.split !== 'dev' && values.split !== 'final') {
  console.error(`--split ${values.split}: dev or final\n\n${usage}`);
  process.exit(2);
}
const split: FashionPart = values.split;
const remote = values.endpoint !== undefined;
const batch = Math.max(1, wholeNumber('batch', values.batch, remote ? 8 : 32));
const threads = wholeNumber('threads', values.threads, 2);

const { local, manifest, profile, hyperparameters, coefficients, recommendedTimesteps, anytime } =
  await studyModel(values.model, values.profile, remote, threads);
try {
  let study;
  let baseline: { name: string; errors: BaselineErrors } | undefined;
  try {
    study = await planStudy(values as StudyValues, manifest, {
      corruptions: 'all',
      severities: values.quick ? '1,3,5' : '1-5',
      timesteps: 10,
      fashion: {
        split: 't10k',
        part: split,
        perClass: values.quick ? 10 : 60,
        cleanPerClass: values.quick ? 10 : 500,
      },
    });
    if (values.baseline === 'alexnet') {
      // AlexNet's errors are ImageNet's: a ratio against them means something only for a model
      // that classifies ImageNet's 1000 classes from colour images.
      if (manifest.labels.length !== 1000 || manifest.input.channels !== 3)
        throw new ImageSetError(
          `--baseline alexnet: AlexNet's published errors are on ImageNet's 1000 classes; model ${manifest.name} has ${manifest.labels.length} classes (${manifest.input.channels === 1 ? 'grey' : 'colour'} ${manifest.input.width} x ${manifest.input.height} inputs), and dividing its errors by ImageNet's would mean nothing`,
        );
      baseline = { name: 'AlexNet (ImageNet-C)', errors: ALEXNET_ERRORS };
    } else if (values.baseline !== undefined)
      baseline = {
        name: values.baseline,
        errors: baselineFromResults(JSON.parse(await readFile(values.baseline, 'utf8')), values.baseline),
      };
  } catch (err) {
    if (
      !(err instanceof ImageSetError) &&
      !(err instanceof SyntaxError) &&
      !(err as NodeJS.ErrnoException).code
    )
      throw err;
    console.error(`${(err as Error).message}\n\n${usage}`);
    process.exit(2);
  }
  const { timesteps } = study;
  // Held out or not: a calibrated profile (or the gate's score) scored on the images it was
  // calibrated on is refused, unless asked for, and then said in the report's title.
  const calibratedOn = await calibrationImages(values.model, [profile, SCORE_RECORD]);
  let notHeldOut = 0;
  if (calibratedOn.size > 0) {
    const studied = await digestsOf(cleanImagesOf(study.groups));
    notHeldOut = studied.filter((d) => calibratedOn.has(d)).length;
    if (notHeldOut > 0 && !values['allow-calibration-images']) {
      console.error(
        `${notHeldOut} of the ${studied.length} images this study reads were read by npm run calibrate for profile '${profile}' or the corruption score: a result on them is not held out. Study other images, or give --allow-calibration-images (the report then says "not held out")`,
      );
      process.exit(2);
    }
  }
  // The engine's own rules, from where the engine gets them: what timesteps=auto runs on this
  // profile, and what a request that names no timesteps gets from a server with the default
  // configuration (auto, or fixed timesteps whatever this study's T).
  const defaults = requestDefaults(loadConfig({}));
  const rule: SettleRule = resolveRequest(manifest, defaults, { profile, timesteps: 'auto' }).settle!;
  const unnamed = resolveRequest(manifest, defaults, { profile });
  const profileRule = { ...rule, source: anytime ? 'calibrated' : 'the default, none calibrated' };
  const rules = [...RULE_GRID, ...(RULE_GRID.some((r) => sameRule(r, rule)) ? [] : [rule])];
  const out =
    values.out ??
    path.join(
      'build',
      'robustness',
      `${manifest.name}-${profile}${values.quick ? '-quick' : ''}${split === 'final' ? '-final' : ''}`,
    );
  const total = studySize(study.groups, timesteps);
  console.error(
    `evaluating ${manifest.name}, profile ${profile}, t = 0..${timesteps}: ${study.describe}; ${total} sample-timesteps`,
  );
  const inputs = new StudyInputs(manifest.input, { skipUnreadable: study.skipUnreadable, seed: study.seed });
  const started = performance.now();
  let run;
  try {
    run = await studyResults({
      stepper: local?.stepper,
      values,
      manifest,
      profile,
      coefficients,
      study,
      inputs,
      timesteps,
      batch,
      out,
      label: 'eval',
    });
  } catch (err) {
    if (!(err instanceof ImageSetError)) throw err;
    console.error(`\n${err.message}`);
    process.exit(1);
  }
  const { results, fleet } = run;
  const seconds = (performance.now() - started) / 1000;
  const studyRate = (results.reduce((n, r) => n + r.count, 0) * (timesteps + 1)) / seconds;
  // The study's batches hold several conditions' images: as many as the first group's pairs, up to --batch.
  const engine = local
    ? await engineRate(
        local.stepper,
        results,
        study.groups[0]!.images.length * study.groups[0]!.conditions.length,
        seconds,
      )
    : undefined;
  const cleanResult = results.find((r) => r.condition.corruption === 'clean');
  const corrupted = results.filter((r) => r.condition.corruption !== 'clean');
  if (corrupted.length === 0) {
    console.error('the study has no corruption condition: name some with --corruptions');
    process.exit(2);
  }
  // Without clean images (ImageNet-C's release has none) the corruption measures stand alone:
  // no clean accuracy, no anytime replay (its yardstick is the clean accuracy).
  if (!cleanResult)
    console.error(
      'no clean images (an ImageNet-C set may hold them in DIR/clean/<class>/): clean accuracy and the anytime replay are left out',
    );
  const summary = summariseEvaluation(results);
  const mce = relativeMce(results);
  // the paper's scripts average every corruption studied, the validation four included
  const mceAll = relativeMce(results, 1000, 1, 'all');
  // every change against t = 0, with its paired bootstrap interval over images
  const changes = changesAgainstZero(results);
  const allCount = new Set(corrupted.map((r) => r.condition.corruption)).size;
  const normalised = baseline && normalisedMce(results, baseline.errors);
  const recommended =
    recommendedTimesteps !== undefined && recommendedTimesteps <= timesteps
      ? recommendedTimesteps
      : undefined;
  const marked = recommended ?? summary.recommended.timesteps;
  const part = study.set.layout === 'fashion-mnist' ? `, Fashion-MNIST test ${split} part` : '';
  const heldOut = notHeldOut > 0 ? ` - not held out: ${notHeldOut} images calibrated on` : '';
  const title = `${manifest.name}, profile ${profile}: accuracy over timesteps (${summary.images} images per corruption condition, ${summary.cleanImages} clean${part})${heldOut}`;
  const covered = benchmarkCovered(results);
  const ces = corruptionErrors(results);
  const r4 = (x: number) => Math.round(x * 10_000) / 10_000;
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
  const rows = cleanResult ? anytimeRows(results, rules, timesteps) : undefined;
  const verdict = rows && anytimeVerdict(rows, summary.recommended.timesteps);
  const served = servedDefault(rows, unnamed.settle !== undefined, unnamed.timesteps, rule, results);
  const report = {
    model: manifest.name,
    profile,
    hyperparameters,
    images: {
      source: study.set.root,
      ...(study.set.layout === 'fashion-mnist' ? { split: `t10k, ${split} part` } : {}),
      calibratedOn: notHeldOut,
      layout: study.set.layout,
      classes: study.set.classes,
      perCorruptionCondition: summary.images,
      clean: summary.cleanImages,
      unreadable: inputs.unreadable,
      ignoredFiles: study.set.ignored.length,
    },
    timesteps,
    seed: study.seed,
    severities: study.severities,
    recommendedTimesteps: recommendedTimesteps ?? null,
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
    ce: Object.fromEntries(ces),
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
    served: served ?? null,
    speed: {
      seconds: Math.round(seconds),
      studySampleStepsPerSecond: Math.round(studyRate),
      ...(engine !== undefined ? { engineSampleStepsPerSecond: Math.round(engine) } : {}),
      batch,
      ...(fleet
        ? {
            // this run's answers by server (a resumed run counts what it asked for itself)
            endpoints: fleet.fleet.stats.map((e) => ({
              url: e.url,
              images: e.answered,
              imagesPerSecond: Math.round(e.imagesPerSecond * 10) / 10,
              retries: e.retries,
            })),
            journal: fleet.journal.file,
          }
        : {}),
    },
    anytime:
      rows && verdict
        ? {
            rule: { ...ruleRecord(profileRule), source: profileRule.source },
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
  await mkdir(out, { recursive: true });
  const marker = { timesteps: marked, label: recommended !== undefined ? 'recommended' : 'best here' };
  const accuracySvg = accuracyChart(summary, title, marker);
  const mceSvg = mceChart(
    mce.relative,
    mce.interval95,
    `${manifest.name}, profile ${profile}: mCE(t) / mCE(0) ${covered.length < 15 ? `(${covered.length} benchmark corruptions)` : ''}`,
    marker,
  );
  const anytimeSvg =
    rows &&
    anytimeChart(rows, profileRule, `${manifest.name}, profile ${profile}: timesteps=auto against fixed T`);
  const md =
    markdown(results, summary, title, recommended, [
      {
        name: 'mCE / mCE(0), 95% low (%)',
        values: mce.interval95.map(([a]) => a),
        format: (x) => (x * 100).toFixed(1),
      },
      {
        name: 'mCE / mCE(0), 95% high (%)',
        values: mce.interval95.map(([, b]) => b),
        format: (x) => (x * 100).toFixed(1),
      },
      {
        name: `mCE / mCE(0) over all ${allCount} corruptions (%)`,
        values: mceAll.relative,
        format: (x) => (x * 100).toFixed(1),
      },
      {
        name: `mCE / mCE(0) over all ${allCount}, 95% low (%)`,
        values: mceAll.interval95.map(([a]) => a),
        format: (x) => (x * 100).toFixed(1),
      },
      {
        name: `mCE / mCE(0) over all ${allCount}, 95% high (%)`,
        values: mceAll.interval95.map(([, b]) => b),
        format: (x) => (x * 100).toFixed(1),
      },
      ...(normalised
        ? [
            {
              name: `mCE normalised by ${baseline!.name} (%)`,
              values: normalised.mce,
              format: (x: number) => x.toFixed(1),
            },
          ]
        : []),
    ]) +
    '\n' +
    (rows && verdict ? anytimeMarkdown(rows, verdict, profileRule) : '') +
    (inputs.unreadable.length
      ? `\n## Unreadable images, left out\n\n${inputs.unreadable.map((u) => `- ${u.id}: ${u.reason}`).join('\n')}\n`
      : '');
  await writeFile(
    path.join(out, 'results.json'),
    JSON.stringify(report, (_, v) => (typeof v === 'number' && !Number.isInteger(v) ? r4(v) : v), 2) + '\n',
  );
  await writeFile(path.join(out, 'results.md'), md);
  for (const [name, svg] of [
    ['accuracy', accuracySvg],
    ['mce', mceSvg],
    ...(anytimeSvg ? [['anytime', anytimeSvg] as const] : []),
  ] as const) {
    await writeFile(path.join(out, `${name}.svg`), svg);
    await writeFile(path.join(out, `${name}.png`), await svgToPng(svg));
  }
  const at = changeAt(summary, marked);
  const [lo, hi] = mce.interval95[marked]!;
  console.log(
    `${manifest.name} (${profile}): ${cleanResult ? `clean ${(summary.clean[0]! * 100).toFixed(2)}% at t=0, ` : ''}corrupted mean ${(summary.corruptedMean[0]! * 100).toFixed(2)}%. ` +
      `At ${recommended !== undefined ? 'the recommended' : 'the best'} t=${marked}: ${describeChange(at)}; ` +
      (changes.corruptedMean[marked]
        ? `corrupted mean ${describeWithInterval(changes.corruptedMean[marked])}${changes.clean?.[marked] ? `, clean ${describeWithInterval(changes.clean[marked])}` : ''}; `
        : '') +
      `mCE(t)/mCE(0) ${(mce.relative[marked]! * 100).toFixed(1)}% (95% ${(lo * 100).toFixed(1)}-${(hi * 100).toFixed(1)}) over the benchmark corruptions, ` +
      `${(mceAll.relative[marked]! * 100).toFixed(1)}% (95% ${(mceAll.interval95[marked]![0] * 100).toFixed(1)}-${(mceAll.interval95[marked]![1] * 100).toFixed(1)}) over all ${allCount}` +
      (normalised
        ? `; normalised mCE ${normalised.mce[0]!.toFixed(1)}% at t=0, ${normalised.mce[marked]!.toFixed(1)}% at t=${marked} (${baseline!.name})`
        : '') +
      `. ${inputs.unreadable.length ? `${inputs.unreadable.length} unreadable images left out. ` : ''}` +
      `${clock(seconds)}: ${Math.round(studyRate)} sample-timesteps/s, ` +
      (engine !== undefined
        ? `the engine alone ${Math.round(engine)}/s at batch ${batch} (${((studyRate / engine) * 100).toFixed(0)}%). `
        : `on ${fleet!.fleet.stats.map((e) => `${e.url} ${e.answered} images, ${e.retries} retries`).join('; ')}. `) +
      `Written to ${out}/`,
  );
  if (served) console.log(servedLine(served, rule));
  else if (rows && !unnamed.settle)
    console.log(
      `served default (${unnamed.timesteps} timesteps): not measured, this study stops at t = ${timesteps}`,
    );
  if (!rows || !verdict) process.exit(0);
  const chosen = rows.auto.find((r) => sameRule(r.rule!, profileRule))!;
  const best = verdict.best;
  console.log(
    `auto (${profileRule.source}: ${ruleName(profileRule)}): clean ${(chosen.clean.accuracy * 100).toFixed(2)}%, corrupted mean ${(chosen.corrupted.accuracy * 100).toFixed(2)}% at ${chosen.clean.meanTimesteps.toFixed(2)} / ${chosen.corrupted.meanTimesteps.toFixed(2)} mean timesteps (clean / corrupted). ` +
      `Against fixed T=${verdict.reference.timesteps}: ` +
      (verdict.reference.timesteps === 0
        ? 'the feedforward answer (T = 0) is as accurate as any here: iterating gains nothing on these images, and no rule can save timesteps.'
        : best
          ? `the cheapest rule keeping its accuracy (${ruleName(best.row.rule!)}) at ${best.meanTimesteps.toFixed(2)} timesteps; the fewest fixed timesteps as accurate: T=${verdict.cheapestFixed}.`
          : 'no rule keeps its accuracy.'),
  );
} finally {
  await local?.model.release();
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
 * made (t = 0..T for a batch), on its first images, with nothing else to do. Measured for a
 * tenth of the study's time (2..20 s), so that both numbers come from one run.
 */
async function engineRate(
  stepper: PredictiveStepper,
  results: readonly ConditionResult[],
  images: number,
  studySeconds: number,
): Promise<number> {
  const n = Math.min(batch, images);
  const T = results[0]!.accuracy.length - 1;
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
