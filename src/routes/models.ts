import type { FastifyInstance } from 'fastify';
import { errors } from '../errors.js';
import type { ServiceState } from '../service-state.js';

export default async function modelRoutes(
  app: FastifyInstance,
  { state }: { state: ServiceState },
): Promise<void> {
  app.get('/models', async () => {
    const classifier = state.classifier;
    if (!classifier) throw errors.notReady();
    const { manifest, providers } = classifier;
    return {
      models: [
        {
          name: manifest.name,
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
        },
      ],
    };
  });
}
