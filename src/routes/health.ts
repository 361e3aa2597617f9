import type { FastifyInstance } from 'fastify';
import '../http/route-config.js';
import type { ServiceState } from '../service-state.js';

/** A refusal for a full queue this recent makes /readyz say so: the balancer should look elsewhere. */
const OVERLOAD_WINDOW_MS = 1000;

export default async function healthRoutes(
  app: FastifyInstance,
  { state }: { state: ServiceState },
): Promise<void> {
  // Alive unless an engine died and could not be restarted: then the orchestrator should
  // restart the pod (the process also exits once it has drained).
  app.get('/healthz', { config: { public: true, alwaysAnswer: true } }, async (_request, reply) =>
    state.failed ? reply.status(503).send({ status: 'failed' }) : { status: 'ok' },
  );
  app.get('/readyz', { config: { public: true } }, async (_request, reply) => {
    if (!state.models) return reply.status(503).send({ status: 'loading' });
    if (state.closing || state.failed) return reply.status(503).send({ status: 'closing' });
    if (state.models.all.some((m) => m.status !== 'ready'))
      return reply.header('retry-after', '1').status(503).send({ status: 'restarting' });
    if (state.overloadedAt !== undefined && Date.now() - state.overloadedAt < OVERLOAD_WINDOW_MS)
      return reply.header('retry-after', '1').status(503).send({ status: 'overloaded' });
    return { status: 'ready', model: state.models.default.name, models: state.models.names };
  });
}
