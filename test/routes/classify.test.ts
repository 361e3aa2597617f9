/** POST /classify end to end through fastify.inject, and the error statuses it promises. */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readGolden, type Golden } from '../../src/model/golden.js';
import { readManifest } from '../../src/model/manifest.js';
import { softmax } from '../../src/engine/results.js';
import { corruptionScore } from '../../src/engine/corruption-score.js';
import { buildTestApp } from '../helpers.js';
import { DEFAULT_MODEL, SAMPLES } from '../paths.js';

let app: FastifyInstance;
let golden: Golden;
let sample: Buffer;
let sampleCase: Golden['cases'][number];

beforeAll(async () => {
  ({ app } = await buildTestApp({ BODY_LIMIT_BYTES: '65536', MAX_TIMESTEPS: '16' }));
  golden = await readGolden(DEFAULT_MODEL, await readManifest(DEFAULT_MODEL));
  sampleCase = golden.cases[0]!;
  sample = await readFile(path.join(SAMPLES, sampleCase.name));
});
afterAll(() => app.close());

const post = (url: string, payload: Buffer | string, contentType = 'image/png') =>
  app.inject({ method: 'POST', url, headers: { 'content-type': contentType }, payload });

function multipart(parts: { name: string; filename?: string; type?: string; data: Buffer | string }[]) {
  const boundary = '----predify-test-boundary';
  const chunks: Buffer[] = [];
  for (const p of parts) {
    const disposition = `form-data; name="${p.name}"${p.filename ? `; filename="${p.filename}"` : ''}`;
    chunks.push(
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: ${disposition}\r\n${p.type ? `Content-Type: ${p.type}\r\n` : ''}\r\n`,
      ),
    );
    chunks.push(Buffer.isBuffer(p.data) ? p.data : Buffer.from(p.data));
    chunks.push(Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { payload: Buffer.concat(chunks), contentType: `multipart/form-data; boundary=${boundary}` };
}

describe('POST /classify', () => {
  it('returns T + 1 steps whose t = 0 is the feedforward model', async () => {
    const res = await post('/classify?timesteps=8', sample);
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body.model).toBe('fashion-pc');
    expect(body.timesteps).toBe(8);
    expect(body.steps).toHaveLength(9);
    expect(body.steps.map((s: { t: number }) => s.t)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);

    const expected = softmax(sampleCase.feedforward);
    const best = expected.indexOf(Math.max(...expected));
    expect(body.steps[0].index).toBe(best);
    expect(body.steps[0].confidence).toBeCloseTo(expected[best]!, 4);
    expect(body.steps[0].topk).toHaveLength(5);
    body.steps[0].topk.forEach((c: { index: number; probability: number }) =>
      expect(c.probability).toBeCloseTo(expected[c.index]!, 4),
    );
  });

  it('reports the reference per-timestep predictions and PCoder errors', async () => {
    // The goldens are computed with the hyperparameters the model was exported with.
    const body = (await post('/classify?timesteps=10&topk=1&profile=exported', sample)).json();
    expect(body.profile).toBe('exported');
    body.steps.forEach((step: { t: number; confidence: number; errors: Record<string, number> }) => {
      const probs = softmax(sampleCase.logits[step.t]!);
      expect(step.confidence).toBeCloseTo(Math.max(...probs), 4);
      expect(Object.values(step.errors)).toHaveLength(3);
      Object.values(step.errors).forEach((e, i) => expect(e).toBeCloseTo(sampleCase.errors[step.t]![i]!, 5));
    });
    expect(body.prediction).toEqual({
      label: body.steps[10].label,
      index: body.steps[10].index,
      confidence: body.steps[10].confidence,
    });
    expect(body.timings).toEqual({
      decodeMs: expect.any(Number),
      queueMs: expect.any(Number),
      inferenceMs: expect.any(Number),
    });
  });

  it("gives the corruption score of the reference errors at t = 0, against the manifest's clean statistics", async () => {
    const manifest = await readManifest(DEFAULT_MODEL);
    const norm = manifest.corruptionScore!;
    // Computed here from the PyTorch goldens' e_i(0), not from what the server computed.
    const expected = corruptionScore(sampleCase.errors[0]!, norm);
    for (const url of ['/classify?timesteps=0', '/classify?timesteps=5&profile=exported']) {
      const body = (await post(url, sample)).json();
      expect(body.corruptionScore).toBeCloseTo(expected, 3);
    }
    // A clean test image scores like the clean validation images.
    expect(expected).toBeLessThan(norm.cleanQuantiles!.p99);
  });

  it("uses the model's default profile as calibrated (the shipped one: auto, by its rule), and top-5", async () => {
    const manifest = await readManifest(DEFAULT_MODEL);
    const profile = manifest.defaultProfile;
    const { maxTimesteps, default: byDefault } = manifest.profiles[profile]!.anytime!;
    expect(byDefault).toBe(true);
    const body = (await post('/classify', sample)).json();
    expect(body.profile).toBe(profile);
    expect(body.stop).toMatchObject({ rule: 'calibrated', maxTimesteps });
    expect(body.timesteps).toBeLessThanOrEqual(maxTimesteps);
    expect(body.steps).toHaveLength(body.timesteps + 1);
    expect(body.steps[0].topk).toHaveLength(5);
  });

  it('accepts timesteps=0: the feedforward pass only', async () => {
    const body = (await post('/classify?timesteps=0', sample)).json();
    expect(body.steps).toHaveLength(1);
  });

  it('accepts the image as a multipart file part', async () => {
    const form = multipart([
      { name: 'note', data: 'ignored' },
      { name: 'image', filename: 'boot.png', type: 'image/png', data: sample },
    ]);
    const res = await post('/classify?timesteps=2', form.payload, form.contentType);
    expect(res.statusCode).toBe(200);
    expect(res.json().steps).toHaveLength(3);
    expect(res.json().prediction.label).toBe(
      golden.cases[0]!.name.includes('ankle-boot') ? 'Ankle boot' : expect.any(String),
    );
  });

  it('accepts JPEG, WebP, GIF and TIFF bodies', async () => {
    for (const format of ['jpeg', 'webp', 'gif', 'tiff'] as const) {
      const bytes = await sharp(sample).toFormat(format).toBuffer();
      const res = await post('/classify?timesteps=1', bytes, `image/${format}`);
      expect(res.statusCode, format).toBe(200);
    }
  });
});

describe('POST /classify errors', () => {
  const expectError = (res: { statusCode: number; json(): unknown }, status: number, message: RegExp) => {
    expect(res.statusCode).toBe(status);
    const body = res.json();
    expect(body).toMatchObject({
      statusCode: status,
      error: expect.any(String),
      message: expect.stringMatching(message),
    });
  };

  it.each([
    ['timesteps=-1', /timesteps must be a whole number/],
    ['timesteps=1.5', /timesteps must be a whole number/],
    ['timesteps=abc', /timesteps must be a whole number/],
    ['timesteps=', /timesteps must be a whole number/],
    ['timesteps=1e9', /timesteps must be a whole number/],
    ['timesteps=17', /timesteps must be at most 16/],
    ['timesteps=1&timesteps=2', /timesteps must be given once/],
    ['topk=0', /topk must be from 1 to 10 \(the model's classes\), got 0/],
    ['topk=11', /topk must be from 1 to 10 \(the model's classes\), got 11/],
    ['steps=3', /unknown parameter\(s\) 'steps'/],
  ])('400 for %s', async (query, message) => {
    expectError(await post(`/classify?${query}`, sample), 400, message);
  });

  it('415 for a media type that is not an image', async () => {
    expectError(
      await post('/classify', '{"image": 1}', 'application/json'),
      415,
      /unsupported media type 'application\/json'/,
    );
    expectError(await post('/classify', sample, 'image/svg+xml'), 415, /unsupported media type/);
  });

  it('415 for a multipart file part that is not an image', async () => {
    const form = multipart([{ name: 'image', filename: 'a.txt', type: 'text/plain', data: 'hello' }]);
    expectError(await post('/classify', form.payload, form.contentType), 415, /text\/plain/);
  });

  it('413 for a body over the configured limit', async () => {
    expectError(await post('/classify', Buffer.alloc(70_000, 1)), 413, /too large/i);
    const form = multipart([
      { name: 'image', filename: 'big.png', type: 'image/png', data: Buffer.alloc(70_000, 1) },
    ]);
    expectError(
      await post('/classify', form.payload, form.contentType),
      413,
      /larger than the limit of 65536 bytes/,
    );
  });

  it('413 for a form with too many fields before its file', async () => {
    const fields = Array.from({ length: 9 }, (_, i) => ({ name: `f${i}`, data: 'x' }));
    const form = multipart([
      ...fields,
      { name: 'image', filename: 's.png', type: 'image/png', data: sample },
    ]);
    const res = await post('/classify', form.payload, form.contentType);
    expectError(res, 413, /too many fields/);
    expect(res.json().code).toBe('PREDIFY_ERR_MULTIPART_LIMIT');
  });

  it('422 for bytes that do not decode as an image', async () => {
    expectError(await post('/classify', Buffer.from('definitely not a png')), 422, /not a decodable image/);
    expectError(await post('/classify', sample.subarray(0, 100)), 422, /not a decodable image/);
  });

  it('400 for an empty body or a form without a file', async () => {
    expectError(await post('/classify', Buffer.alloc(0)), 400, /no image/);
    const form = multipart([{ name: 'note', data: 'no file here' }]);
    expectError(await post('/classify', form.payload, form.contentType), 400, /no file part/);
  });

  it('404 as JSON for an unknown route', async () => {
    expectError(await app.inject({ method: 'GET', url: '/nope' }), 404, /no route for GET \/nope/);
  });
});
