/** What the service needs from an engine, whether it runs on this thread or in a worker. */
import type { Manifest } from '../model/manifest.js';
import type { SessionSettings } from '../model/onnx-backend.js';
import type { EngineJob, EngineResult, StepStats } from './batch-scheduler.js';

export interface InferenceEngine {
  readonly manifest: Manifest;
  /** execution providers the sessions really use */
  readonly providers: readonly string[];
  submit(job: EngineJob): Promise<EngineResult>;
  /** called after every engine step, for metrics */
  onStep: ((stats: StepStats) => void) | undefined;
  close(): Promise<void>;
}

export interface EngineSettings extends SessionSettings {
  modelDir: string;
  maxBatch: number;
  maxDelayMs: number;
  continuous: boolean;
  maxQueue: number;
}
