/** What the service needs from an engine, whether it runs on this thread or in a worker. */
import type { GraphSet, Manifest } from '../model/manifest.js';
import type { SessionSettings } from '../model/onnx-backend.js';
import type { EngineResult, StepStats } from './batch-scheduler.js';
import type { BatchChoice } from './batch-tuning.js';
import type { FaultKind } from './worker-protocol.js';
import type { EngineRequest } from './engine-request.js';

/** ready; restarting after its worker died; failed: no worker could be had */
export type EngineStatus = 'ready' | 'restarting' | 'failed';

export interface InferenceEngine {
  readonly manifest: Manifest;
  /** absent: always ready (an engine on this thread cannot die without the process) */
  readonly status?: EngineStatus;
  /** for tests and rehearsals only: makes a worker die or hang */
  injectFault?(kind: FaultKind): void;
  /** execution providers the sessions really use */
  readonly providers: readonly string[];
  /** the batch size it steps at, and how it was chosen */
  readonly batch?: BatchChoice;
  submit(job: EngineRequest): Promise<EngineResult>;
  /** requests handed to a worker that has not received them yet (absent: none ever are) */
  readonly inTransit?: number;
  /** called after every engine step, for metrics */
  onStep: ((stats: StepStats) => void) | undefined;
  close(): Promise<void>;
}

export interface EngineSettings extends SessionSettings {
  modelDir: string;
  /** `auto`: measured when the model is loaded (src/engine/batch-tuning.ts) */
  maxBatch: number | 'auto';
  /** how long measuring may take, with maxBatch auto */
  tuneBudgetMs?: number;
  /** a batch choice made before (a restarted engine keeps its predecessor's, curve and all) */
  chosenBatch?: BatchChoice;
  maxDelayMs: number;
  continuous: boolean;
  maxQueue: number;
  /** most timesteps per onnxruntime call, for a model with a loop graph */
  stepsPerCall?: number;
  /** which batches may take several timesteps in one call (SchedulerOptions.multiStep) */
  multiStep?: 'full' | 'always';
  /** rehearsals only (ENGINE_FAULTS): each model call blocks this much longer */
  stepDelayMs?: number;
  /** rehearsals only (ENGINE_FAULTS): no graph is run, each call waits stepDelayMs (stand-in-stepper.ts) */
  standIn?: boolean;
}

/** An engine that never computes several timesteps per call need not open the loop graph. */
export const graphSetFor = (settings: Pick<EngineSettings, 'stepsPerCall'>): GraphSet =>
  (settings.stepsPerCall ?? 1) > 1 ? 'served' : 'single-step';
