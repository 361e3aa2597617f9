import type { FastifyInstance } from 'fastify';
import { defaultTimesteps, type Config } from '../config.js';
import { errors } from '../errors.js';
import type { ServiceState } from '../service-state.js';

export default async function modelRoutes(
  app: FastifyInstance,
  { config, state }: { config: Config; state: ServiceState },
): Promise<void> {
  app.get('/models', async () => {
    const classifier = state.classifier;
    if (!classifier) throw errors.notReady();
    const { manifest, providers } = classifier.engine;
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
            defaultTimesteps: defaultTimesteps(config, p.recommendedTimesteps),
            ...(p.calibration ? { calibration: p.calibration } : {}),
          })),
          timesteps: {
            default: defaultTimesteps(
              config,
              classifier.profiles[manifest.defaultProfile]!.recommendedTimesteps,
            ),
            max: config.MAX_TIMESTEPS,
          },
          executionProviders: [...providers],
        },
      ],
    };
  });
}
