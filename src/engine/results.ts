import type { StepOutput } from './predictive-loop.js';

export interface ClassScore {
  label: string;
  index: number;
  probability: number;
}

export interface StepSummary {
  t: number;
  label: string;
  index: number;
  confidence: number;
  topk: ClassScore[];
  /** e_i(t) per PCoder, by name */
  errors: Record<string, number>;
}

export function softmax(logits: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let k = 0; k < logits.length; k++) max = Math.max(max, logits[k]!);
  const out = new Float64Array(logits.length);
  let sum = 0;
  for (let k = 0; k < logits.length; k++) sum += out[k] = Math.exp(logits[k]! - max);
  for (let k = 0; k < out.length; k++) out[k]! /= sum;
  return out;
}

/** Per-timestep summaries of sample `b` of a batch. */
export function summarise(
  steps: readonly StepOutput[],
  b: number,
  labels: readonly string[],
  pcoders: readonly string[],
  topk: number,
): StepSummary[] {
  const classes = labels.length;
  const k = Math.min(topk, classes);
  return steps.map((step) => {
    const probs = softmax(step.logits.subarray(b * classes, (b + 1) * classes));
    const ranked = Array.from(probs, (probability, index) => ({ label: labels[index]!, index, probability }))
      .sort((x, y) => y.probability - x.probability || x.index - y.index)
      .slice(0, k);
    const best = ranked[0]!;
    const errors: Record<string, number> = {};
    pcoders.forEach((name, i) => (errors[name] = step.errors[b * pcoders.length + i]!));
    return {
      t: step.t,
      label: best.label,
      index: best.index,
      confidence: best.probability,
      topk: ranked,
      errors,
    };
  });
}
