import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { buildApp } from '../src/app.js';
import { engineSettings, loadConfig, type Config } from '../src/config.js';
import { Classifier } from '../src/engine/classifier.js';
import { LocalEngine } from '../src/engine/local-engine.js';
import { createMetrics } from '../src/metrics.js';
import { loadModel, type LoadedModel } from '../src/model/load-model.js';
import type { ServiceState } from '../src/service-state.js';
import { DEFAULT_MODEL } from './paths.js';

export const silent = pino({ level: 'silent' });

export function openModel(dir = DEFAULT_MODEL): Promise<LoadedModel> {
  return loadModel(dir, { providers: ['cpu'], intraOpThreads: 1 }, silent);
}

/** The app as the server builds it, on a loaded model unless `ready` is false. */
export async function buildTestApp(
  env: Record<string, string> = {},
  {
    ready = true,
    modelDir = DEFAULT_MODEL,
    model,
    logger,
  }: { ready?: boolean; modelDir?: string; model?: LoadedModel; logger?: FastifyBaseLogger } = {},
): Promise<{ app: FastifyInstance; state: ServiceState; config: Config }> {
  const config = loadConfig({ MODEL_DIR: modelDir, ...env });
  const state: ServiceState = {};
  const settings = engineSettings(config);
  if (model) state.classifier = new Classifier(new LocalEngine(model, settings));
  else if (ready)
    state.classifier = new Classifier(new LocalEngine(await openModel(config.MODEL_DIR), settings));
  const metrics = createMetrics();
  if (state.classifier) state.classifier.engine.onStep = metrics.recordStep;
  const app = await buildApp({ config, state, metrics, ...(logger ? { logger } : {}) });
  // A model passed in belongs to the caller, which releases it.
  if (!model) app.addHook('onClose', async () => state.classifier?.close());
  return { app, state, config };
}
