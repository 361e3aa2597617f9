/**
 * Timesteps of the Predify dynamics (docs/dynamics.md) for a batch of samples that may each be
 * at a different timestep. The loop state lives per sample, so samples can join or leave a
 * batch between timesteps, and no sample's numbers depend on the others.
 *
 * Two steppers compute the same numbers behind one interface: the dynamics written out graph
 * by graph in TypeScript (graph-by-graph-stepper.ts: the specification, readable, with the
 * update rule in one place) and the compiled path through the model's step and loop graphs
 * (compiled-stepper.ts: what serves). openStepper() (open-stepper.ts) picks; the scheduler does not know which.
 *
 * A sample at t = 0 takes the feedforward pass: r_i(0) = E_i(r_{i-1}(0)), which is the
 * update with beta = 1 and nothing else, so new and running samples share every graph call
 * of a step.
 */
import type { LoadedModel } from '../model/load-model.js';
import type { Coefficients } from '../model/hyperparameters.js';

export interface SampleState {
  readonly image: Float32Array;
  /** the timestep the next step computes */
  t: number;
  /** E_1(x): the image never changes, so neither does the first PCoder's drive */
  drive1?: Float32Array;
  /** this sample's update coefficients per PCoder (a hyperparameter profile); else the model's */
  coefficients?: readonly Coefficients[];
  /**
   * The last timestep this sample will be stepped to, when known. Its error gradients feed no
   * update, so a step in which every sample is at its last does not ask for them. (onnxruntime
   * computes them all the same, as it does not prune a graph by the outputs asked for; what is
   * saved is handing them back, about 8% of such a step on the shipped model.)
   */
  readonly last?: number;
  /**
   * r_i, p_i, g_i of the last computed timestep (empty before t = 0): the engine's own state.
   * Through the step graph, g_i is the gradient divided by its constant 2 / |p_i| (see
   * scripts/predify/step_graph.py) and p_1 is not kept; r_i is the representation either way.
   */
  r: Float32Array[];
  p: Float32Array[];
  g: Float32Array[];
}

export interface SampleStep {
  t: number;
  logits: Float32Array;
  /** e_i(t), one per PCoder */
  errors: Float32Array;
}

export function newSample(
  image: Float32Array,
  coefficients?: readonly Coefficients[],
  last?: number,
): SampleState {
  return {
    image,
    t: 0,
    r: [],
    p: [],
    g: [],
    ...(coefficients ? { coefficients } : {}),
    ...(last === undefined ? {} : { last }),
  };
}

/** Its gradients were not computed at its last timestep: a sample must not go beyond it. */
export function refusePastLast(samples: readonly SampleState[], k: number): void {
  const past = samples.find((s) => s.last !== undefined && s.t + k - 1 > s.last);
  if (past) throw new Error(`a sample was stepped past its last timestep ${past.last}`);
}

export interface StepperOptions {
  /**
   * Run the timesteps through the model's step and loop graphs when it has them (the default),
   * or graph by graph with the update in TypeScript. Both compute the same numbers.
   */
  stepGraph?: boolean;
}

/** What the engine steps samples with, whichever way it computes them. */
export interface PredictiveStepper {
  readonly model: LoadedModel;
  /** C * H * W of the model's input */
  readonly inputSize: number;
  readonly classes: number;
  readonly pcoderCount: number;
  /** How many timesteps one call of steps() may compute: more than one through the loop graph. */
  readonly maxStepsPerCall: number;
  /** Seconds spent inside onnxruntime, for the loop-overhead benchmark. */
  sessionSeconds: number;
  /**
   * Computes the next k timesteps of every sample in one call (k ≤ maxStepsPerCall, and no
   * sample past its last), the same numbers as k calls of step(); the result is per timestep.
   */
  steps(samples: readonly SampleState[], k: number): Promise<SampleStep[][]>;
  /** Computes the next timestep of every sample, in one batch, and advances their t. */
  step(samples: readonly SampleState[]): Promise<SampleStep[]>;
}

/**
 * Steps `samples` through their timesteps 0..`timesteps`, as many a call as the stepper computes
 * (several through the loop graph: the same numbers, faster); `onCall` sees each call's
 * timesteps, in order, as they come.
 */
export async function runTimesteps(
  stepper: Pick<PredictiveStepper, 'steps' | 'maxStepsPerCall'>,
  samples: readonly SampleState[],
  timesteps: number,
  onCall?: (steps: SampleStep[][]) => void,
): Promise<void> {
  for (let t = 0; t <= timesteps;) {
    const k = Math.min(stepper.maxStepsPerCall, timesteps + 1 - t);
    const steps = await stepper.steps(samples, k);
    onCall?.(steps);
    t += k;
  }
}
