/**
 * A model repository: MODEL_DIR holding several model directories. Every model is served, by
 * name, next to the others; an unknown one is a 404 naming those served; a broken directory,
 * two models of one name or a repository over its memory budget stop the start-up.
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_SETTLE } from '../../src/engine/resolve-request.js';
import { buildTestApp } from '../helpers.js';
import { DEFAULT_MODEL, PAPER_MODELS, SAMPLES, TEST_MODELS } from '../paths.js';

const PEFF = path.join(TEST_MODELS, PAPER_MODELS[1]!.name);
let repo: string;
let app: FastifyInstance;
let sample: Buffer;

beforeAll(async () => {
  repo = await mkdtemp(path.join(tmpdir(), 'predify-repo-'));
  await cp(DEFAULT_MODEL, path.join(repo, 'a-fashion'), { recursive: true });
  await cp(PEFF, path.join(repo, 'b-peff'), { recursive: true });
  ({ app } = await buildTestApp({ MODEL_DIR: repo }));
  sample = await readFile(path.join(SAMPLES, '0000-ankle-boot.png'));
});
afterAll(async () => {
  await app.close();
  await rm(repo, { recursive: true, force: true });
});

const classify = (query: string) =>
  app.inject({
    method: 'POST',
    url: `/classify?${query}`,
    headers: { 'content-type': 'image/png' },
    payload: sample,
  });

describe('a model repository', () => {
  it('lists every model, the first by directory name as the default', async () => {
    const { models } = (await app.inject('/models')).json();
    expect(models.map((m: { name: string; default: boolean }) => [m.name, m.default])).toEqual([
      ['fashion-pc', true],
      ['pefficientnet-b0', false],
    ]);
    expect((await app.inject('/readyz')).json()).toMatchObject({
      model: 'fashion-pc',
      models: ['fashion-pc', 'pefficientnet-b0'],
    });
  });

  it('routes /classify by model=, the default model without it', async () => {
    const plain = (await classify('timesteps=1')).json();
    expect(plain.model).toBe('fashion-pc');
    expect(plain.prediction.label).toBe('Ankle boot');
    const other = (await classify('timesteps=1&model=pefficientnet-b0')).json();
    expect(other.model).toBe('pefficientnet-b0');
    expect(Object.keys(other.steps[0].errors)).toHaveLength(8);
  });

  it('runs both models at once, each in its own engine', async () => {
    const answers = await Promise.all([
      classify('timesteps=3&model=pefficientnet-b0'),
      classify('timesteps=3&model=fashion-pc'),
      classify('timesteps=3&model=pefficientnet-b0'),
    ]);
    expect(answers.map((r) => r.json().model)).toEqual([
      'pefficientnet-b0',
      'fashion-pc',
      'pefficientnet-b0',
    ]);
    // The same image gives the same answer however the models' requests interleave.
    expect(answers[0]!.json().steps).toEqual(answers[2]!.json().steps);
  });

  it('answers an unknown model with 404 naming the models served', async () => {
    const res = await classify('model=resnet');
    expect(res.statusCode).toBe(404);
    expect(res.json()).toMatchObject({
      code: 'PREDIFY_ERR_UNKNOWN_MODEL',
      message: "unknown model 'resnet': this server serves fashion-pc, pefficientnet-b0",
    });
    expect((await classify('model=a&model=b')).json().message).toContain('model must be given once');
  });

  it('serves each model under its own name over V2', async () => {
    const meta = (await app.inject('/v2/models/pefficientnet-b0')).json();
    expect(meta.inputs[0].shape).toEqual([-1, 3, 32, 32]);
    expect((await app.inject('/v2/models/fashion-pc/ready')).statusCode).toBe(200);
    const unknown = await app.inject('/v2/models/resnet');
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json().error).toContain('fashion-pc, pefficientnet-b0');
  });

  it('answers a corruption score only for a model with a calibrated one: null, and no V2 output, else', async () => {
    const { models } = (await app.inject('/models')).json();
    expect(models[0].corruptionScore.cleanQuantiles).toMatchObject({ p99: expect.any(Number) });
    expect(models[1].corruptionScore).toBeNull();
    expect((await classify('timesteps=0')).json().corruptionScore).toEqual(expect.any(Number));
    expect((await classify('timesteps=0&model=pefficientnet-b0')).json().corruptionScore).toBeNull();

    const meta = (await app.inject('/v2/models/pefficientnet-b0')).json();
    expect(meta.outputs.map((o: { name: string }) => o.name)).not.toContain('corruption_score');
    const input = {
      name: 'input',
      datatype: 'FP32',
      shape: [3, 32, 32],
      data: new Array(3 * 32 * 32).fill(0),
    };
    const infer = (outputs?: object[]) =>
      app.inject({
        method: 'POST',
        url: '/v2/models/pefficientnet-b0/infer',
        payload: { parameters: { timesteps: 0 }, inputs: [input], ...(outputs ? { outputs } : {}) },
      });
    const plain = (await infer()).json();
    expect(plain.outputs.map((o: { name: string }) => o.name)).toEqual([
      'probabilities',
      'predictions',
      'pcoder_errors',
      'logits',
    ]);
    const asked = await infer([{ name: 'corruption_score' }]);
    expect(asked.statusCode).toBe(400);
    expect(asked.json().error).toMatch(/pefficientnet-b0 has no calibrated corruption score/);
  });

  it('runs auto on a model without a calibrated rule by the documented default rule, and says so', async () => {
    const body = (await classify('timesteps=auto&max_timesteps=2&model=pefficientnet-b0')).json();
    expect(body.stop).toEqual({
      reason: expect.stringMatching(/settled|cap/),
      ...DEFAULT_SETTLE,
      maxTimesteps: 2,
      rule: 'default',
    });
    // Without a calibrated default, a request that names no timesteps gets fixed ones.
    const plain = (await classify('model=pefficientnet-b0')).json();
    expect(plain.stop).toBeUndefined();
    const { models } = (await app.inject('/models')).json();
    expect(models[1].profiles.length).toBeGreaterThan(0);
    expect(models[1].profiles.every((p: { anytime: unknown }) => p.anytime === null)).toBe(true);
    expect(models[1].timesteps.default).toEqual(expect.any(Number));
    expect(models[0].timesteps.default).toBe('auto');
  });

  it('lets DEFAULT_MODEL choose the default', async () => {
    const { app: other } = await buildTestApp({ MODEL_DIR: repo, DEFAULT_MODEL: 'pefficientnet-b0' });
    try {
      const res = await other.inject({
        method: 'POST',
        url: '/classify?timesteps=0',
        headers: { 'content-type': 'image/png' },
        payload: sample,
      });
      expect(res.json().model).toBe('pefficientnet-b0');
    } finally {
      await other.close();
    }
  });
});

describe('a repository that cannot be served', () => {
  async function broken(edit: (dir: string) => Promise<void>): Promise<string> {
    const dir = await mkdtemp(path.join(tmpdir(), 'predify-broken-'));
    await cp(DEFAULT_MODEL, path.join(dir, 'good'), { recursive: true });
    await edit(dir);
    return dir;
  }

  it.each([
    [
      'a directory without a manifest',
      (dir: string) =>
        writeFile(path.join(dir, 'empty.txt'), '').then(() =>
          cp(SAMPLES, path.join(dir, 'samples-only'), { recursive: true }),
        ),
      /samples-only\/manifest\.json/,
      'PREDIFY_ERR_MODEL_NOT_FOUND',
    ],
    [
      'a model with a damaged graph',
      async (dir: string) => {
        await cp(DEFAULT_MODEL, path.join(dir, 'bad'), { recursive: true });
        const manifest = path.join(dir, 'bad', 'manifest.json');
        const m = JSON.parse(await readFile(manifest, 'utf8'));
        await writeFile(manifest, JSON.stringify({ ...m, name: 'other' }));
        await writeFile(path.join(dir, 'bad', 'loop.onnx'), 'not onnx');
      },
      /bad\/loop\.onnx/,
      'PREDIFY_ERR_CHECKSUM_MISMATCH',
    ],
    [
      'two models of one name',
      (dir: string) => cp(DEFAULT_MODEL, path.join(dir, 'twin'), { recursive: true }),
      /good and twin are both named 'fashion-pc'/,
      'PREDIFY_ERR_REPOSITORY_INVALID',
    ],
  ])('refuses %s, naming it', async (_name, edit, message, code) => {
    const dir = await broken(edit);
    try {
      await expect(buildTestApp({ MODEL_DIR: dir })).rejects.toMatchObject({
        code,
        message: expect.stringMatching(message),
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses models over MODEL_MEMORY_BUDGET_MB before loading any', async () => {
    await expect(buildTestApp({ MODEL_DIR: repo, MODEL_MEMORY_BUDGET_MB: '100' })).rejects.toMatchObject({
      code: 'PREDIFY_ERR_MEMORY_BUDGET',
      message: expect.stringMatching(/fashion-pc \d+ MB, pefficientnet-b0 \d+ MB/),
    });
    const { app: fits } = await buildTestApp({ MODEL_DIR: repo, MODEL_MEMORY_BUDGET_MB: '1000' });
    await fits.close();
  });
});
