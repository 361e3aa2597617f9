/**
 * The engines the configuration asks for, one per model, the classifiers over them and the
 * set of them, wired to the metrics: the one wiring that the server and the tests share.
 */
import { engineSettings, requestDefaults, type Config } from './config/config.js';
import { Classifier } from './engine/classifier.js';
import { graphSetFor, type InferenceEngine } from './engine/inference-engine.js';
import { LocalEngine } from './engine/local-engine.js';
import { ModelSet } from './engine/model-set.js';
import { SupervisedEngine } from './engine/supervised-engine.js';
import type { Metrics } from './metrics.js';
import type { LoadedModel } from './model/load-model.js';
import type { Logger } from './model/onnx-backend.js';
import { checkBudget, readRepository } from './model/repository.js';

export interface OpenOptions {
  logger: Logger;
  metrics?: Metrics;
  /** an engine could not be restarted: the service cannot go on */
  onGiveUp?: (model: string, reason: string) => void;
  /** an already loaded model to run on this thread (it stays the caller's to release) */
  model?: LoadedModel;
}

export interface OpenModels {
  models: ModelSet;
  /** the engines by model name, for tests and benchmarks */
  engines: Map<string, InferenceEngine>;
}

/**
 * Opens one model directory: its engine (in its own worker unless ENGINE_WORKER=false, so a
 * slow model's batches never hold up another's), wired to the metrics, and its classifier.
 */
export async function openClassifier(
  config: Config,
  dir: string,
  { logger, metrics, onGiveUp }: Omit<OpenOptions, 'model'>,
  loaded?: LoadedModel,
): Promise<{ classifier: Classifier; engine: InferenceEngine }> {
  const settings = { ...engineSettings(config), modelDir: dir };
  let engine: InferenceEngine;
  if (loaded) engine = await LocalEngine.serve(loaded, settings, logger);
  // In a worker (a child process or a thread), onnxruntime's synchronous runs never block the HTTP thread.
  // Supervised: a worker that dies is replaced (src/engine/supervised-engine.ts).
  else if (config.ENGINE_WORKER) {
    const name = () => engine.manifest.name;
    engine = await SupervisedEngine.start(
      settings,
      config.LOG_LEVEL,
      {
        restartAttempts: config.ENGINE_RESTART_ATTEMPTS,
        restartTimeoutMs: config.ENGINE_RESTART_TIMEOUT_MS,
        maxRestarts: config.ENGINE_MAX_RESTARTS,
        watchdogMs: config.ENGINE_WATCHDOG_MS,
        isolation: config.ENGINE_ISOLATION,
        onDeath: (_cause, lost) => {
          metrics?.engineRestarts.inc({ model: name() });
          metrics?.engineRequestsLost.inc({ model: name() }, lost);
        },
        onGiveUp: (reason) => onGiveUp?.(name(), reason),
      },
      logger,
    );
  } else engine = await LocalEngine.open(settings, logger);
  if (metrics) engine.onStep = metrics.recordStep;
  if (metrics && engine.batch)
    metrics.engineBatchSize.set(
      { model: engine.manifest.name, source: engine.batch.source },
      engine.batch.size,
    );
  return { classifier: new Classifier(engine, requestDefaults(config)), engine };
}

/**
 * Opens every model of MODEL_DIR, one after another so that memory peaks once per model.
 * If any fails, those already open are closed and the error names the model directory.
 */
export async function openModels(config: Config, options: OpenOptions): Promise<OpenModels> {
  const engines = new Map<string, InferenceEngine>();
  const classifiers: Classifier[] = [];
  const open = async (dir: string, loaded?: LoadedModel) => {
    const { classifier, engine } = await openClassifier(config, dir, options, loaded);
    engines.set(engine.manifest.name, engine);
    classifiers.push(classifier);
  };
  try {
    if (options.model) await open(options.model.dir, options.model);
    else {
      const entries = await readRepository(config.MODEL_DIR, graphSetFor(engineSettings(config)));
      const ownProcess = config.ENGINE_WORKER && config.ENGINE_ISOLATION === 'process';
      checkBudget(entries, config.MODEL_MEMORY_BUDGET_MB, ownProcess);
      for (const entry of entries) await open(entry.dir);
    }
    return { models: new ModelSet(classifiers, config.DEFAULT_MODEL), engines };
  } catch (err) {
    await Promise.all(classifiers.map((c) => c.close()));
    throw err;
  }
}
