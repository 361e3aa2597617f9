/** The engine's public face: an image in, per-timestep classifications out. No HTTP here. */
import type { EngineJob } from './batch-scheduler.js';
import { profilesOf } from '../model/manifest.js';
import type { InferenceEngine } from './inference-engine.js';
import { summarise, type StepSummary } from './results.js';

export interface ClassifyOptions {
  timesteps: number;
  topk: number;
  signal?: AbortSignal;
  /** the HTTP request id, named in the log if the engine fails */
  requestId?: string;
  /** hyperparameter profile; the model's default profile if absent */
  profile?: string;
  /** sees each timestep's summary as soon as it is computed */
  onStep?: (step: StepSummary) => void;
}

export interface Classification {
  steps: StepSummary[];
  prediction: { label: string; index: number; confidence: number };
  queueMs: number;
  inferenceMs: number;
}

export class Classifier {
  readonly engine: InferenceEngine;
  /** the model's hyperparameter profiles by name, the exported hyperparameters included */
  readonly profiles: ReturnType<typeof profilesOf>;
  readonly #pcoderNames: string[];

  constructor(engine: InferenceEngine) {
    this.engine = engine;
    this.profiles = profilesOf(engine.manifest);
    this.#pcoderNames = engine.manifest.pcoders.map((pc) => pc.name);
  }

  get name(): string {
    return this.engine.manifest.name;
  }

  get manifest() {
    return this.engine.manifest;
  }

  /** Classifies one image, preprocessed to the model's input. */
  async classify(image: Float32Array, options: ClassifyOptions): Promise<Classification> {
    const { labels } = this.engine.manifest;
    const job: EngineJob = { image, timesteps: options.timesteps };
    if (options.signal) job.signal = options.signal;
    if (options.requestId) job.requestId = options.requestId;
    job.profile = options.profile ?? this.engine.manifest.defaultProfile;
    const onStep = options.onStep;
    if (onStep) job.onStep = (step) => onStep(summarise(step, labels, this.#pcoderNames, options.topk));
    const result = await this.engine.submit(job);
    const steps = result.steps.map((s) => summarise(s, labels, this.#pcoderNames, options.topk));
    const last = steps[steps.length - 1]!;
    return {
      steps,
      prediction: { label: last.label, index: last.index, confidence: last.confidence },
      queueMs: result.queueMs,
      inferenceMs: result.inferenceMs,
    };
  }

  close(): Promise<void> {
    return this.engine.close();
  }
}
