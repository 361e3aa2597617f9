/**
 * Readiness with one model's engine restarting: with STRICT_READINESS (the default) the pod
 * leaves the balancer's rotation until every model is back; without it, it stays in while one
 * model is ready, and says which are restarting. Every 503 reason of /readyz, each named.
 */
import Fastify from 'fastify';
import { serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import { describe, expect, it } from 'vitest';
import healthRoutes from '../../src/routes/health.js';
import { modelsReady, type ServiceState } from '../../src/service-state.js';
import { loadConfig } from '../../src/config/config.js';

const models = (...statuses: string[]) =>
  ({
    all: statuses.map((status, i) => ({ name: `m${i}`, status })),
    names: statuses.map((_, i) => `m${i}`),
    default: { name: 'm0' },
  }) as unknown as NonNullable<ServiceState['models']>;

async function readyz(state: ServiceState, strict: boolean) {
  const app = Fastify();
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  await app.register(healthRoutes, { state, strict });
  const res = await app.inject('/readyz');
  await app.close();
  return { status: res.statusCode, body: res.json(), retryAfter: res.headers['retry-after'] };
}

describe('readiness', () => {
  it('is strict by default', () => {
    expect(loadConfig({}).STRICT_READINESS).toBe(true);
    expect(loadConfig({ STRICT_READINESS: 'false' }).STRICT_READINESS).toBe(false);
  });

  it('with STRICT_READINESS, one model restarting takes the pod out of rotation', async () => {
    const state = { models: models('ready', 'restarting') };
    expect(modelsReady(state, true)).toBe(false);
    expect(await readyz(state, true)).toEqual({
      status: 503,
      body: { status: 'restarting', restarting: ['m1'] },
      retryAfter: '1',
    });
  });

  it('without it, the pod stays ready while a model is, and lists those restarting', async () => {
    const state = { models: models('ready', 'restarting') };
    expect(modelsReady(state, false)).toBe(true);
    expect(await readyz(state, false)).toMatchObject({
      status: 200,
      body: { status: 'ready', models: ['m0', 'm1'], restarting: ['m1'] },
    });
    expect((await readyz({ models: models('restarting', 'restarting') }, false)).status).toBe(503);
  });

  it.each<[string, ServiceState, string]>([
    ['loading', {}, 'loading'],
    ['closing', { models: models('ready'), closing: true }, 'closing'],
    ['failed', { models: models('ready'), failed: 'm0: gave up' }, 'closing'],
    ['overloaded', { models: models('ready'), overloadedAt: Date.now() }, 'overloaded'],
  ])('answers 503 %s', async (_name, state, status) => {
    const res = await readyz(state, true);
    expect(res.status).toBe(503);
    expect(res.body.status).toBe(status);
  });
});
