/**
 * The OpenAPI 3.1 document of every route, generated from the zod schemas that validate the
 * requests (src/http/schemas.ts, src/protocol/open-inference.ts). Built per model: the query
 * limits (classes, profiles) are the loaded model's; while it loads they are left open.
 */
import { z } from 'zod';
import type { Config } from '../config.js';
import type { ModelSet } from '../engine/model-set.js';
import { errors } from '../errors.js';
import { IMAGE_MEDIA_TYPES } from '../image/preprocess.js';
import { inferRequestSchema } from '../protocol/open-inference.js';
import { VERSION } from '../version.js';
import {
  classificationSchema,
  classifyQuerySchema,
  errorBodySchema,
  healthSchema,
  modelsSchema,
  readySchema,
  stepSchema,
  v2ErrorSchema,
  v2InferResponseSchema,
  v2LiveSchema,
  v2ModelReadySchema,
  v2ModelSchema,
  v2ReadySchema,
  v2ServerSchema,
} from './schemas.js';

type Json = Record<string, unknown>;

/**
 * Schemas shared by several places of the document (recursive ones, which zod emits as
 * $defs) go to components.schemas; every conversion goes through here to collect them.
 */
const components: Record<string, Json> = {};

function jsonSchema(schema: z.ZodType, io: 'input' | 'output' = 'output'): Json {
  const json = JSON.stringify(z.toJSONSchema(schema, { io, unrepresentable: 'any' }));
  const out = JSON.parse(json.replaceAll('"#/$defs/', '"#/components/schemas/')) as Json;
  // The document's dialect (OpenAPI 3.1: JSON Schema 2020-12) applies; shared schemas move.
  if (out['$defs']) Object.assign(components, out['$defs']);
  delete out['$defs'];
  delete out['$schema'];
  return out;
}

const content = (schema: z.ZodType, type = 'application/json') => ({
  [type]: { schema: jsonSchema(schema) },
});

/** Each property of a query schema as an OpenAPI query parameter. */
function queryParameters(schema: z.ZodObject): Json[] {
  const out = jsonSchema(schema) as { properties: Record<string, Json> };
  const input = jsonSchema(schema, 'input') as { required?: string[] };
  return Object.entries(out.properties).map(([name, { description, ...s }]) => ({
    name,
    in: 'query',
    required: input.required?.includes(name) ?? false,
    ...(description ? { description } : {}),
    schema: s,
  }));
}

/** Our error body, for the statuses a route can answer with and the codes behind them. */
function errorResponses(statuses: Record<number, string>, schema: z.ZodType = errorBodySchema) {
  return Object.fromEntries(
    Object.entries(statuses).map(([status, description]) => [
      status,
      { description, content: content(schema) },
    ]),
  );
}

const code = (...factories: { code: string }[]) => factories.map((f) => f.code).join(', ');

/** What any route behind the API key, the deadline and the load shedding can answer. */
const COMMON_ERRORS = {
  401: `missing or wrong API key, when API_KEYS is set (${code(errors.unauthorized)})`,
  503: `the event loop is overloaded; Retry-After says when to try again (${code(errors.underPressure)})`,
};

/**
 * The API's description. With models loaded it names them, and a query's limits are what some
 * model allows: the profiles of every model, top-k up to the largest number of classes.
 */
export function openApiDocument(config: Config, models?: ModelSet): Json {
  const profiles = models && [...new Set(models.all.flatMap((m) => Object.keys(m.profiles)))];
  const query = classifyQuerySchema({
    maxTimesteps: config.MAX_TIMESTEPS,
    defaultTopk: config.DEFAULT_TOPK,
    ...(models && profiles
      ? {
          classes: Math.max(...models.all.map((m) => m.manifest.labels.length)),
          profiles,
          models: models.names,
          ...(models.all.length === 1 ? { defaultProfile: models.default.manifest.defaultProfile } : {}),
        }
      : {}),
  });
  const infer = inferRequestSchema({
    maxTimesteps: config.MAX_TIMESTEPS,
    profiles: profiles ?? [],
  });
  const imageBody = Object.fromEntries(
    IMAGE_MEDIA_TYPES.map((type) => [type, { schema: { type: 'string', contentMediaType: type } }]),
  );
  const publicRoute = { security: [] };
  /** A route without an API key that answers one document of `type`. */
  const publicGet = (
    summary: string,
    description: string,
    type: string,
    schema: Json = { type: 'string' },
  ) => ({
    get: { summary, ...publicRoute, responses: { 200: { description, content: { [type]: { schema } } } } },
  });
  const modelName = {
    name: 'name',
    in: 'path',
    required: true,
    description: 'the model name (GET /models)',
    schema: { type: 'string', ...(models ? { enum: models.names } : {}) },
  };
  const v2Errors = (statuses: Record<number, string>) => errorResponses(statuses, v2ErrorSchema);

  const paths = {
    '/classify': {
      post: {
        summary: 'Classify one image over timesteps',
        description:
          'The image as the body (PNG, JPEG, WebP, GIF, AVIF, TIFF) or as the one file of a multipart form. ' +
          'With Accept: text/event-stream or application/x-ndjson, one `step` event per timestep is streamed as it is computed, then a `result` event (or an `error` event).',
        parameters: queryParameters(query),
        requestBody: {
          required: true,
          content: {
            ...imageBody,
            'multipart/form-data': {
              schema: {
                type: 'object',
                properties: { image: { type: 'string', contentMediaType: 'application/octet-stream' } },
              },
            },
          },
        },
        responses: {
          200: {
            description: 'the classification at every timestep t = 0..timesteps',
            content: {
              ...content(classificationSchema),
              'text/event-stream': {
                schema: {
                  type: 'string',
                  description: `events \`step\` (data: ${JSON.stringify(jsonSchema(stepSchema))}), then \`result\` (data: the classification without \`steps\`) or \`error\` (data: the error body)`,
                },
              },
              'application/x-ndjson': {
                schema: {
                  type: 'string',
                  description: 'one JSON object a line, with "type": "step", "result" or "error"',
                },
              },
            },
          },
          ...errorResponses({
            400: 'invalid query, missing or malformed image, malformed multipart form',
            ...COMMON_ERRORS,
            408: `the body did not arrive within REQUEST_TIMEOUT_MS (${code(errors.requestTimeout)})`,
            413: `image over BODY_LIMIT_BYTES, or a multipart form over its limits`,
            415: `not an image media type (${code(errors.unsupportedMediaType)})`,
            422: `the body is not a decodable image (${code(errors.imageUndecodable)})`,
            500: `the engine failed on this request's batch (${code(errors.engineFailed)})`,
            503: `model loading, queue full (Retry-After), or overloaded (${code(errors.notReady, errors.overloaded, errors.underPressure)})`,
            504: `no answer within REQUEST_TIMEOUT_MS (${code(errors.answerTimeout)})`,
          }),
        },
      },
    },
    '/models': {
      get: {
        summary: 'The served model: input, labels, PCoders, hyperparameter profiles, timestep limits',
        responses: {
          200: { description: 'the model', content: content(modelsSchema) },
          ...errorResponses({ ...COMMON_ERRORS, 503: `model loading (${code(errors.notReady)})` }),
        },
      },
    },
    '/healthz': {
      get: {
        summary: 'Liveness: the process answers, and its engines can run',
        ...publicRoute,
        responses: {
          200: { description: 'alive', content: content(healthSchema) },
          503: {
            description: 'an engine died and could not be restarted: the process is exiting',
            content: content(healthSchema),
          },
        },
      },
    },
    '/readyz': {
      get: {
        summary: 'Readiness: the model is loaded and the server is taking requests',
        ...publicRoute,
        responses: {
          200: { description: 'ready', content: content(readySchema) },
          503: {
            description: 'loading, closing, restarting a dead engine, or overloaded in the last second',
            content: content(readySchema),
          },
        },
      },
    },
    '/metrics': publicGet('Prometheus metrics', 'text exposition format', 'text/plain'),
    '/openapi.json': publicGet('This document', 'OpenAPI 3.1', 'application/json', { type: 'object' }),
    '/docs': publicGet('This document, rendered (Swagger UI, served locally)', 'HTML', 'text/html'),
    '/': publicGet(
      'The page: choose an image and watch its classification stream in, timestep by timestep',
      'HTML',
      'text/html',
    ),
    '/page/app.js': publicGet("The page's script", 'JavaScript', 'text/javascript'),
    '/page/style.css': publicGet("The page's style sheet", 'CSS', 'text/css'),
    '/v2': {
      get: {
        summary: 'Open Inference Protocol: server metadata',
        responses: {
          200: { description: 'server metadata', content: content(v2ServerSchema) },
          ...v2Errors(COMMON_ERRORS),
        },
      },
    },
    '/v2/health/live': {
      get: {
        summary: 'Open Inference Protocol: server live',
        ...publicRoute,
        responses: { 200: { description: 'live', content: content(v2LiveSchema) } },
      },
    },
    '/v2/health/ready': {
      get: {
        summary: 'Open Inference Protocol: server ready',
        ...publicRoute,
        responses: {
          200: { description: 'ready', content: content(v2ReadySchema) },
          400: {
            description: 'not ready: the model is loading or the server is closing',
            content: content(v2ReadySchema),
          },
        },
      },
    },
    '/v2/models/{name}': {
      get: {
        summary: 'Open Inference Protocol: model metadata',
        parameters: [modelName],
        responses: {
          200: { description: 'the input and output tensors', content: content(v2ModelSchema) },
          ...v2Errors({ ...COMMON_ERRORS, 404: 'unknown model', 503: 'model loading' }),
        },
      },
    },
    '/v2/models/{name}/ready': {
      get: {
        summary: 'Open Inference Protocol: model ready',
        parameters: [modelName],
        responses: {
          200: { description: 'ready', content: content(v2ModelReadySchema) },
          400: { description: 'not ready', content: content(v2ModelReadySchema) },
          ...v2Errors({ ...COMMON_ERRORS, 404: 'unknown model' }),
        },
      },
    },
    '/v2/models/{name}/infer': {
      post: {
        summary: 'Open Inference Protocol: inference on preprocessed FP32 tensors',
        description:
          'One input tensor `input`, FP32, shape [N, C, H, W] or [C, H, W], normalised as the model expects; ' +
          'data flat or nested, row-major. parameters.timesteps and parameters.profile as for /classify. ' +
          'Outputs: probabilities [N, T+1, classes], predictions [N, T+1] (INT64), pcoder_errors [N, T+1, PCoders].',
        parameters: [modelName],
        requestBody: {
          required: true,
          content: { 'application/json': { schema: jsonSchema(infer, 'input') } },
        },
        responses: {
          200: { description: 'per-timestep outputs', content: content(v2InferResponseSchema) },
          ...v2Errors({
            400: 'a request the protocol or the model cannot serve: the message names the field',
            ...COMMON_ERRORS,
            404: 'unknown model',
            413: 'body over BODY_LIMIT_BYTES',
            415: 'not application/json',
            500: 'the engine failed',
            503: 'model loading, queue full or overloaded',
            504: 'no answer within REQUEST_TIMEOUT_MS',
          }),
        },
      },
    },
  };

  return {
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
      schemas: { ...components },
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'one of API_KEYS' },
        apiKey: { type: 'apiKey', in: 'header', name: 'x-api-key', description: 'one of API_KEYS' },
      },
    },
    paths,
  };
}
