/**
 * The engine the configuration asks for and the classifier over it, wired to the metrics: the
 * one wiring that the server and the tests share.
 */
import { engineSettings, requestDefaults, type Config } from './config.js';
import { Classifier } from './engine/classifier.js';
import type { InferenceEngine } from './engine/inference-engine.js';
import { LocalEngine } from './engine/local-engine.js';
import { WorkerEngine } from './engine/worker-engine.js';
import type { Metrics } from './metrics.js';
import type { LoadedModel } from './model/load-model.js';
import type { Logger } from './model/onnx-backend.js';

export interface OpenOptions {
  logger: Logger;
  metrics?: Metrics;
  /** an already loaded model to run on this thread (it stays the caller's to release) */
  model?: LoadedModel;
}

export async function openClassifier(
  config: Config,
  { logger, metrics, model }: OpenOptions,
): Promise<{ classifier: Classifier; engine: InferenceEngine }> {
  const settings = engineSettings(config);
  let engine: InferenceEngine;
  if (model) engine = new LocalEngine(model, settings);
  // In a worker thread, onnxruntime's synchronous runs never block the HTTP thread.
  else if (config.ENGINE_WORKER) engine = await WorkerEngine.start(settings, config.LOG_LEVEL);
  else engine = await LocalEngine.open(settings, logger);
  if (metrics) engine.onStep = metrics.recordStep;
  return { classifier: new Classifier(engine, requestDefaults(config)), engine };
}
