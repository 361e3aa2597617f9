/**
 * The KServe Open Inference Protocol (V2) endpoints, exercised with requests shaped as the
 * protocol documents them (https://kserve.github.io/website/docs/concepts/architecture/data-plane/v2-protocol).
 * Inference numbers are checked against the PyTorch goldens; errors must use the protocol's
 * {"error": "..."} body.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { softmax } from '../../src/engine/results.js';
import { corruptionScore } from '../../src/engine/corruption-score.js';
import { readGolden, type Golden } from '../../src/model/golden.js';
import { readManifest, type Manifest } from '../../src/model/manifest.js';
import { buildTestApp } from '../helpers.js';
import { DEFAULT_MODEL, ROOT } from '../paths.js';

let app: FastifyInstance;
let golden: Golden;
let manifest: Manifest;
let pkg: { version: string };
const NAME = 'fashion-pc';

beforeAll(async () => {
  ({ app } = await buildTestApp({ BATCH_MAX_SIZE: '4', MAX_TIMESTEPS: '16' }));
  manifest = await readManifest(DEFAULT_MODEL);
  golden = await readGolden(DEFAULT_MODEL, manifest);
  pkg = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8'));
});
afterAll(async () => app.close());

const infer = (body: unknown, name = NAME) =>
  app.inject({ method: 'POST', url: `/v2/models/${name}/infer`, payload: body as object });

/** An image as nested [C][H][W] arrays, the way a client that keeps the tensor's shape sends it. */
function nested(flat: readonly number[]): number[][][] {
  return [Array.from({ length: 28 }, (_, y) => flat.slice(y * 28, (y + 1) * 28))];
}

describe('server and model metadata', () => {
  it('GET /v2 describes the server', async () => {
    const res = await app.inject('/v2');
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({
      name: 'predify-serve',
      version: pkg.version,
      extensions: ['binary_tensor_data'],
    });
  });

  it('health: live and ready', async () => {
    expect((await app.inject('/v2/health/live')).json()).toEqual({ live: true });
    const ready = await app.inject('/v2/health/ready');
    expect([ready.statusCode, ready.json()]).toEqual([200, { ready: true }]);
    const model = await app.inject(`/v2/models/${NAME}/ready`);
    expect([model.statusCode, model.json()]).toEqual([200, { name: NAME, ready: true }]);
  });

  it('GET /v2/models/{name} gives the input and output tensors', async () => {
    const res = await app.inject(`/v2/models/${NAME}`);
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body).toMatchObject({
      name: NAME,
      platform: expect.any(String),
      inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 1, 28, 28] }],
      outputs: [
        { name: 'probabilities', datatype: 'FP32', shape: [-1, -1, 10] },
        { name: 'predictions', datatype: 'INT64', shape: [-1, -1] },
        { name: 'pcoder_errors', datatype: 'FP32', shape: [-1, -1, 3] },
        { name: 'timesteps', datatype: 'INT64', shape: [-1] },
        { name: 'corruption_score', datatype: 'FP32', shape: [-1] },
        { name: 'logits', datatype: 'FP32', shape: [-1, -1, 10] },
      ],
    });
    expect(body.parameters.profile_default).toBe(manifest.defaultProfile);
    expect(body.parameters.output_timesteps).toMatch(/timesteps=auto/);
  });

  it('lists in the metadata every output an answer carries, with its datatype', async () => {
    const metadata = (await app.inject(`/v2/models/${NAME}`)).json() as {
      outputs: { name: string; datatype: string }[];
    };
    const listed = new Map(metadata.outputs.map((o) => [o.name, o.datatype]));
    const input = golden.cases[0]!.input;
    const bodies = [
      {}, // the profile's default: timesteps=auto on the shipped model
      { parameters: { timesteps: 2 } },
      { parameters: { timesteps: 'auto', profile: 'exported' } },
      { parameters: { timesteps: 1, profile: 'exported' } },
    ];
    for (const extra of bodies) {
      const res = await infer({
        inputs: [{ name: 'input', shape: [1, 1, 28, 28], datatype: 'FP32', data: input }],
        ...extra,
      });
      expect(res.statusCode, JSON.stringify(extra)).toBe(200);
      for (const out of res.json().outputs as { name: string; datatype: string }[])
        expect(listed.get(out.name), `${out.name} after ${JSON.stringify(extra)}`).toBe(out.datatype);
    }
  });

  it('an unknown model is a 404 with an error body', async () => {
    for (const url of ['/v2/models/resnet', '/v2/models/resnet/ready']) {
      const res = await app.inject(url);
      expect(res.statusCode).toBe(404);
      expect(res.json()).toEqual({ error: expect.stringContaining("unknown model 'resnet'") });
    }
    const res = await infer({ inputs: [] }, 'resnet');
    expect(res.statusCode).toBe(404);
  });
});

describe('inference', () => {
  it('a batch gives the reference per-timestep probabilities, predictions and PCoder errors', async () => {
    const cases = golden.cases.slice(0, 3);
    const res = await infer({
      id: 'batch-1',
      parameters: { timesteps: 10, profile: 'exported' },
      inputs: [
        { name: 'input', shape: [3, 1, 28, 28], datatype: 'FP32', data: cases.flatMap((c) => c.input) },
      ],
    });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body).toMatchObject({ model_name: NAME, id: 'batch-1', parameters: { timesteps: 10 } });
    const [probs, preds, errs, score] = body.outputs;
    // The corruption score of each reference's errors at t = 0, against the manifest's statistics.
    expect(score).toMatchObject({ name: 'corruption_score', datatype: 'FP32', shape: [3] });
    cases.forEach((c, n) =>
      expect(score.data[n]).toBeCloseTo(corruptionScore(c.errors[0]!, manifest.corruptionScore!), 3),
    );
    expect(probs).toMatchObject({ name: 'probabilities', datatype: 'FP32', shape: [3, 11, 10] });
    expect(preds).toMatchObject({ name: 'predictions', datatype: 'INT64', shape: [3, 11] });
    expect(errs).toMatchObject({ name: 'pcoder_errors', datatype: 'FP32', shape: [3, 11, 3] });
    cases.forEach((c, n) => {
      for (let t = 0; t <= 10; t++) {
        const expected = softmax(c.logits[t]!);
        const got = probs.data.slice((n * 11 + t) * 10, (n * 11 + t + 1) * 10);
        got.forEach((p: number, k: number) => expect(p).toBeCloseTo(expected[k]!, 4));
        expect(preds.data[n * 11 + t]).toBe(expected.indexOf(Math.max(...expected)));
        c.errors[t]!.forEach((e, i) => expect(errs.data[(n * 11 + t) * 3 + i]).toBeCloseTo(e, 5));
      }
    });
  });

  it('takes nested data and a shape without a batch axis, and returns only the outputs asked for', async () => {
    const c = golden.cases[1]!;
    const res = await infer({
      parameters: { timesteps: 2, profile: 'exported' },
      inputs: [{ name: 'input', shape: [1, 28, 28], datatype: 'FP32', data: nested(c.input) }],
      outputs: [{ name: 'predictions' }],
    });
    expect(res.statusCode).toBe(200);
    const { outputs } = res.json();
    expect(outputs).toHaveLength(1);
    expect(outputs[0]).toMatchObject({ name: 'predictions', shape: [1, 3] });
    const last = softmax(c.logits[2]!);
    expect(outputs[0].data[2]).toBe(last.indexOf(Math.max(...last)));
  });

  it("without parameters: the model's default profile, as its calibration says (the shipped one: auto)", async () => {
    const res = await infer({
      inputs: [{ name: 'input', shape: [1, 1, 28, 28], datatype: 'FP32', data: golden.cases[0]!.input }],
    });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    const { tolerance, patience, confidence, maxTimesteps } =
      manifest.profiles[manifest.defaultProfile]!.anytime!;
    expect(body.parameters).toEqual({
      profile: manifest.defaultProfile,
      timesteps: expect.any(Number),
      max_timesteps: maxTimesteps,
      tolerance,
      patience,
      confidence,
      rule: 'calibrated',
    });
    expect(body.outputs.map((o: { name: string }) => o.name)).toContain('timesteps');
    expect(body.outputs[0].shape).toEqual([1, body.parameters.timesteps + 1, 10]);
  });
});

describe('errors use the protocol body', () => {
  const image = () => Array.from({ length: 784 }, () => 0);
  const input = (over: object) => ({
    name: 'input',
    shape: [1, 1, 28, 28],
    datatype: 'FP32',
    data: image(),
    ...over,
  });
  const bad: [string, unknown, RegExp][] = [
    ['no inputs', { inputs: [] }, /inputs must hold one tensor/],
    ['two inputs', { inputs: [input({}), input({})] }, /inputs must hold one tensor/],
    ['wrong input name', { inputs: [input({ name: 'pixels' })] }, /unknown input 'pixels'/],
    ['wrong datatype', { inputs: [input({ datatype: 'UINT8' })] }, /datatype must be FP32/],
    ['wrong shape', { inputs: [input({ shape: [1, 3, 28, 28] })] }, /shape must be \[N, 1, 28, 28\]/],
    [
      'too few values',
      { inputs: [input({ data: [1, 2, 3] })] },
      /holds 3 values, shape \[1, 1, 28, 28\] needs 784/,
    ],
    [
      'batch over the limit',
      { inputs: [input({ shape: [5, 1, 28, 28] })] },
      /batch size must be between 1 and 4 \(BATCH_MAX_SIZE\)/,
    ],
    ['strings in FP32 data', { inputs: [input({ data: ['a'] })] }, /FP32 input data must be numbers/],
    [
      'data nested deeper than [N][C][H][W]',
      { inputs: [input({ data: [[[[[[1]]]]]] })] },
      /inputs\.0\.data\.0: must be numbers or base64 strings, in arrays nested at most 4 deep/,
    ],
    [
      'timesteps too many',
      { parameters: { timesteps: 17 }, inputs: [input({})] },
      /timesteps must be at most 16/,
    ],
    ['timesteps fractional', { parameters: { timesteps: 1.5 }, inputs: [input({})] }, /whole number/],
    [
      'unknown profile',
      { parameters: { profile: 'fast' }, inputs: [input({})] },
      /the model has no profile 'fast': it has /,
    ],
    ['unknown output', { inputs: [input({})], outputs: [{ name: 'hidden' }] }, /outputs\.0\.name/],
    ['unknown field', { inputs: [input({})], extra: 1 }, /extra/],
  ];
  it.each(bad)('%s: 400', async (_what, body, message) => {
    const res = await infer(body);
    expect(res.statusCode).toBe(400);
    expect(Object.keys(res.json())).toEqual(['error']);
    expect(res.json().error).toMatch(message);
  });

  it('a body of 100 000 nested arrays is a 400, not a stack overflow', async () => {
    const depth = 100_000;
    const res = await app.inject({
      method: 'POST',
      url: `/v2/models/${NAME}/infer`,
      headers: { 'content-type': 'application/json' },
      payload: `{"inputs":[{"name":"input","shape":[1,1,28,28],"datatype":"FP32","data":${'['.repeat(depth)}1${']'.repeat(depth)}}]}`,
    });
    expect(res.statusCode).toBe(400);
    expect(res.json().error).toMatch(/nested at most 4 deep/);
  });

  it('randomly damaged requests are all 4xx with an error body, never a 5xx', async () => {
    let seed = 7;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const junk = [null, true, -1, 1e308, 'x', [], {}, [[[]]], { a: 1 }, 3.5, '', [1, 'a']];
    const statuses = new Set<number>();
    for (let k = 0; k < 150; k++) {
      const body: Record<string, unknown> = {
        id: 'fuzz',
        parameters: { timesteps: 2 },
        inputs: [input({})],
        outputs: [{ name: 'predictions' }],
      };
      // Replace one to three values anywhere in the request with junk.
      for (let n = 0; n <= Math.floor(random() * 3); n++) {
        const paths: [Record<string, unknown> | unknown[], string | number][] = [];
        const walk = (o: unknown) => {
          if (o && typeof o === 'object')
            for (const key of Object.keys(o)) {
              if (Array.isArray(o) && Number(key) > 3) break;
              paths.push([o as Record<string, unknown>, key]);
              walk((o as Record<string, unknown>)[key]);
            }
        };
        walk(body);
        const [parent, key] = paths[Math.floor(random() * paths.length)]!;
        (parent as Record<string, unknown>)[key] = junk[Math.floor(random() * junk.length)];
      }
      const res = await infer(body);
      statuses.add(res.statusCode);
      if (res.statusCode !== 200) {
        expect(res.statusCode, JSON.stringify(body).slice(0, 200)).toBeGreaterThanOrEqual(400);
        expect(res.statusCode).toBeLessThan(500);
        expect(Object.keys(res.json())).toEqual(['error']);
      }
    }
    expect([...statuses].some((s) => s === 400)).toBe(true);
  });

  it('malformed JSON is a 400, another media type a 415, an unknown path a 404', async () => {
    const malformed = await app.inject({
      method: 'POST',
      url: `/v2/models/${NAME}/infer`,
      headers: { 'content-type': 'application/json' },
      payload: '{"inputs": [',
    });
    expect(malformed.statusCode).toBe(400);
    expect(Object.keys(malformed.json())).toEqual(['error']);
    const png = await app.inject({
      method: 'POST',
      url: `/v2/models/${NAME}/infer`,
      headers: { 'content-type': 'image/png' },
      payload: Buffer.from([1, 2, 3]),
    });
    expect([png.statusCode, png.json()]).toEqual([
      415,
      { error: expect.stringContaining('application/json') },
    ]);
    const missing = await app.inject(`/v2/models/${NAME}/versions/7`);
    expect([missing.statusCode, missing.json()]).toEqual([
      404,
      { error: `model ${NAME} has no version 7: this server serves version 1` },
    ]);
  });

  it('while the model loads: not ready (4xx) and inference is a 503', async () => {
    const { app: loading } = await buildTestApp({}, { ready: false });
    try {
      const ready = await loading.inject('/v2/health/ready');
      expect([ready.statusCode, ready.json()]).toEqual([400, { ready: false }]);
      expect((await loading.inject('/v2/health/live')).statusCode).toBe(200);
      const res = await loading.inject({
        method: 'POST',
        url: `/v2/models/${NAME}/infer`,
        payload: { inputs: [input({})] },
      });
      expect(res.statusCode).toBe(503);
      expect(Object.keys(res.json())).toEqual(['error']);
    } finally {
      await loading.close();
    }
  });
});
