/**
 * KServe Open Inference Protocol (V2) REST endpoints, registered under /v2. Errors on these
 * routes use the protocol's body, {"error": "..."}, with the same statuses as our own routes.
 */
import type { FastifyError, FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { answerError } from '../http/answer-error.js';
import type { Config } from '../config/config.js';
import { errors } from '../errors.js';
import { pastDeadline } from '../http/deadline.js';
import { validationProblems } from '../http/query.js';
import { body, COMMON_ERRORS, errorResponses } from '../http/responses.js';
import {
  v2ErrorSchema,
  v2InferResponseSchema,
  v2LiveSchema,
  v2ModelReadySchema,
  v2ModelSchema,
  v2RepositoryIndexSchema,
  v2ReadySchema,
  v2ServerSchema,
} from '../http/schemas.js';
import '../http/route-config.js';
import { answerBody, HEADER_LENGTH, inputData, splitBody } from '../protocol/binary-data.js';
import { infer } from '../protocol/infer.js';
import {
  servedModel,
  extensionsFor,
  inferRequestSchema,
  modelMetadata,
  ProtocolError,
} from '../protocol/open-inference.js';
import { modelsReady, type ServiceState } from '../service-state.js';
import { TUNING } from '../engine/batch-tuning.js';
import { VERSION } from '../version.js';

interface Options {
  config: Config;
  state: ServiceState;
}

const SERVER = { name: 'predify-serve', version: VERSION };

const errorsOf = (statuses: Record<number, string>) => errorResponses(statuses, v2ErrorSchema);
const params = z.object({
  name: z.string().meta({ description: 'the model name (GET /models)' }),
  version: z.string().optional().meta({ description: "the model's version (its metadata's versions)" }),
});

declare module 'fastify' {
  interface FastifyRequest {
    /** the bytes after the JSON of a binary-data request (binary tensor data extension) */
    binaryTail: Buffer | undefined;
  }
}

export default async function v2Routes(instance: FastifyInstance, { config, state }: Options): Promise<void> {
  const app = instance.withTypeProvider<ZodTypeProvider>();
  app.setErrorHandler((err: FastifyError | ProtocolError, request, reply) => {
    if (err instanceof ProtocolError) return reply.status(err.status).send({ error: err.message });
    const problems = validationProblems(err, true);
    if (problems !== undefined) return reply.status(400).send({ error: problems });
    const { status, message } = answerError(err, request, reply);
    return reply.status(status).send({ error: message });
  });
  app.setNotFoundHandler((request, reply) =>
    reply.status(404).send({ error: `no route for ${request.method} ${request.url.split('?')[0]}` }),
  );

  const model = (name: string, version?: string) => servedModel(state.models, name, version);
  app.get(
    '/',
    {
      schema: {
        summary: 'Open Inference Protocol: server metadata',
        response: { 200: body('server metadata', v2ServerSchema), ...errorsOf(COMMON_ERRORS) },
      },
    },
    async () => ({ ...SERVER, extensions: extensionsFor(config.MODEL_CONTROL) }),
  );

  // Liveness answers however loaded the process is, like /healthz.
  app.get(
    '/health/live',
    {
      config: { public: true, alwaysAnswer: true },
      schema: {
        summary: 'Open Inference Protocol: server live',
        response: { 200: body('live', v2LiveSchema) },
      },
    },
    async () => ({ live: true }),
  );
  // The protocol says false is a 4xx; a model still loading or a server draining is not ready.
  const readySchema = {
    summary: 'Open Inference Protocol: server ready',
    response: {
      200: body('ready', v2ReadySchema),
      400: body('not ready: the model is loading or the server is closing', v2ReadySchema),
    },
  };
  app.get('/health/ready', { config: { public: true }, schema: readySchema }, async (_request, reply) => {
    const ready = modelsReady(state, config.STRICT_READINESS);
    return reply.status(ready ? 200 : 400).send({ ready });
  });

  const versioned = (path: string) => [
    path,
    path.replace('/models/:name', '/models/:name/versions/:version'),
  ];

  const modelSchema = {
    summary: 'Open Inference Protocol: model metadata',
    params,
    response: {
      200: body('the input and output tensors', v2ModelSchema),
      ...errorsOf({ ...COMMON_ERRORS, 404: 'unknown model or version', 503: 'model loading' }),
    },
  };
  for (const url of versioned('/models/:name'))
    app.get(url, { schema: modelSchema }, async (request) => {
      const classifier = model(request.params.name, request.params.version);
      return modelMetadata(classifier.manifest, {
        profiles: Object.keys(classifier.profiles),
        defaultTimesteps: classifier.defaultTimesteps(classifier.manifest.defaultProfile),
        maxTimesteps: config.MAX_TIMESTEPS,
      });
    });

  const modelReadySchema = {
    summary: 'Open Inference Protocol: model ready',
    params,
    response: {
      200: body('ready', v2ModelReadySchema),
      400: body('not ready', v2ModelReadySchema),
      ...errorsOf({ ...COMMON_ERRORS, 404: 'unknown model or version' }),
    },
  };
  for (const url of versioned('/models/:name/ready'))
    app.get(url, { schema: modelReadySchema }, async (request, reply) => {
      const { name, version } = request.params;
      const ready = state.models !== undefined && !state.closing && model(name, version).status === 'ready';
      return reply.status(ready ? 200 : 400).send({ name, ready });
    });

  // JSON, or JSON followed by tensors' bytes (the binary tensor data extension): a client that
  // sends binary data says so with Inference-Header-Content-Length, whatever its content type.
  const jsonParser = app.getDefaultJsonParser('error', 'error');
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (request, body, done) => {
    const declared = request.headers[HEADER_LENGTH];
    const buffer = body as Buffer;
    if (typeof declared === 'string') {
      try {
        const { json, tail } = splitBody(buffer, declared);
        request.binaryTail = tail;
        return jsonParser(request, json.toString('utf8'), done);
      } catch (err) {
        return done(err as Error);
      }
    }
    const type = (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== 'application/json' && !type.endsWith('+json'))
      return done(
        new ProtocolError(
          `the request body must be application/json, or JSON then binary tensor data with ${HEADER_LENGTH}`,
          415,
        ),
      );
    return jsonParser(request, buffer.toString('utf8'), done);
  });
  app.decorateRequest('binaryTail', undefined);

  const inferSchema = {
    summary: 'Open Inference Protocol: inference',
    description:
      'One input tensor `input`: FP32 preprocessed pixels, shape [N, C, H, W] or [C, H, W], normalised as the model expects ' +
      '(data flat or nested, row-major); or BYTES [N], encoded images (base64 strings in JSON), preprocessed as /classify does. ' +
      'Either may travel as binary data after the JSON (binary tensor data extension: Inference-Header-Content-Length, ' +
      'parameters.binary_data_size; outputs with parameters.binary_data, or binary_data_output for all). ' +
      'parameters.timesteps and parameters.profile as for /classify. ' +
      'Outputs: probabilities [N, T+1, classes], predictions [N, T+1] (INT64), pcoder_errors [N, T+1, PCoders].',
    params,
    body: inferRequestSchema({ maxTimesteps: config.MAX_TIMESTEPS }),
    response: {
      200: body(
        'per-timestep outputs (with binary outputs: application/octet-stream, the JSON first)',
        v2InferResponseSchema,
      ),
      ...errorsOf({
        400: 'a request the protocol or the model cannot serve: the message names the field',
        ...COMMON_ERRORS,
        404: 'unknown model or version',
        413: 'body over BODY_LIMIT_BYTES',
        415: 'neither JSON nor JSON with binary tensor data',
        500: 'the engine failed',
        503: 'model loading, queue full or overloaded',
        504: 'no answer within REQUEST_TIMEOUT_MS',
      }),
    },
  };
  // A request's batch is an API limit, not the engine's batch: with BATCH_MAX_SIZE=auto, the
  // largest size the engine may choose.
  const maxBatch = config.BATCH_MAX_SIZE === 'auto' ? TUNING.maxSize : config.BATCH_MAX_SIZE;
  for (const url of versioned('/models/:name/infer'))
    app.post(
      url,
      // Tensors as JSON numbers take ~10 bytes a value: the image limit, not the JSON one.
      {
        bodyLimit: config.BODY_LIMIT_BYTES,
        schema: inferSchema,
        // A model this server does not serve is a 404 whatever the body: the URL is what is wrong.
        preValidation: async (request) => void model(request.params.name, request.params.version),
      },
      async (request, reply) => {
        const classifier = model(request.params.name, request.params.version);
        const data = inputData(request.body, request.binaryTail);
        const answer = await infer({
          classifier,
          request: request.body,
          data,
          maxBatch,
          signal: request.lifetime.signal,
          requestId: request.id,
        }).catch((err: unknown) => {
          if (pastDeadline(request)) return undefined;
          throw err;
        });
        if (answer === undefined) return;
        const out = answerBody(answer, request.body);
        if ('json' in out) return out.json;
        return reply
          .header(HEADER_LENGTH, out.headerLength)
          .type('application/octet-stream')
          .send(out.binary);
      },
    );

  // The repository extension (Triton's): what MODEL_DIR holds, and loads and unloads while
  // serving. Off unless MODEL_CONTROL=explicit, which needs API_KEYS.
  const control = () => {
    if (config.MODEL_CONTROL !== 'explicit') throw errors.modelControlOff();
    if (!state.control) throw errors.notReady();
    return state.control;
  };
  const repositoryErrors = errorsOf({
    ...COMMON_ERRORS,
    403: 'MODEL_CONTROL is not explicit',
    503: 'the models are still loading, or the server is closing',
  });
  app.post(
    '/repository/index',
    {
      schema: {
        summary: 'Repository: the models of MODEL_DIR and their state',
        body: z.object({ ready: z.boolean().optional() }).strict().nullish(),
        response: { 200: body('one entry per model', v2RepositoryIndexSchema), ...repositoryErrors },
      },
    },
    async (request) => control().index(request.body?.ready === true),
  );
  const loadBody = z
    .object({
      parameters: z
        .record(z.string(), z.unknown())
        .refine((p) => Object.keys(p).length === 0, {
          message: 'takes no parameters: the model is loaded from its directory in MODEL_DIR',
        })
        .optional(),
    })
    .strict()
    .nullish();
  const repositoryParams = z.object({ name: z.string() });
  const actions = {
    load: {
      summary: 'Repository: load a model of MODEL_DIR, or reload it from its directory',
      description:
        'The new engine starts beside the running ones; requests switch to it once it is ready, and the engine it ' +
        'replaces finishes what it has. A failed load leaves the model served before serving. ' +
        'Answers 200 with an empty body once the model serves from its directory as it is now.',
      errors: {
        400: 'the model could not be loaded: the message says why',
        404: 'no model directory with that name',
      },
      run: (name: string) => control().load(name),
    },
    unload: {
      summary: 'Repository: stop serving a model, once its requests in flight are answered',
      description: 'Answers 200 with an empty body once it is unloaded.',
      errors: { 404: 'the model is not served', 409: 'the last model served' },
      run: (name: string) => control().unload(name),
    },
  };
  for (const [action, { summary, description, errors: refusals, run }] of Object.entries(actions))
    app.post(
      `/repository/models/:name/${action}`,
      {
        schema: {
          summary,
          description,
          params: repositoryParams,
          body: loadBody,
          response: errorsOf({
            ...COMMON_ERRORS,
            ...refusals,
            403: 'MODEL_CONTROL is not explicit',
            503: 'the models are still loading, or the server is closing',
          }),
        },
      },
      async (request, reply) => {
        await run(request.params.name);
        return reply.status(200).send();
      },
    );
}
