/**
 * KServe Open Inference Protocol (V2) REST endpoints, registered under /v2. Errors on these
 * routes use the protocol's body, {"error": "..."}, with the same statuses as our own routes.
 */
import type { FastifyError, FastifyInstance } from 'fastify';
import { answerError } from '../http/answer-error.js';
import type { Config } from '../config.js';
import { errors } from '../errors.js';
import { pastDeadline } from '../http/deadline.js';
import '../http/route-config.js';
import {
  imagesOf,
  inferRequestSchema,
  outputsOf,
  ProtocolError,
  tensorMetadata,
  OUTPUT_NAMES,
} from '../protocol/open-inference.js';
import type { ServiceState } from '../service-state.js';
import { VERSION } from '../version.js';

interface Options {
  config: Config;
  state: ServiceState;
}

const SERVER = { name: 'predify-serve', version: VERSION };

export default async function v2Routes(app: FastifyInstance, { config, state }: Options): Promise<void> {
  app.setErrorHandler((err: FastifyError | ProtocolError, request, reply) => {
    if (err instanceof ProtocolError) return reply.status(err.status).send({ error: err.message });
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
  app.get('/', async () => ({ ...SERVER, extensions: [] }));

  // Liveness answers however loaded the process is, like /healthz.
  app.get('/health/live', { config: { public: true, alwaysAnswer: true } }, async () => ({ live: true }));
  // The protocol says false is a 4xx; a model still loading or a server draining is not ready.
  app.get('/health/ready', { config: { public: true } }, async (_request, reply) => {
    const ready =
      state.models !== undefined && !state.closing && state.models.all.every((m) => m.status === 'ready');
    return reply.status(ready ? 200 : 400).send({ ready });
  });

  app.get<{ Params: { name: string } }>('/models/:name', async (request) => {
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
      },
    };
  });

  app.get<{ Params: { name: string } }>('/models/:name/ready', async (request, reply) => {
    const { name } = request.params;
    const ready = state.models !== undefined && !state.closing && model(name).status === 'ready';
    return reply.status(ready ? 200 : 400).send({ name, ready });
  });

  app.post<{ Params: { name: string } }>(
    '/models/:name/infer',
    // Tensors as JSON numbers take ~10 bytes a value: the image limit, not the JSON one.
    { bodyLimit: config.BODY_LIMIT_BYTES },
    async (request) => {
      const classifier = model(request.params.name);
      const { manifest } = classifier;
      const parsed = inferRequestSchema({
        maxTimesteps: config.MAX_TIMESTEPS,
        profiles: Object.keys(classifier.profiles),
      }).safeParse(request.body);
      if (!parsed.success)
        throw new ProtocolError(
          parsed.error.issues
            .map((i) => (i.path.length ? `${i.path.join('.')}: ${i.message}` : i.message))
            .join('; '),
        );
      const body = parsed.data;
      const images = imagesOf(body, manifest, config.BATCH_MAX_SIZE);
      const { profile, timesteps } = classifier.resolve({ ...body.parameters, topk: 1 });

      // One engine job per image: they share the engine's batches like any other requests.
      const settled = await Promise.allSettled(
        images.map((image) =>
          classifier.classify(image, {
            timesteps,
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
        parameters: { timesteps, profile },
        outputs: outputsOf(results, manifest, body.outputs?.map((o) => o.name) ?? OUTPUT_NAMES),
      };
    },
  );
}
