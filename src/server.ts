/** Entry point: config, logger, HTTP server, model loading, graceful close. */
import closeWithGrace from 'close-with-grace';
import { pino } from 'pino';
import { buildApp } from './app.js';
import { lookalikes } from './config/lookalikes.js';
import { CONFIG_VARIABLES, engineSettings, loadConfig, type Config } from './config/config.js';
import { listenError } from './errors.js';
import { createMetrics } from './metrics.js';
import { startGrpc, type GrpcServer } from './grpc/server.js';
import { ModelControl } from './model-control.js';
import { openModels } from './open-models.js';
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
  // Refused under NODE_ENV=production (loadConfig); said here everywhere else.
  for (const l of lookalikes(process.env, CONFIG_VARIABLES))
    logger.warn(
      { variable: l.name, meant: l.meant },
      `${l.name} is not a setting (did you mean ${l.meant}?)`,
    );
  if (process.env['MODEL_DIR'] === undefined || process.env['MODEL_DIR'] === '')
    logger.info({ dir: config.MODEL_DIR }, 'MODEL_DIR is not set: serving the shipped demo model');
  if (config.API_KEYS.length > 0)
    logger.info({ apiKeys: config.API_KEYS.length }, `API keys on: ${config.API_KEYS.length} accepted`);
  else
    logger[config.NODE_ENV === 'production' ? 'warn' : 'info'](
      { apiKeys: 0 },
      'API keys off: API_KEYS is empty, every route answers without a key',
    );
  const state: ServiceState = {};
  const metrics = createMetrics();
  const app = await buildApp({ config, state, logger, metrics });

  let grpc: GrpcServer | undefined;
  const drain = async () => {
    state.closing = true;
    await Promise.all([app.close(), grpc?.close(config.SHUTDOWN_DRAIN_MS)]);
    await state.models?.close();
  };
  // close-with-grace treats SIGUSR2 as a request to stop; with ENGINE_FAULTS it means a rehearsal.
  const skip: 'SIGUSR2'[] = config.ENGINE_FAULTS ? ['SIGUSR2'] : [];
  const grace = closeWithGrace({ delay: config.SHUTDOWN_DRAIN_MS, skip }, async ({ signal, err }) => {
    if (err) logger.error({ err }, 'closing after an uncaught error');
    else logger.info({ signal }, 'closing: draining in-flight requests');
    await drain();
  });

  // An engine that cannot be restarted: fail liveness at once, drain what is in flight, exit 1.
  const onGiveUp = (model: string, reason: string) => {
    if (state.failed) return;
    state.failed = `${model}: ${reason}`;
    logger.fatal({ model, reason }, `engine of ${model} cannot be restarted: exiting after draining`);
    grace.uninstall();
    const deadline = setTimeout(() => process.exit(1), config.SHUTDOWN_DRAIN_MS);
    void drain().finally(() => {
      clearTimeout(deadline);
      process.exit(1);
    });
  };

  // Listen first so that /healthz answers and /readyz says 503 while the model loads.
  try {
    await app.listen({ port: config.PORT, host: config.HOST });
  } catch (err) {
    const refusal = listenError(err, config.HOST, config.PORT);
    // Nothing is loaded yet: there is nothing to close.
    logger.fatal({ code: refusal.code }, refusal.message);
    process.exit(1);
  }
  if (config.GRPC_PORT > 0) {
    try {
      const underPressure = (app as { isUnderPressure?: () => boolean }).isUnderPressure?.bind(app);
      grpc = await startGrpc({ config, state, logger, metrics, ...(underPressure ? { underPressure } : {}) });
      logger.info({ port: grpc.port }, `gRPC (Open Inference Protocol, grpc.health.v1) on port ${grpc.port}`);
    } catch (err) {
      const refusal = listenError(grpcListenCause(err), config.HOST, config.GRPC_PORT, 'GRPC_PORT');
      logger.fatal({ code: refusal.code }, refusal.message);
      await app.close();
      process.exit(1);
    }
  }
  try {
    ({ models: state.models } = await openModels(config, { logger, metrics, onGiveUp }));
  } catch (err) {
    logger.fatal(
      { code: (err as { code?: string }).code, dir: config.MODEL_DIR },
      `model failed to load: ${(err as Error).message}`,
    );
    await app.close();
    process.exit(1);
  }
  const { models } = state;
  if (config.MODEL_CONTROL === 'explicit') {
    state.control = new ModelControl(config, state, { logger, metrics, onGiveUp });
    await state.control.adoptServed();
    logger.info(
      'MODEL_CONTROL=explicit: POST /v2/repository/models/{name}/load and /unload change the models served',
    );
  }
  if (config.ENGINE_FAULTS) {
    // Rehearsal: SIGUSR2 makes every model's engine worker throw an uncaught exception.
    process.on('SIGUSR2', () => {
      logger.warn({ models: models.names }, 'SIGUSR2: injecting an engine fault (ENGINE_FAULTS=1)');
      for (const m of models.all) m.injectFault('throw');
    });
  }
  const providers = [...new Set(models.all.flatMap((m) => m.providers))];
  logger.info(
    {
      models: models.names,
      default: models.default.name,
      providers,
      worker: config.ENGINE_WORKER && config.ENGINE_ISOLATION,
      batch: engineSettings(config),
    },
    `ready: ${models.names.join(', ')} on ${providers.join(', ')}`,
  );
}

/** grpc-js says a port is taken only in its message: made into the error listenError reads. */
function grpcListenCause(err: unknown): unknown {
  const message = (err as Error).message ?? '';
  return /EADDRINUSE|address already in use/i.test(message)
    ? Object.assign(new Error(message), { code: 'EADDRINUSE' })
    : err;
}

await main();
