/**
 * The Open Inference Protocol over gRPC, on a real socket, with a client built from the same
 * .proto files by @grpc/grpc-js: every RPC, numbers against the PyTorch goldens and against
 * REST, both ways of sending data, encoded images, every refusal with its status code, the
 * deadline and cancellation reaching the engine, API keys and the health service.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import {
  credentials,
  loadPackageDefinition,
  Metadata,
  status as Status,
  type Client,
  type GrpcObject,
  type ServiceClientConstructor,
  type ServiceError,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/config.js';
import type { LocalEngine } from '../../src/engine/local-engine.js';
import { softmax } from '../../src/engine/results.js';
import { startGrpc, type GrpcServer } from '../../src/grpc/server.js';
import { PROTO_DIR } from '../../src/grpc/protos.js';
import { readGolden, type Golden } from '../../src/model/golden.js';
import { readManifest } from '../../src/model/manifest.js';
import type { ServiceState } from '../../src/service-state.js';
import { buildTestApp, silent, until } from '../helpers.js';
import { DEFAULT_MODEL, SAMPLES } from '../paths.js';

const NAME = 'fashion-pc';
const KEY = 'grpc-test-key-0123456789';
const STEP_DELAY_MS = 30;

/** A generated client's methods, called by name */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Methods = Record<string, (...args: any[]) => any>;

let app: FastifyInstance;
let state: ServiceState;
let config: Config;
let grpc: GrpcServer;
let client: Client & Methods;
let health: Client & Methods;
let golden: Golden;
let samples: Buffer[];
let steps = 0;
let slow = false;

function clients(port: number) {
  const load = (file: string) =>
    loadPackageDefinition(
      loadSync(path.join(PROTO_DIR, file), {
        keepCase: true,
        longs: Number,
        enums: String,
        defaults: true,
        oneofs: true,
      }),
    );
  const inference = (load('open_inference.proto')['inference'] as GrpcObject)[
    'GRPCInferenceService'
  ] as ServiceClientConstructor;
  const v1 = ((load('health.proto')['grpc'] as GrpcObject)['health'] as GrpcObject)['v1'] as GrpcObject;
  const address = `127.0.0.1:${port}`;
  return {
    client: new inference(address, credentials.createInsecure()) as Client & Methods,
    health: new (v1['Health'] as ServiceClientConstructor)(address, credentials.createInsecure()) as Client &
      Methods,
  };
}

beforeAll(async () => {
  let engine;
  ({ app, state, config, engine } = await buildTestApp({
    API_KEYS: KEY,
    BATCH_MAX_SIZE: '4',
    MAX_TIMESTEPS: '64',
    REQUEST_TIMEOUT_MS: '2000',
    BODY_LIMIT_BYTES: String(256 * 1024),
  }));
  // Steps can be slowed down, so that a call's deadline passes while it is in the engine.
  const { stepper } = engine as LocalEngine;
  const run = stepper.steps.bind(stepper);
  stepper.steps = async (samples, k) => {
    steps += k;
    if (slow) await new Promise((resolve) => setTimeout(resolve, k * STEP_DELAY_MS));
    return run(samples, k);
  };
  grpc = await startGrpc({ config, state, logger: silent }, '127.0.0.1:0');
  ({ client, health } = clients(grpc.port));
  const manifest = await readManifest(DEFAULT_MODEL);
  golden = await readGolden(DEFAULT_MODEL, manifest);
  samples = await Promise.all(
    ['0000-ankle-boot.png', '0008-sandal.png', '0017-coat.png'].map((f) => readFile(path.join(SAMPLES, f))),
  );
});
afterAll(async () => {
  client?.close();
  health?.close();
  await grpc?.close(100);
  await app?.close();
});

const keyed = () => {
  const m = new Metadata();
  m.set('authorization', `Bearer ${KEY}`);
  return m;
};

/** One unary call: its answer, or the status it failed with. */
function call<T = Record<string, unknown>>(
  method: string,
  request: object,
  { metadata = keyed(), deadlineMs }: { metadata?: Metadata; deadlineMs?: number } = {},
  on = client,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const options = deadlineMs === undefined ? {} : { deadline: Date.now() + deadlineMs };
    on[method]!(request, metadata, options, (err: ServiceError | null, res: T) =>
      err ? reject(err) : resolve(res),
    );
  });
}
const failure = (p: Promise<unknown>) =>
  p.then(
    () => {
      throw new Error('expected the call to fail');
    },
    (err: ServiceError) => ({ code: err.code, details: err.details, metadata: err.metadata.getMap() }),
  );

const fp32Request = (inputs: readonly (readonly number[])[], extra: object = {}) => ({
  model_name: NAME,
  parameters: { timesteps: { int64_param: 10 }, profile: { string_param: 'exported' } },
  inputs: [{ name: 'input', datatype: 'FP32', shape: [inputs.length, 1, 28, 28] }],
  raw_input_contents: [Buffer.from(Float32Array.from(inputs.flat()).buffer)],
  ...extra,
});

interface Output {
  name: string;
  datatype: string;
  shape: number[];
}
/** The answer's outputs, by name, each with its values read from raw_output_contents. */
function outputs(res: { outputs: Output[]; raw_output_contents: Buffer[] }) {
  return Object.fromEntries(
    res.outputs.map((o, k) => {
      const raw = Buffer.from(res.raw_output_contents[k]!);
      const values =
        o.datatype === 'FP32'
          ? Array.from(new Float32Array(raw.buffer, raw.byteOffset, raw.length / 4))
          : Array.from(new BigInt64Array(raw.buffer, raw.byteOffset, raw.length / 8), Number);
      return [o.name, { ...o, values }];
    }),
  );
}

const lengthPrefixed = (images: readonly Buffer[]) =>
  Buffer.concat(images.flatMap((b) => [Buffer.from(Uint32Array.of(b.length).buffer), b]));

describe('health and metadata', () => {
  it('ServerLive, ServerReady, ModelReady, ServerMetadata and ModelMetadata', async () => {
    expect(await call('ServerLive', {})).toEqual({ live: true });
    expect(await call('ServerReady', {})).toEqual({ ready: true });
    expect(await call('ModelReady', { name: NAME, version: '' })).toEqual({ ready: true });
    expect(await call('ModelReady', { name: NAME, version: '1' })).toEqual({ ready: true });
    expect(await call('ServerMetadata', {})).toMatchObject({
      name: 'predify-serve',
      extensions: ['binary_tensor_data'],
    });
    const meta = await call<Record<string, unknown>>('ModelMetadata', { name: NAME });
    const rest = (
      await app.inject({ url: `/v2/models/${NAME}`, headers: { authorization: `Bearer ${KEY}` } })
    ).json();
    expect(meta).toMatchObject({
      name: NAME,
      versions: ['1'],
      platform: rest.platform,
      inputs: rest.inputs,
      outputs: rest.outputs,
    });
    // REST's parameters, as strings
    expect(meta['properties']).toEqual(
      Object.fromEntries(Object.entries(rest.parameters).map(([k, v]) => [k, String(v)])),
    );
  });

  it('the standard health service: the server, a model, an unknown one', async () => {
    expect(await call('Check', { service: '' }, {}, health)).toEqual({ status: 'SERVING' });
    expect(await call('Check', { service: NAME }, {}, health)).toEqual({ status: 'SERVING' });
    expect(await failure(call('Check', { service: 'resnet' }, {}, health))).toMatchObject({
      code: Status.NOT_FOUND,
    });
    // Watch sends the current status at once.
    const first = await new Promise((resolve, reject) => {
      const stream = health['Watch']!({ service: '' });
      stream.on('data', (d: unknown) => {
        resolve(d);
        stream.cancel();
      });
      stream.on('error', (err: ServiceError) => err.code !== Status.CANCELLED && reject(err));
    });
    expect(first).toEqual({ status: 'SERVING' });
  });

  it('probes need no key; everything else does (authorization or x-api-key)', async () => {
    const none = new Metadata();
    expect(await call('ServerLive', {}, { metadata: none })).toEqual({ live: true });
    expect(await call('ServerReady', {}, { metadata: none })).toEqual({ ready: true });
    for (const method of ['ServerMetadata', 'ModelMetadata', 'ModelReady'])
      expect(await failure(call(method, { name: NAME }, { metadata: none }))).toMatchObject({
        code: Status.UNAUTHENTICATED,
      });
    const wrong = new Metadata();
    wrong.set('authorization', 'Bearer nope');
    expect(
      await failure(call('ModelInfer', fp32Request([golden.cases[0]!.input]), { metadata: wrong })),
    ).toMatchObject({
      code: Status.UNAUTHENTICATED,
      metadata: { 'predify-error-code': 'PREDIFY_ERR_UNAUTHORIZED' },
    });
    const header = new Metadata();
    header.set('x-api-key', KEY);
    expect(await call('ServerMetadata', {}, { metadata: header })).toMatchObject({ name: 'predify-serve' });
  });
});

describe('ModelInfer', () => {
  it('raw FP32 inputs give the golden per-timestep probabilities, predictions and errors', async () => {
    const cases = golden.cases.slice(0, 3);
    const res = await call<{
      outputs: Output[];
      raw_output_contents: Buffer[];
      parameters: object;
      id: string;
    }>(
      'ModelInfer',
      fp32Request(
        cases.map((c) => c.input),
        { id: 'g1' },
      ),
    );
    expect(res).toMatchObject({ model_name: NAME, model_version: '1', id: 'g1' });
    expect(res.parameters).toMatchObject({
      timesteps: { int64_param: 10 },
      profile: { string_param: 'exported' },
    });
    const out = outputs(res);
    expect(out['probabilities']).toMatchObject({ datatype: 'FP32', shape: [3, 11, 10] });
    expect(out['predictions']).toMatchObject({ datatype: 'INT64', shape: [3, 11] });
    cases.forEach((c, n) => {
      for (let t = 0; t <= 10; t++) {
        const expected = softmax(c.logits[t]!);
        out['probabilities']!.values.slice((n * 11 + t) * 10, (n * 11 + t + 1) * 10).forEach((p, k) =>
          expect(p).toBeCloseTo(expected[k]!, 4),
        );
        expect(out['predictions']!.values[n * 11 + t]).toBe(expected.indexOf(Math.max(...expected)));
        c.errors[t]!.forEach((e, i) =>
          expect(out['pcoder_errors']!.values[(n * 11 + t) * 3 + i]).toBeCloseTo(e, 5),
        );
      }
    });
  });

  it('contents.fp32_contents answers exactly what raw_input_contents and REST answer', async () => {
    const input = golden.cases[2]!.input;
    const raw = outputs(await call('ModelInfer', fp32Request([input])));
    const rest: Partial<ReturnType<typeof fp32Request>> = fp32Request([input]);
    delete rest.raw_input_contents;
    const typed = outputs(
      await call('ModelInfer', {
        ...rest,
        inputs: [{ ...rest.inputs![0], contents: { fp32_contents: Array.from(Float32Array.from(input)) } }],
      }),
    );
    expect(typed).toEqual(raw);
    const viaRest = await app.inject({
      method: 'POST',
      url: `/v2/models/${NAME}/infer`,
      headers: { authorization: `Bearer ${KEY}` },
      payload: {
        parameters: { timesteps: 10, profile: 'exported' },
        inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 1, 28, 28], data: input }],
      },
    });
    for (const o of viaRest.json().outputs as { name: string; data: number[] }[])
      expect(raw[o.name]!.values, o.name).toEqual(o.data);
  });

  it('BYTES: encoded images, raw or in contents, answer what /classify answers', async () => {
    const request = (data: object) => ({
      model_name: NAME,
      parameters: { timesteps: { int64_param: 6 } },
      inputs: [{ name: 'input', datatype: 'BYTES', shape: [samples.length], ...data }],
      outputs: [{ name: 'probabilities' }, { name: 'predictions' }, { name: 'pcoder_errors' }],
    });
    const raw = outputs(
      await call('ModelInfer', { ...request({}), raw_input_contents: [lengthPrefixed(samples)] }),
    );
    const typed = outputs(await call('ModelInfer', request({ contents: { bytes_contents: samples } })));
    expect(typed).toEqual(raw);
    for (const [n, image] of samples.entries()) {
      const res = await app.inject({
        method: 'POST',
        url: '/classify?timesteps=6',
        headers: { 'content-type': 'image/png', authorization: `Bearer ${KEY}` },
        payload: image,
      });
      const steps = res.json().steps as {
        index: number;
        confidence: number;
        errors: Record<string, number>;
      }[];
      steps.forEach((s, t) => {
        expect(raw['predictions']!.values[n * 7 + t]).toBe(s.index);
        expect(raw['probabilities']!.values[(n * 7 + t) * 10 + s.index]).toBeCloseTo(s.confidence, 6);
        Object.values(s.errors).forEach((e, i) =>
          expect(raw['pcoder_errors']!.values[(n * 7 + t) * 3 + i]).toBeCloseTo(e, 5),
        );
      });
    }
  });

  it('timesteps "auto" and the corruption score come as in REST', async () => {
    const res = await call<{
      outputs: Output[];
      raw_output_contents: Buffer[];
      parameters: Record<string, unknown>;
    }>('ModelInfer', {
      model_name: NAME,
      inputs: [{ name: 'input', datatype: 'BYTES', shape: [1] }],
      raw_input_contents: [lengthPrefixed([samples[0]!])],
    });
    expect(Object.keys(outputs(res))).toEqual([
      'probabilities',
      'predictions',
      'pcoder_errors',
      'timesteps',
      'corruption_score',
      'logits',
    ]);
    expect(res.parameters['rule']).toEqual({ string_param: 'calibrated', parameter_choice: 'string_param' });
  });
});

describe('refusals: a clear status, and the server stays up', () => {
  const input = golden0();
  function golden0() {
    return () => golden.cases[0]!.input;
  }
  const cases: [string, () => object, Status, RegExp][] = [
    [
      'unknown model',
      () => ({ ...fp32Request([input()]), model_name: 'resnet' }),
      Status.NOT_FOUND,
      /unknown model 'resnet'/,
    ],
    [
      'unknown version',
      () => ({ ...fp32Request([input()]), model_version: '9' }),
      Status.NOT_FOUND,
      /no version 9/,
    ],
    [
      'wrong datatype',
      () => ({
        ...fp32Request([input()]),
        inputs: [{ name: 'input', datatype: 'UINT8', shape: [1, 1, 28, 28] }],
      }),
      Status.INVALID_ARGUMENT,
      /datatype must be FP32 .* or BYTES/,
    ],
    [
      'bytes that do not fill the shape',
      () => ({ ...fp32Request([input()]), raw_input_contents: [Buffer.alloc(100)] }),
      Status.INVALID_ARGUMENT,
      /has 100 bytes of data, FP32 \[1, 1, 28, 28\] needs 3136/,
    ],
    [
      'a huge declared shape',
      () => ({
        ...fp32Request([input()]),
        inputs: [{ name: 'input', datatype: 'FP32', shape: [1e15, 1, 28, 28] }],
      }),
      Status.INVALID_ARGUMENT,
      /batch size must be between 1 and 4/,
    ],
    [
      'data in the wrong contents field',
      () => ({
        model_name: NAME,
        inputs: [
          { name: 'input', datatype: 'FP32', shape: [1, 1, 28, 28], contents: { int_contents: [1, 2] } },
        ],
      }),
      Status.INVALID_ARGUMENT,
      /is FP32, but its data is in contents.int_contents \(it belongs in contents.fp32_contents\)/,
    ],
    [
      'contents and raw together',
      () => ({
        ...fp32Request([input()]),
        inputs: [
          { name: 'input', datatype: 'FP32', shape: [1, 1, 28, 28], contents: { fp32_contents: [1] } },
        ],
      }),
      Status.INVALID_ARGUMENT,
      /not both/,
    ],
    [
      'no data',
      () => ({ model_name: NAME, inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 1, 28, 28] }] }),
      Status.INVALID_ARGUMENT,
      /has no data/,
    ],
    [
      'an undecodable image',
      () => ({
        model_name: NAME,
        inputs: [{ name: 'input', datatype: 'BYTES', shape: [2] }],
        raw_input_contents: [lengthPrefixed([samples[0]!, Buffer.from('not an image')])],
      }),
      Status.INVALID_ARGUMENT,
      /input element 1 is not an image/,
    ],
    [
      'a BYTES length past the end',
      () => ({
        model_name: NAME,
        inputs: [{ name: 'input', datatype: 'BYTES', shape: [1] }],
        raw_input_contents: [Buffer.from([255, 255, 0, 0, 1, 2])],
      }),
      Status.INVALID_ARGUMENT,
      /BYTES element 0 declares 65535 bytes, only 2 follow/,
    ],
    [
      'timesteps over MAX_TIMESTEPS',
      () => ({ ...fp32Request([input()]), parameters: { timesteps: { int64_param: 65 } } }),
      Status.INVALID_ARGUMENT,
      /parameters.timesteps: parameters.timesteps must be at most 64/,
    ],
    [
      'an unknown output',
      () => ({ ...fp32Request([input()]), outputs: [{ name: 'hidden' }] }),
      Status.INVALID_ARGUMENT,
      /outputs.0.name/,
    ],
    [
      'a message over BODY_LIMIT_BYTES',
      () => ({ ...fp32Request([input()]), raw_input_contents: [Buffer.alloc(300 * 1024)] }),
      Status.RESOURCE_EXHAUSTED,
      /larger than max/,
    ],
  ];
  it.each(cases)('%s', async (_what, request, code, details) => {
    const got = await failure(call('ModelInfer', request()));
    expect(got.code).toBe(code);
    expect(got.details).toMatch(details);
    expect(await call('ServerLive', {})).toEqual({ live: true });
  });

  it('a truncated protobuf is refused, and the server stays up', async () => {
    const raw = new Promise<ServiceError | null>((resolve) =>
      client.makeUnaryRequest(
        '/inference.GRPCInferenceService/ModelInfer',
        (b: Buffer) => b,
        (b: Buffer) => b,
        // field 5 (inputs), length-delimited, declaring 100 bytes and giving 2
        Buffer.from([0x2a, 100, 0x0a, 0x05]),
        keyed(),
        (err: ServiceError | null) => resolve(err),
      ),
    );
    const err = await raw;
    expect(err?.code).toBe(Status.INTERNAL);
    expect(err?.details).toMatch(/deserializ/i);
    expect(await call('ServerLive', {})).toEqual({ live: true });
  });
});

/** Whether the engine holds `n` requests (its own gauge). */
async function engineHolds(n: number): Promise<boolean> {
  const metrics = (await app.inject('/metrics')).body;
  return new RegExp(`^predify_engine_in_flight\\{model="fashion-pc"\\} ${n}$`, 'm').test(metrics);
}

describe('deadlines and cancellation reach the engine', () => {
  it('a deadline that passes in the engine: DEADLINE_EXCEEDED, and the request leaves at the next step', async () => {
    slow = true;
    try {
      const before = steps;
      const got = await failure(
        call(
          'ModelInfer',
          { ...fp32Request([golden.cases[0]!.input]), parameters: { timesteps: { int64_param: 60 } } },
          { deadlineMs: 300 },
        ),
      );
      expect(got.code).toBe(Status.DEADLINE_EXCEEDED);
      await until(() => engineHolds(0), 'the engine to let the request go');
      const ran = steps - before;
      // 60 timesteps were asked; at 30 ms a step about 10 fit in 300 ms, a few more until it is seen.
      expect(ran).toBeGreaterThan(0);
      expect(ran).toBeLessThan(30);
    } finally {
      slow = false;
    }
  });

  it('REQUEST_TIMEOUT_MS bounds a call without a deadline', async () => {
    slow = true;
    try {
      const got = await failure(
        call('ModelInfer', {
          ...fp32Request([golden.cases[0]!.input]),
          parameters: { timesteps: { int64_param: 64 } },
        }),
      );
      expect(got).toMatchObject({
        code: Status.DEADLINE_EXCEEDED,
        metadata: { 'predify-error-code': 'PREDIFY_ERR_TIMEOUT' },
      });
    } finally {
      slow = false;
    }
  });

  it('a cancelled call leaves the engine at the next step', async () => {
    slow = true;
    try {
      const before = steps;
      const pending = client['ModelInfer']!(
        { ...fp32Request([golden.cases[0]!.input]), parameters: { timesteps: { int64_param: 60 } } },
        keyed(),
        () => undefined,
      );
      await until(() => steps > before + 1, 'the call to reach the engine');
      pending.cancel();
      await until(() => engineHolds(0), 'the engine to let the request go');
      const ran = steps - before;
      expect(ran).toBeGreaterThan(0);
      expect(ran).toBeLessThan(30);
    } finally {
      slow = false;
    }
  });
});

describe('load shedding and readiness', () => {
  it('a full engine queue is RESOURCE_EXHAUSTED with retry-after, and health says so for a moment', async () => {
    const busy = await buildTestApp({ API_KEYS: KEY, BATCH_MAX_SIZE: '1', MAX_QUEUE: '1' });
    const { stepper } = busy.engine as LocalEngine;
    const run = stepper.steps.bind(stepper);
    stepper.steps = async (samples, k) => {
      await new Promise((resolve) => setTimeout(resolve, k * 20));
      return run(samples, k);
    };
    const server = await startGrpc({ config: busy.config, state: busy.state, logger: silent }, '127.0.0.1:0');
    const c = clients(server.port);
    try {
      const request = {
        ...fp32Request([golden.cases[0]!.input]),
        parameters: { timesteps: { int64_param: 10 } },
      };
      const outcomes = await Promise.all(
        Array.from({ length: 6 }, () =>
          call('ModelInfer', request, {}, c.client).then(
            () => 'ok',
            (err: ServiceError) => err,
          ),
        ),
      );
      expect(outcomes).toContain('ok');
      const shed = outcomes.filter((o): o is ServiceError => o !== 'ok');
      expect(shed.length).toBeGreaterThan(0);
      for (const err of shed) {
        expect(err.code).toBe(Status.RESOURCE_EXHAUSTED);
        expect(err.metadata.getMap()).toMatchObject({
          'predify-error-code': 'PREDIFY_ERR_OVERLOADED',
          'retry-after': '1',
        });
      }
      // As /readyz does after a refusal for a full queue: not serving, for a moment.
      expect(await call('Check', { service: '' }, {}, c.health)).toEqual({ status: 'NOT_SERVING' });
    } finally {
      c.client.close();
      c.health.close();
      await server.close(100);
      await busy.app.close();
    }
  });

  it('while the models load: not ready, NOT_SERVING, and inference is UNAVAILABLE with retry-after', async () => {
    const loading: ServiceState = {};
    const server = await startGrpc({ config, state: loading, logger: silent }, '127.0.0.1:0');
    const c = clients(server.port);
    try {
      expect(await call('ServerReady', {}, {}, c.client)).toEqual({ ready: false });
      expect(await call('Check', { service: '' }, {}, c.health)).toEqual({ status: 'NOT_SERVING' });
      const got = await failure(call('ModelInfer', fp32Request([golden.cases[0]!.input]), {}, c.client));
      expect(got).toMatchObject({
        code: Status.UNAVAILABLE,
        metadata: { 'predify-error-code': 'PREDIFY_ERR_NOT_READY', 'retry-after': '1' },
      });
    } finally {
      c.client.close();
      c.health.close();
      await server.close(100);
    }
  });
});
