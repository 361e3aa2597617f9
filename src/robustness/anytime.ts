/**
 * Anytime answers measured: the engine's settling rule (src/engine/settling.ts) replayed on
 * recorded trajectories, so that one computation of every image's dynamics up to the cap
 * answers for any rule. A replay stops where the engine would, with the same answer.
 */
import { argmax } from '../engine/results.js';
import { stoppingPoint, type SettleRule } from '../engine/settling.js';
import type { Trajectory } from './evaluate.js';

export interface Replay {
  count: number;
  correct: number;
  accuracy: number;
  /** timesteps computed after t = 0, averaged over the images */
  meanTimesteps: number;
  /** the share of images that settled before the cap */
  settled: number;
}

export function replay(trajectories: readonly Trajectory[], rule: SettleRule, cap: number): Replay {
  let correct = 0;
  let steps = 0;
  let settled = 0;
  for (const { label, steps: trajectory } of trajectories) {
    const stop = stoppingPoint(trajectory, rule, cap);
    if (argmax(trajectory[stop.t]!.logits) === label) correct++;
    steps += stop.t;
    if (stop.reason === 'settled') settled++;
  }
  const count = trajectories.length;
  return {
    count,
    correct,
    accuracy: correct / count,
    meanTimesteps: steps / count,
    settled: settled / count,
  };
}

/** The same measure for a fixed number of timesteps, on the same trajectories. */
export function fixed(trajectories: readonly Trajectory[], t: number): Replay {
  const correct = trajectories.filter((x) => argmax(x.steps[t]!.logits) === x.label).length;
  const count = trajectories.length;
  return { count, correct, accuracy: correct / count, meanTimesteps: t, settled: 0 };
}
