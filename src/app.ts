import { STATUS_CODES } from 'node:http';
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance } from 'fastify';
import type { Config } from './config.js';
import classifyRoutes from './routes/classify.js';
import healthRoutes from './routes/health.js';
import modelRoutes from './routes/models.js';
import type { ServiceState } from './service-state.js';

export interface AppOptions {
  config: Config;
  state: ServiceState;
  logger?: FastifyBaseLogger | false;
}

export function errorBody(statusCode: number, message: string, code?: string) {
  return { statusCode, error: STATUS_CODES[statusCode] ?? 'Error', ...(code ? { code } : {}), message };
}

export async function buildApp({ config, state, logger = false }: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: logger || undefined,
    logger: logger ? undefined : false,
    bodyLimit: config.BODY_LIMIT_BYTES,
    requestIdHeader: 'x-request-id',
    // One log line per request, written by the onResponse hook below.
    disableRequestLogging: true,
  });

  app.addHook('onResponse', async (request, reply) => {
    request.log.info(
      { method: request.method, url: request.url, statusCode: reply.statusCode, ms: Math.round(reply.elapsedTime * 100) / 100 },
      'request',
    );
  });

  app.setErrorHandler((err: FastifyError, request, reply) => {
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
    if (status >= 500) {
      // Internals (stack, paths) go to the log, never to the client.
      request.log.error({ err }, 'request failed');
      return reply.status(status).send(errorBody(status, 'internal error while handling the request'));
    }
    return reply.status(status).send(errorBody(status, err.message, err.code));
  });

  app.setNotFoundHandler((request, reply) =>
    reply.status(404).send(errorBody(404, `no route for ${request.method} ${request.url.split('?')[0]}`)),
  );

  await app.register(healthRoutes, { state });
  await app.register(modelRoutes, { config, state });
  await app.register(classifyRoutes, { config, state });
  return app;
}
