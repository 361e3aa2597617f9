/**
 * What one sample's timestep reads as for a person: softmax, argmax and the top-k classes with
 * each PCoder's error (the summaries /classify and the CLI answer with).
 */
import type { SampleStep } from './predictive-step.js';

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

/** The index of the largest value; the first of equal ones, as the summaries rank them. */
export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let k = 1; k < values.length; k++) if (values[k]! > values[best]!) best = k;
  return best;
}

/** A readable summary of one sample's timestep. */
export function summariseStep(
  step: SampleStep,
  labels: readonly string[],
  pcoders: readonly string[],
  topk: number,
): StepSummary {
  const probs = softmax(step.logits);
  const ranked = Array.from(probs, (probability, index) => ({ label: labels[index]!, index, probability }))
    .sort((x, y) => y.probability - x.probability || x.index - y.index)
    .slice(0, Math.min(topk, labels.length));
  const best = ranked[0]!;
  const errors: Record<string, number> = {};
  pcoders.forEach((name, i) => (errors[name] = step.errors[i]!));
  return {
    t: step.t,
    label: best.label,
    index: best.index,
    confidence: best.probability,
    topk: ranked,
    errors,
  };
}
