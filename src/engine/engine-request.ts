/** What is submitted to an engine, wherever it runs (inference-engine.ts, worker-protocol.ts). */
import type { EngineJob } from './batch-scheduler.js';
import type { ModelPixels } from '../image/normalise.js';

/**
 * A model input as it reaches an engine: float32 and ready (an FP32 tensor a client sent), or a
 * decoded image's 8-bit pixels at the model's size, normalised on the engine's side. An image
 * crosses to a worker as what it is: a quarter of the bytes of its float32 form.
 */
export type ModelInput = Float32Array | ModelPixels;

/** An engine job as submitted: its image in either form. */
export type EngineRequest = Omit<EngineJob, 'image'> & { image: ModelInput };
