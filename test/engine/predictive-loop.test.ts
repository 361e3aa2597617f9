/**
 * The engine reproduces the PyTorch reference implementation of the dynamics (autograd,
 * batch of one) on the shipped default model, and is batch-invariant.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PredictiveLoop, type StepOutput } from '../../src/engine/predictive-loop.js';
import { newSample, type PredictiveStepper } from '../../src/engine/predictive-step.js';
import { openStepper } from '../../src/engine/open-stepper.js';
import type { Graph } from '../../src/model/onnx-backend.js';
import { readGolden, type Golden } from '../../src/model/golden.js';
import type { LoadedModel } from '../../src/model/load-model.js';
import { DEFAULT_MODEL } from '../paths.js';
import { openModel } from '../helpers.js';

let model: LoadedModel;
let loop: PredictiveLoop;
let golden: Golden;
const alone = new Map<string, StepOutput[]>();

beforeAll(async () => {
  model = await openModel();
  loop = new PredictiveLoop(model);
  golden = await readGolden(DEFAULT_MODEL, model.manifest);
  for (const c of golden.cases)
    alone.set(c.name, await loop.run(Float32Array.from(c.input), 1, golden.timesteps));
});
afterAll(() => model.release());

describe('default model against the PyTorch reference', () => {
  it('has golden cases for t = 0..10 and at least 3 PCoders', () => {
    expect(golden.timesteps).toBe(10);
    expect(golden.cases.length).toBeGreaterThanOrEqual(8);
    expect(model.manifest.pcoders.length).toBeGreaterThanOrEqual(3);
  });

  it('matches the reference logits within 1e-4 at every timestep of every case', () => {
    for (const c of golden.cases) {
      const steps = alone.get(c.name)!;
      expect(steps).toHaveLength(golden.timesteps + 1);
      steps.forEach((step, t) => {
        expect(step.t).toBe(t);
        step.logits.forEach((v, k) =>
          expect(Math.abs(v - c.logits[t]![k]!), `${c.name} t=${t} class ${k}`).toBeLessThanOrEqual(1e-4),
        );
      });
    }
  });

  it('matches the reference per-PCoder prediction errors (relative 1e-4)', () => {
    for (const c of golden.cases) {
      alone.get(c.name)!.forEach((step, t) => {
        step.errors.forEach((v, i) => {
          const ref = c.errors[t]![i]!;
          expect(Math.abs(v - ref) / ref, `${c.name} t=${t} pcoder${i + 1}`).toBeLessThanOrEqual(1e-4);
        });
      });
    }
  });

  it('gives the unmodified backbone logits at t = 0', () => {
    for (const c of golden.cases) {
      const t0 = alone.get(c.name)![0]!;
      t0.logits.forEach((v, k) => expect(Math.abs(v - c.feedforward[k]!)).toBeLessThanOrEqual(1e-4));
    }
  });

  it('changes the representation over timesteps (the dynamics are not a no-op)', () => {
    const c = golden.cases[0]!;
    const steps = alone.get(c.name)!;
    const moved = Math.max(...steps[10]!.logits.map((v, k) => Math.abs(v - steps[0]!.logits[k]!)));
    expect(moved).toBeGreaterThan(1e-2);
  });
});

describe('batch invariance', () => {
  it('gives each of 8 different images in one batch its results when run alone (1e-5)', async () => {
    const cases = golden.cases.slice(0, 8);
    const perImage = cases[0]!.input.length;
    const batch = new Float32Array(perImage * cases.length);
    cases.forEach((c, b) => batch.set(c.input, b * perImage));
    const batched = await loop.run(batch, cases.length, golden.timesteps);
    const classes = loop.classes;
    const n = loop.pcoderCount;
    cases.forEach((c, b) => {
      alone.get(c.name)!.forEach((single, t) => {
        for (let k = 0; k < classes; k++) {
          expect(Math.abs(batched[t]!.logits[b * classes + k]! - single.logits[k]!)).toBeLessThanOrEqual(
            1e-5,
          );
        }
        for (let i = 0; i < n; i++) {
          expect(Math.abs(batched[t]!.errors[b * n + i]! - single.errors[i]!)).toBeLessThanOrEqual(1e-5);
        }
      });
    });
  });
});

describe('input checks', () => {
  it('refuses an input of the wrong size', async () => {
    await expect(loop.run(new Float32Array(10), 1, 1)).rejects.toMatchObject({
      code: 'PREDIFY_ERR_INPUT_SHAPE',
    });
  });
});

describe('the last timestep', () => {
  /** A stepper on the model whose feedback graphs record which outputs each call asks for. */
  function recordingStepper(asked: (readonly string[] | undefined)[]): PredictiveStepper {
    const feedback = model.feedback.map((graph): Graph => ({
      ...graph,
      run: (feeds, outputs) => {
        asked.push(outputs);
        return graph.run(feeds, outputs);
      },
    }));
    return openStepper({ ...model, feedback }, { stepGraph: false });
  }

  it('skips the error gradients (which feed no update) when every sample is at its last step', async () => {
    const asked: (readonly string[] | undefined)[] = [];
    const stepper = recordingStepper(asked);
    const c = golden.cases[0]!;
    const samples = [
      newSample(Float32Array.from(c.input), undefined, 2),
      newSample(Float32Array.from(c.input), undefined, 3),
    ];
    const n = stepper.pcoderCount;
    for (let t = 0; t <= 2; t++) await stepper.step(samples);
    // Steps 0..2: the second sample still needs its gradients at t = 2.
    expect(asked.slice(0, 3 * n).every((o) => o?.includes('gradient'))).toBe(true);
    const [last] = await stepper.step([samples[1]!]);
    expect(asked.slice(3 * n).every((o) => o !== undefined && !o.includes('gradient'))).toBe(true);
    // The numbers of that step are still the reference's.
    last!.logits.forEach((v, k) => expect(Math.abs(v - c.logits[3]![k]!)).toBeLessThanOrEqual(1e-4));
    last!.errors.forEach((v, i) =>
      expect(Math.abs(v - c.errors[3]![i]!) / c.errors[3]![i]!).toBeLessThanOrEqual(1e-4),
    );
  });

  it('refuses to step a sample past its last timestep, whose gradients were not computed', async () => {
    const stepper = openStepper(model);
    const sample = newSample(Float32Array.from(golden.cases[0]!.input), undefined, 0);
    await stepper.step([sample]);
    await expect(stepper.step([sample])).rejects.toThrow(/past its last timestep/);
  });
});

describe('graph by graph, without the step graph', () => {
  it('gives the reference numbers too, and those of the step graph within 1e-5', async () => {
    expect(model.step).toBeDefined();
    const byGraph = new PredictiveLoop(model, { stepGraph: false });
    for (const c of golden.cases.slice(0, 3)) {
      const steps = await byGraph.run(Float32Array.from(c.input), 1, golden.timesteps);
      steps.forEach((step, t) => {
        step.logits.forEach((v, k) => {
          expect(Math.abs(v - c.logits[t]![k]!), `${c.name} t=${t}`).toBeLessThanOrEqual(1e-4);
          expect(Math.abs(v - alone.get(c.name)![t]!.logits[k]!)).toBeLessThanOrEqual(1e-5);
        });
        step.errors.forEach((v, i) =>
          expect(Math.abs(v - c.errors[t]![i]!) / c.errors[t]![i]!).toBeLessThanOrEqual(1e-4),
        );
      });
    }
  });
});

describe('the step graph at the last timestep', () => {
  it('asks only for the answer and the representations, so that onnxruntime skips the gradients', async () => {
    const asked: (readonly string[] | undefined)[] = [];
    const step = model.step!;
    const recording: Graph = {
      ...step,
      run: (feeds, outputs) => {
        asked.push(outputs);
        return step.run(feeds, outputs);
      },
    };
    const loop = new PredictiveLoop({ ...model, step: recording });
    const c = golden.cases[1]!;
    const steps = await loop.run(Float32Array.from(c.input), 1, 2);
    expect(asked).toHaveLength(3);
    expect(asked.slice(0, 2).every((o) => o?.includes('next_g1'))).toBe(true);
    expect(asked[2]).toEqual(['logits', 'errors', ...model.manifest.pcoders.map((_, i) => `next_r${i + 1}`)]);
    steps[2]!.logits.forEach((v, k) => expect(Math.abs(v - c.logits[2]![k]!)).toBeLessThanOrEqual(1e-4));
  });
});
