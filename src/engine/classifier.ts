/** The engine's public face: an image in, per-timestep classifications out. No HTTP here. */
import type { EngineRequest, ModelInput } from './engine-request.js';
import { profilesOf } from '../model/manifest.js';
import type { EngineStatus, InferenceEngine } from './inference-engine.js';
import type { SampleStep } from './predictive-step.js';
import type { FaultKind } from './worker-protocol.js';
import {
  resolveRequest,
  timestepsFor,
  autoByDefault,
  type AskedRequest,
  type RequestDefaults,
  type ResolvedRequest,
  type RuleSource,
} from './resolve-request.js';
import { corruptionScore, largestErrorZ } from './corruption-score.js';
import { summariseStep, type StepSummary } from './results.js';
import type { StopReason } from './settling.js';

export interface ClassifyOptions extends ResolvedRequest {
  signal?: AbortSignal;
  /** the HTTP request id, named in the log if the engine fails */
  requestId?: string;
  /** sees each timestep's summary as soon as it is computed */
  onStep?: (step: StepSummary) => void;
}

export interface Classification {
  /** the last timestep computed: the request's, or where an anytime request stopped */
  timesteps: number;
  /** anytime requests: why it stopped there, and by which rule */
  stop?: {
    reason: StopReason;
    tolerance: number;
    patience: number;
    confidence?: number;
    gate?: number;
    /** the statistic the gate compared with `gate`: the largest signed z of ln e_i(0) */
    gateZ?: number;
    maxTimesteps: number;
    rule: RuleSource;
  };
  steps: StepSummary[];
  /** what the engine computed at each timestep: logits and e_i(t), exact */
  outputs: readonly SampleStep[];
  prediction: { label: string; index: number; confidence: number };
  /** how unlike clean data the input looks (src/engine/corruption-score.ts); null: not calibrated */
  corruptionScore: number | null;
  queueMs: number;
  inferenceMs: number;
}

export class Classifier {
  readonly #engine: InferenceEngine;
  readonly defaults: RequestDefaults;
  /** the model's hyperparameter profiles by name, the exported hyperparameters included */
  readonly profiles: ReturnType<typeof profilesOf>;
  readonly #pcoderNames: string[];
  /** classifications submitted and not yet answered */
  #inFlight = 0;
  #idle: (() => void) | undefined;
  /** once replaced or unloaded: where later calls go, or why they are refused */
  #retiredFor: Classifier | Error | undefined;

  constructor(engine: InferenceEngine, defaults: RequestDefaults) {
    this.#engine = engine;
    this.defaults = defaults;
    this.profiles = profilesOf(engine.manifest);
    this.#pcoderNames = engine.manifest.pcoders.map((pc) => pc.name);
  }

  get name(): string {
    return this.#engine.manifest.name;
  }

  get manifest() {
    return this.#engine.manifest;
  }

  get status(): EngineStatus {
    return this.#engine.status ?? 'ready';
  }

  /** For tests and rehearsals only (ENGINE_FAULTS=1): an engine on this thread ignores it. */
  injectFault(kind: FaultKind): void {
    this.#engine.injectFault?.(kind);
  }

  /** execution providers the model's sessions really use */
  get providers(): readonly string[] {
    return this.#engine.providers;
  }

  /** images submitted and not yet answered */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Of those in flight, the images still crossing to the engine's worker. */
  get inTransit(): number {
    return this.#engine.inTransit ?? 0;
  }

  /** the batch size its engine steps at, and how it was chosen */
  get batch() {
    return this.#engine.batch;
  }

  /** Fills in what a request leaves out; an unknown profile or too many timesteps is a 400. */
  resolve(asked: AskedRequest): ResolvedRequest {
    return resolveRequest(this.manifest, this.defaults, asked, this.profiles);
  }

  /** The timesteps a request on `profile` gets when it names none. */
  defaultTimesteps(profile: string): number | 'auto' {
    const p = this.profiles[profile];
    return autoByDefault(this.defaults, p) ? 'auto' : timestepsFor(this.defaults, p?.recommendedTimesteps);
  }

  /**
   * Classifies one image, preprocessed to the model's input. A request that found this
   * classifier before it was replaced (a reload) is served by its successor; after an unload it
   * is refused as the model's requests now are.
   */
  async classify(image: ModelInput, options: ClassifyOptions): Promise<Classification> {
    const retired = this.#retiredFor;
    if (retired instanceof Classifier) return retired.classify(image, options);
    if (retired) throw retired;
    this.#inFlight++;
    try {
      return await this.#classify(image, options);
    } finally {
      if (--this.#inFlight === 0) this.#idle?.();
    }
  }

  async #classify(image: ModelInput, options: ClassifyOptions): Promise<Classification> {
    const { labels } = this.manifest;
    const summary = (step: SampleStep) => summariseStep(step, labels, this.#pcoderNames, options.topk);
    const job: EngineRequest = { image, timesteps: options.timesteps, profile: options.profile };
    if (options.settle) job.settle = options.settle;
    if (options.signal) job.signal = options.signal;
    if (options.requestId) job.requestId = options.requestId;
    const onStep = options.onStep;
    if (onStep) job.onStep = (step) => onStep(summary(step));
    const result = await this.#engine.submit(job);
    const steps = result.steps.map(summary);
    const last = steps[steps.length - 1]!;
    const { settle } = options;
    return {
      timesteps: last.t,
      ...(settle && result.stop
        ? {
            stop: {
              reason: result.stop,
              tolerance: settle.tolerance,
              patience: settle.patience,
              ...(settle.confidence !== undefined ? { confidence: settle.confidence } : {}),
              ...(settle.gate
                ? { gate: settle.gate.above, gateZ: largestErrorZ(result.steps[0]!.errors, settle.gate) }
                : {}),
              maxTimesteps: options.timesteps,
              rule: options.ruleSource ?? 'asked',
            },
          }
        : {}),
      steps,
      outputs: result.steps,
      prediction: { label: last.label, index: last.index, confidence: last.confidence },
      corruptionScore: this.manifest.corruptionScore
        ? corruptionScore(result.steps[0]!.errors, this.manifest.corruptionScore)
        : null,
      queueMs: result.queueMs,
      inferenceMs: result.inferenceMs,
    };
  }

  close(): Promise<void> {
    return this.#engine.close();
  }

  /**
   * Takes no new work (it goes to `next`, or is refused with it), lets the classifications in
   * flight finish, within `graceMs`, then closes the engine.
   */
  async retire(next: Classifier | Error, graceMs: number): Promise<void> {
    this.#retiredFor = next;
    if (this.#inFlight > 0)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, graceMs);
        this.#idle = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    await this.close();
  }
}
