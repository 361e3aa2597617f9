/**
 * The Predify paper's first experiment (eval --gaussian-sweep): accuracy over timesteps
 * t = 0..T under additive Gaussian noise of each standard deviation sigma (pixel units, images
 * in [0, 1], clipped and kept at 8 bits), and clean, on the same images; each change against
 * t = 0 with its 95% paired bootstrap interval over images. Any model, any images.
 */
import type { Coefficients } from '../model/hyperparameters.js';
import type { Manifest } from '../model/manifest.js';
import { changesAgainstZero, describeWithInterval, type Change } from './changes.js';
import { COLOURS, lineChart, type Series } from './chart.js';
import { CLEAN, type ConditionResult } from './evaluate.js';
import { ImageSetError } from './image-set.js';
import type { StudyEngine } from './study-engine.js';
import { ADDITIVE_GAUSSIAN, type Condition, type StudyInputs } from './study-inputs.js';
import type { StudyChoice } from './study-plan.js';

/** Parses "0.1,0.2,0.3": each sigma in (0, 1]. Throws ImageSetError naming a bad one. */
export function parseSigmas(value: string): number[] {
  const sigmas = value.split(',').map((s) => s.trim());
  const out: number[] = [];
  for (const s of sigmas) {
    const x = Number(s);
    if (s === '' || !(x > 0 && x <= 1))
      throw new ImageSetError(
        `--gaussian-sweep takes standard deviations in (0, 1] (pixel units, images in [0, 1]), comma-separated: '${s}' is not one`,
      );
    out.push(x);
  }
  return [...new Set(out)].sort((a, b) => a - b);
}

export interface SweepOptions {
  manifest: Manifest;
  profile: string;
  coefficients: readonly Coefficients[];
  /** the study's images: its first group's (Fashion-MNIST: --per-class of each class) */
  study: StudyChoice;
  inputs: StudyInputs;
  engine: StudyEngine;
  sigmas: readonly number[];
  batch: number;
}

export interface SweepRow {
  sigma: number;
  count: number;
  accuracy: number[];
  /** per t, the change against t = 0 and its interval */
  vsT0: Change[];
}

export async function gaussianSweep(o: SweepOptions): Promise<{
  report: Record<string, unknown>;
  markdown: string;
  svg: string;
  line: string;
}> {
  const { study, manifest } = o;
  if (study.set.layout === 'imagenet-c')
    throw new ImageSetError(
      '--gaussian-sweep adds noise to clean images: give an ImageFolder, not ImageNet-C',
    );
  const conditions: Condition[] = [
    CLEAN,
    ...o.sigmas.map((sigma): Condition => ({ corruption: ADDITIVE_GAUSSIAN, severity: sigma })),
  ];
  const images = study.groups[0]!.images;
  const { results } = await o.engine.run([{ images, conditions }], {
    timesteps: study.timesteps,
    batch: o.batch,
    coefficients: o.coefficients,
    label: 'eval --gaussian-sweep',
  });
  const rowOf = (r: ConditionResult): SweepRow => {
    // each condition on its own: the interval is that of its own change against its t = 0
    const changes = changesAgainstZero([{ ...r, condition: { corruption: 'gaussian_noise', severity: 1 } }]);
    return { sigma: r.condition.severity, count: r.count, accuracy: r.accuracy, vsT0: changes.corruptedMean };
  };
  const clean = results.find((r) => r.condition.corruption === 'clean')!;
  const rows = results.filter((r) => r.condition.corruption === ADDITIVE_GAUSSIAN).map(rowOf);
  const cleanChanges = changesAgainstZero([clean]).clean!;
  const T = study.timesteps;
  const title = `${manifest.name}, profile ${o.profile}: accuracy over timesteps under additive Gaussian noise (${clean.count} images)`;
  const series: Series[] = [
    { name: 'clean', values: clean.accuracy, colour: '#000000', bold: true },
    ...rows.map((r, k) => ({
      name: `sigma ${r.sigma}`,
      values: r.accuracy,
      colour: COLOURS[k % COLOURS.length]!,
    })),
  ];
  const svg = lineChart(series, T, title, { timesteps: T, label: 'last' });
  const ts = Array.from({ length: T + 1 }, (_, t) => t);
  const pct = (x: number) => (x * 100).toFixed(1);
  const markdown = [
    `## ${title}`,
    '',
    'Accuracy (%) per timestep; noise added to each image in [0, 1] pixel units, clipped, kept at 8 bits, one draw per image and sigma.',
    '',
    `| | ${ts.map((t) => `t=${t}`).join(' | ')} |`,
    `|---|${ts.map(() => '---:').join('|')}|`,
    `| clean | ${clean.accuracy.map(pct).join(' | ')} |`,
    ...rows.map((r) => `| sigma ${r.sigma} | ${r.accuracy.map(pct).join(' | ')} |`),
    '',
    `### Change at t = ${T} against t = 0, with its 95% paired bootstrap interval over images`,
    '',
    `- clean: ${describeWithInterval(cleanChanges[T]!)}`,
    ...rows.map((r) => `- sigma ${r.sigma}: ${describeWithInterval(r.vsT0[T]!)}`),
    '',
  ].join('\n');
  const line =
    `${manifest.name} (${o.profile}), additive Gaussian noise, t = 0 -> ${T}: clean ${pct(clean.accuracy[0]!)}% -> ${pct(clean.accuracy[T]!)}%; ` +
    rows
      .map(
        (r) =>
          `sigma ${r.sigma} ${pct(r.accuracy[0]!)}% -> ${pct(r.accuracy[T]!)}% (${describeWithInterval(r.vsT0[T]!)})`,
      )
      .join('; ');
  return {
    report: {
      model: manifest.name,
      profile: o.profile,
      images: study.describe,
      count: clean.count,
      seed: study.seed,
      timesteps: T,
      noise:
        'additive Gaussian, standard deviation sigma in [0, 1] pixel units, clipped to [0, 1], kept at 8 bits',
      clean: { accuracy: clean.accuracy, vsT0: cleanChanges },
      sigmas: rows,
      unreadable: o.inputs.unreadable,
    },
    markdown,
    svg,
    line,
  };
}
