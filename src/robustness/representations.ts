/**
 * Do the dynamics pull a noisy image's representations towards the clean image's? For each
 * PCoder and timestep: the correlation distance (1 - Pearson r) between the representation of
 * the noisy version and that of the clean version at the same timestep, and that of the clean
 * version's feedforward pass (t = 0), averaged over images.
 */
import type { PredictiveStepper } from '../engine/predictive-step.js';
import type { Coefficients } from '../model/hyperparameters.js';
import { newSample } from '../engine/predictive-step.js';
import type { StudyImage } from './image-set.js';
import type { Manifest } from '../model/manifest.js';
import { ImageSetError } from './image-set.js';
import { CLEAN, conditionName, type Condition, type OpenImage, type StudyInputs } from './study-inputs.js';
import type { StudyChoice } from './study-plan.js';

export function correlationDistance(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = a.length;
  let ma = 0;
  let mb = 0;
  for (let k = 0; k < n; k++) {
    ma += a[k]!;
    mb += b[k]!;
  }
  ma /= n;
  mb /= n;
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let k = 0; k < n; k++) {
    const da = a[k]! - ma;
    const db = b[k]! - mb;
    sab += da * db;
    saa += da * da;
    sbb += db * db;
  }
  if (saa === 0 || sbb === 0) return saa === sbb ? 0 : 1;
  return 1 - sab / Math.sqrt(saa * sbb);
}

export interface RepresentationDistances {
  /** [pcoder][t]: mean distance between noisy(t) and clean(t) */
  toCleanSameStep: number[][];
  /** [pcoder][t]: mean distance between noisy(t) and clean(0) */
  toCleanFeedforward: number[][];
}

export async function representationDistances(
  stepper: PredictiveStepper,
  inputs: StudyInputs,
  images: readonly StudyImage[],
  options: {
    noise: Condition;
    timesteps: number;
    batch: number;
    coefficients?: readonly Coefficients[];
  },
): Promise<RepresentationDistances> {
  const { noise, timesteps, batch, coefficients } = options;
  const n = stepper.pcoderCount;
  const zeros = () => Array.from({ length: n }, () => new Array<number>(timesteps + 1).fill(0));
  const same = zeros();
  const feedforward = zeros();
  let count = 0;
  for (let start = 0; start < images.length; start += batch) {
    const opened = (await Promise.all(images.slice(start, start + batch).map((i) => inputs.open(i)))).filter(
      (o): o is OpenImage => o !== undefined,
    );
    count += opened.length;
    const clean = (await inputs.inputs(opened, CLEAN)).map((x) => newSample(x, coefficients, timesteps));
    const noisy = (await inputs.inputs(opened, noise)).map((x) => newSample(x, coefficients, timesteps));
    let cleanAtZero: Float32Array[][] = [];
    for (let t = 0; t <= timesteps; t++) {
      await stepper.step([...clean, ...noisy]);
      // r_i lives in buffers the next step reuses: read (or copy) it now.
      if (t === 0) cleanAtZero = clean.map((s) => s.r.map((r) => r.slice()));
      for (let i = 0; i < n; i++)
        opened.forEach((_, b) => {
          same[i]![t]! += correlationDistance(noisy[b]!.r[i]!, clean[b]!.r[i]!);
          feedforward[i]![t]! += correlationDistance(noisy[b]!.r[i]!, cleanAtZero[b]![i]!);
        });
    }
  }
  const mean = (m: number[][]) => m.map((row) => row.map((v) => v / count));
  return { toCleanSameStep: mean(same), toCleanFeedforward: mean(feedforward) };
}

export interface RepresentationsOptions {
  stepper: PredictiveStepper;
  manifest: Manifest;
  profile: string;
  coefficients: readonly Coefficients[];
  study: StudyChoice;
  inputs: StudyInputs;
  batch?: number;
}

/**
 * npm run eval:representations as a function: the distances for every corruption condition
 * of the study, on its first group's images (each compared with its own clean version), with
 * the report and its tables. Throws ImageSetError for a set in ImageNet-C's layout.
 */
export async function representationsStudy(o: RepresentationsOptions): Promise<{
  report: Record<string, unknown>;
  markdown: string;
}> {
  const { manifest, study, inputs } = o;
  if (study.set.layout === 'imagenet-c')
    throw new ImageSetError(
      'representations compare each image with its own clean version: give an ImageFolder of clean images',
    );
  const { timesteps } = study;
  const images = study.groups[0]!.images;
  const ts = Array.from({ length: timesteps + 1 }, (_, t) => t);
  const table = (rows: number[][]) =>
    [
      `| PCoder | ${ts.map((t) => `t=${t}`).join(' | ')} |`,
      `|---|${ts.map(() => '---:').join('|')}|`,
      ...rows.map(
        (row, i) => `| ${manifest.pcoders[i]!.name} | ${row.map((v) => v.toFixed(4)).join(' | ')} |`,
      ),
    ].join('\n');
  const results: ({ condition: string } & RepresentationDistances)[] = [];
  const sections: string[] = [];
  for (const condition of study.conditions.filter((c): c is Condition => c.corruption !== 'clean')) {
    const result = await representationDistances(o.stepper, inputs, images, {
      noise: condition,
      timesteps,
      batch: o.batch ?? 50,
      coefficients: o.coefficients,
    });
    results.push({ condition: conditionName(condition), ...result });
    sections.push(
      `## Representations: ${manifest.name}, profile ${o.profile}, ${conditionName(condition)}, ${images.length - inputs.unreadable.length} images`,
      '',
      'Correlation distance (1 - Pearson r) between the corrupted and the clean version of each image, averaged over images.',
      '',
      '**Corrupted at t vs clean at t:**',
      '',
      table(result.toCleanSameStep),
      '',
      '**Corrupted at t vs clean at t = 0 (its feedforward pass):**',
      '',
      table(result.toCleanFeedforward),
      '',
    );
  }
  return {
    report: {
      model: manifest.name,
      profile: o.profile,
      images: study.set.root,
      count: images.length,
      unreadable: inputs.unreadable,
      results,
    },
    markdown: sections.join('\n'),
  };
}
