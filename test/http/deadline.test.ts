/**
 * REQUEST_TIMEOUT_MS: a body that does not arrive in time is a 408, a request the engine
 * cannot finish in time is a 504 and leaves the engine; neither holds a connection forever.
 */
import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalEngine } from '../../src/engine/local-engine.js';
import type { InferenceEngine } from '../../src/engine/inference-engine.js';
import { buildTestApp, until } from '../helpers.js';
import { SAMPLES } from '../paths.js';

const TIMEOUT_MS = 400;
const STEP_DELAY_MS = 40;

let app: FastifyInstance;
let engine: InferenceEngine | undefined;
let port: number;
let sample: Buffer;
let steps = 0;

beforeAll(async () => {
  ({ app, engine } = await buildTestApp({ REQUEST_TIMEOUT_MS: String(TIMEOUT_MS), BATCH_MAX_DELAY_MS: '0' }));
  // Every engine step is slowed down, so that a request's duration is set by its timesteps.
  const { stepper } = engine as LocalEngine;
  const run = stepper.steps.bind(stepper);
  stepper.steps = async (samples, k) => {
    steps += k;
    await new Promise((resolve) => setTimeout(resolve, k * STEP_DELAY_MS));
    return run(samples, k);
  };
  await app.listen({ port: 0, host: '127.0.0.1' });
  port = (app.server.address() as { port: number }).port;
  sample = await readFile(path.join(SAMPLES, '0000-ankle-boot.png'));
});
afterAll(() => app.close());

const post = (timesteps: number, headers: Record<string, string> = {}) =>
  fetch(`http://127.0.0.1:${port}/classify?timesteps=${timesteps}`, {
    method: 'POST',
    headers: { 'content-type': 'image/png', ...headers },
    body: new Uint8Array(sample),
  });

/** Sends the headers and the first `sent` bytes of a body announced as `length` bytes, then waits. */
function slowRequest(sent: number, length: number): Promise<{ raw: string; ms: number; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const socket = connect(port, '127.0.0.1');
    let raw = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (raw += d));
    socket.on('error', reject);
    socket.on('close', () => resolve({ raw, ms: performance.now() - started, closed: true }));
    socket.write(
      `POST /classify HTTP/1.1\r\nHost: test\r\nContent-Type: image/png\r\nContent-Length: ${length}\r\n\r\n`,
    );
    socket.write(sample.subarray(0, sent));
    // A server that never answers would leave this hanging; the test's own timeout catches it.
  });
}

describe('request deadline', () => {
  it('answers a body that stops arriving with 408 and closes the connection', async () => {
    const { raw, ms, closed } = await slowRequest(10, sample.length);
    expect(raw).toMatch(/^HTTP\/1\.1 408 /);
    const body = JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)) as { code: string; message: string };
    expect(body.code).toBe('PREDIFY_ERR_REQUEST_TIMEOUT');
    expect(body.message).toContain(`${TIMEOUT_MS} ms`);
    expect(closed).toBe(true);
    expect(ms).toBeGreaterThanOrEqual(TIMEOUT_MS - 5);
  });

  it('answers 504 when the engine cannot finish in time, and withdraws the request', async () => {
    const before = steps;
    // 40 timesteps at 40 ms or more each cannot fit in 400 ms.
    const res = await post(40);
    expect(res.status).toBe(504);
    const body = (await res.json()) as { code: string };
    expect(body.code).toBe('PREDIFY_ERR_TIMEOUT');
    // Withdrawn at the next timestep boundary: the engine lets it go and steps it no more (an
    // absence, so watched over a few steps' time).
    await until(
      async () =>
        /^predify_engine_in_flight\{model="fashion-pc"\} 0$/m.test((await app.inject('/metrics')).body),
      'the engine to let the request go',
    );
    const after = steps;
    await new Promise((resolve) => setTimeout(resolve, 5 * STEP_DELAY_MS));
    expect(steps).toBe(after);
    expect(after - before).toBeLessThan(TIMEOUT_MS / STEP_DELAY_MS + 3);
  });

  it('still answers requests that fit in the deadline', async () => {
    const res = await post(2);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { prediction: { label: string } }).prediction.label).toBe('Ankle boot');
  });

  it('cuts a stream that outlives the deadline', async () => {
    const res = await post(40, { accept: 'application/x-ndjson' });
    expect(res.status).toBe(200);
    await expect(res.text()).rejects.toThrow();
  });
});
