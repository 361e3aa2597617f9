/**
 * npm run quantize (dist/cli/quantize.js, built by `pretest`): an int8 variant of the shipped
 * model, calibrated here on its sample images, is a model of its own that answers the golden
 * inputs as the float32 reference does, to within what 8 bits allow, through its step graph and
 * its loop graph alike.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PredictiveLoop, type StepOutput } from '../../src/engine/predictive-loop.js';
import { argmax } from '../../src/robustness/evaluate.js';
import { readGolden, type Golden } from '../../src/model/golden.js';
import { loadModel, type LoadedModel } from '../../src/model/load-model.js';
import { readManifest } from '../../src/model/manifest.js';
import { silent } from '../helpers.js';
import { DEFAULT_MODEL, ROOT, SAMPLES } from '../paths.js';

const CLI = path.join(ROOT, 'dist', 'cli', 'quantize.js');

let dir: string;
let report: { model: string; sameAnswerAsFloat32: number[]; maxLogitDiff: number };
let variant: LoadedModel;
let golden: Golden;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'int8-'));
  const out = path.join(dir, 'fashion-pc-int8');
  const { stdout } = await promisify(execFile)('node', [
    CLI,
    ...['--model', DEFAULT_MODEL, '--out', out, '--image-dir', SAMPLES, '--timesteps', '3'],
  ]);
  report = JSON.parse(stdout.trim().split('\n').at(-1)!) as typeof report;
  variant = await loadModel(out, { providers: ['cpu'], intraOpThreads: 1 }, silent);
  golden = await readGolden(DEFAULT_MODEL, await readManifest(DEFAULT_MODEL));
});
afterAll(async () => {
  await variant?.release();
  await rm(dir, { recursive: true, force: true });
});

const run = async (loop: PredictiveLoop) => {
  const out: StepOutput[][] = [];
  for (const c of golden.cases) out.push(await loop.run(Float32Array.from(c.input), 1, golden.timesteps));
  return out;
};

describe('an int8 variant', () => {
  it('is a model of its own that records its source and calibration', async () => {
    expect(report.model).toBe('fashion-pc-int8');
    const raw = JSON.parse(await readFile(path.join(dir, 'fashion-pc-int8', 'manifest.json'), 'utf8'));
    expect(raw.name).toBe('fashion-pc-int8');
    expect(raw.golden).toBeUndefined();
    expect(raw.quantization).toMatchObject({
      source: 'fashion-pc',
      calibration: { images: 8, from: SAMPLES, timesteps: 3 },
    });
    // The same eight images through both models, t = 0..3: the same answers.
    expect(report.sameAnswerAsFloat32).toEqual([1, 1, 1, 1]);
    expect(variant.loop).toBeDefined();
  });

  it('answers the golden inputs with the reference classes, its logits within 8 bits of them', async () => {
    const steps = await run(new PredictiveLoop(variant));
    let maxDiff = 0;
    expect(golden.cases.length).toBeGreaterThan(0);
    expect(steps).toHaveLength(golden.cases.length);
    golden.cases.forEach((c, k) =>
      steps[k]!.forEach((step, t) => {
        expect(argmax(step.logits), `${c.name} t=${t}`).toBe(argmax(c.logits[t]!));
        step.logits.forEach((v, j) => (maxDiff = Math.max(maxDiff, Math.abs(v - c.logits[t]![j]!))));
      }),
    );
    // Quantised (not float32 by mistake), but close: logits of this model span about ±20.
    expect(maxDiff).toBeGreaterThan(1e-3);
    expect(maxDiff).toBeLessThan(0.5);
  });

  it('gives the same numbers through its loop graph as through its step graph', async () => {
    const [single, looped] = [
      await run(new PredictiveLoop(variant)),
      await run(new PredictiveLoop(variant, { stepsPerCall: 4 })),
    ];
    expect(looped.length).toBeGreaterThan(0);
    expect(looped.map((s) => s.length)).toEqual(single.map((s) => s.length));
    looped.forEach((steps, k) =>
      steps.forEach((step, t) =>
        step.logits.forEach((v, j) =>
          expect(Math.abs(v - single[k]![t]!.logits[j]!)).toBeLessThanOrEqual(1e-5),
        ),
      ),
    );
  });

  it('refuses to write over its own model', async () => {
    const failed = await promisify(execFile)('node', [
      CLI,
      '--model',
      DEFAULT_MODEL,
      '--out',
      DEFAULT_MODEL,
    ]).catch((err: { code: number; stderr: string }) => err);
    expect(failed).toMatchObject({ code: 2, stderr: expect.stringContaining('a directory of its own') });
  });
});
