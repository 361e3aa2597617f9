import type { FastifyInstance } from 'fastify';
import type { Metrics } from '../metrics.js';

export default async function metricsRoutes(
  app: FastifyInstance,
  { metrics }: { metrics: Metrics },
): Promise<void> {
  app.get('/metrics', { config: { public: true, alwaysAnswer: true } }, async (_request, reply) => {
    reply.type(metrics.registry.contentType);
    return metrics.registry.metrics();
  });
}
