import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import { errorBody, errors, ServiceError } from './errors.js';
import { IMAGE_MEDIA_TYPES } from './image/preprocess.js';
import type { Config } from './config.js';
import { createMetrics, type Metrics } from './metrics.js';
import classifyRoutes from './routes/classify.js';
import healthRoutes from './routes/health.js';
import metricsRoutes from './routes/metrics.js';
import modelRoutes from './routes/models.js';
import type { ServiceState } from './service-state.js';

export interface AppOptions {
  config: Config;
  state: ServiceState;
  logger?: FastifyBaseLogger | false;
  metrics?: Metrics;
}

/** One log line per request, when it completes, instead of Fastify's two. */
class OneLinePerRequest extends LogController {
  override incomingRequest(): void {}

  override requestCompleted(
    error: Error | null | undefined,
    request: FastifyRequest,
    reply: FastifyReply,
  ): void {
    const line = {
      method: request.method,
      url: request.url,
      statusCode: reply.statusCode,
      ms: Math.round(reply.elapsedTime * 100) / 100,
    };
    if (error) reply.log.error({ ...line, err: error }, 'request errored');
    else reply.log.info(line, 'request');
  }
}

export async function buildApp({
  config,
  state,
  logger = false,
  metrics = createMetrics(),
}: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: logger || undefined,
    logger: logger ? undefined : false,
    bodyLimit: config.BODY_LIMIT_BYTES,
    requestIdHeader: 'x-request-id',
    logController: new OneLinePerRequest(),
  });

  // While draining, keep-alive connections must not hold the server open after their
  // in-flight request has been answered.
  app.addHook('onSend', async (_request, reply) => {
    if (state.closing) reply.header('connection', 'close');
  });

  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    metrics.httpRequests.inc({ route, method: request.method, status: String(reply.statusCode) });
    metrics.httpDuration.observe({ route }, reply.elapsedTime / 1000);
  });

  app.setErrorHandler((err: FastifyError, request, reply) => {
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
    if (status >= 500) request.log.error({ err, cause: err.cause }, 'request failed');
    // Our own errors are written for clients; anything else at 5xx is an internal failure
    // whose details (stack, paths) go to the log only.
    if (status >= 500 && !(err instanceof ServiceError)) {
      return reply.status(status).send(errorBody(status, 'internal error while handling the request'));
    }
    if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      const type = request.headers['content-type'] ?? '(none)';
      const e = errors.unsupportedMediaType(type, [...IMAGE_MEDIA_TYPES, 'multipart/form-data']);
      return reply.status(e.statusCode).send(errorBody(e.statusCode, e.message, e.code));
    }
    if (err.code === errors.overloaded.code) reply.header('retry-after', '1');
    return reply.status(status).send(errorBody(status, err.message, err.code));
  });

  app.setNotFoundHandler((request, reply) =>
    reply.status(404).send(errorBody(404, `no route for ${request.method} ${request.url.split('?')[0]}`)),
  );

  await app.register(healthRoutes, { state });
  await app.register(modelRoutes, { config, state });
  await app.register(metricsRoutes, { metrics });
  await app.register(classifyRoutes, { config, state, metrics });
  return app;
}
