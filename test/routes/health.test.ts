/** Health, readiness and model description, before and after the model has loaded. */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildTestApp, until } from '../helpers.js';
import { SAMPLES } from '../paths.js';

describe('before the model has loaded', () => {
  it('is alive but not ready, and /classify and /models answer 503', async () => {
    const { app } = await buildTestApp({}, { ready: false });
    expect((await app.inject('/healthz')).statusCode).toBe(200);
    const ready = await app.inject('/readyz');
    expect(ready.statusCode).toBe(503);
    const classify = await app.inject({
      method: 'POST',
      url: '/classify',
      headers: { 'content-type': 'image/png' },
      payload: Buffer.from([1]),
    });
    expect(classify.statusCode).toBe(503);
    expect(classify.json()).toMatchObject({ code: 'PREDIFY_ERR_NOT_READY' });
    expect((await app.inject('/models')).statusCode).toBe(503);
    await app.close();
  });
});

describe('when ready', () => {
  it('reports ready and describes the model', async () => {
    const { app } = await buildTestApp({ DEFAULT_TIMESTEPS: '4', MAX_TIMESTEPS: '32' });
    expect((await app.inject('/readyz')).json()).toEqual({
      status: 'ready',
      model: 'fashion-pc',
      models: ['fashion-pc'],
    });
    const { models } = (await app.inject('/models')).json();
    expect(models).toHaveLength(1);
    const m = models[0];
    expect(m.name).toBe('fashion-pc');
    expect(m.input).toMatchObject({ channels: 1, height: 28, width: 28, colorspace: 'grey' });
    expect(m.labels).toHaveLength(10);
    expect(m.pcoders).toHaveLength(3);
    expect(m.pcoders[0]).toMatchObject({
      name: 'pcoder1',
      hyperparameters: { beta: 0.8, lambda: 0.1, alpha: 0.01 },
    });
    expect(m.pcoders[2].hyperparameters.lambda).toBe(0);
    expect(m.timesteps).toEqual({ default: 4, max: 32 });
    expect(m.executionProviders).toEqual(['cpu']);
    await app.close();
  });
});

describe('when the queue is full', () => {
  it('refuses with 503 + Retry-After and reports not ready until the refusals stop', async () => {
    const { app } = await buildTestApp({ MAX_QUEUE: '1', BATCH_MAX_SIZE: '1', BATCH_MAX_DELAY_MS: '0' });
    const sample = await readFile(path.join(SAMPLES, '0000-ankle-boot.png'));
    const answers = await Promise.all(
      Array.from({ length: 6 }, () =>
        app.inject({
          method: 'POST',
          url: '/classify?timesteps=20',
          headers: { 'content-type': 'image/png' },
          payload: sample,
        }),
      ),
    );
    const refused = answers.filter((r) => r.statusCode === 503);
    expect(answers.filter((r) => r.statusCode === 200).length).toBeGreaterThanOrEqual(2);
    expect(refused.length).toBeGreaterThan(0);
    for (const r of refused) {
      expect(r.headers['retry-after']).toBe('1');
      expect(r.json()).toMatchObject({ code: 'PREDIFY_ERR_OVERLOADED' });
    }
    const ready = await app.inject('/readyz');
    expect(ready.statusCode).toBe(503);
    expect(ready.json()).toEqual({ status: 'overloaded' });
    await until(async () => (await app.inject('/readyz')).statusCode === 200, 'ready again', 5000);
    await app.close();
  });
});
