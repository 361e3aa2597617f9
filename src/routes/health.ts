/**
 * GET /healthz (liveness) and GET /readyz (readiness): what probes and balancers read.
 */
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { errorBodySchema, healthSchema, readySchema } from '../http/schemas.js';
import { body, code } from '../http/responses.js';
import { errors } from '../errors.js';
import '../http/route-config.js';
import { readiness, type ServiceState } from '../service-state.js';

export default async function healthRoutes(
  instance: FastifyInstance,
  { state, strict }: { state: ServiceState; strict: boolean },
): Promise<void> {
  const app = instance.withTypeProvider<ZodTypeProvider>();
  // Alive unless an engine died and could not be restarted: then the orchestrator should
  // restart the pod (the process also exits once it has drained).
  app.get(
    '/healthz',
    {
      config: { public: true, alwaysAnswer: true },
      schema: {
        summary: 'Liveness: the process answers, and its engines can run',
        response: {
          200: body('alive', healthSchema),
          503: body('an engine died and could not be restarted: the process is exiting', healthSchema),
        },
      },
    },
    async (_request, reply) =>
      state.failed ? reply.status(503).send({ status: 'failed' }) : { status: 'ok' as const },
  );
  app.get(
    '/readyz',
    {
      config: { public: true },
      schema: {
        summary: 'Readiness: the models are loaded and the server is taking requests',
        response: {
          200: body('ready (with STRICT_READINESS=false, `restarting` lists models not ready)', readySchema),
          503: body(
            `loading; closing (draining, or an engine could not be restarted); restarting a dead engine (every model's with STRICT_READINESS=false); overloaded (a request refused for a full queue in the last second); the event loop's overload is our error body (${code(errors.underPressure)})`,
            readySchema.or(errorBodySchema),
          ),
        },
      },
    },
    async (_request, reply) => {
      const ready = readiness(state, strict);
      if (ready.status === 'loading' || ready.status === 'closing') return reply.status(503).send(ready);
      if (ready.status !== 'ready') return reply.header('retry-after', '1').status(503).send(ready);
      const { restarting } = ready;
      return {
        status: 'ready' as const,
        model: state.models!.default.name,
        models: state.models!.names,
        ...(restarting.length > 0 ? { restarting } : {}),
      };
    },
  );
}
