/**
 * The OpenAPI 3.1 document. @fastify/swagger builds it from the routes' own zod schemas (the
 * same ones that validate and serialize), so it lists what is served and describes what is
 * answered by construction. What is added here: the security of public routes, the Swagger
 * UI's own entry, and, once models are loaded, the names, profiles and limits they allow.
 */
import type { FastifyDynamicSwaggerOptions, SwaggerTransform } from '@fastify/swagger';
import { jsonSchemaTransform, jsonSchemaTransformObject } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Config } from '../config/config.js';
import type { ModelSet } from '../engine/model-set.js';
import { VERSION } from '../version.js';
import './route-config.js';

type Json = Record<string, unknown>;
export type OpenApiDocument = Json & { openapi: string };

export function swaggerOptions(config: Config): FastifyDynamicSwaggerOptions {
  return {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'predify-serve',
        version: VERSION,
        description:
          'Image classification with predictive-coding (Predify) dynamics: per-timestep confidence and PCoder errors. ' +
          'Errors on our routes have the body below with a stable code (PREDIFY_ERR_*); ' +
          'the Open Inference Protocol routes under /v2 answer {"error": "..."}.',
      },
      ...(config.API_KEYS.length > 0 ? { security: [{ bearer: [] }, { apiKey: [] }] } : {}),
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: 'one of API_KEYS' },
          apiKey: { type: 'apiKey', in: 'header', name: 'x-api-key', description: 'one of API_KEYS' },
        },
      },
    },
    transform: documentTransform,
    transformObject: jsonSchemaTransformObject,
  };
}

/** The Swagger UI's page: its plugin hides its routes, but the page is part of what we serve. */
const DOCS_PAGE = {
  summary: 'This document, rendered (Swagger UI, served locally)',
  security: [],
  response: { 200: { description: 'HTML', content: { 'text/html': { schema: { type: 'string' } } } } },
};

const documentTransform: SwaggerTransform = (input) => {
  // A plugin's root route ('/' under /v2 or /docs) is served with and without the slash;
  // the document names it without, as Fastify's own route list does.
  const url = input.url.length > 1 ? input.url.replace(/\/$/, '') : input.url;
  if (url === '/docs') return { url, schema: DOCS_PAGE };
  // The zod transform reads a body as one schema; a body described per media type (the images
  // and the form of /classify) is converted here.
  const { body, ...rest } = (input.schema ?? {}) as Json;
  const perMediaType = body && typeof body === 'object' && 'content' in body;
  const out = jsonSchemaTransform({ ...input, url, schema: perMediaType ? rest : input.schema } as never) as {
    url: string;
    schema: Json;
  };
  if (perMediaType) {
    const content = (body as { content: Record<string, { schema: z.ZodType }> }).content;
    out.schema.body = {
      content: Object.fromEntries(
        Object.entries(content).map(([type, { schema }]) => [type, { schema: inputJsonSchema(schema) }]),
      ),
    };
  }
  // Reachable without an API key: the same flag the key check reads.
  if (input.route.config?.public && out.schema && !out.schema.hide) out.schema.security = [];
  return out;
};

function inputJsonSchema(schema: z.ZodType): Json {
  const json = z.toJSONSchema(schema, { io: 'input', target: 'draft-2020-12' }) as Json;
  delete json['$schema'];
  return json;
}

/**
 * The document with what the loaded models allow: their names (`model=`, `{name}`), their
 * profiles, and top-k up to the largest number of classes.
 */
export function describeModels(document: OpenApiDocument, models: ModelSet): OpenApiDocument {
  const doc = structuredClone(document) as unknown as {
    paths: Record<string, Record<string, { parameters?: { name: string; schema: Json }[] }>>;
  };
  const profiles = [...new Set(models.all.flatMap((m) => Object.keys(m.profiles)))];
  const classes = Math.max(...models.all.map((m) => m.manifest.labels.length));
  const narrowed: Record<string, Json> = {
    model: { enum: models.names },
    name: { enum: models.names },
    profile: { enum: profiles },
    topk: { maximum: classes },
  };
  for (const operations of Object.values(doc.paths))
    for (const operation of Object.values(operations))
      for (const parameter of operation.parameters ?? [])
        Object.assign(parameter.schema, narrowed[parameter.name]);
  return doc as unknown as OpenApiDocument;
}
