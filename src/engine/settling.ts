/**
 * When a sample's dynamics have settled, for `timesteps=auto`: its answer stops changing and
 * its prediction errors stop moving. Decided per sample from its own steps only, so a sample
 * stops at the same timestep with the same numbers whatever else shares its batch.
 *
 * A step t >= 1 is calm when the top-1 class is the one of t - 1 and either every PCoder's
 * error moved by less than `tolerance` relative to its value at t - 1, or (with `confidence`)
 * the top-1 class has at least that softmax probability. The sample has settled after
 * `patience` calm steps in a row.
 *
 * The confidence gate is what lets slow dynamics stop early: their errors keep moving for many
 * timesteps in every image alike, while an image the network is already sure of does not
 * change its answer (measured in docs/anytime.md).
 *
 * A rule may also have a start gate, read at t = 0: the sample is iterated only if its
 * prediction errors rise above clean ones (the largest z of ln e_i(0) over the PCoders is
 * above `gate.above`); otherwise it stops at once with its feedforward answer. That is how a
 * calibrated default helps where the dynamics help (noise) and leaves alone what they cannot
 * (blur, contrast: docs/robustness.md).
 */
import { largestErrorZ, type ScoreNormalisation } from './corruption-score.js';
import { argmax, softmax } from './results.js';

/** What the rule reads of a step: its logits and its PCoders' errors. */
export interface StepOutputs {
  logits: ArrayLike<number>;
  errors: ArrayLike<number>;
}

/**
 * A step as the rule reads it, reduced to what it needs: the top-1 class, its softmax
 * probability and the errors. What studies record of each step (a few numbers, not a logit per
 * class), computed by the same arithmetic as the engine's, so a replay decides as it did.
 */
export interface StepReading {
  top: number;
  confidence: number;
  errors: ArrayLike<number>;
}

export function readStep(step: StepOutputs): StepReading {
  const top = argmax(step.logits);
  return { top, confidence: softmax(step.logits)[top]!, errors: step.errors };
}

export interface SettleRule {
  /** largest relative change of any PCoder's error e_i(t) that still counts as calm */
  tolerance: number;
  /** calm steps in a row that make a sample settled */
  patience: number;
  /** a step whose top-1 probability is at least this is calm whatever its errors did */
  confidence?: number;
  /** iterate only a sample whose largest z of ln e_i(0) is above `above` */
  gate?: SettleGate;
}

export interface SettleGate extends ScoreNormalisation {
  above: number;
}

/**
 * What is wrong with `rule` for a request capped at `cap` timesteps, or undefined: the one
 * check, which the request's resolution turns into a 400 and the engine applies again to what
 * reaches it.
 */
export function settleRuleProblem(rule: SettleRule, cap: number): string | undefined {
  const { tolerance, patience, confidence } = rule;
  if (!(tolerance > 0 && tolerance <= 1)) return `tolerance must be above 0 and at most 1, got ${tolerance}`;
  if (confidence !== undefined && !(confidence > 0 && confidence <= 1))
    return `confidence must be above 0 and at most 1, got ${confidence}`;
  if (!Number.isInteger(patience) || patience < 1 || patience > cap)
    return `patience must be a whole number from 1 to the cap (${cap}), got ${patience}`;
  if (rule.gate && !Number.isFinite(rule.gate.above))
    return `the gate must be a number, got ${rule.gate.above}`;
  return undefined;
}

/**
 * Why an anytime request stopped: its dynamics settled, it reached its cap, or its errors at
 * t = 0 stayed under the gate so it was not iterated.
 */
export type StopReason = 'settled' | 'cap' | 'gated';

/** Follows one sample's steps, one after another. */
export class SettleWatch {
  readonly #rule: SettleRule;
  #top = -1;
  #errors: ArrayLike<number> | undefined;
  #calm = 0;
  #gated = false;

  constructor(rule: SettleRule) {
    this.#rule = rule;
  }

  /** Whether the sample stopped at t = 0 under the gate. */
  get gated(): boolean {
    return this.#gated;
  }

  /** Takes the sample's next step; true once the sample has settled (or stopped at the gate). */
  settled(step: StepOutputs | StepReading): boolean {
    const { gate } = this.#rule;
    if (!this.#errors && gate && largestErrorZ(step.errors, gate) <= gate.above) {
      this.#gated = true;
      return true;
    }
    const top = 'top' in step ? step.top : argmax(step.logits);
    if (this.#errors) {
      const { tolerance, confidence } = this.#rule;
      // The softmax only when the errors alone do not make the step calm.
      const confidenceOf = () => ('top' in step ? step.confidence : softmax(step.logits)[top]!);
      const calm =
        top === this.#top &&
        (largestChange(this.#errors, step.errors) < tolerance ||
          (confidence !== undefined && confidenceOf() >= confidence));
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
  steps: readonly (StepOutputs | StepReading)[],
  rule: SettleRule,
  cap: number,
): { t: number; reason: StopReason } {
  const watch = new SettleWatch(rule);
  for (let t = 0; t <= cap; t++) {
    const step = steps[t];
    if (!step) throw new Error(`the trajectory has ${steps.length} steps, the cap needs ${cap + 1}`);
    if (watch.settled(step)) return { t, reason: watch.gated ? 'gated' : 'settled' };
  }
  return { t: cap, reason: 'cap' };
}
