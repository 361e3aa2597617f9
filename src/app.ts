/**
 * The Fastify application: plugins (CORS, helmet, pressure, multipart, OpenAPI), the request log,
 * the routes, and the error answers; the server (server.ts) listens and loads the models.
 */
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import cors from '@fastify/cors';
import helmet from '@fastify/helmet';
import swagger from '@fastify/swagger';
import underPressure from '@fastify/under-pressure';
import { serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import { errorBody, errors } from './errors.js';
import { installApiKeyAuth } from './http/api-key.js';
import { answerError } from './http/answer-error.js';
import { installEarlyAnswers } from './http/early-answers.js';
import { installDeadline } from './http/deadline.js';
import { swaggerOptions } from './http/openapi.js';
import { installRequestLifetime } from './http/request-lifetime.js';
import './http/route-config.js';
import { httpServerSettings, type Config } from './config/config.js';
import { answerUnknownExpectations, clientErrorHandler } from './http/connection-errors.js';
import { createMetrics, type Metrics } from './metrics.js';
import classifyRoutes from './routes/classify.js';
import healthRoutes from './routes/health.js';
import metricsRoutes from './routes/metrics.js';
import docsRoutes from './routes/docs.js';
import modelRoutes from './routes/models.js';
import pageRoutes from './routes/page.js';
import v2Routes from './routes/v2.js';
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
    // Image routes set their own, larger limit.
    bodyLimit: config.JSON_BODY_LIMIT_BYTES,
    requestIdHeader: 'x-request-id',
    logController: new OneLinePerRequest(),
    ...httpServerSettings(config),
    clientErrorHandler: clientErrorHandler(config.HEADERS_TIMEOUT_MS),
  });
  answerUnknownExpectations(app.server);
  metrics.watchInFlight(
    () => state.models?.all.map((c) => [c.name, c.inFlight, c.inTransit] as [string, number, number]) ?? [],
  );
  // Each route's zod schemas validate its requests and serialize its responses.
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);

  // First, so that every later hook can hang what it takes on the request's lifetime.
  installRequestLifetime(app);

  // Answers given before the body is in keep the connection within a bound (early-answers.ts).
  installEarlyAnswers(app, () => state.closing === true);

  // Headers for browsers: no sniffing, no framing, no referrer, scripts only from here.
  // HSTS and upgrading requests to https belong to whatever terminates TLS in front of us;
  // the page shows the chosen image from a blob: URL.
  await app.register(helmet, {
    hsts: false,
    contentSecurityPolicy: {
      directives: { 'img-src': ["'self'", 'data:', 'blob:'], 'upgrade-insecure-requests': null },
    },
  });
  if (config.CORS_ORIGINS.length > 0) {
    await app.register(cors, {
      origin: config.CORS_ORIGINS.includes('*') ? '*' : config.CORS_ORIGINS,
      methods: ['GET', 'POST'],
      exposedHeaders: ['retry-after', 'x-request-id'],
    });
  }
  // Liveness and metrics answer however loaded the process is; everything else, /readyz
  // included, is refused with a 503 while the event loop lags.
  if (config.EVENT_LOOP_MAX_DELAY_MS > 0) {
    await app.register(underPressure, {
      maxEventLoopDelay: config.EVENT_LOOP_MAX_DELAY_MS,
      pressureHandler: async (request, _reply, type, value) => {
        if (request.routeOptions.config.alwaysAnswer) return;
        const what = value !== undefined && Number.isFinite(value) ? `${type} ${Math.round(value)}` : type;
        throw errors.underPressure(what);
      },
    });
  }
  installApiKeyAuth(app, config.API_KEYS);
  installDeadline(app, config.REQUEST_TIMEOUT_MS);

  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    metrics.httpRequests.inc({ route, method: request.method, status: String(reply.statusCode) });
    metrics.httpDuration.observe({ route }, reply.elapsedTime / 1000);
  });

  // /readyz reports overload for a while after a request was refused for it.
  app.addHook('onError', async (_request, _reply, err) => {
    if ((err as { code?: string }).code === errors.overloaded.code) state.overloadedAt = Date.now();
  });
  app.setErrorHandler((err: FastifyError, request, reply) => {
    const { status, message, code } = answerError(err, request, reply);
    return reply.status(status).send(errorBody(status, message, code));
  });

  app.setNotFoundHandler((request, reply) =>
    reply.status(404).send(errorBody(404, `no route for ${request.method} ${request.url.split('?')[0]}`)),
  );

  // Before the routes, so that it sees each of them: the document is made from their schemas.
  await app.register(swagger, swaggerOptions(config));
  await app.register(healthRoutes, { state, strict: config.STRICT_READINESS });
  await app.register(modelRoutes, { state });
  await app.register(metricsRoutes, { metrics });
  await app.register(classifyRoutes, { config, state, metrics });
  await app.register(v2Routes, { prefix: '/v2', config, state });
  await app.register(docsRoutes, { state });
  await app.register(pageRoutes);
  return app;
}
