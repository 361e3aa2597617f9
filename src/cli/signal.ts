#!/usr/bin/env node
/**
 * How well the corruption score tells corrupted test images from clean ones: AUROC per
 * corruption and severity, against the baseline of one minus the softmax confidence at t = 0.
 * Writes signal.json, signal.md and signal.svg/.png to --out. See docs/anytime.md.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { DEFAULT_MODEL_DIR } from '../config/config.js';
import { corruptionScore } from '../engine/corruption-score.js';
import { signalChart, svgToPng } from '../robustness/chart.js';
import { FAMILIES, FAMILY_OF, type Corruption } from '../robustness/imagenet-c/index.js';
import { mean } from '../robustness/report.js';
import { auroc, signalMarkdown, type SignalRow } from '../robustness/signal.js';
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

// t = 0 only: the score and the baseline are both read before any feedback, whatever the profile.
const { local, manifest, coefficients, profile } = await studyModel(
  values.model,
  undefined,
  values.endpoint !== undefined,
);
try {
  const norm = manifest.corruptionScore;
  if (!norm) {
    console.error(
      `model ${manifest.name} has no corruption score in its manifest: npm run calibrate -- --score-only --write`,
    );
    process.exitCode = 2;
  } else {
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
    const started = performance.now();
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
    const { results } = await engine.run(study.groups, {
      timesteps: 0,
      batch: local ? 100 : 8,
      coefficients,
      label: 'eval:signal',
    });
    const cleanResult = results.find((r) => r.condition.corruption === 'clean');
    const corrupted = results.filter((r) => r.condition.corruption !== 'clean');
    if (!cleanResult) {
      console.error('the signal needs clean images (ImageNet-C sets: DIR/clean/<class>/<image>)');
      process.exit(2);
    }
    const first = (r: typeof cleanResult) => r!.trajectories!.map((t) => t.steps[0]!);
    const score = (steps: ReturnType<typeof first>) => steps.map((s) => corruptionScore(s.errors, norm));
    // 1 - the top-1 softmax probability: unconfidence() of the step's logits, as recorded.
    const baseline = (steps: ReturnType<typeof first>) => steps.map((s) => 1 - s.confidence);
    const cleanSteps = first(cleanResult);
    const rows: SignalRow[] = corrupted.map((r) => {
      const steps = first(r);
      return {
        corruption: r.condition.corruption,
        severity: r.condition.severity,
        score: auroc(score(cleanSteps), score(steps)),
        baseline: auroc(baseline(cleanSteps), baseline(steps)),
      };
    });
    const title = `${manifest.name}: telling corrupted images from clean ones at t = 0 (${corrupted[0]?.count ?? 0} per condition, ${cleanSteps.length} clean)`;
    await mkdir(out, { recursive: true });
    const report = {
      model: manifest.name,
      images: study.describe,
      cleanImages: cleanSteps.length,
      unreadable: inputs.unreadable,
      score:
        'corruptionScore: the largest |z| of ln e_i(0) over the PCoders, against clean validation images',
      baseline: 'one minus the softmax confidence at t = 0',
      severities: study.severities,
      rows,
    };
    const svg = signalChart(rows, title);
    await writeFile(path.join(out, 'signal.json'), JSON.stringify(report, null, 2) + '\n');
    await writeFile(path.join(out, 'signal.md'), signalMarkdown(rows, title));
    await writeFile(path.join(out, 'signal.svg'), svg);
    await writeFile(path.join(out, 'signal.png'), await svgToPng(svg));
    const byFamily = FAMILIES.map((f) => {
      const of = rows.filter((r) => FAMILY_OF[r.corruption as Corruption] === f);
      return of.length
        ? `${f} ${mean(of.map((r) => r.score)).toFixed(3)} (baseline ${mean(of.map((r) => r.baseline)).toFixed(3)})`
        : undefined;
    }).filter(Boolean);
    console.log(
      `${manifest.name}: AUROC of the score by family: ${byFamily.join(', ')}; ` +
        `${Math.round((performance.now() - started) / 1000)} s. Written to ${out}/`,
    );
  }
} finally {
  await local?.model.release();
}
