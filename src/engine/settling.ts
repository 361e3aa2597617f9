/**
 * When a sample's dynamics have settled, for `timesteps=auto`: its answer stops changing and
 * its prediction errors stop moving. Decided per sample from its own steps only, so a sample
 * stops at the same timestep with the same numbers whatever else shares its batch.
 *
 * A step t >= 1 is calm when the top-1 class is the one of t - 1 and every PCoder's error moved
 * by less than `tolerance` relative to its value at t - 1. The sample has settled after
 * `patience` calm steps in a row.
 */
import { argmax } from './results.js';

/** What the rule reads of a step: its logits and its PCoders' errors. */
export interface StepOutputs {
  logits: ArrayLike<number>;
  errors: ArrayLike<number>;
}

export interface SettleRule {
  /** largest relative change of any PCoder's error e_i(t) that still counts as calm */
  tolerance: number;
  /** calm steps in a row that make a sample settled */
  patience: number;
}

/** Why an anytime request stopped: its dynamics settled, or it reached its cap. */
export type StopReason = 'settled' | 'cap';

/** Follows one sample's steps, one after another. */
export class SettleWatch {
  readonly #rule: SettleRule;
  #top = -1;
  #errors: ArrayLike<number> | undefined;
  #calm = 0;

  constructor(rule: SettleRule) {
    this.#rule = rule;
  }

  /** Takes the sample's next step; true once the sample has settled. */
  settled(step: StepOutputs): boolean {
    const top = argmax(step.logits);
    if (this.#errors) {
      const calm = top === this.#top && largestChange(this.#errors, step.errors) < this.#rule.tolerance;
      this.#calm = calm ? this.#calm + 1 : 0;
    }
    this.#top = top;
    this.#errors = step.errors;
    return this.#calm >= this.#rule.patience;
  }
}

/** The largest relative change between two steps' errors (an error of 0 that stays 0: none). */
export function largestChange(before: ArrayLike<number>, after: ArrayLike<number>): number {
  let largest = 0;
  for (let i = 0; i < before.length; i++) {
    const change = Math.abs(after[i]! - before[i]!);
    if (change === 0) continue;
    largest = Math.max(largest, change / Math.max(Math.abs(before[i]!), Number.MIN_VALUE));
  }
  return largest;
}

/**
 * Where a recorded trajectory (steps t = 0..) would stop under `rule` with cap `cap`: what the
 * engine does while stepping, replayed, so that evaluation and calibration can try many rules
 * on one computation of the trajectories.
 */
export function stoppingPoint(
  steps: readonly StepOutputs[],
  rule: SettleRule,
  cap: number,
): { t: number; reason: StopReason } {
  const watch = new SettleWatch(rule);
  for (let t = 0; t <= cap; t++) {
    const step = steps[t];
    if (!step) throw new Error(`the trajectory has ${steps.length} steps, the cap needs ${cap + 1}`);
    if (watch.settled(step)) return { t, reason: 'settled' };
  }
  return { t: cap, reason: 'cap' };
}
