/**
 * The engine against a model's golden cases (the PyTorch reference): each case alone and all as
 * one batch, the worst differences in logits and errors (npm run check-golden, the tests).
 */
import type { Golden } from '../model/golden.js';
import type { PredictiveLoop, StepOutput } from './predictive-loop.js';

export interface GoldenReport {
  cases: number;
  timesteps: number;
  /** max |logit - reference| over cases, timesteps and classes */
  maxLogitDiff: number;
  /** the same, each timestep's difference divided by max(1, largest |reference logit|) */
  maxLogitScaledDiff: number;
  /** max |e - reference| / max(|reference|, 1e-12) over cases, timesteps and PCoders */
  maxErrorRelDiff: number;
  /** max |batched - alone| over logits and errors: batch invariance */
  maxBatchDiff: number;
}

/** Runs every golden case alone and all cases as one batch; reports the worst deviations. */
export async function compareWithGolden(loop: PredictiveLoop, golden: Golden): Promise<GoldenReport> {
  const classes = loop.classes;
  const n = loop.pcoderCount;
  let maxLogitDiff = 0;
  let maxLogitScaledDiff = 0;
  let maxErrorRelDiff = 0;
  const alone: StepOutput[][] = [];
  for (const c of golden.cases) {
    const steps = await loop.run(Float32Array.from(c.input), 1, golden.timesteps);
    alone.push(steps);
    steps.forEach((step, t) => {
      const ref = c.logits[t]!;
      const scale = Math.max(1, ...ref.map(Math.abs));
      step.logits.forEach((v, k) => {
        const diff = Math.abs(v - ref[k]!);
        maxLogitDiff = Math.max(maxLogitDiff, diff);
        maxLogitScaledDiff = Math.max(maxLogitScaledDiff, diff / scale);
      });
      step.errors.forEach((v, i) => {
        const ref = c.errors[t]![i]!;
        maxErrorRelDiff = Math.max(maxErrorRelDiff, Math.abs(v - ref) / Math.max(Math.abs(ref), 1e-12));
      });
    });
  }

  const batch = new Float32Array(golden.cases.reduce((s, c) => s + c.input.length, 0));
  let offset = 0;
  for (const c of golden.cases) {
    batch.set(c.input, offset);
    offset += c.input.length;
  }
  const batched = await loop.run(batch, golden.cases.length, golden.timesteps);
  let maxBatchDiff = 0;
  batched.forEach((step, t) => {
    alone.forEach((steps, b) => {
      for (let k = 0; k < classes; k++) {
        maxBatchDiff = Math.max(maxBatchDiff, Math.abs(step.logits[b * classes + k]! - steps[t]!.logits[k]!));
      }
      for (let i = 0; i < n; i++) {
        maxBatchDiff = Math.max(maxBatchDiff, Math.abs(step.errors[b * n + i]! - steps[t]!.errors[i]!));
      }
    });
  });
  return {
    cases: golden.cases.length,
    timesteps: golden.timesteps,
    maxLogitDiff,
    maxLogitScaledDiff,
    maxErrorRelDiff,
    maxBatchDiff,
  };
}
