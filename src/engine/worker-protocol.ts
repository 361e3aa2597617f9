import type { Manifest } from '../model/manifest.js';
import type { StepStats } from './batch-scheduler.js';
import type { SampleStep } from './predictive-step.js';

export type ToWorker =
  | {
      type: 'submit';
      id: number;
      image: Float32Array;
      timesteps: number;
      requestId?: string;
      profile?: string;
    }
  | { type: 'cancel'; id: number }
  | { type: 'close' };

export type FromWorker =
  | { type: 'ready'; manifest: Manifest; providers: string[] }
  | { type: 'start-failed'; code: string; message: string }
  | { type: 'step'; id: number; step: SampleStep }
  | { type: 'done'; id: number; queueMs: number; inferenceMs: number }
  | {
      type: 'failed';
      id: number;
      code: string;
      statusCode: number;
      message: string;
      context?: Record<string, unknown>;
    }
  | { type: 'stats'; stats: StepStats };
