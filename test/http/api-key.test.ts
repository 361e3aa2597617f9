/** API_KEYS: every route needs a key except the probes, metrics, the page and the API docs. */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp } from '../helpers.js';
import { SAMPLES } from '../paths.js';

const KEY_A = 'a-key-of-sixteen-chars';
const KEY_B = 'another-key-0123456789';

let app: FastifyInstance;
let sample: Buffer;

beforeAll(async () => {
  ({ app } = await buildTestApp({ API_KEYS: `${KEY_A}, ${KEY_B}` }));
  sample = await readFile(path.join(SAMPLES, '0000-ankle-boot.png'));
});
afterAll(() => app.close());

const classify = (headers: Record<string, string>) =>
  app.inject({
    method: 'POST',
    url: '/classify?timesteps=1',
    headers: { 'content-type': 'image/png', ...headers },
    payload: sample,
  });

describe('API keys', () => {
  it.each([
    ['no key', {}],
    ['a wrong key', { authorization: `Bearer ${KEY_A}x` }],
    ['a prefix of a key', { 'x-api-key': KEY_A.slice(0, -1) }],
    ['another scheme', { authorization: `Basic ${Buffer.from(KEY_A).toString('base64')}` }],
  ])('refuses %s with 401 before reading the image', async (_name, headers) => {
    const res = await classify(headers);
    expect(res.statusCode).toBe(401);
    expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
    expect(res.json()).toMatchObject({ statusCode: 401, code: 'PREDIFY_ERR_UNAUTHORIZED' });
    expect(res.body).not.toContain(KEY_A);
  });

  it.each([
    ['a Bearer token', { authorization: `Bearer ${KEY_A}` }],
    ['X-API-Key', { 'x-api-key': KEY_B }],
  ])('accepts any configured key given as %s', async (_name, headers) => {
    const res = await classify(headers);
    expect(res.statusCode).toBe(200);
    expect(res.json().prediction.label).toBe('Ankle boot');
  });

  it.each(['/healthz', '/readyz', '/metrics', '/v2/health/live', '/v2/health/ready'])(
    'leaves %s open for probes and scrapers',
    async (url) => {
      expect((await app.inject(url)).statusCode).toBe(200);
    },
  );

  it.each(['/', '/page/app.js', '/page/style.css', '/openapi.json', '/docs/', '/docs/json'])(
    'leaves %s open: the page and the API description hold no data',
    async (url) => {
      expect((await app.inject(url)).statusCode).toBe(200);
    },
  );

  it('guards the model list, the V2 model routes and unknown paths too', async () => {
    expect((await app.inject('/models')).statusCode).toBe(401);
    expect((await app.inject('/v2')).statusCode).toBe(401);
    expect((await app.inject('/v2/models/fashion-pc')).statusCode).toBe(401);
    const infer = await app.inject({ method: 'POST', url: '/v2/models/fashion-pc/infer', payload: {} });
    expect([infer.statusCode, Object.keys(infer.json())]).toEqual([401, ['error']]);
    expect((await app.inject('/nothing-here')).statusCode).toBe(401);
  });
});

describe('API_KEYS config', () => {
  it('refuses short keys without echoing them', async () => {
    await expect(buildTestApp({ API_KEYS: 'short-secret' }, { ready: false })).rejects.toThrow(
      /API_KEYS\.0: each API key must be at least 16 characters/,
    );
    await expect(buildTestApp({ API_KEYS: 'short-secret' }, { ready: false })).rejects.not.toThrow(
      /short-secret/,
    );
  });
});
