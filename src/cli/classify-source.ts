/**
 * Where `predify-classify` gets its answers: a model directory opened in this process, or a
 * running server's POST /classify. Both give the same shape of result.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { errors } from '../errors.js';
import { loadConfig, requestDefaults } from '../config/config.js';
import { Classifier } from '../engine/classifier.js';
import { LocalEngine } from '../engine/local-engine.js';
import type { StepSummary } from '../engine/results.js';
import { decodeForModel } from '../image/preprocess.js';
import type { ExecutionProvider } from '../model/onnx-backend.js';

export interface CliResult {
  model: string;
  profile: string;
  /** the last timestep computed */
  timesteps: number;
  /** timesteps=auto: why it stopped there */
  stop?: { reason: string };
  prediction: { label: string; index: number; confidence: number };
  /** how unlike clean data the image looks; null: the model has no calibrated score */
  corruptionScore: number | null;
  steps: StepSummary[];
  /** engine time for this image (the server's figure in server mode) */
  inferenceMs: number;
}

export interface ClassifyRequest {
  timesteps?: number | 'auto';
  /** timesteps=auto: the cap */
  maxTimesteps?: number;
  /** unset: the service's default (DEFAULT_TOPK, 5), the server's own in server mode */
  topk?: number;
  profile?: string;
}

/** Codes of answers that refuse the command's options rather than an image: usage errors. */
export const OPTION_ERRORS: readonly string[] = [
  errors.queryInvalid.code,
  errors.unknownProfile.code,
  errors.topkOutOfRange.code,
  errors.timestepsOutOfRange.code,
  errors.settleInvalid.code,
  errors.unknownModel.code,
];

/** The options given cannot be run (an unknown profile, too many timesteps): exit 2. */
export class UsageError extends Error {}

export interface ClassifySource {
  /** what the answers come from, for the first line of output */
  readonly description: string;
  classify(file: string, request: ClassifyRequest): Promise<CliResult>;
  close(): Promise<void>;
}

/** A problem with one image (unreadable, refused): reported, and the other images go on. */
export class ImageError extends Error {}

const readImageFile = (file: string) =>
  readFile(file).catch((err: Error) => {
    throw new ImageError(err.message);
  });

export async function localSource(
  modelDir: string,
  providers: ExecutionProvider[],
  concurrency: number,
  log: Logger,
): Promise<ClassifySource> {
  const engine = await LocalEngine.open(
    {
      modelDir,
      providers,
      intraOpThreads: 0,
      // Images of a directory are in flight together, so they share the engine's batches.
      maxBatch: concurrency,
      maxDelayMs: 0,
      continuous: true,
      maxQueue: 0,
    },
    log,
  );
  // A command on one's own machine is not a shared server: no cap on timesteps but the
  // configuration's own bound.
  const classifier = new Classifier(engine, { ...requestDefaults(loadConfig({})), maxTimesteps: 1024 });
  return {
    description: `${classifier.name} (${modelDir}, ${engine.providers.join(', ')})`,
    async classify(file, asked) {
      let request;
      try {
        request = classifier.resolve(asked);
      } catch (err) {
        throw new UsageError((err as Error).message);
      }
      const bytes = await readImageFile(file);
      const image = await decodeForModel(bytes, classifier.manifest.input).catch((err: Error) => {
        throw new ImageError(err.message);
      });
      const result = await classifier.classify(image.input, request);
      return {
        model: classifier.name,
        profile: request.profile,
        timesteps: result.timesteps,
        ...(result.stop ? { stop: result.stop } : {}),
        prediction: result.prediction,
        corruptionScore: result.corruptionScore,
        steps: result.steps,
        inferenceMs: result.inferenceMs,
      };
    },
    close: () => classifier.close(),
  };
}

const MEDIA_TYPES: Record<string, string> = {
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.webp': 'image/webp',
  '.gif': 'image/gif',
  '.tif': 'image/tiff',
  '.tiff': 'image/tiff',
};

export const IMAGE_EXTENSIONS = Object.keys(MEDIA_TYPES);

/** Classifies through a running server; `model` names one of its models (its default if absent). */
export function serverSource(base: string, apiKey: string | undefined, model?: string): ClassifySource {
  const root = base.replace(/\/+$/, '');
  return {
    description: root,
    async classify(file, { timesteps, maxTimesteps, topk, profile }) {
      const bytes = await readImageFile(file);
      const query = new URLSearchParams();
      if (topk !== undefined) query.set('topk', String(topk));
      if (timesteps !== undefined) query.set('timesteps', String(timesteps));
      if (maxTimesteps !== undefined) query.set('max_timesteps', String(maxTimesteps));
      if (profile !== undefined) query.set('profile', profile);
      if (model !== undefined) query.set('model', model);
      const headers: Record<string, string> = {
        'content-type': MEDIA_TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream',
      };
      if (apiKey) headers['authorization'] = `Bearer ${apiKey}`;
      let res: Response;
      try {
        res = await fetch(`${root}/classify?${query}`, { method: 'POST', headers, body: bytes });
      } catch (err) {
        const cause = (err as Error & { cause?: Error }).cause;
        throw new Error(`cannot reach ${root}: ${cause?.message ?? (err as Error).message}`, { cause: err });
      }
      const body = (await res.json().catch(() => undefined)) as
        (CliResult & { timings: { inferenceMs: number } }) | { code?: string; message?: string } | undefined;
      if (!res.ok || !body || !('steps' in body)) {
        const what =
          body && 'message' in body ? `${body.code ?? res.status}: ${body.message}` : `HTTP ${res.status}`;
        // The server judged this image or these options; a 5xx or an auth failure ends the run.
        if (body && 'code' in body && OPTION_ERRORS.includes(body.code ?? '')) throw new UsageError(what);
        if (res.status >= 400 && res.status < 500 && res.status !== 401) throw new ImageError(what);
        throw new Error(`${root}: ${what}`);
      }
      return { ...body, inferenceMs: body.timings.inferenceMs };
    },
    close: async () => {},
  };
}
