import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import type { Config } from '../config.js';
import { openApiDocument } from '../http/openapi.js';
import '../http/route-config.js';
import type { ServiceState } from '../service-state.js';

/**
 * GET /openapi.json and the Swagger UI at /docs (its assets come from the package, not a CDN).
 * The document describes the loaded model's limits, so it is built on request, not at start-up.
 */
export default async function docsRoutes(
  app: FastifyInstance,
  { config, state }: { config: Config; state: ServiceState },
): Promise<void> {
  // The document and its pages are public, like the probes: they describe the API, not data.
  app.addHook('onRoute', (route) => {
    route.config = { ...route.config, public: true };
  });

  // Rebuilt only when the models change (from none to loaded).
  let cached: { for: unknown; doc: Record<string, unknown> } | undefined;
  const document = () => {
    if (!cached || cached.for !== state.models)
      cached = { for: state.models, doc: openApiDocument(config, state.models) };
    return cached.doc;
  };

  app.get('/openapi.json', async () => document());

  // Static mode: @fastify/swagger does not derive anything from Fastify's routes; the UI shows
  // the document above.
  await app.register(swagger, {
    mode: 'static',
    specification: {
      document: { openapi: '3.1.0', info: { title: 'predify-serve', version: '' }, paths: {} },
    },
  });
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
