/** Entry point: config, logger, HTTP server, model loading, graceful close. */
import closeWithGrace from 'close-with-grace';
import { pino } from 'pino';
import { buildApp } from './app.js';
import { engineSettings, loadConfig, type Config } from './config.js';
import { Classifier } from './engine/classifier.js';
import type { InferenceEngine } from './engine/inference-engine.js';
import { LocalEngine } from './engine/local-engine.js';
import { WorkerEngine } from './engine/worker-engine.js';
import { createMetrics } from './metrics.js';
import type { ServiceState } from './service-state.js';

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    pino().fatal({ code: (err as { code?: string }).code }, (err as Error).message);
    process.exit(1);
  }
  const logger = pino({ level: config.LOG_LEVEL });
  const state: ServiceState = {};
  const metrics = createMetrics();
  const app = await buildApp({ config, state, logger, metrics });

  closeWithGrace({ delay: config.SHUTDOWN_DRAIN_MS }, async ({ signal, err }) => {
    if (err) logger.error({ err }, 'closing after an uncaught error');
    else logger.info({ signal }, 'closing: draining in-flight requests');
    state.closing = true;
    await app.close();
    await state.classifier?.close();
  });

  // Listen first so that /healthz answers and /readyz says 503 while the model loads.
  await app.listen({ port: config.PORT, host: config.HOST });
  try {
    const settings = engineSettings(config);
    // In a worker thread, onnxruntime's synchronous runs never block the HTTP thread.
    const engine: InferenceEngine = config.ENGINE_WORKER
      ? await WorkerEngine.start(settings, config.LOG_LEVEL)
      : await LocalEngine.open(settings, logger);
    engine.onStep = metrics.recordStep;
    state.classifier = new Classifier(engine);
  } catch (err) {
    logger.fatal(
      { code: (err as { code?: string }).code, dir: config.MODEL_DIR },
      `model failed to load: ${(err as Error).message}`,
    );
    await app.close();
    process.exit(1);
  }
  const { engine } = state.classifier;
  logger.info(
    {
      model: state.classifier.name,
      providers: engine.providers,
      worker: config.ENGINE_WORKER,
      batch: engineSettings(config),
    },
    `ready: ${state.classifier.name} on ${engine.providers.join(', ')}`,
  );
}

await main();
