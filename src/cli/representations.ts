#!/usr/bin/env node
/**
 * Representation analysis: correlation distance between the PCoder representations of
 * corrupted and clean versions of the same images, per timestep, for each corruption condition
 * asked for. See docs/robustness.md.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { DEFAULT_MODEL_DIR } from '../config/config.js';
import { conditionName, type Condition } from '../robustness/evaluate.js';
import { representationDistances, type RepresentationDistances } from '../robustness/representations.js';
import { openModelWithProfile, parseCli } from './args.js';
import { openStudy, STUDY_OPTIONS, STUDY_USAGE, type StudyValues } from './study-args.js';

const usage = `usage: npm run eval:representations -- [--images DIR] [--corruptions NAMES] [--severities LIST] [--model DIR] [--profile NAME]

${STUDY_USAGE}
                 (defaults: gaussian_noise at severity 3, T = 10; on Fashion-MNIST: 20 test images per class)
  --model DIR    model directory (default: the shipped ${path.basename(DEFAULT_MODEL_DIR)})
  --profile NAME the model's hyperparameter profile (default: its default profile)`;

const { values } = parseCli(
  {
    options: {
      ...STUDY_OPTIONS,
      profile: { type: 'string' },
      model: { type: 'string', default: DEFAULT_MODEL_DIR },
      help: { type: 'boolean', short: 'h' },
    },
  },
  usage,
);

const { model, stepper, profile, coefficients } = await openModelWithProfile(values.model, values.profile);
try {
  const { manifest } = model;
  const { study, inputs } = await openStudy(
    values as StudyValues,
    manifest,
    {
      corruptions: 'gaussian_noise',
      severities: '3',
      timesteps: 10,
      fashion: { split: 't10k', perClass: 20, cleanPerClass: 20 },
    },
    usage,
  );
  if (study.set.layout === 'imagenet-c') {
    console.error(
      'representations compare each image with its own clean version: give an ImageFolder of clean images',
    );
    process.exit(2);
  }
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
    const result = await representationDistances(stepper, inputs, images, {
      noise: condition,
      timesteps,
      batch: 50,
      coefficients,
    });
    results.push({ condition: conditionName(condition), ...result });
    sections.push(
      `## Representations: ${manifest.name}, profile ${profile}, ${conditionName(condition)}, ${images.length - inputs.unreadable.length} images`,
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
  const md = sections.join('\n');
  const out = values.out ?? path.join('build', 'robustness', `${manifest.name}-${profile}-representations`);
  await mkdir(out, { recursive: true });
  await writeFile(
    path.join(out, 'results.json'),
    JSON.stringify(
      {
        model: manifest.name,
        profile,
        images: study.set.root,
        count: images.length,
        unreadable: inputs.unreadable,
        results,
      },
      null,
      2,
    ) + '\n',
  );
  await writeFile(path.join(out, 'results.md'), md);
  console.log(md);
} finally {
  await model.release();
}
