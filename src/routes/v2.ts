/**
 * KServe Open Inference Protocol (V2) REST endpoints, registered under /v2. Errors on these
 * routes use the protocol's body, {"error": "..."}, with the same statuses as our own routes.
 */
import type { FastifyError, FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { answerError } from '../http/answer-error.js';
import type { Config } from '../config.js';
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
  v2ReadySchema,
  v2ServerSchema,
} from '../http/schemas.js';
import '../http/route-config.js';
import {
  imagesOf,
  inferRequestSchema,
  outputConditions,
  outputsOf,
  ProtocolError,
  tensorMetadata,
  SCORE_OUTPUT,
  defaultOutputs,
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
const params = z.object({ name: z.string().meta({ description: 'the model name (GET /models)' }) });

export default async function v2Routes(instance: FastifyInstance, { config, state }: Options): Promise<void> {
  const app = instance.withTypeProvider<ZodTypeProvider>();
  app.setErrorHandler((err: FastifyError | ProtocolError, request, reply) => {
    if (err instanceof ProtocolError) return reply.status(err.status).send({ error: err.message });
    const problems = validationProblems(err, true);
    if (problems !== undefined) return reply.status(400).send({ error: problems });
    if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
      return reply.status(415).send({ error: 'the request body must be application/json' });
    const { status, message } = answerError(err, request, reply);
    return reply.status(status).send({ error: message });
  });
  app.setNotFoundHandler((request, reply) =>
    reply.status(404).send({ error: `no route for ${request.method} ${request.url.split('?')[0]}` }),
  );

  /** The model called `name`: 404 for one this server does not serve, 503 while loading. */
  const model = (name: string) => {
    if (!state.models) throw errors.notReady();
    return state.models.get(name);
  };
  app.get(
    '/',
    {
      schema: {
        summary: 'Open Inference Protocol: server metadata',
        response: { 200: body('server metadata', v2ServerSchema), ...errorsOf(COMMON_ERRORS) },
      },
    },
    async () => ({ ...SERVER, extensions: [] }),
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

  const modelSchema = {
    summary: 'Open Inference Protocol: model metadata',
    params,
    response: {
      200: body('the input and output tensors', v2ModelSchema),
      ...errorsOf({ ...COMMON_ERRORS, 404: 'unknown model', 503: 'model loading' }),
    },
  };
  app.get('/models/:name', { schema: modelSchema }, async (request) => {
    const classifier = model(request.params.name);
    const { manifest } = classifier;
    return {
      name: classifier.name,
      versions: [],
      platform: 'predify_onnxruntime',
      ...tensorMetadata(manifest),
      parameters: {
        timesteps_default: classifier.defaultTimesteps(manifest.defaultProfile),
        timesteps_max: config.MAX_TIMESTEPS,
        profile_default: manifest.defaultProfile,
        profiles: Object.keys(classifier.profiles).join(','),
        labels: manifest.labels.join(','),
        pcoders: manifest.pcoders.map((pc) => pc.name).join(','),
        ...outputConditions(manifest),
      },
    };
  });

  const modelReadySchema = {
    summary: 'Open Inference Protocol: model ready',
    params,
    response: {
      200: body('ready', v2ModelReadySchema),
      400: body('not ready', v2ModelReadySchema),
      ...errorsOf({ ...COMMON_ERRORS, 404: 'unknown model' }),
    },
  };
  app.get('/models/:name/ready', { schema: modelReadySchema }, async (request, reply) => {
    const { name } = request.params;
    const ready = state.models !== undefined && !state.closing && model(name).status === 'ready';
    return reply.status(ready ? 200 : 400).send({ name, ready });
  });

  const inferSchema = {
    summary: 'Open Inference Protocol: inference on preprocessed FP32 tensors',
    description:
      'One input tensor `input`, FP32, shape [N, C, H, W] or [C, H, W], normalised as the model expects; ' +
      'data flat or nested, row-major. parameters.timesteps and parameters.profile as for /classify. ' +
      'Outputs: probabilities [N, T+1, classes], predictions [N, T+1] (INT64), pcoder_errors [N, T+1, PCoders].',
    params,
    body: inferRequestSchema({ maxTimesteps: config.MAX_TIMESTEPS }),
    response: {
      200: body('per-timestep outputs', v2InferResponseSchema),
      ...errorsOf({
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
  };
  app.post(
    '/models/:name/infer',
    // Tensors as JSON numbers take ~10 bytes a value: the image limit, not the JSON one.
    {
      bodyLimit: config.BODY_LIMIT_BYTES,
      schema: inferSchema,
      // A model this server does not serve is a 404 whatever the body: the URL is what is wrong.
      preValidation: async (request) => void model(request.params.name),
    },
    async (request) => {
      const classifier = model(request.params.name);
      const { manifest } = classifier;
      const { body } = request;
      const profiles = Object.keys(classifier.profiles);
      const asked = body.parameters?.profile;
      if (asked !== undefined && !profiles.includes(asked))
        throw new ProtocolError(`parameters.profile must be one of ${profiles.join(', ')}`);
      if (!manifest.corruptionScore && body.outputs?.some((o) => o.name === SCORE_OUTPUT))
        throw new ProtocolError(
          `model ${manifest.name} has no calibrated corruption score: ask for other outputs`,
        );
      // A request's batch is an API limit, not the engine's batch: with BATCH_MAX_SIZE=auto, the
      // largest size the engine may choose.
      const images = imagesOf(
        body,
        manifest,
        config.BATCH_MAX_SIZE === 'auto' ? TUNING.maxSize : config.BATCH_MAX_SIZE,
      );
      const p = body.parameters ?? {};
      const resolved = classifier.resolve({
        profile: p.profile,
        timesteps: p.timesteps,
        maxTimesteps: p.max_timesteps,
        tolerance: p.tolerance,
        patience: p.patience,
        confidence: p.confidence,
        topk: 1,
      });
      const { profile, timesteps, settle, ruleSource } = resolved;

      // One engine job per image: they share the engine's batches like any other requests.
      const settled = await Promise.allSettled(
        images.map((image) =>
          classifier.classify(image, {
            timesteps,
            ...(settle ? { settle } : {}),
            topk: 1,
            profile,
            signal: request.lifetime.signal,
            requestId: request.id,
          }),
        ),
      );
      if (pastDeadline(request)) return;
      const failed = settled.find((s) => s.status === 'rejected');
      if (failed) throw failed.reason;
      const results = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
      return {
        model_name: classifier.name,
        ...(body.id !== undefined ? { id: body.id } : {}),
        parameters: {
          timesteps: Math.max(...results.map((r) => r.timesteps)),
          profile,
          ...(settle
            ? {
                max_timesteps: timesteps,
                tolerance: settle.tolerance,
                patience: settle.patience,
                ...(settle.confidence !== undefined ? { confidence: settle.confidence } : {}),
                rule: ruleSource ?? 'asked',
              }
            : {}),
        },
        outputs: outputsOf(
          results,
          manifest,
          body.outputs?.map((o) => o.name) ?? defaultOutputs(manifest, settle !== undefined),
        ),
      };
    },
  );
}
