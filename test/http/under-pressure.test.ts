/** EVENT_LOOP_MAX_DELAY_MS: a lagging event loop sheds work but keeps liveness and metrics. */
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, until } from '../helpers.js';

let app: FastifyInstance;

beforeAll(async () => {
  ({ app } = await buildTestApp({ EVENT_LOOP_MAX_DELAY_MS: '50' }));
  await app.ready();
});
afterAll(() => app.close());

function blockEventLoop(ms: number) {
  const until = Date.now() + ms;
  while (Date.now() < until);
}

describe('under pressure', () => {
  it('answers 503 with Retry-After after the event loop stalled, except for /healthz and /metrics', async () => {
    expect((await app.inject('/models')).statusCode).toBe(200);
    // under-pressure samples the loop delay once a second: a stall longer than that is seen.
    blockEventLoop(1200);
    await new Promise((resolve) => setTimeout(resolve, 20));
    const shed = await app.inject('/models');
    expect(shed.statusCode).toBe(503);
    expect(shed.headers['retry-after']).toBe('1');
    expect(shed.json()).toMatchObject({ code: 'PREDIFY_ERR_UNDER_PRESSURE' });
    expect(shed.json().message).toMatch(/eventLoopDelay/);
    expect((await app.inject('/readyz')).statusCode).toBe(503);
    expect((await app.inject('/healthz')).statusCode).toBe(200);
    expect((await app.inject('/metrics')).statusCode).toBe(200);
    // Once the loop is healthy again for a sampling period, work is accepted again.
    await until(async () => (await app.inject('/models')).statusCode === 200, 'work accepted again', 5000);
  });
});
