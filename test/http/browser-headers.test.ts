/** Headers browsers act on: security headers always, CORS only when configured. */
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp } from '../helpers.js';

const preflight = (app: FastifyInstance, origin: string) =>
  app.inject({
    method: 'OPTIONS',
    url: '/classify',
    headers: { origin, 'access-control-request-method': 'POST' },
  });

describe('security headers', () => {
  let app: FastifyInstance;
  beforeAll(async () => ({ app } = await buildTestApp({}, { ready: false })));
  afterAll(() => app.close());

  it.each(['/healthz', '/readyz', '/nothing-here'])('are sent on %s', async (url) => {
    const res = await app.inject(url);
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['x-frame-options']).toBe('SAMEORIGIN');
    expect(res.headers['referrer-policy']).toBe('no-referrer');
    expect(res.headers['content-security-policy']).toContain("default-src 'self'");
    expect(res.headers['strict-transport-security']).toBeUndefined();
  });

  it('allow no cross-origin use by default', async () => {
    const res = await preflight(app, 'https://elsewhere.example');
    expect(res.headers['access-control-allow-origin']).toBeUndefined();
    const get = await app.inject({ url: '/healthz', headers: { origin: 'https://elsewhere.example' } });
    expect(get.headers['access-control-allow-origin']).toBeUndefined();
  });
});

describe('CORS_ORIGINS', () => {
  let app: FastifyInstance;
  beforeAll(
    async () => ({ app } = await buildTestApp({ CORS_ORIGINS: 'https://app.example' }, { ready: false })),
  );
  afterAll(() => app.close());

  it('lets a listed origin call the API', async () => {
    const res = await preflight(app, 'https://app.example');
    expect(res.statusCode).toBe(204);
    expect(res.headers['access-control-allow-origin']).toBe('https://app.example');
    expect(res.headers['access-control-allow-methods']).toContain('POST');
  });

  it('does not let any other origin', async () => {
    const res = await preflight(app, 'https://elsewhere.example');
    expect(res.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('refuses a value that is not an origin', async () => {
    await expect(buildTestApp({ CORS_ORIGINS: 'app.example/path' }, { ready: false })).rejects.toThrow(
      /CORS_ORIGINS lists origins/,
    );
  });
});
