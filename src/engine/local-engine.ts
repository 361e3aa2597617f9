/** The engine on the calling thread: for the CLI, tests and benchmarks. */
import type { Logger } from '../model/onnx-backend.js';
import { loadModel, type LoadedModel } from '../model/load-model.js';
import { BatchScheduler, type EngineJob, type StepStats } from './batch-scheduler.js';
import { graphSetFor, type EngineSettings, type InferenceEngine } from './inference-engine.js';
import { PredictiveStepper } from './predictive-step.js';
import { coefficientsOfProfile, profileCoefficients } from './profiles.js';

export class LocalEngine implements InferenceEngine {
  readonly model: LoadedModel;
  readonly stepper: PredictiveStepper;
  readonly #scheduler: BatchScheduler;
  readonly #profiles: ReturnType<typeof profileCoefficients>;

  constructor(
    model: LoadedModel,
    settings: Pick<
      EngineSettings,
      'maxBatch' | 'maxDelayMs' | 'continuous' | 'maxQueue' | 'stepsPerCall' | 'multiStep'
    >,
  ) {
    this.model = model;
    this.stepper = new PredictiveStepper(model);
    this.#scheduler = new BatchScheduler(this.stepper, settings);
    this.#profiles = profileCoefficients(model.manifest);
  }

  static async open(settings: EngineSettings, log: Logger): Promise<LocalEngine> {
    const model = await loadModel(settings.modelDir, settings, log, graphSetFor(settings));
    return new LocalEngine(model, settings);
  }

  get manifest() {
    return this.model.manifest;
  }

  get providers(): string[] {
    return [...new Set(this.model.graphs.map((g) => g.provider))];
  }

  get onStep(): ((stats: StepStats) => void) | undefined {
    return this.#scheduler.onStep;
  }

  set onStep(fn: ((stats: StepStats) => void) | undefined) {
    this.#scheduler.onStep = fn;
  }

  submit(job: EngineJob) {
    if (job.profile === undefined) return this.#scheduler.submit(job);
    try {
      return this.#scheduler.submit(job, coefficientsOfProfile(this.#profiles, job.profile));
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  close(): Promise<void> {
    return this.model.release();
  }
}
