/**
 * POST /classify: an image in the body or a multipart form, classified at every timestep, as
 * JSON, a server-sent event stream or NDJSON; the request's fields are checked by resolveRequest.
 */
import multipart from '@fastify/multipart';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Config } from '../config/config.js';
import type { Classification } from '../engine/classifier.js';
import { answerError } from '../http/answer-error.js';
import { eventStream, STREAM_MEDIA_TYPES, streamFormat } from '../http/event-stream.js';
import { errorBody, errors, ServiceError } from '../errors.js';
import type { Metrics } from '../metrics.js';
import { pastDeadline } from '../http/deadline.js';
import { IMAGE_MEDIA_TYPES, decodeForModel } from '../image/preprocess.js';
import type { ServiceState } from '../service-state.js';
import { code, COMMON_ERRORS, errorResponses } from '../http/responses.js';
import {
  classificationSchema,
  classifyQuerySchema,
  stepSchema,
  type ClassifyQuery,
} from '../http/schemas.js';

interface Options {
  config: Config;
  state: ServiceState;
  metrics: Metrics;
}

const mediaTypes: readonly string[] = IMAGE_MEDIA_TYPES;

/** The route's schema: its query's validator and the document's description of the route. */
function routeSchema(config: Config) {
  // The body is read by the image and multipart parsers (bytes, a streamed form), not by a
  // schema: these only describe it.
  const image = (type: string) => ({ schema: z.unknown().meta({ type: 'string', contentMediaType: type }) });
  const form = z.unknown().meta({
    type: 'object',
    properties: { image: { type: 'string', contentMediaType: 'application/octet-stream' } },
  });
  const text = (description: string) => ({ schema: z.string().meta({ description }) });
  return {
    summary: 'Classify one image over timesteps',
    description:
      'The image as the body (PNG, JPEG, WebP, GIF, TIFF) or as the one file of a multipart form. ' +
      'With Accept: text/event-stream or application/x-ndjson, one `step` event per timestep is streamed as it is computed, then a `result` event (or an `error` event).',
    querystring: classifyQuerySchema({ maxTimesteps: config.MAX_TIMESTEPS }),
    body: {
      content: {
        ...Object.fromEntries(IMAGE_MEDIA_TYPES.map((type) => [type, image(type)])),
        'multipart/form-data': { schema: form },
      },
    },
    response: {
      200: {
        description: 'the classification at every timestep t = 0..timesteps',
        content: {
          'application/json': { schema: classificationSchema },
          'text/event-stream': text(
            `events \`step\` (data: ${JSON.stringify(z.toJSONSchema(stepSchema, { target: 'draft-2020-12' }))}), then \`result\` (data: the classification without \`steps\`) or \`error\` (data: the error body)`,
          ),
          'application/x-ndjson': text('one JSON object a line, with "type": "step", "result" or "error"'),
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
  };
}

export default async function classifyRoutes(
  instance: FastifyInstance,
  { config, state, metrics }: Options,
): Promise<void> {
  const app = instance.withTypeProvider<ZodTypeProvider>();
  // Only images and multipart forms reach this route: any other media type is a 415 from
  // Fastify before the body is read.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(
    [...IMAGE_MEDIA_TYPES],
    { parseAs: 'buffer', bodyLimit: config.BODY_LIMIT_BYTES },
    (_req, body, done) => done(null, body),
  );
  await app.register(multipart, {
    // One image and a few small fields: anything bigger is refused while parsing, not buffered.
    limits: {
      fileSize: config.BODY_LIMIT_BYTES,
      files: 1,
      fields: 8,
      parts: 9,
      fieldNameSize: 100,
      fieldSize: 1024,
      headerPairs: 32,
    },
  });

  // Admission control before the body is read: when the engine's queue and batch are already
  // full, a request is refused at once instead of being read and decoded only to be refused
  // by the engine. Under a flood this keeps the cores for the requests already admitted.
  // The batch is each engine's own (BATCH_MAX_SIZE=auto measures it at load, and a restarted
  // engine keeps it): the largest counts, known once the models are loaded.
  let loaded: number | undefined;
  const capacity = () => {
    if (config.MAX_QUEUE === 0) return Infinity;
    if (loaded === undefined && state.models)
      loaded = config.MAX_QUEUE + Math.max(0, ...state.models.all.map((m) => m.batch?.size ?? 0));
    return loaded ?? config.MAX_QUEUE;
  };
  let inFlight = 0;
  app.addHook('onRequest', async (request) => {
    if (inFlight >= capacity()) throw errors.overloaded(inFlight);
    inFlight++;
    metrics.classifyInFlight.inc();
    request.lifetime.finally(() => {
      inFlight--;
      metrics.classifyInFlight.dec();
    });
  });

  app.post('/classify', { schema: routeSchema(config) }, async (request, reply) => {
    try {
      return await classify(request, request.query, reply);
    } catch (err) {
      // Answered already for its deadline: what the handler was still doing no longer matters.
      if (pastDeadline(request)) return;
      throw err;
    }
  });

  async function classify(request: FastifyRequest, query: ClassifyQuery, reply: FastifyReply) {
    if (!state.models) throw errors.notReady();
    const classifier = state.models.get(query.model);
    const { max_timesteps: maxTimesteps, ...rest } = query;
    const asked = classifier.resolve({ ...rest, maxTimesteps });
    const bytes = await readImage(request, config.BODY_LIMIT_BYTES);
    const decodeStart = performance.now();
    const image = await decodeForModel(bytes, classifier.manifest.input);
    const decodeMs = performance.now() - decodeStart;
    // A client that disconnects, or a request past its deadline, leaves the batch at the
    // next timestep boundary (or never joins it).
    const job = { ...asked, signal: request.lifetime.signal, requestId: request.id };
    const summary = (result: Classification) => {
      metrics.queueWait.observe(result.queueMs / 1000);
      metrics.inference.observe(result.inferenceMs / 1000);
      metrics.requestedTimesteps.observe(result.timesteps);
      const { queueMs, inferenceMs, timesteps, stop } = result;
      const timings = { decodeMs: round(decodeMs), queueMs: round(queueMs), inferenceMs: round(inferenceMs) };
      const head = { model: classifier.name, profile: asked.profile, timesteps, ...(stop ? { stop } : {}) };
      return { ...head, prediction: result.prediction, corruptionScore: result.corruptionScore, timings };
    };

    const format = streamFormat(request.headers.accept);
    if (!format) {
      const result = await classifier.classify(image.input, job);
      const { timings, ...head } = summary(result);
      return reply.send({ ...head, steps: result.steps, timings });
    }
    // Streaming: one event per timestep as soon as the engine has computed it, then the result.
    const events = eventStream(format);
    classifier
      .classify(image.input, { ...job, onStep: (step) => events.write('step', step) })
      .then(
        (result) => events.write('result', summary(result)),
        (err: FastifyError) => {
          if (request.lifetime.signal.aborted) return;
          const { status, message, code } = answerError(err, request, reply);
          events.write('error', errorBody(status, message, code));
        },
      )
      .finally(events.end);
    return reply.header('cache-control', 'no-cache').type(STREAM_MEDIA_TYPES[format]).send(events.stream);
  }
}

async function readImage(request: FastifyRequest, limit: number): Promise<Buffer> {
  if (!request.isMultipart()) {
    if (!Buffer.isBuffer(request.body) || request.body.length === 0) throw errors.imageMissing();
    return request.body;
  }
  // The multipart parser's own errors carry no status when the body is malformed: they are
  // the client's fault, so they become 400s (413 for a file over the limit).
  const clientFault = (err: Error & { statusCode?: number; code?: string }) => {
    if (err.code === 'FST_REQ_FILE_TOO_LARGE') return errors.imageTooLarge(limit);
    const tooMany = err.code && MULTIPART_LIMITS[err.code];
    if (tooMany) return errors.multipartLimit(tooMany);
    if (err instanceof ServiceError || (err.statusCode && err.statusCode < 500)) return err;
    return errors.multipartInvalid(err.message.split('\n')[0]!);
  };
  // Every part is read, so that a second file is refused (413) rather than ignored.
  let image: Buffer | undefined;
  try {
    for await (const part of request.parts()) {
      if (part.type !== 'file') continue;
      // The parser cuts a part's headers at 80 KiB without saying so, and what is cut (often
      // the part's content type, after a huge file name) would be reported as something else.
      if (Buffer.byteLength(part.filename) > MAX_FILENAME_BYTES)
        throw errors.multipartInvalid(`the file name is longer than ${MAX_FILENAME_BYTES} bytes`);
      const type = part.mimetype.toLowerCase();
      if (!mediaTypes.includes(type)) throw errors.unsupportedMediaType(part.mimetype, mediaTypes);
      image = await part.toBuffer();
    }
  } catch (err) {
    throw clientFault(err as Error);
  }
  if (!image) throw errors.noImageInForm();
  if (image.length === 0) throw errors.imageMissing();
  return image;
}

/** @fastify/multipart's limit errors, by what there was too much of */
const MULTIPART_LIMITS: Record<string, string> = {
  FST_PARTS_LIMIT: 'parts',
  FST_FILES_LIMIT: 'files',
  FST_FIELDS_LIMIT: 'fields',
};

const MAX_FILENAME_BYTES = 1024;

const round = (ms: number) => Math.round(ms * 100) / 100;
