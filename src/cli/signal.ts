#!/usr/bin/env node
/**
 * How well the corruption score tells corrupted test images from clean ones: AUROC per
 * corruption and severity, against the baseline of one minus the softmax confidence at t = 0.
 * Writes signal.json, signal.md and signal.svg/.png to --out. See docs/anytime.md.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { DEFAULT_MODEL_DIR } from '../config.js';
import { corruptionScore } from '../engine/corruption-score.js';
import { signalChart, svgToPng } from '../robustness/chart.js';
import { CORRUPTIONS, NOISE_CORRUPTIONS, SEVERITIES } from '../robustness/corruptions.js';
import { evaluate, stratifiedIndices, type Condition } from '../robustness/evaluate.js';
import { loadFashion } from '../robustness/fashion-mnist.js';
import { mean } from '../robustness/report.js';
import { auroc, signalMarkdown, unconfidence, type SignalRow } from '../robustness/signal.js';
import { openModelWithProfile, parseCli, wholeNumber } from './args.js';

const usage = `usage: npm run eval:signal -- [--images N] [--clean-images N] [--model DIR] [--out DIR]

  --images        test images per corruption condition, the same number from every class (default 600)
  --clean-images  clean test images (default 5000)
  --model         model directory (default: the shipped ${path.basename(DEFAULT_MODEL_DIR)})
  --out           output directory (default: build/signal/<model>)`;

const { values } = parseCli(
  {
    options: {
      images: { type: 'string' },
      'clean-images': { type: 'string' },
      model: { type: 'string', default: DEFAULT_MODEL_DIR },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  },
  usage,
);
const images = wholeNumber('images', values.images, 600);
const cleanImages = wholeNumber('clean-images', values['clean-images'], 5000);

// t = 0 only: the score and the baseline are both read before any feedback, whatever the profile.
const { model, stepper, coefficients } = await openModelWithProfile(values.model, undefined);
try {
  const { manifest } = model;
  const norm = manifest.corruptionScore;
  if (!norm) {
    console.error(
      `model ${manifest.name} has no corruption score in its manifest: npm run calibrate -- --score-only --write`,
    );
    process.exitCode = 2;
  } else {
    const data = await loadFashion('t10k');
    const clean: Condition = { corruption: 'clean', severity: 0 };
    const conditions: Condition[] = CORRUPTIONS.flatMap((corruption) =>
      [1, 2, 3, 4, 5].map((severity) => ({ corruption, severity })),
    );
    const started = performance.now();
    const options = { timesteps: 0, batch: 100, coefficients, record: true };
    const [cleanResult] = await evaluate(stepper, data, {
      ...options,
      indices: stratifiedIndices(data, cleanImages),
      conditions: [clean],
    });
    const corrupted = await evaluate(stepper, data, {
      ...options,
      indices: stratifiedIndices(data, images),
      conditions,
    });
    const first = (r: typeof cleanResult) => r!.trajectories!.map((t) => t.steps[0]!);
    const score = (steps: ReturnType<typeof first>) => steps.map((s) => corruptionScore(s.errors, norm));
    const baseline = (steps: ReturnType<typeof first>) => steps.map((s) => unconfidence(s.logits));
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
    const title = `${manifest.name}: telling corrupted test images from clean ones at t = 0 (${images} per condition, ${cleanSteps.length} clean)`;
    const out = values.out ?? path.join('build', 'signal', manifest.name);
    await mkdir(out, { recursive: true });
    const report = {
      model: manifest.name,
      split: 't10k',
      images,
      cleanImages: cleanSteps.length,
      score:
        'corruptionScore: the largest |z| of ln e_i(0) over the PCoders, against clean validation images',
      baseline: 'one minus the softmax confidence at t = 0',
      severities: SEVERITIES,
      rows,
    };
    const svg = signalChart(rows, title);
    await writeFile(path.join(out, 'signal.json'), JSON.stringify(report, null, 2) + '\n');
    await writeFile(path.join(out, 'signal.md'), signalMarkdown(rows, title));
    await writeFile(path.join(out, 'signal.svg'), svg);
    await writeFile(path.join(out, 'signal.png'), await svgToPng(svg));
    const noise = rows.filter((r) => (NOISE_CORRUPTIONS as readonly string[]).includes(r.corruption));
    console.log(
      `${manifest.name}: AUROC over the noise corruptions and severities: score ${mean(noise.map((r) => r.score)).toFixed(3)}, ` +
        `baseline ${mean(noise.map((r) => r.baseline)).toFixed(3)}; ` +
        `the score wins on ${
          NOISE_CORRUPTIONS.filter((c) => {
            const of = noise.filter((r) => r.corruption === c);
            return mean(of.map((r) => r.score)) > mean(of.map((r) => r.baseline));
          }).length
        } of ${NOISE_CORRUPTIONS.length} noises. ` +
        `${Math.round((performance.now() - started) / 1000)} s. Written to ${out}/`,
    );
  }
} finally {
  await model.release();
}
