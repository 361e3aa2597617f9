import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { createServer } from 'node:net';
import { pino } from 'pino';
import { buildApp } from '../src/app.js';
import { loadConfig, type Config } from '../src/config/config.js';
import type { InferenceEngine } from '../src/engine/inference-engine.js';
import { createMetrics } from '../src/metrics.js';
import { loadModel, type LoadedModel } from '../src/model/load-model.js';
import { ModelControl } from '../src/model-control.js';
import { openModels } from '../src/open-models.js';
import type { ServiceState } from '../src/service-state.js';
import { DEFAULT_MODEL } from './paths.js';

export const silent = pino({ level: 'silent' });

export function openModel(dir = DEFAULT_MODEL): Promise<LoadedModel> {
  // Every graph: tests run graph by graph too.
  return loadModel(dir, { providers: ['cpu'], intraOpThreads: 1 }, silent, 'all');
}

/**
 * The app as the server builds it, on a loaded model unless `ready` is false. The engine runs
 * on this thread unless `env` says otherwise, so that tests can reach into it.
 */
export async function buildTestApp(
  env: Record<string, string> = {},
  {
    ready = true,
    modelDir = DEFAULT_MODEL,
    model,
    logger,
  }: { ready?: boolean; modelDir?: string; model?: LoadedModel; logger?: FastifyBaseLogger } = {},
): Promise<{
  app: FastifyInstance;
  state: ServiceState;
  config: Config;
  /** the default model's engine */
  engine?: InferenceEngine;
}> {
  const config = loadConfig({
    MODEL_DIR: modelDir,
    ENGINE_WORKER: 'false',
    ORT_INTRA_OP_THREADS: '1',
    // Fixed, so that building an app does not measure batch sizes (test/engine/batch-tuning.test.ts does).
    BATCH_MAX_SIZE: '32',
    ...env,
  });
  const state: ServiceState = {};
  const metrics = createMetrics();
  let engine: InferenceEngine | undefined;
  if (ready || model) {
    const opened = await openModels(config, { logger: silent, metrics, ...(model ? { model } : {}) });
    state.models = opened.models;
    engine = opened.engines.get(opened.models.default.name);
    if (config.MODEL_CONTROL === 'explicit') {
      state.control = new ModelControl(config, state, { logger: silent, metrics });
      await state.control.adoptServed();
    }
  }
  const app = await buildApp({ config, state, metrics, ...(logger ? { logger } : {}) });
  // A model passed in belongs to the caller, which releases it.
  if (!model) app.addHook('onClose', async () => state.models?.close());
  return { app, state, config, ...(engine ? { engine } : {}) };
}

/** A loopback port free now, for a server a test starts as a separate process. */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as { port: number };
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

/**
 * Resolves once `check` holds, polling it: for a test that must wait for something to happen
 * (a gauge to reach a count, a server to start draining) rather than for a fixed time.
 */
export async function until(
  check: () => boolean | Promise<boolean>,
  what: string,
  ms = 20_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`waited ${ms} ms for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
