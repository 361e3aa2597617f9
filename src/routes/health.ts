import type { FastifyInstance } from 'fastify';
import type { ServiceState } from '../service-state.js';

export default async function healthRoutes(
  app: FastifyInstance,
  { state }: { state: ServiceState },
): Promise<void> {
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => {
    if (!state.classifier) return reply.status(503).send({ status: 'loading' });
    return { status: 'ready', model: state.classifier.name };
  });
}
