/**
 * The repository extension (MODEL_CONTROL=explicit): the index of MODEL_DIR, a model loaded
 * while serving, a reload under load that fails no request, an unload that lets its requests in
 * flight finish, a failed load that leaves the old model serving, the memory budget, and the
 * API off (and refused without API keys) otherwise.
 */
import { cp, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import type { LocalEngine } from '../../src/engine/local-engine.js';
import { buildTestApp, until } from '../helpers.js';
import { DEFAULT_MODEL, SAMPLES } from '../paths.js';

const KEY = 'repository-key-0123456789';
const auth = { authorization: `Bearer ${KEY}` };
let repo: string;
let app: FastifyInstance;
let sample: Buffer;
let slow = 0;

/**
 * Replaces a file as a model's files must be replaced while it is served: a new file renamed
 * over the old one. (The engine maps its weights: a file changed in place under it would fault.)
 */
async function replaceFile(file: string, bytes: Buffer | string) {
  await writeFile(`${file}.new`, bytes);
  await rename(`${file}.new`, file);
}

/** A copy of the shipped model in `repo`, under directory `dir`, named `name`, at `version`. */
async function addModel(dir: string, name: string, version = '1') {
  const target = path.join(repo, dir);
  await cp(DEFAULT_MODEL, target, { recursive: true });
  await setVersion(dir, name, version);
}

async function setVersion(dir: string, name: string, version: string) {
  const file = path.join(repo, dir, 'manifest.json');
  const manifest = JSON.parse(await readFile(file, 'utf8'));
  await replaceFile(file, JSON.stringify({ ...manifest, name, modelVersion: version }));
}

beforeAll(async () => {
  repo = await mkdtemp(path.join(tmpdir(), 'predify-control-'));
  await addModel('fashion-pc', 'fashion-pc');
  let engine;
  ({ app, engine } = await buildTestApp({
    MODEL_DIR: repo,
    MODEL_CONTROL: 'explicit',
    API_KEYS: KEY,
    BATCH_MAX_SIZE: '8',
  }));
  // The first engine's steps can be slowed down, to hold requests in flight.
  const { stepper } = engine as LocalEngine;
  const run = stepper.steps.bind(stepper);
  stepper.steps = async (samples, k) => {
    if (slow) await new Promise((resolve) => setTimeout(resolve, k * slow));
    return run(samples, k);
  };
  sample = await readFile(path.join(SAMPLES, '0000-ankle-boot.png'));
});
afterAll(async () => {
  await app.close();
  await rm(repo, { recursive: true, force: true });
});

const post = (url: string, payload?: object) =>
  app.inject({ method: 'POST', url, headers: auth, ...(payload ? { payload } : {}) });
const classify = (model: string, timesteps = 2) =>
  app.inject({
    method: 'POST',
    url: `/classify?model=${model}&timesteps=${timesteps}`,
    headers: { 'content-type': 'image/png', ...auth },
    payload: sample,
  });
const index = async () => (await post('/v2/repository/index', {})).json();

describe('the repository API', () => {
  it('is advertised, and lists what MODEL_DIR holds with each state', async () => {
    expect((await app.inject({ url: '/v2', headers: auth })).json().extensions).toContain('model_repository');
    await addModel('fashion-b', 'fashion-b', '3');
    await cp(DEFAULT_MODEL, path.join(repo, 'broken'), { recursive: true });
    await writeFile(path.join(repo, 'broken', 'manifest.json'), '{"format": ');
    try {
      expect(await index()).toEqual([
        { name: 'broken', state: 'UNAVAILABLE', reason: expect.stringContaining('manifest') },
        { name: 'fashion-b', version: '3', state: 'UNAVAILABLE', reason: 'unloaded' },
        { name: 'fashion-pc', version: '1', state: 'READY' },
      ]);
      expect(await (await post('/v2/repository/index', { ready: true })).json()).toEqual([
        { name: 'fashion-pc', version: '1', state: 'READY' },
      ]);
      // A broken directory cannot be loaded; the message says why.
      const res = await post('/v2/repository/models/broken/load');
      expect([res.statusCode, res.json().error]).toEqual([
        400,
        expect.stringMatching(/failed to load 'broken'/),
      ]);
    } finally {
      await rm(path.join(repo, 'broken'), { recursive: true, force: true });
    }
  });

  it('loads a model that appeared in MODEL_DIR, beside the running one', async () => {
    expect((await classify('fashion-b')).statusCode).toBe(404);
    const res = await post('/v2/repository/models/fashion-b/load');
    expect([res.statusCode, res.body]).toEqual([200, '']);
    expect((await classify('fashion-b')).statusCode).toBe(200);
    expect((await classify('fashion-pc')).statusCode).toBe(200);
    const meta = (await app.inject({ url: '/v2/models/fashion-b', headers: auth })).json();
    expect(meta.versions).toEqual(['3']);
    expect(
      (await app.inject({ url: '/models', headers: auth }))
        .json()
        .models.map((m: { name: string }) => m.name),
    ).toEqual(['fashion-pc', 'fashion-b']);
    const missing = await post('/v2/repository/models/nowhere/load');
    expect([missing.statusCode, missing.json().error]).toEqual([
      404,
      `no model directory in ${repo} has a manifest named 'nowhere'`,
    ]);
  });

  it('reloads a changed model under load without failing a request', async () => {
    await setVersion('fashion-b', 'fashion-b', '4');
    let stop = false;
    const statuses: number[] = [];
    const clients = Array.from({ length: 6 }, async () => {
      while (!stop) statuses.push((await classify('fashion-b', 3)).statusCode);
    });
    await until(() => statuses.length >= 6, 'requests under way');
    const res = await post('/v2/repository/models/fashion-b/load');
    expect(res.statusCode).toBe(200);
    const atReload = statuses.length;
    await until(() => statuses.length >= atReload + 12, 'requests answered by the reloaded model');
    stop = true;
    await Promise.all(clients);
    expect(statuses.length).toBeGreaterThan(20);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    expect((await app.inject({ url: '/v2/models/fashion-b', headers: auth })).json().versions).toEqual(['4']);
  });

  it('a failed load leaves the model served before serving, and says why', async () => {
    const file = path.join(repo, 'fashion-b', 'step.onnx.data');
    const weights = await readFile(file);
    await replaceFile(file, weights.subarray(0, 1000));
    try {
      const res = await post('/v2/repository/models/fashion-b/load');
      expect(res.statusCode).toBe(400);
      expect(res.json().error).toMatch(
        /failed to load 'fashion-b' \(the model served before, if any, still is\)/,
      );
      expect((await classify('fashion-b')).statusCode).toBe(200);
      expect((await index()).find((e: { name: string }) => e.name === 'fashion-b')).toEqual({
        name: 'fashion-b',
        version: '4',
        state: 'READY',
      });
    } finally {
      await replaceFile(file, weights);
    }
  });

  it('unloads once the requests in flight are answered; later ones are a 404', async () => {
    slow = 40;
    try {
      // fashion-pc's engine is the slowed one: 12 timesteps take about half a second.
      const inFlight = classify('fashion-pc', 12);
      await until(
        async () =>
          /^predify_engine_in_flight\{model="fashion-pc"\} 1$/m.test((await app.inject('/metrics')).body),
        'the request to reach the engine',
      );
      const res = await post('/v2/repository/models/fashion-pc/unload');
      expect(res.statusCode).toBe(200);
      expect((await inFlight).statusCode).toBe(200);
    } finally {
      slow = 0;
    }
    const after = await classify('fashion-pc');
    expect([after.statusCode, after.json().code]).toEqual([404, 'PREDIFY_ERR_UNKNOWN_MODEL']);
    expect((await index()).find((e: { name: string }) => e.name === 'fashion-pc')).toMatchObject({
      state: 'UNAVAILABLE',
      reason: 'unloaded',
    });
    // A request without a model now gets the one left.
    const res = await app.inject({
      method: 'POST',
      url: '/classify?timesteps=1',
      headers: { 'content-type': 'image/png', ...auth },
      payload: sample,
    });
    expect(res.json().model).toBe('fashion-b');
  });

  it('refuses to unload the last model, and an unknown one', async () => {
    const last = await post('/v2/repository/models/fashion-b/unload');
    expect([last.statusCode, last.json().error]).toEqual([409, expect.stringMatching(/last one served/)]);
    expect((await post('/v2/repository/models/fashion-pc/unload')).statusCode).toBe(404);
  });

  it('needs the key', async () => {
    const res = await app.inject({ method: 'POST', url: '/v2/repository/index' });
    expect(res.statusCode).toBe(401);
  });
});

describe('when it is off, or unsafe', () => {
  it('MODEL_CONTROL=none (the default): every repository route is a 403 that says how to turn it on', async () => {
    const { app: plain } = await buildTestApp();
    try {
      for (const url of [
        '/v2/repository/index',
        '/v2/repository/models/fashion-pc/load',
        '/v2/repository/models/fashion-pc/unload',
      ]) {
        const res = await plain.inject({ method: 'POST', url });
        expect([res.statusCode, res.json().error]).toEqual([
          403,
          expect.stringMatching(/MODEL_CONTROL=explicit/),
        ]);
      }
      expect((await plain.inject('/v2')).json().extensions).not.toContain('model_repository');
    } finally {
      await plain.close();
    }
  });

  it('MODEL_CONTROL=explicit without API_KEYS is refused at start-up', () => {
    expect(() => loadConfig({ MODEL_CONTROL: 'explicit' })).toThrow(/MODEL_CONTROL=explicit needs API_KEYS/);
  });

  it('the memory budget applies to loads, counting the model being replaced', async () => {
    const small = await mkdtemp(path.join(tmpdir(), 'predify-budget-'));
    const previous = repo;
    repo = small;
    try {
      await addModel('fashion-pc', 'fashion-pc');
      await addModel('second', 'second');
      // One model is about 125 MB by the estimate; two are not within 200.
      const { app: budgeted } = await buildTestApp({
        MODEL_DIR: path.join(small, 'fashion-pc'),
        MODEL_CONTROL: 'explicit',
        API_KEYS: KEY,
        MODEL_MEMORY_BUDGET_MB: '200',
      });
      try {
        const res = await budgeted.inject({
          method: 'POST',
          url: '/v2/repository/models/fashion-pc/load',
          headers: auth,
        });
        expect([res.statusCode, res.json().error]).toEqual([
          400,
          expect.stringMatching(/failed to load 'fashion-pc'.*over.*200/),
        ]);
        const ok = await budgeted.inject({
          method: 'POST',
          url: '/classify?timesteps=1',
          headers: { 'content-type': 'image/png', ...auth },
          payload: sample,
        });
        expect(ok.statusCode).toBe(200);
      } finally {
        await budgeted.close();
      }
    } finally {
      repo = previous;
      await rm(small, { recursive: true, force: true });
    }
  });
});
