/**
 * npm run eval:signal as a function: how well the corruption score tells corrupted images from
 * clean ones at t = 0 (AUROC per condition), against one minus the softmax confidence. Returns
 * the report, its table and chart, and a line a person reads.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { corruptionScore, type ScoreNormalisation } from '../engine/corruption-score.js';
import type { Coefficients } from '../model/hyperparameters.js';
import type { Manifest } from '../model/manifest.js';
import { signalChart, svgToPng } from './chart.js';
import type { Trajectory } from './evaluate.js';
import { ImageSetError } from './image-set.js';
import { FAMILIES, FAMILY_OF, type Corruption } from './imagenet-c/index.js';
import { mean } from './report.js';
import { auroc, signalMarkdown, type SignalRow } from './signal.js';
import type { StudyEngine } from './study-engine.js';
import type { StudyInputs } from './study-inputs.js';
import type { StudyChoice } from './study-plan.js';

export interface SignalOptions {
  manifest: Manifest;
  study: StudyChoice;
  inputs: StudyInputs;
  engine: StudyEngine;
  coefficients: readonly Coefficients[];
  batch: number;
}

export interface SignalOutcome {
  report: Record<string, unknown>;
  rows: SignalRow[];
  markdown: string;
  svg: string;
  line: string;
}

/** Throws ImageSetError when the model has no score or the study no clean images. */
export async function signalStudy(o: SignalOptions): Promise<SignalOutcome> {
  const { manifest, study } = o;
  const norm: ScoreNormalisation | undefined = manifest.corruptionScore;
  if (!norm)
    throw new ImageSetError(
      `model ${manifest.name} has no corruption score in its manifest: npm run calibrate -- --score-only --write`,
    );
  if (!study.groups.some((g) => g.conditions.some((c) => c.corruption === 'clean')))
    throw new ImageSetError('the signal needs clean images (ImageNet-C sets: DIR/clean/<class>/<image>)');
  const started = performance.now();
  // t = 0 only: the score and the baseline are both read before any feedback, whatever the profile.
  const { results } = await o.engine.run(study.groups, {
    timesteps: 0,
    batch: o.batch,
    coefficients: o.coefficients,
    label: 'eval:signal',
  });
  const cleanResult = results.find((r) => r.condition.corruption === 'clean')!;
  const corrupted = results.filter((r) => r.condition.corruption !== 'clean');
  const first = (trajectories: readonly Trajectory[] | undefined) => trajectories!.map((t) => t.steps[0]!);
  type Step = ReturnType<typeof first>[number];
  const score = (steps: readonly Step[]) => steps.map((s) => corruptionScore(s.errors, norm));
  // 1 - the top-1 softmax probability: unconfidence() of the step's logits, as recorded.
  const baseline = (steps: readonly Step[]) => steps.map((s) => 1 - s.confidence);
  const cleanSteps = first(cleanResult.trajectories);
  const rows: SignalRow[] = corrupted.map((r) => {
    const steps = first(r.trajectories);
    return {
      corruption: r.condition.corruption,
      severity: r.condition.severity,
      score: auroc(score(cleanSteps), score(steps)),
      baseline: auroc(baseline(cleanSteps), baseline(steps)),
    };
  });
  const title = `${manifest.name}: telling corrupted images from clean ones at t = 0 (${corrupted[0]?.count ?? 0} per condition, ${cleanSteps.length} clean)`;
  const byFamily = FAMILIES.map((f) => {
    const of = rows.filter((r) => FAMILY_OF[r.corruption as Corruption] === f);
    return of.length
      ? `${f} ${mean(of.map((r) => r.score)).toFixed(3)} (baseline ${mean(of.map((r) => r.baseline)).toFixed(3)})`
      : undefined;
  }).filter(Boolean);
  return {
    report: {
      model: manifest.name,
      images: study.describe,
      cleanImages: cleanSteps.length,
      unreadable: o.inputs.unreadable,
      score:
        'corruptionScore: the largest |z| of ln e_i(0) over the PCoders, against clean validation images',
      baseline: 'one minus the softmax confidence at t = 0',
      severities: study.severities,
      rows,
    },
    rows,
    markdown: signalMarkdown(rows, title),
    svg: signalChart(rows, title),
    line: `${manifest.name}: AUROC of the score by family: ${byFamily.join(', ')}; ${Math.round((performance.now() - started) / 1000)} s.`,
  };
}

export async function writeSignalOutcome(out: string, s: SignalOutcome): Promise<void> {
  await mkdir(out, { recursive: true });
  await writeFile(path.join(out, 'signal.json'), JSON.stringify(s.report, null, 2) + '\n');
  await writeFile(path.join(out, 'signal.md'), s.markdown);
  await writeFile(path.join(out, 'signal.svg'), s.svg);
  await writeFile(path.join(out, 'signal.png'), await svgToPng(s.svg));
}
