/**
 * GET /openapi.json and /docs: the API's OpenAPI document and its Swagger UI.
 */
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { describeModels, type OpenApiDocument } from '../http/openapi.js';
import '../http/route-config.js';
import type { ServiceState } from '../service-state.js';

/**
 * GET /openapi.json and the Swagger UI at /docs (its assets come from the package, not a CDN).
 * @fastify/swagger, registered before every route, makes the document; the loaded models'
 * limits are added when they are there, so it is finished on request, not at start-up.
 */
export default async function docsRoutes(
  instance: FastifyInstance,
  { state }: { state: ServiceState },
): Promise<void> {
  const app = instance.withTypeProvider<ZodTypeProvider>();
  // The document and its pages are public, like the probes: they describe the API, not data.
  app.addHook('onRoute', (route) => {
    route.config = { ...route.config, public: true };
  });

  // Rebuilt only when the models change (from none to loaded).
  let cached: { for: unknown; doc: OpenApiDocument } | undefined;
  const document = () => {
    if (!cached || cached.for !== state.models) {
      const doc = app.swagger() as OpenApiDocument;
      cached = { for: state.models, doc: state.models ? describeModels(doc, state.models) : doc };
    }
    return cached.doc;
  };

  app.get(
    '/openapi.json',
    {
      config: { public: true },
      schema: {
        summary: 'This document',
        response: {
          200: {
            description: 'OpenAPI 3.1',
            content: { 'application/json': { schema: z.looseObject({ openapi: z.string() }) } },
          },
        },
      },
    },
    async () => document(),
  );

  await app.register(swaggerUi, {
    routePrefix: '/docs',
    transformSpecification: () => document(),
    transformSpecificationClone: false,
    // No validator badge: it would fetch from validator.swagger.io.
    uiConfig: { deepLinking: true, defaultModelsExpandDepth: 0, validatorUrl: null },
    // Same policy as the rest of the service: scripts from here only. No upgrade to https,
    // which TLS termination in front of us decides.
    staticCSP: true,
    transformStaticCSP: (header) =>
      header
        .replace(/\s*upgrade-insecure-requests;?/, '')
        // Swagger UI sets style attributes from script; helmet's own default allows them too.
        .replace(/style-src [^;]*/, "style-src 'self' 'unsafe-inline'"),
  });
}
