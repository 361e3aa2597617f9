import type { FastifyInstance } from 'fastify';
import type { Classifier } from '../engine/classifier.js';
import { errors } from '../errors.js';
import type { ServiceState } from '../service-state.js';

/** What GET /models says of one model. */
function describe(classifier: Classifier, isDefault: boolean) {
  const { manifest, providers } = classifier;
  return {
    name: manifest.name,
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
      ...(p.calibration ? { calibration: p.calibration } : {}),
    })),
    timesteps: {
      default: classifier.defaultTimesteps(manifest.defaultProfile),
      max: classifier.defaults.maxTimesteps,
    },
    executionProviders: [...providers],
  };
}

export default async function modelRoutes(
  app: FastifyInstance,
  { state }: { state: ServiceState },
): Promise<void> {
  app.get('/models', async () => {
    const { models } = state;
    if (!models) throw errors.notReady();
    return { models: models.all.map((c) => describe(c, c === models.default)) };
  });
}
