/**
 * What computes a study's answers: the local engine, or servers (cli/fleet-args.ts makes that
 * one, with its journal). A study function takes one of these, so that it runs the same
 * whether the images are stepped here or classified elsewhere.
 */
import type { PredictiveStepper } from '../engine/predictive-step.js';
import type { Coefficients } from '../model/hyperparameters.js';
import { ImageSetError } from './image-set.js';
import { evaluate, type ConditionResult, type StudyGroup } from './evaluate.js';
import { progressReporter } from './progress.js';
import type { StudyInputs } from './study-inputs.js';

export interface StudyCall {
  timesteps: number;
  batch: number;
  /** the profile's coefficients; servers use the profile they were asked for instead */
  coefficients: readonly Coefficients[];
  /** names the progress line */
  label: string;
}

/** Each server's share of a run on servers. */
export interface EndpointShare {
  url: string;
  images: number;
  imagesPerSecond: number;
  retries: number;
}

export interface StudyRun {
  results: ConditionResult[];
  /** on servers: who answered, and the journal that holds every answer */
  endpoints?: EndpointShare[];
  journal?: string;
}

export interface StudyEngine {
  run(groups: readonly StudyGroup[], call: StudyCall): Promise<StudyRun>;
  /** the local engine, for what only it can do (controls, the engine's own rate) */
  stepper?: PredictiveStepper;
}

/** A study that started and could not finish (an unreadable image, without --skip-unreadable). */
export class StudyFailure extends Error {}

/** The local engine: every image stepped here, its trajectory recorded. */
export function localStudy(stepper: PredictiveStepper, inputs: StudyInputs): StudyEngine {
  return {
    stepper,
    run: async (groups, { timesteps, batch, coefficients, label }) => {
      try {
        return {
          results: await evaluate(stepper, inputs, groups, {
            timesteps,
            batch,
            coefficients,
            record: true,
            onProgress: progressReporter(label),
          }),
        };
      } catch (err) {
        if (err instanceof ImageSetError) throw new StudyFailure(err.message);
        throw err;
      }
    },
  };
}
