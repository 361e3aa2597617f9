/**
 * An error inside one engine run fails the requests of that batch, each with a 500 that says
 * so, logs the cause with the ids of every request in the batch, and the server goes on
 * serving.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalEngine } from '../../src/engine/local-engine.js';
import { buildTestApp } from '../helpers.js';
import { SAMPLES } from '../paths.js';

let app: FastifyInstance;
let sample: Buffer;
const lines: Record<string, unknown>[] = [];
let failNextStep = false;

beforeAll(async () => {
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean))
        lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  let engine;
  // A long gathering delay puts the concurrent requests below into one batch.
  ({ app, engine } = await buildTestApp(
    { BATCH_MAX_DELAY_MS: '200', BATCH_MAX_SIZE: '3' },
    { logger: pino({ level: 'info' }, sink) },
  ));
  const { stepper } = engine as LocalEngine;
  const steps = stepper.steps.bind(stepper);
  stepper.steps = async (samples, k) => {
    if (failNextStep) {
      failNextStep = false;
      throw new Error('injected fault: /opt/secret/path/encoder1.onnx exploded');
    }
    return steps(samples, k);
  };
  sample = await readFile(path.join(SAMPLES, '0000-ankle-boot.png'));
});
afterAll(() => app.close());

const classify = (id: string) =>
  app.inject({
    method: 'POST',
    url: '/classify?timesteps=3',
    headers: { 'content-type': 'image/png', 'x-request-id': id },
    payload: sample,
  });

describe('a failing engine run', () => {
  it('fails only its batch with 500s, logged with the request ids, then serves again', async () => {
    failNextStep = true;
    const ids = ['req-a', 'req-b', 'req-c'];
    const answers = await Promise.all(ids.map(classify));
    for (const res of answers) {
      expect(res.statusCode).toBe(500);
      const body = res.json();
      expect(body.code).toBe('PREDIFY_ERR_ENGINE_FAILED');
      expect(body.message).toMatch(/inference failed for the batch/);
      // The cause names a file: it goes to the log, never to the client.
      expect(res.body).not.toContain('/opt/secret');
      expect(res.body).not.toContain('injected fault');
    }
    const failures = lines.filter((l) => l.msg === 'request failed');
    expect(failures.map((l) => l.reqId).sort()).toEqual(ids);
    for (const line of failures) {
      expect(line.batch).toEqual(expect.arrayContaining(ids));
      expect((line.err as { message: string }).message).toContain('injected fault');
    }

    const after = await classify('req-d');
    expect(after.statusCode).toBe(200);
    expect(after.json().prediction.label).toBe('Ankle boot');
  });

  it('never logs image bytes', () => {
    const log = JSON.stringify(lines);
    // PNG signature, raw and base64-encoded
    expect(log).not.toContain('\\u0089PNG');
    expect(log).not.toContain(sample.subarray(0, 24).toString('base64').slice(0, 16));
    expect(log.length).toBeLessThan(20_000);
  });
});
