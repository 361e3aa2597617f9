/**
 * GET /models: each served model's inputs, labels, PCoders, profiles, default timesteps and batch size.
 */
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Classifier } from '../engine/classifier.js';
import { autoByDefault, autoCap } from '../engine/resolve-request.js';
import { errors } from '../errors.js';
import { body, code, COMMON_ERRORS, errorResponses } from '../http/responses.js';
import { modelsSchema } from '../http/schemas.js';
import type { ServiceState } from '../service-state.js';
import { modelHash } from '../model/manifest.js';

/** What GET /models says of one model. */
function describe(classifier: Classifier, isDefault: boolean) {
  const { manifest, providers } = classifier;
  return {
    name: manifest.name,
    version: manifest.modelVersion,
    hash: modelHash(manifest),
    default: isDefault,
    description: manifest.description,
    input: manifest.input,
    labels: manifest.labels,
    gradientScaling: manifest.gradientScaling,
    pcoders: manifest.pcoders.map((pc) => ({
      name: pc.name,
      layer: pc.layer,
      shape: pc.shape,
      hyperparameters: pc.hyperparameters,
      gradientScale: pc.gradientScale.scale,
    })),
    defaultProfile: manifest.defaultProfile,
    profiles: Object.entries(classifier.profiles).map(([name, p]) => ({
      name,
      description: p.description,
      hyperparameters: p.hyperparameters,
      recommendedTimesteps: p.recommendedTimesteps ?? null,
      defaultTimesteps: classifier.defaultTimesteps(name),
      anytime: p.anytime
        ? {
            tolerance: p.anytime.tolerance,
            patience: p.anytime.patience,
            ...(p.anytime.confidence !== undefined ? { confidence: p.anytime.confidence } : {}),
            maxTimesteps: autoCap(classifier.defaults, p.anytime.maxTimesteps),
            ...(autoCap(classifier.defaults, p.anytime.maxTimesteps) < p.anytime.maxTimesteps
              ? { calibratedMaxTimesteps: p.anytime.maxTimesteps }
              : {}),
            default: autoByDefault(classifier.defaults, p),
          }
        : null,
      ...(p.calibration ? { calibration: p.calibration } : {}),
    })),
    corruptionScore: manifest.corruptionScore
      ? { cleanQuantiles: manifest.corruptionScore.cleanQuantiles ?? null }
      : null,
    timesteps: {
      default: classifier.defaultTimesteps(manifest.defaultProfile),
      max: classifier.defaults.maxTimesteps,
    },
    executionProviders: [...providers],
    batch: classifier.batch
      ? {
          size: classifier.batch.size,
          source: classifier.batch.source,
          curve: classifier.batch.curve,
          ...(classifier.batch.stoppedAt ? { stoppedAt: classifier.batch.stoppedAt } : {}),
        }
      : null,
  };
}

export default async function modelRoutes(
  instance: FastifyInstance,
  { state }: { state: ServiceState },
): Promise<void> {
  const app = instance.withTypeProvider<ZodTypeProvider>();
  const schema = {
    summary: 'The served models: input, labels, PCoders, hyperparameter profiles, timestep limits',
    response: {
      200: body('the models', modelsSchema),
      ...errorResponses({ ...COMMON_ERRORS, 503: `models loading (${code(errors.notReady)})` }),
    },
  };
  app.get('/models', { schema }, async () => {
    const { models } = state;
    if (!models) throw errors.notReady();
    return { models: models.all.map((c) => describe(c, c === models.default)) };
  });
}
