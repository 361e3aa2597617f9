/**
 * The OpenAPI document: valid OpenAPI 3.1, lists every route the app serves, and describes
 * what the routes really answer. Each request below is checked against the schema the
 * document gives for its route, status and content type, error bodies included.
 */
import SwaggerParser from '@apidevtools/swagger-parser';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readGolden } from '../../src/model/golden.js';
import { readManifest } from '../../src/model/manifest.js';
import { buildTestApp } from '../helpers.js';
import { DEFAULT_MODEL, SAMPLES } from '../paths.js';

type Doc = {
  paths: Record<
    string,
    Record<string, { responses: Record<string, { content?: Record<string, { schema: object }> }> }>
  >;
};

let app: FastifyInstance;
let doc: Doc;
const routes: { method: string; url: string }[] = [];

/** Fastify's own tree of its routes (printRoutes), flattened to method and path. */
function servedRoutes(tree: string) {
  const stack: string[] = [];
  return tree.split('\n').flatMap((line) => {
    const m = /^([│ ]*)[├└]── (\S+) \(([A-Z, ]+)\)$/.exec(line);
    if (!m) return [];
    const depth = m[1]!.length / 4;
    stack.length = depth;
    stack.push(m[2]!);
    const url = stack.join('').replace(/(.)\/$/, '$1');
    return m[3]!.split(', ').map((method) => ({ method, url }));
  });
}
let png: Buffer;
let input: number[];

beforeAll(async () => {
  ({ app } = await buildTestApp({ BATCH_MAX_SIZE: '4' }));
  doc = (await app.inject('/openapi.json')).json();
  png = await readFile(path.join(SAMPLES, '0000-ankle-boot.png'));
  input = (await readGolden(DEFAULT_MODEL, await readManifest(DEFAULT_MODEL))).cases[0]!.input;
  routes.push(...servedRoutes(app.printRoutes({ commonPrefix: false })));
});
afterAll(async () => app.close());

it('is a valid OpenAPI 3.1 document', async () => {
  const copy = structuredClone(doc);
  await expect(SwaggerParser.validate(copy as never)).resolves.toBeTruthy();
});

it('is served as the Swagger UI at /docs, with its assets from this server', async () => {
  const page = await app.inject('/docs/');
  expect(page.statusCode).toBe(200);
  expect(page.headers['content-type']).toMatch(/text\/html/);
  expect(page.body).not.toMatch(/https?:\/\/(?!localhost)[a-z0-9.-]+\.(com|io|org|net)/);
  expect(page.headers['content-security-policy']).toMatch(/script-src 'self'/);
  expect((await app.inject('/docs/json')).json()).toEqual(doc);
});

describe('routes', () => {
  it('lists every route the app serves, with its method', () => {
    const documented = Object.entries(doc.paths).flatMap(([p, methods]) =>
      Object.keys(methods).map((m) => `${m.toUpperCase()} ${p.replace(/\{(\w+)\}/g, ':$1')}`),
    );
    const served = routes
      .filter((r) => r.method !== 'HEAD' && !r.url.startsWith('/docs/'))
      .map((r) => `${r.method} ${r.url}`);
    expect(served).toContain('POST /v2/models/:name/infer');
    expect(served.length).toBeGreaterThan(10);
    expect(new Set(documented)).toEqual(new Set(served));
  });
});

describe('responses match the document', () => {
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  const DOC_ID = 'https://predify-serve.invalid/openapi.json';
  const pointer = (...tokens: string[]) =>
    tokens.map((t) => t.replaceAll('~', '~0').replaceAll('/', '~1')).join('/');
  beforeAll(() => ajv.addSchema({ ...doc, $id: DOC_ID }));

  const infer = (body: object) => ({
    method: 'POST' as const,
    url: '/v2/models/fashion-pc/infer',
    payload: body,
  });
  const cases: [string, () => InjectOptions, string, number][] = [
    ['healthz', () => ({ url: '/healthz' }), '/healthz', 200],
    ['readyz', () => ({ url: '/readyz' }), '/readyz', 200],
    ['models', () => ({ url: '/models' }), '/models', 200],
    ['classify', () => classify('?timesteps=3'), '/classify', 200],
    ['classify, bad query', () => classify('?timesteps=x'), '/classify', 400],
    ['classify, not an image', () => ({ ...classify(''), payload: Buffer.from('nope') }), '/classify', 422],
    [
      'classify, wrong media type',
      () => ({ ...classify(''), headers: { 'content-type': 'text/plain' } }),
      '/classify',
      415,
    ],
    ['v2 server', () => ({ url: '/v2' }), '/v2', 200],
    ['v2 live', () => ({ url: '/v2/health/live' }), '/v2/health/live', 200],
    ['v2 ready', () => ({ url: '/v2/health/ready' }), '/v2/health/ready', 200],
    ['v2 model', () => ({ url: '/v2/models/fashion-pc' }), '/v2/models/{name}', 200],
    ['v2 unknown model', () => ({ url: '/v2/models/nope' }), '/v2/models/{name}', 404],
    ['v2 model ready', () => ({ url: '/v2/models/fashion-pc/ready' }), '/v2/models/{name}/ready', 200],
    [
      'v2 infer',
      () => infer({ inputs: [{ name: 'input', shape: [1, 1, 28, 28], datatype: 'FP32', data: input }] }),
      '/v2/models/{name}/infer',
      200,
    ],
    ['v2 infer, bad request', () => infer({ inputs: [] }), '/v2/models/{name}/infer', 400],
  ];
  const classify = (query: string): InjectOptions => ({
    method: 'POST',
    url: `/classify${query}`,
    headers: { 'content-type': 'image/png' },
    payload: png,
  });

  it.each(cases)('%s', async (_what, request, route, status) => {
    const res = await app.inject(request());
    expect(res.statusCode).toBe(status);
    const method = (request().method ?? 'GET').toLowerCase();
    const type = String(res.headers['content-type']).split(';')[0]!;
    const where = pointer('paths', route, method, 'responses', String(status), 'content', type, 'schema');
    const validate = ajv.getSchema(`${DOC_ID}#/${where}`);
    expect(validate, `the document has no schema at ${where}`).toBeDefined();
    const ok = validate!(res.json());
    expect(validate!.errors ?? [], JSON.stringify(res.json()).slice(0, 300)).toEqual([]);
    expect(ok).toBe(true);
  });

  it('the request body schema accepts what the protocol documents and refuses the rest', () => {
    const where = pointer(
      'paths',
      '/v2/models/{name}/infer',
      'post',
      'requestBody',
      'content',
      'application/json',
      'schema',
    );
    const validate = ajv.getSchema(`${DOC_ID}#/${where}`)!;
    const tensor = {
      name: 'input',
      shape: [1, 1, 2, 2],
      datatype: 'FP32',
      data: [
        [1, 2],
        [3, 4],
      ],
    };
    expect(validate({ inputs: [tensor], parameters: { timesteps: 3 } })).toBe(true);
    expect(validate({ inputs: [tensor], surprise: true })).toBe(false);
  });
});
