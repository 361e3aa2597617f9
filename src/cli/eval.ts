#!/usr/bin/env node
/**
 * The robustness evaluation: Fashion-MNIST test images, clean and under every corruption and
 * severity, through the serving engine for t = 0..T, and timesteps=auto replayed on the same
 * dynamics. Writes results.json, results.md, accuracy.svg/.png and anytime.svg/.png to --out.
 * See docs/robustness.md and docs/anytime.md.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { DEFAULT_MODEL_DIR } from '../config.js';
import { DEFAULT_SETTLE } from '../engine/resolve-request.js';
import type { SettleRule } from '../engine/settling.js';
import {
  anytimeMarkdown,
  anytimeRows,
  anytimeVerdict,
  RULE_GRID,
  ruleName,
  sameRule,
} from '../robustness/anytime.js';
import { accuracyChart, anytimeChart, svgToPng } from '../robustness/chart.js';
import { CORRUPTIONS, SEVERITIES } from '../robustness/corruptions.js';
import { evaluate, mergeCounts, stratifiedIndices, type Condition } from '../robustness/evaluate.js';
import { loadFashion } from '../robustness/fashion-mnist.js';
import { progressReporter } from '../robustness/progress.js';
import { changeAt, describeChange, markdown, summariseEvaluation } from '../robustness/report.js';
import { openModelWithProfile, parseCli, wholeNumber } from './args.js';

const usage = `usage: npm run eval -- [--quick] [--profile NAME] [--images N] [--timesteps T] [--model DIR] [--out DIR]

  --quick      100 images per condition, severities 1, 3 and 5 (about a minute)
  --images     test images per condition, the same number from every class (default 600)
  --clean-images  test images for the clean condition (default 5000; at least --images): the
               clean constraint is a fine margin, and one clean image costs a 31st of one image under every condition
  --timesteps  T: accuracy is reported for t = 0..T (default 10)
  --profile    the model's hyperparameter profile (default: the model's default profile)
  --model      model directory (default: the shipped ${path.basename(DEFAULT_MODEL_DIR)})
  --out        output directory (default: build/robustness/<model>-<profile>[-quick])
  --batch      samples stepped together (default 100)
  --threads    onnxruntime threads per session (default 2)`;

const { values } = parseCli(
  {
    options: {
      quick: { type: 'boolean', default: false },
      images: { type: 'string' },
      'clean-images': { type: 'string' },
      timesteps: { type: 'string' },
      profile: { type: 'string' },
      model: { type: 'string', default: DEFAULT_MODEL_DIR },
      out: { type: 'string' },
      batch: { type: 'string' },
      threads: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  },
  usage,
);

// 600 keeps the full run under 15 minutes on 2 cores with the shipped model's predictors.
const images = wholeNumber('images', values.images, values.quick ? 100 : 600);
const cleanImages = Math.max(
  images,
  wholeNumber('clean-images', values['clean-images'], values.quick ? images : 5000),
);
const timesteps = wholeNumber('timesteps', values.timesteps, 10);
const batch = Math.max(1, wholeNumber('batch', values.batch, 100));
const threads = wholeNumber('threads', values.threads, 2);
const severities = values.quick ? [1, 3, 5] : [1, 2, 3, 4, 5];

const { model, stepper, profile, hyperparameters, coefficients, recommendedTimesteps, anytime } =
  await openModelWithProfile(values.model, values.profile, threads);
// The rule a timesteps=auto request on this profile would use, and every rule of the grid.
const rule: SettleRule = anytime
  ? {
      tolerance: anytime.tolerance,
      patience: anytime.patience,
      ...(anytime.confidence !== undefined ? { confidence: anytime.confidence } : {}),
    }
  : DEFAULT_SETTLE;
const profileRule = { ...rule, source: anytime ? 'calibrated' : 'the default, none calibrated' };
const rules = [...RULE_GRID, ...(RULE_GRID.some((r) => sameRule(r, rule)) ? [] : [rule])];
try {
  const { manifest } = model;
  const data = await loadFashion('t10k');
  const indices = stratifiedIndices(data, images);
  // The first images of every class: the corruption images are among them.
  const cleanIndices = stratifiedIndices(data, cleanImages);
  const inSubset = new Set(indices);
  const moreClean = cleanIndices.filter((k) => !inSubset.has(k));
  const clean: Condition = { corruption: 'clean', severity: 0 };
  const conditions: Condition[] = [
    clean,
    ...CORRUPTIONS.flatMap((corruption) => severities.map((severity) => ({ corruption, severity }))),
  ];
  const out =
    values.out ??
    path.join('build', 'robustness', `${manifest.name}-${profile}${values.quick ? '-quick' : ''}`);
  console.error(
    `evaluating ${manifest.name}, profile ${profile}: ${indices.length} test images x ${conditions.length} conditions` +
      `${moreClean.length ? ` (clean: ${indices.length + moreClean.length})` : ''} x t = 0..${timesteps}`,
  );
  const started = performance.now();
  const progress = progressReporter('eval');
  const sampleSteps = (timesteps + 1) * (indices.length * conditions.length + moreClean.length);
  const mainSteps = (timesteps + 1) * indices.length * conditions.length;
  const options = { timesteps, batch, coefficients, record: true };
  const onSubset = await evaluate(stepper, data, {
    ...options,
    indices,
    conditions,
    onProgress: (done) => progress(done, sampleSteps),
  });
  const [moreResult] = await evaluate(stepper, data, {
    ...options,
    indices: moreClean,
    conditions: [clean],
    onProgress: (done) => progress(mainSteps + done, sampleSteps),
  });
  const cleanOnSubset = onSubset[0]!;
  const results = [mergeCounts(cleanOnSubset, moreResult), ...onSubset.slice(1)];
  const seconds = (performance.now() - started) / 1000;
  // The profile's own recommendation (from validation images), when this run reaches it.
  const recommended =
    recommendedTimesteps !== undefined && recommendedTimesteps <= timesteps
      ? recommendedTimesteps
      : undefined;
  const summary = summariseEvaluation(results);
  const title = `${manifest.name}, profile ${profile}: accuracy over timesteps (${indices.length} test images per condition, ${cleanIndices.length} clean)`;
  await mkdir(out, { recursive: true });
  const report = {
    model: manifest.name,
    profile,
    hyperparameters,
    split: 't10k',
    images: indices.length,
    cleanImages: cleanIndices.length,
    selection:
      'the first images of the test set, the same number from every class; the clean condition on more of them, the corruption images among them',
    // What the clean condition gives on the corruption images alone, for comparison.
    cleanOnCorruptionImages: cleanOnSubset.accuracy,
    timesteps,
    recommendedTimesteps: recommendedTimesteps ?? null,
    severities: Object.fromEntries(CORRUPTIONS.map((c) => [c, { ...SEVERITIES[c], used: severities }])),
    seconds: Math.round(seconds),
    summary,
    conditions: results.map((r) => ({
      ...r.condition,
      accuracy: r.accuracy,
      correct: r.correct,
      lost: r.lost,
      gained: r.gained,
    })),
  };
  const svg = accuracyChart(
    summary,
    title,
    recommended !== undefined ? { timesteps: recommended, label: 'recommended' } : undefined,
  );
  const rows = anytimeRows(results, rules, timesteps);
  const verdict = anytimeVerdict(rows, summary.recommended.timesteps);
  const anytimeReport = {
    rule: profileRule,
    cap: timesteps,
    verdict: {
      reference: verdict.reference,
      best: verdict.best && {
        ...verdict.best.row.rule!,
        meanTimesteps: verdict.best.meanTimesteps,
        saving: verdict.best.saving,
      },
      met: verdict.met,
      cheapestFixed: verdict.cheapestFixed,
    },
    rows: [...rows.fixed, ...rows.auto],
  };
  const anytimeSvg = anytimeChart(
    rows,
    profileRule,
    `${manifest.name}, profile ${profile}: timesteps=auto against fixed T (${indices.length} test images per condition, ${cleanIndices.length} clean)`,
  );
  await writeFile(
    path.join(out, 'results.json'),
    JSON.stringify({ ...report, anytime: anytimeReport }, null, 2) + '\n',
  );
  await writeFile(
    path.join(out, 'results.md'),
    markdown(results, summary, title, recommended) + '\n' + anytimeMarkdown(rows, verdict, profileRule),
  );
  await writeFile(path.join(out, 'anytime.svg'), anytimeSvg);
  await writeFile(path.join(out, 'anytime.png'), await svgToPng(anytimeSvg));
  await writeFile(path.join(out, 'accuracy.svg'), svg);
  await writeFile(path.join(out, 'accuracy.png'), await svgToPng(svg));
  const best = summary.recommended.timesteps;
  const marked = recommended ?? best;
  console.log(
    `${manifest.name} (${profile}): clean ${(summary.clean[0]! * 100).toFixed(2)}% at t=0, noise mean ${(summary.noiseMean[0]! * 100).toFixed(2)}%. ` +
      (recommended !== undefined
        ? `At the recommended t=${recommended}: ${describeChange(changeAt(summary, recommended))}. `
        : '') +
      `Best here, t=${best}: ${describeChange(changeAt(summary, best))}. ` +
      `Relative mCE at t=${marked}: ${(summary.relativeMCE[marked]! * 100).toFixed(1)}%. ` +
      `Clean on the ${indices.length} corruption images alone: ${(cleanOnSubset.accuracy[0]! * 100).toFixed(2)}% -> ${(cleanOnSubset.accuracy[marked]! * 100).toFixed(2)}% at t=${marked}. ` +
      `${Math.round(seconds)} s. Written to ${out}/`,
  );
  const chosen = rows.auto.find((r) => sameRule(r.rule!, profileRule))!;
  const b = verdict.best;
  console.log(
    `auto (${profileRule.source}: ${ruleName(profileRule)}): clean ${(chosen.clean.accuracy * 100).toFixed(2)}%, noise mean ${(chosen.noise.accuracy * 100).toFixed(2)}% at ${chosen.clean.meanTimesteps.toFixed(2)} / ${chosen.noise.meanTimesteps.toFixed(2)} mean timesteps (clean / noise). ` +
      `Against fixed T=${verdict.reference.timesteps}: ` +
      (b
        ? `cheapest rule keeping its accuracy (${ruleName(b.row.rule!)}) at ${b.meanTimesteps.toFixed(2)} timesteps (${verdict.reference.timesteps > 0 ? `${(b.saving * 100).toFixed(0)}% fewer` : 'more than none'}): target ${verdict.met ? 'met' : 'missed'}. The fewest fixed timesteps as accurate: T=${verdict.cheapestFixed}.`
        : 'no rule keeps its accuracy.'),
  );
} finally {
  await model.release();
}
