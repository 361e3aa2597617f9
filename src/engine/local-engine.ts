/** The engine on the calling thread: for the CLI, tests and benchmarks. */
import type { Logger } from '../model/onnx-backend.js';
import { loadModel, timestepProvider, type LoadedModel } from '../model/load-model.js';
import { BatchScheduler, type EngineJob, type StepStats } from './batch-scheduler.js';
import { chooseBatch, plateauOf, stepperThroughput, TUNING, type BatchChoice } from './batch-tuning.js';
import { graphSetFor, type EngineSettings, type InferenceEngine } from './inference-engine.js';
import type { EngineRequest } from './engine-request.js';
import { normalise, type ModelPixels } from '../image/normalise.js';
import type { PredictiveStepper } from './predictive-step.js';
import { openStepper } from './open-stepper.js';
import { StandInStepper } from './stand-in-stepper.js';
import { coefficientsOfProfile, profileCoefficients } from './profiles.js';

export class LocalEngine implements InferenceEngine {
  readonly model: LoadedModel;
  readonly stepper: PredictiveStepper;
  readonly #scheduler: BatchScheduler;
  readonly #profiles: ReturnType<typeof profileCoefficients>;
  readonly batch: BatchChoice;

  constructor(
    model: LoadedModel,
    settings: Pick<
      EngineSettings,
      'maxDelayMs' | 'continuous' | 'maxQueue' | 'stepsPerCall' | 'multiStep'
    > & {
      maxBatch: number;
    },
    batch?: BatchChoice,
    stepper = openStepper(model),
  ) {
    this.model = model;
    this.stepper = stepper;
    this.batch = batch ?? { size: settings.maxBatch, source: 'fixed', curve: [] };
    this.#scheduler = new BatchScheduler(this.stepper, {
      ...settings,
      efficientSizes: plateauOf(this.batch),
    });
    this.#profiles = profileCoefficients(model.manifest);
  }

  static async open(settings: EngineSettings, log: Logger): Promise<LocalEngine> {
    const model = await loadModel(settings.modelDir, settings, log, graphSetFor(settings));
    try {
      return await LocalEngine.serve(model, settings, log);
    } catch (err) {
      await model.release();
      throw err;
    }
  }

  /** An engine for `model`, its batch size fixed, recorded or measured now (BATCH_MAX_SIZE=auto). */
  static async serve(
    model: LoadedModel,
    settings: Omit<EngineSettings, 'modelDir' | 'providers' | 'intraOpThreads'> &
      Partial<Pick<EngineSettings, 'intraOpThreads'>>,
    log?: Logger,
  ): Promise<LocalEngine> {
    const stepper = settings.standIn
      ? new StandInStepper(model, settings.stepDelayMs ?? 0)
      : openStepper(model);
    const batch = await chooseBatch({
      maxBatch: settings.maxBatch,
      budgetMs: settings.tuneBudgetMs ?? 5000,
      threads: settings.intraOpThreads ?? 0,
      provider: timestepProvider(model),
      tuning: model.manifest.batchTuning,
      chosen: settings.chosenBatch,
      measure: (size) => stepperThroughput(stepper, size, TUNING.minMs),
    });
    if (batch.source !== 'fixed') {
      const curve = batch.curve.map((p) => `${p.size}: ${Math.round(p.sampleStepsPerSecond)}`).join(', ');
      log?.info(
        {
          model: model.manifest.name,
          batch: batch.size,
          source: batch.source,
          curve: batch.curve,
          ms: batch.ms,
        },
        `batch size ${batch.size} (${batch.source}${batch.ms !== undefined ? ` in ${Math.round(batch.ms)} ms` : ''}; sample-steps/s by size ${curve})`,
      );
    }
    if (settings.stepDelayMs && !settings.standIn) blockLonger(stepper, settings.stepDelayMs);
    return new LocalEngine(model, { ...settings, maxBatch: batch.size }, batch, stepper);
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

  submit(request: EngineRequest) {
    const { image } = request;
    const job: EngineJob = {
      ...request,
      image: image instanceof Float32Array ? image : this.#normalise(image),
    };
    if (job.profile === undefined) return this.#scheduler.submit(job);
    try {
      return this.#scheduler.submit(job, coefficientsOfProfile(this.#profiles, job.profile));
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  #normalise({ pixels, stride }: ModelPixels): Float32Array {
    const spec = this.manifest.input;
    // A frame of another size is refused as a float32 input of the wrong length is.
    if (pixels.length !== spec.width * spec.height * stride || stride < 1)
      return new Float32Array(pixels.length);
    return normalise(pixels, stride, spec);
  }

  close(): Promise<void> {
    return this.model.release();
  }
}

/**
 * Rehearsals (ENGINE_FAULTS with ENGINE_STEP_DELAY_MS): each model call blocks its thread `ms`
 * longer, as a slower model's synchronous session.run would (a timer would not block), without
 * using a core meanwhile, as a call waiting on a GPU does not.
 */
function blockLonger(stepper: PredictiveStepper, ms: number): void {
  const steps = stepper.steps.bind(stepper);
  const never = new Int32Array(new SharedArrayBuffer(4));
  stepper.steps = async (samples, k) => {
    const out = await steps(samples, k);
    Atomics.wait(never, 0, 0, ms);
    return out;
  };
}
