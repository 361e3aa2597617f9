/**
 * An engine worker that dies, of each kind of death, over a real socket: the requests it held
 * are answered 503 with Retry-After (never 500), /readyz turns 503 at once and back to 200 once
 * a new worker is up, the next request gets the same numbers as before the death, and the
 * metrics count the restart. With two models, the other keeps serving meanwhile. Both kinds of
 * worker: a child process (the default) and a thread.
 */
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InferenceEngine } from '../../src/engine/inference-engine.js';
import type { Isolation } from '../../src/engine/engine-channel.js';
import type { FaultKind } from '../../src/engine/worker-protocol.js';
import type { ServiceState } from '../../src/service-state.js';
import { buildTestApp } from '../helpers.js';
import { DEFAULT_MODEL, PAPER_MODELS, SAMPLES, TEST_MODELS } from '../paths.js';

let app: FastifyInstance;
let state: ServiceState;
let engine: InferenceEngine;
let base: string;
let repo: string;
let sample: Buffer;

async function setUp(isolation: Isolation) {
  repo = await mkdtemp(path.join(tmpdir(), 'predify-supervision-'));
  await cp(DEFAULT_MODEL, path.join(repo, 'a'), { recursive: true });
  await cp(path.join(TEST_MODELS, PAPER_MODELS[1]!.name), path.join(repo, 'b'), { recursive: true });
  let opened;
  ({
    app,
    state,
    engine: opened,
  } = await buildTestApp({
    MODEL_DIR: repo,
    ENGINE_WORKER: 'true',
    ENGINE_ISOLATION: isolation,
    ENGINE_WATCHDOG_MS: '400',
    BATCH_MAX_DELAY_MS: '0',
    // Measured at start-up, so that a restart is seen to keep the choice (a fixed size would
    // come back the same anyway).
    BATCH_MAX_SIZE: 'auto',
    BATCH_TUNE_BUDGET_MS: '600',
  }));
  engine = opened!;
  base = await app.listen({ port: 0, host: '127.0.0.1' });
  sample = await readFile(path.join(SAMPLES, '0000-ankle-boot.png'));
}
async function tearDown() {
  await app.close();
  await rm(repo, { recursive: true, force: true });
}

const classify = (timesteps: number, model = 'fashion-pc') =>
  fetch(`${base}/classify?timesteps=${timesteps}&model=${model}`, {
    method: 'POST',
    headers: { 'content-type': 'image/png' },
    body: new Uint8Array(sample),
  });

async function metric(series: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

async function batchChoice(model = 'fashion-pc'): Promise<unknown> {
  const { models } = (await (await fetch(`${base}/models`)).json()) as {
    models: { name: string; batch: unknown }[];
  };
  return models.find((m) => m.name === model)!.batch;
}

async function eventually(check: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 10));
  }
}

const RESTARTS = 'predify_engine_restarts_total{model="fashion-pc"}';
const LOST = 'predify_engine_requests_lost_total{model="fashion-pc"}';

describe.each<Isolation>(['process', 'thread'])('an engine worker run as a %s', (isolation) => {
  beforeAll(() => setUp(isolation), 60_000);
  afterAll(tearDown);

  // A native crash (abort) can be survived only by a worker in a process of its own.
  const kinds: FaultKind[] = [
    'throw',
    'exit',
    'hang',
    ...(isolation === 'process' ? ['crash' as const] : []),
  ];
  describe.each(kinds)('a worker that dies by %s', (kind) => {
    it('answers its requests 503, restarts, and computes the same numbers afterwards', async () => {
      const before = await (await classify(3)).json();
      const batchBefore = await batchChoice();
      const [restarts, lost] = [await metric(RESTARTS), await metric(LOST)];
      const steps = await metric('predify_timesteps_total');
      const inflight = Array.from({ length: 4 }, () => classify(64));
      await eventually(async () => (await metric('predify_timesteps_total')) > steps);
      engine.injectFault!(kind);

      const answers = await Promise.all(inflight);
      expect(answers.map((r) => r.status)).toEqual([503, 503, 503, 503]);
      for (const r of answers) {
        expect(r.headers.get('retry-after')).toBe('1');
        expect(((await r.json()) as { code: string }).code).toBe('PREDIFY_ERR_ENGINE_RESTARTING');
      }
      const ready = await fetch(`${base}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toMatchObject({ status: 'restarting' });
      // The other model's engine is untouched and keeps serving meanwhile.
      expect((await classify(1, 'pefficientnet-b0')).status).toBe(200);

      await eventually(async () => (await fetch(`${base}/readyz`)).status === 200);
      const after = await (await classify(3)).json();
      expect(after.steps).toEqual(before.steps);
      // The restarted engine keeps the batch choice, curve and all, rather than measuring again.
      expect(await batchChoice()).toEqual(batchBefore);
      expect(await metric(RESTARTS)).toBe(restarts + 1);
      expect(await metric(LOST)).toBe(lost + 4);
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      expect(state.failed).toBeUndefined();
    }, 60_000);
  });
});
