/**
 * Which stepper a loaded model gets. Apart from predictive-step.ts, which both steppers import
 * their types from, so that no module imports in a circle.
 */
import type { LoadedModel } from '../model/load-model.js';
import { CompiledStepper } from './compiled-stepper.js';
import { GraphByGraphStepper } from './graph-by-graph-stepper.js';
import type { PredictiveStepper, StepperOptions } from './predictive-step.js';

/**
 * The stepper for a loaded model: the compiled path when the model has a step or loop graph
 * open (and `stepGraph` is not false), else graph by graph (which needs every graph open).
 */
export function openStepper(model: LoadedModel, options: StepperOptions = {}): PredictiveStepper {
  if (options.stepGraph !== false && (model.step || model.loop)) return new CompiledStepper(model);
  return new GraphByGraphStepper(model);
}
