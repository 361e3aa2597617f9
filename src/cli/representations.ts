#!/usr/bin/env node
/**
 * Representation analysis: correlation distance between the PCoder representations of noisy
 * and clean versions of the same test images, per timestep. See docs/robustness.md.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { DEFAULT_MODEL_DIR } from '../config.js';
import { CORRUPTIONS, type Corruption } from '../robustness/corruptions.js';
import { stratifiedIndices } from '../robustness/evaluate.js';
import { loadFashion } from '../robustness/fashion-mnist.js';
import { representationDistances } from '../robustness/representations.js';
import { openModelWithProfile, parseCli, wholeNumber } from './args.js';

const usage = `usage: npm run eval:representations -- [--corruption NAME] [--severity S] [--images N] [--timesteps T] [--profile NAME] [--model DIR] [--out DIR]

  --corruption  one of ${CORRUPTIONS.join(', ')} (default gaussian-noise)
  --severity    1..5 (default 3)
  --images      test images (default 200)`;

const { values } = parseCli(
  {
    options: {
      corruption: { type: 'string', default: 'gaussian-noise' },
      severity: { type: 'string' },
      images: { type: 'string' },
      timesteps: { type: 'string' },
      profile: { type: 'string' },
      model: { type: 'string', default: DEFAULT_MODEL_DIR },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  },
  usage,
);
if (!(CORRUPTIONS as readonly string[]).includes(values.corruption)) {
  console.error(`--corruption must be one of ${CORRUPTIONS.join(', ')}`);
  process.exit(2);
}
const corruption = values.corruption as Corruption;
const severity = wholeNumber('severity', values.severity, 3);
const images = wholeNumber('images', values.images, 200);
const timesteps = wholeNumber('timesteps', values.timesteps, 10);
if (severity < 1 || severity > 5) {
  console.error('--severity must be 1..5');
  process.exit(2);
}

const { model, stepper, profile, coefficients } = await openModelWithProfile(values.model, values.profile);
try {
  const { manifest } = model;
  const data = await loadFashion('t10k');
  const indices = stratifiedIndices(data, images);
  const result = await representationDistances(stepper, data, {
    indices,
    noise: { corruption, severity },
    timesteps,
    batch: 50,
    coefficients,
  });
  const ts = Array.from({ length: timesteps + 1 }, (_, t) => t);
  const table = (rows: number[][]) =>
    [
      `| PCoder | ${ts.map((t) => `t=${t}`).join(' | ')} |`,
      `|---|${ts.map(() => '---:').join('|')}|`,
      ...rows.map(
        (row, i) => `| ${manifest.pcoders[i]!.name} | ${row.map((v) => v.toFixed(4)).join(' | ')} |`,
      ),
    ].join('\n');
  const md = [
    `## Representations: ${manifest.name}, profile ${profile}, ${corruption} severity ${severity}, ${indices.length} test images`,
    '',
    'Correlation distance (1 - Pearson r) between the noisy and the clean version of each image, averaged over images.',
    '',
    '**Noisy at t vs clean at t:**',
    '',
    table(result.toCleanSameStep),
    '',
    '**Noisy at t vs clean at t = 0 (its feedforward pass):**',
    '',
    table(result.toCleanFeedforward),
    '',
  ].join('\n');
  const out = values.out ?? path.join('build', 'robustness', `${manifest.name}-${profile}-representations`);
  await mkdir(out, { recursive: true });
  await writeFile(
    path.join(out, 'results.json'),
    JSON.stringify(
      { model: manifest.name, profile, corruption, severity, images: indices.length, ...result },
      null,
      2,
    ) + '\n',
  );
  await writeFile(path.join(out, 'results.md'), md);
  console.log(md);
} finally {
  await model.release();
}
