/** Entry point: config, logger, HTTP server, model loading, graceful close. */
import closeWithGrace from 'close-with-grace';
import { pino } from 'pino';
import { buildApp } from './app.js';
import { loadConfig, type Config } from './config.js';
import { Classifier } from './engine/classifier.js';
import { loadModel } from './model/load-model.js';
import type { ServiceState } from './service-state.js';

const DRAIN_MS = 10_000;

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
  const app = await buildApp({ config, state, logger });

  closeWithGrace({ delay: DRAIN_MS }, async ({ signal, err }) => {
    if (err) logger.error({ err }, 'closing after an uncaught error');
    else logger.info({ signal }, 'closing: draining in-flight requests');
    await app.close();
    await state.classifier?.close();
  });

  // Listen first so that /healthz answers and /readyz says 503 while the model loads.
  await app.listen({ port: config.PORT, host: config.HOST });
  try {
    const model = await loadModel(
      config.MODEL_DIR,
      { providers: config.EXECUTION_PROVIDERS, intraOpThreads: config.ORT_INTRA_OP_THREADS },
      logger,
    );
    state.classifier = new Classifier(model);
  } catch (err) {
    logger.fatal(
      { code: (err as { code?: string }).code, dir: config.MODEL_DIR },
      `model failed to load: ${(err as Error).message}`,
    );
    await app.close();
    process.exit(1);
  }
  logger.info({ model: state.classifier.name }, 'ready');
}

await main();
