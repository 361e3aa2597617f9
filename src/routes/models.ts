import type { FastifyInstance } from 'fastify';
import type { Config } from '../config.js';
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
          timesteps: { default: config.DEFAULT_TIMESTEPS, max: config.MAX_TIMESTEPS },
          executionProviders: [...providers],
        },
      ],
    };
  });
}
