/**
 * The messages between the HTTP thread and the engine's worker, both ways.
 */
import type { Manifest } from '../model/manifest.js';
import type { StepStats } from './batch-scheduler.js';
import type { BatchChoice } from './batch-tuning.js';
import type { SampleStep } from './predictive-step.js';
import type { SettleRule, StopReason } from './settling.js';
import type { ModelInput } from './engine-request.js';

export type ToWorker =
  | {
      type: 'submit';
      id: number;
      image: ModelInput;
      timesteps: number;
      settle?: SettleRule;
      requestId?: string;
      profile?: string;
    }
  | { type: 'cancel'; id: number }
  | { type: 'close' }
  /** for tests and rehearsals (ENGINE_FAULTS=1): make the worker die, or hang */
  | { type: 'fault'; kind: FaultKind };

/**
 * An uncaught exception, process.exit in the worker, a worker that stops answering, or a
 * native crash (abort: in a child process it ends the worker; in a thread, the whole server).
 */
export type FaultKind = 'throw' | 'exit' | 'hang' | 'crash';

/**
 * The worker sends its messages in batches, one a batch step (each sample's step, the step's
 * statistics): one crossing instead of one per sample, which a child process pays in system
 * calls and serialization.
 */
export type FromWorker =
  | { type: 'ready'; manifest: Manifest; providers: string[]; batch: BatchChoice }
  | { type: 'start-failed'; code: string; message: string }
  /** the request has arrived: it is the engine's now, no longer in transit */
  | { type: 'received'; id: number }
  | { type: 'step'; id: number; step: SampleStep }
  | { type: 'done'; id: number; queueMs: number; inferenceMs: number; stop?: StopReason }
  | {
      type: 'failed';
      id: number;
      code: string;
      statusCode: number;
      message: string;
      context?: Record<string, unknown>;
    }
  | { type: 'stats'; stats: StepStats }
  /** the worker is dying of this uncaught exception (it exits right after) */
  | { type: 'fatal'; message: string };
