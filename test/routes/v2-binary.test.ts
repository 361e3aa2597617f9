/**
 * The REST form's binary tensor data extension, as Triton's HTTP clients use it, encoded images
 * as a BYTES input (base64 in JSON, length-prefixed in binary), and model versions in the URL.
 * Numbers are held to the JSON form's, which test/routes/v2.test.ts holds to the goldens.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readGolden, type Golden } from '../../src/model/golden.js';
import { readManifest } from '../../src/model/manifest.js';
import { buildTestApp } from '../helpers.js';
import { pngBomb } from '../image/bombs.js';
import { DEFAULT_MODEL, SAMPLES } from '../paths.js';

const NAME = 'fashion-pc';
let app: FastifyInstance;
let golden: Golden;
let samples: Buffer[];

beforeAll(async () => {
  ({ app } = await buildTestApp({ BATCH_MAX_SIZE: '4', MAX_TIMESTEPS: '16' }));
  golden = await readGolden(DEFAULT_MODEL, await readManifest(DEFAULT_MODEL));
  samples = await Promise.all(
    ['0000-ankle-boot.png', '0001-pullover.png'].map((f) => readFile(path.join(SAMPLES, f))),
  );
});
afterAll(async () => app.close());

/** A body as Triton's client writes it: the JSON, then each binary input's bytes. */
function binaryBody(header: object, ...tensors: Buffer[]) {
  const json = Buffer.from(JSON.stringify(header));
  return { payload: Buffer.concat([json, ...tensors]), headerLength: json.length };
}

const post = (
  payload: Buffer | object,
  headers: Record<string, string | number> = {},
  url = `/v2/models/${NAME}/infer`,
) =>
  app.inject({ method: 'POST', url, headers: headers as Record<string, string>, payload: payload as Buffer });

const fp32 = (values: readonly number[]) => Buffer.from(Float32Array.from(values).buffer);
const lengthPrefixed = (images: readonly Buffer[]) =>
  Buffer.concat(images.flatMap((b) => [Buffer.from(Uint32Array.of(b.length).buffer), b]));

/** Splits an answer with binary outputs into its JSON and each binary output's bytes. */
function readBinaryAnswer(res: { headers: Record<string, unknown>; rawPayload: Buffer }) {
  const headerLength = Number(res.headers['inference-header-content-length']);
  const json = JSON.parse(res.rawPayload.subarray(0, headerLength).toString('utf8'));
  let at = headerLength;
  const bytes: Record<string, Buffer> = {};
  for (const o of json.outputs as { name: string; parameters?: { binary_data_size?: number } }[]) {
    const size = o.parameters?.binary_data_size;
    if (size === undefined) continue;
    bytes[o.name] = res.rawPayload.subarray(at, at + size);
    at += size;
  }
  expect(at, 'the binary outputs fill the rest of the body exactly').toBe(res.rawPayload.length);
  return { json, bytes };
}

describe('binary tensor data extension', () => {
  const jsonAnswer = async (data: readonly number[]) =>
    (
      await post({
        parameters: { timesteps: 4, profile: 'exported' },
        inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 1, 28, 28], data }],
      })
    ).json();

  it("the documented exchange: a binary input, an output asked for as binary, Triton's headers", async () => {
    const input = golden.cases[0]!.input;
    const { payload, headerLength } = binaryBody(
      {
        model_name: NAME,
        parameters: { timesteps: 4, profile: 'exported' },
        inputs: [
          { name: 'input', shape: [1, 1, 28, 28], datatype: 'FP32', parameters: { binary_data_size: 3136 } },
        ],
        outputs: [{ name: 'probabilities', parameters: { binary_data: true } }],
      },
      fp32(input),
    );
    const res = await post(payload, {
      'content-type': 'application/octet-stream',
      'inference-header-content-length': headerLength,
      'content-length': payload.length,
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('application/octet-stream');
    const { json, bytes } = readBinaryAnswer(res);
    expect(json.outputs).toEqual([
      {
        name: 'probabilities',
        datatype: 'FP32',
        shape: [1, 5, 10],
        parameters: { binary_data_size: 5 * 10 * 4 },
      },
    ]);
    expect(Number(res.headers['content-length'])).toBe(
      Number(res.headers['inference-header-content-length']) + 200,
    );
    // The bytes are the JSON answer's values as float32, little-endian.
    const expected = (await jsonAnswer(input)).outputs[0].data as number[];
    expect(bytes['probabilities']).toEqual(fp32(expected));
  });

  it('binary_data_output: every output in binary unless one says otherwise; INT64 as 8 bytes', async () => {
    const input = golden.cases[1]!.input;
    const { payload, headerLength } = binaryBody(
      {
        parameters: { timesteps: 4, profile: 'exported', binary_data_output: true },
        inputs: [
          { name: 'input', shape: [1, 1, 28, 28], datatype: 'FP32', parameters: { binary_data_size: 3136 } },
        ],
        outputs: [
          { name: 'probabilities' },
          { name: 'predictions' },
          { name: 'pcoder_errors', parameters: { binary_data: false } },
        ],
      },
      fp32(input),
    );
    // No content type at all, as some clients send it: the header says what the body is.
    const res = await post(payload, { 'inference-header-content-length': headerLength });
    expect(res.statusCode).toBe(200);
    const { json, bytes } = readBinaryAnswer(res);
    const reference = (await jsonAnswer(input)).outputs as { name: string; data: number[] }[];
    expect(bytes['predictions']).toEqual(Buffer.from(BigInt64Array.from(reference[1]!.data, BigInt).buffer));
    expect(bytes['probabilities']).toEqual(fp32(reference[0]!.data));
    expect(json.outputs[2]).toMatchObject({ name: 'pcoder_errors', data: reference[2]!.data });
  });

  it('JSON with binary_data_size in a JSON content type is still binary data', async () => {
    const { payload, headerLength } = binaryBody(
      {
        parameters: { timesteps: 2, profile: 'exported' },
        inputs: [
          { name: 'input', shape: [1, 1, 28, 28], datatype: 'FP32', parameters: { binary_data_size: 3136 } },
        ],
      },
      fp32(golden.cases[2]!.input),
    );
    const res = await post(payload, {
      'content-type': 'application/json',
      'inference-header-content-length': headerLength,
    });
    expect(res.statusCode).toBe(200);
    expect(res.json().outputs[0].data).toEqual(
      (await jsonAnswer(golden.cases[2]!.input)).outputs[0].data.slice(0, 30),
    );
  });

  const refusals: [string, () => { payload: Buffer; headerLength: number | string }, RegExp][] = [
    [
      'sizes that do not add up',
      () =>
        binaryBody(
          {
            inputs: [
              {
                name: 'input',
                shape: [1, 1, 28, 28],
                datatype: 'FP32',
                parameters: { binary_data_size: 3136 },
              },
            ],
          },
          Buffer.alloc(3000),
        ),
      /input 'input': binary_data_size is 3136, but 3000 bytes follow the JSON/,
    ],
    [
      'a right total for the wrong shape',
      () =>
        binaryBody(
          {
            inputs: [
              {
                name: 'input',
                shape: [1, 1, 28, 28],
                datatype: 'FP32',
                parameters: { binary_data_size: 3000 },
              },
            ],
          },
          Buffer.alloc(3000),
        ),
      /input 'input' has 3000 bytes of data, FP32 \[1, 1, 28, 28\] needs 3136/,
    ],
    [
      'a header length past the body',
      () => ({ ...binaryBody({ inputs: [] }), headerLength: 10_000 }),
      /inference-header-content-length is 10000, but the body holds/,
    ],
    [
      'a header length that is not a number',
      () => ({ ...binaryBody({ inputs: [] }), headerLength: 'x' }),
      /must be a whole number/,
    ],
    [
      'bytes after the JSON that no input claims',
      () =>
        binaryBody(
          {
            inputs: [
              { name: 'input', shape: [1, 1, 28, 28], datatype: 'FP32', data: golden.cases[0]!.input },
            ],
          },
          Buffer.alloc(8),
        ),
      /8 bytes follow the JSON, but no input says binary_data_size/,
    ],
    [
      'data and binary_data_size both',
      () =>
        binaryBody(
          {
            inputs: [
              {
                name: 'input',
                shape: [1, 1, 28, 28],
                datatype: 'FP32',
                data: [1],
                parameters: { binary_data_size: 4 },
              },
            ],
          },
          Buffer.alloc(4),
        ),
      /gives both data and binary_data_size/,
    ],
    [
      'a huge declared size',
      () =>
        binaryBody(
          {
            inputs: [
              {
                name: 'input',
                shape: [1, 1, 28, 28],
                datatype: 'FP32',
                parameters: { binary_data_size: 2 ** 52 },
              },
            ],
          },
          Buffer.alloc(4),
        ),
      /binary_data_size is 4503599627370496, but 4 bytes follow/,
    ],
  ];
  it.each(refusals)('%s: a 400 naming it', async (_what, body) => {
    const { payload, headerLength } = body();
    const res = await post(payload, {
      'content-type': 'application/octet-stream',
      'inference-header-content-length': headerLength,
    });
    expect(res.statusCode).toBe(400);
    expect(res.json().error).toMatch(refusals.find((r) => r[0] === _what)![2]);
  });

  it('another media type without the header is a 415 that says what is taken', async () => {
    const res = await post(Buffer.from('x'), { 'content-type': 'application/octet-stream' });
    expect([res.statusCode, res.json().error]).toEqual([
      415,
      expect.stringMatching(/inference-header-content-length/),
    ]);
  });
});

/** base64 of a PNG's signature and nothing more: bytes, but not an image */
const PNG_SIGNATURE = 'iVBORw0KGgo=';

describe('encoded images: a BYTES input', () => {
  const classify = async (image: Buffer) =>
    (
      await app.inject({
        method: 'POST',
        url: '/classify?timesteps=3',
        headers: { 'content-type': 'image/png' },
        payload: image,
      })
    ).json() as { steps: { index: number; confidence: number }[] };

  it('base64 strings in JSON and length-prefixed binary answer what /classify answers', async () => {
    const header = {
      parameters: { timesteps: 3 },
      outputs: [{ name: 'predictions' }, { name: 'probabilities' }],
    };
    const inJson = await post({
      ...header,
      inputs: [
        { name: 'input', datatype: 'BYTES', shape: [2], data: samples.map((s) => s.toString('base64')) },
      ],
    });
    expect(inJson.statusCode).toBe(200);
    const raw = lengthPrefixed(samples);
    const { payload, headerLength } = binaryBody(
      {
        ...header,
        inputs: [
          { name: 'input', datatype: 'BYTES', shape: [2], parameters: { binary_data_size: raw.length } },
        ],
      },
      raw,
    );
    const inBinary = await post(payload, { 'inference-header-content-length': headerLength });
    expect(inBinary.json().outputs).toEqual(inJson.json().outputs);
    const [predictions, probabilities] = inJson.json().outputs as { data: number[] }[];
    for (const [n, image] of samples.entries()) {
      const { steps } = await classify(image);
      steps.forEach((s, t) => {
        expect(predictions!.data[n * 4 + t]).toBe(s.index);
        expect(probabilities!.data[(n * 4 + t) * 10 + s.index]).toBeCloseTo(s.confidence, 6);
      });
    }
  });

  it.each([
    ['not base64', { shape: [1], data: ['not base64!'] }, /BYTES input data must be base64 strings/],
    [
      'undecodable',
      { shape: [2], data: [PNG_SIGNATURE, Buffer.from('GIF89a?').toString('base64')] },
      /input element 0 is not an image the server decodes/,
    ],
    [
      'a count that is not the shape',
      { shape: [3], data: [PNG_SIGNATURE] },
      /holds 1 images, shape \[3\] needs 3/,
    ],
    [
      'a shape with pixels',
      { shape: [1, 1, 28, 28], data: [PNG_SIGNATURE] },
      /one encoded image per element: shape \[N\]/,
    ],
  ])('%s: a 400', async (_what, over, message) => {
    const res = await post({ inputs: [{ name: 'input', datatype: 'BYTES', ...over }] });
    expect([res.statusCode, res.json().error]).toEqual([400, expect.stringMatching(message)]);
  });

  it('too many pixels is refused naming the element, not decoded', async () => {
    const huge = pngBomb(50_000, 50_000);
    const res = await post({
      inputs: [{ name: 'input', datatype: 'BYTES', shape: [1], data: [huge.toString('base64')] }],
    });
    expect([res.statusCode, res.json().error]).toEqual([
      400,
      expect.stringMatching(/input element 0 .*pixel limit/),
    ]);
  });

  it('the metadata says which form is the default', async () => {
    const { parameters, inputs } = (await app.inject(`/v2/models/${NAME}`)).json();
    expect(inputs).toEqual([{ name: 'input', datatype: 'FP32', shape: [-1, 1, 28, 28] }]);
    expect(parameters.input_form_default).toBe('FP32');
    expect(parameters.input_forms).toMatch(/BYTES \[N\]: encoded images/);
  });
});

describe('the logits output (what fleet studies replay)', () => {
  it('in every answer that names no outputs, and equal to the PyTorch goldens', async () => {
    const c = golden.cases[1]!;
    const body = {
      parameters: { timesteps: 5, profile: 'exported' },
      inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 1, 28, 28], data: c.input }],
    };
    const plain = await post(body);
    // named or not: a request that names no outputs gets all of them (the protocol's rule)
    expect(plain.json().outputs.map((o: { name: string }) => o.name)).toContain('logits');
    const res = await post({ ...body, outputs: [{ name: 'logits' }] });
    const [logits] = res.json().outputs;
    expect(logits).toMatchObject({ name: 'logits', datatype: 'FP32', shape: [1, 6, 10] });
    for (let t = 0; t <= 5; t++)
      c.logits[t]!.forEach((v, k) => expect(logits.data[t * 10 + k]).toBeCloseTo(v, 3));
  });
});

describe('versions', () => {
  it('the manifest version is served under /versions/{v}, and named in metadata and answers', async () => {
    const metadata = (await app.inject(`/v2/models/${NAME}/versions/1`)).json();
    expect(metadata.versions).toEqual(['1']);
    const ready = await app.inject(`/v2/models/${NAME}/versions/1/ready`);
    expect([ready.statusCode, ready.json()]).toEqual([200, { name: NAME, ready: true }]);
    const body = {
      parameters: { timesteps: 1 },
      inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 1, 28, 28], data: golden.cases[0]!.input }],
    };
    const versioned = await post(body, {}, `/v2/models/${NAME}/versions/1/infer`);
    expect(versioned.json()).toMatchObject({ model_name: NAME, model_version: '1' });
    expect(versioned.json().outputs).toEqual((await post(body)).json().outputs);
  });

  it('another version is a 404 that names the served one', async () => {
    for (const url of [`/v2/models/${NAME}/versions/2`, `/v2/models/${NAME}/versions/2/ready`]) {
      const res = await app.inject(url);
      expect([res.statusCode, res.json()]).toEqual([
        404,
        { error: `model ${NAME} has no version 2: this server serves version 1` },
      ]);
    }
    const res = await post({ inputs: [] }, {}, `/v2/models/${NAME}/versions/2/infer`);
    expect(res.statusCode).toBe(404);
  });
});
