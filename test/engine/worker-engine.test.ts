/**
 * The engine in a worker, child process or thread (dist/engine/engine-worker.js, built by `pretest`): same
 * numbers as the reference, and the HTTP thread stays responsive while a batch computes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { engineSettings, loadConfig, requestDefaults } from '../../src/config/config.js';
import { Classifier } from '../../src/engine/classifier.js';
import { ModelSet } from '../../src/engine/model-set.js';
import type { Isolation } from '../../src/engine/engine-channel.js';
import { WorkerEngine } from '../../src/engine/worker-engine.js';
import { readGolden, type Golden } from '../../src/model/golden.js';
import { LocalEngine } from '../../src/engine/local-engine.js';
import { profilesOf, readManifest } from '../../src/model/manifest.js';
import { openModel } from '../helpers.js';
import { DEFAULT_MODEL } from '../paths.js';

let engine: WorkerEngine;
let golden: Golden;

describe.each<Isolation>(['process', 'thread'])('WorkerEngine as a %s', (isolation) => {
  beforeAll(async () => {
    const settings = engineSettings(loadConfig({ MODEL_DIR: DEFAULT_MODEL }));
    engine = await WorkerEngine.start(settings, 'silent', { isolation });
    golden = await readGolden(DEFAULT_MODEL, await readManifest(DEFAULT_MODEL));
  });
  afterAll(() => engine.close());

  it('reports the model and providers it loaded', () => {
    expect(engine.manifest.name).toBe('fashion-pc');
    expect(engine.providers).toEqual(['cpu']);
  });

  it('reproduces the PyTorch reference for concurrent requests', async () => {
    const results = await Promise.all(
      golden.cases.map((c) =>
        engine.submit({ image: Float32Array.from(c.input), timesteps: golden.timesteps }),
      ),
    );
    results.forEach((r, k) => {
      expect(r.steps).toHaveLength(11);
      r.steps.forEach((step, t) =>
        step.logits.forEach((v, j) =>
          expect(Math.abs(v - golden.cases[k]!.logits[t]![j]!)).toBeLessThanOrEqual(1e-4),
        ),
      );
    });
  });

  it('runs each request with its own hyperparameter profile, as the engine on this thread does', async () => {
    const local = new LocalEngine(await openModel(), {
      maxBatch: 8,
      maxDelayMs: 0,
      continuous: true,
      maxQueue: 0,
    });
    const image = Float32Array.from(golden.cases[4]!.input);
    for (const profile of Object.keys(profilesOf(engine.manifest))) {
      const [inWorker, onThread] = await Promise.all([
        engine.submit({ image, timesteps: 6, profile }),
        local.submit({ image, timesteps: 6, profile }),
      ]);
      // Not bit for bit: the worker runs onnxruntime on every core, this one on one, and a
      // kernel may sum in a different order on a different number of threads.
      const diff = Math.max(
        ...inWorker.steps.flatMap((s, t) =>
          [...s.logits].map((v, k) => Math.abs(v - onThread.steps[t]!.logits[k]!)),
        ),
      );
      expect(diff, profile).toBeLessThanOrEqual(1e-5);
    }
    await expect(engine.submit({ image, timesteps: 1, profile: 'nope' })).rejects.toMatchObject({
      statusCode: 400,
      message: expect.stringMatching(/no profile 'nope'/),
    });
    await local.close();
  });

  it('answers /healthz while a long batch is computing', async () => {
    const config = loadConfig({ MODEL_DIR: DEFAULT_MODEL });
    const app = await buildApp({
      config,
      state: { models: new ModelSet([new Classifier(engine, requestDefaults(config))]) },
    });
    let finished = false;
    const image = Float32Array.from(golden.cases[0]!.input);
    const long = Promise.all(Array.from({ length: 32 }, () => engine.submit({ image, timesteps: 16 }))).then(
      () => {
        finished = true;
      },
    );
    // Wait until the worker reports the first step of the long batch.
    await new Promise<void>((resolve) => (engine.onStep = () => resolve()));
    engine.onStep = undefined;
    const health = await app.inject('/healthz');
    expect(health.statusCode).toBe(200);
    expect(finished).toBe(false); // answered while the batch was still running
    await long;
    await app.close();
  });

  it('fails to start with the model error when the model is broken', async () => {
    await expect(
      WorkerEngine.start(engineSettings(loadConfig({ MODEL_DIR: '/nonexistent' })), 'silent', { isolation }),
    ).rejects.toMatchObject({ code: 'PREDIFY_ERR_MODEL_NOT_FOUND' });
  });
});
