/**
 * GET /metrics: the Prometheus registry (requests, engine steps, batches, in-flight images).
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { body } from '../http/responses.js';
import type { Metrics } from '../metrics.js';

export default async function metricsRoutes(
  app: FastifyInstance,
  { metrics }: { metrics: Metrics },
): Promise<void> {
  const schema = {
    summary: 'Prometheus metrics',
    response: { 200: body('text exposition format', z.string(), 'text/plain') },
  };
  app.get('/metrics', { config: { public: true, alwaysAnswer: true }, schema }, async (_request, reply) => {
    reply.type(metrics.registry.contentType);
    return metrics.registry.metrics();
  });
}
