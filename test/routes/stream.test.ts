/** POST /classify streams one event per timestep with Accept: text/event-stream or NDJSON. */
import { readFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp } from '../helpers.js';
import { SAMPLES } from '../paths.js';

let app: FastifyInstance;
let image: Buffer;

beforeAll(async () => {
  ({ app } = await buildTestApp());
  image = await readFile(path.join(SAMPLES, '0002-trouser.png'));
});
afterAll(() => app.close());

const post = (url: string, accept?: string) =>
  app.inject({
    method: 'POST',
    url,
    headers: { 'content-type': 'image/png', ...(accept ? { accept } : {}) },
    payload: image,
  });

describe('streaming /classify', () => {
  it('sends T + 1 step events then a result event over SSE, matching the JSON answer', async () => {
    const json = (await post('/classify?timesteps=4&topk=2')).json();
    const res = await post('/classify?timesteps=4&topk=2', 'text/event-stream');
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/event-stream/);
    const events = res.body
      .trim()
      .split('\n\n')
      .map((block) => {
        const [event, data] = block.split('\n');
        return { event: event!.replace('event: ', ''), data: JSON.parse(data!.replace('data: ', '')) };
      });
    expect(events.map((e) => e.event)).toEqual(['step', 'step', 'step', 'step', 'step', 'result']);
    events.slice(0, 5).forEach((e, t) => {
      expect(e.data.t).toBe(t);
      expect(e.data.confidence).toBeCloseTo(json.steps[t].confidence, 6);
      expect(e.data.errors).toEqual(json.steps[t].errors);
    });
    expect(events[5]!.data).toMatchObject({ model: 'fashion-pc', timesteps: 4, prediction: json.prediction });
  });

  it('sends one JSON object per line with Accept: application/x-ndjson', async () => {
    const res = await post('/classify?timesteps=2', 'application/x-ndjson');
    expect(res.headers['content-type']).toMatch(/^application\/x-ndjson/);
    const lines = res.body
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => l.type)).toEqual(['step', 'step', 'step', 'result']);
    expect(lines.map((l) => l.t).slice(0, 3)).toEqual([0, 1, 2]);
  });

  it('still answers bad input with a JSON error, not a stream', async () => {
    const res = await post('/classify?timesteps=-2', 'text/event-stream');
    expect(res.statusCode).toBe(400);
    expect(res.json().code).toBe('PREDIFY_ERR_QUERY_INVALID');
  });

  it('delivers the first timestep before the last is computed, and survives a client that leaves', async () => {
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as { port: number };
    const firstEvent = await new Promise<string>((resolve, reject) => {
      const req = httpRequest(
        {
          port,
          host: '127.0.0.1',
          method: 'POST',
          path: '/classify?timesteps=64',
          headers: { 'content-type': 'image/png', accept: 'text/event-stream' },
        },
        (res) => {
          res.once('data', (chunk: Buffer) => {
            resolve(chunk.toString());
            req.destroy(); // leave after the first event
          });
        },
      );
      req.on('error', (err) => (err.message.includes('socket hang up') ? undefined : reject(err)));
      req.end(image);
    });
    expect(firstEvent).toMatch(/^event: step\ndata: \{"t":0,/);
    const after = await post('/classify?timesteps=1');
    expect(after.statusCode).toBe(200);
    // The 64-timestep request left the batch when its client did: far fewer than 65 steps ran.
    const metrics = (await app.inject('/metrics')).body;
    const known = 5 + 5 + 3 + 2; // sample-steps of the other requests: JSON, SSE, NDJSON, `after`
    const total = Number(/^predify_timesteps_total (\d+)/m.exec(metrics)![1]);
    expect(total - known).toBeGreaterThan(0);
    expect(total - known).toBeLessThan(30);
  });
});
