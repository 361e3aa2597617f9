/**
 * A served model holds its weights about once. The loop graph carries the step graph inside an
 * ONNX Loop; onnxruntime repacks the classifier's matrices when it creates the session and,
 * were they the Loop body's own weights, would keep the file's bytes beside the repacked copy.
 * PVGG16's classifier is 456 MiB, so the layout shows in resident memory: 1.5× the weight file
 * with the matrices in the body, 1.15× with them in the outer graph (BENCHMARKS §10).
 *
 * This file's process (vitest runs each file in its own fork) loads nothing else, so what its
 * resident set grows by is what loading the model costs.
 */
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { PredictiveLoop } from '../../src/engine/predictive-loop.js';
import { loadModel } from '../../src/model/load-model.js';
import { silent } from '../helpers.js';
import { TEST_MODELS } from '../paths.js';

function residentMiB(): number {
  const status = readFileSync('/proc/self/status', 'utf8');
  // Anonymous pages and pages of mapped files alike: a weight file's bytes left mapped count.
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
}

describe('a served model with a loop graph', () => {
  it('holds PVGG16 in at most 1.3 times its weight file, after running it', async () => {
    const dir = path.join(TEST_MODELS, 'pvgg16');
    const weights = statSync(path.join(dir, 'step.onnx.data')).size / 2 ** 20;
    const before = residentMiB();
    const model = await loadModel(dir, { providers: ['cpu'], intraOpThreads: 1 }, silent);
    expect(model.loop).toBeDefined();
    const loop = new PredictiveLoop(model, { stepsPerCall: 4 });
    const batch = 2;
    await loop.run(new Float32Array(batch * loop.stepper.inputSize).fill(0.1), batch, 3);
    const grown = residentMiB() - before;
    await model.release();
    expect(
      grown / weights,
      `grew by ${grown.toFixed(0)} MiB for ${weights.toFixed(0)} MiB of weights`,
    ).toBeLessThan(1.3);
    // And not below the weights either: the model really was loaded and run.
    expect(grown / weights).toBeGreaterThan(0.9);
  });
});
