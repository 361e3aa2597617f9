/**
 * Clients that leave, dawdle or misbehave, over real sockets. Whatever a request holds is
 * released exactly once however it ends; work for a client that has gone is never computed;
 * an answer given before the body is in keeps the connection while the rest arrives within a
 * bound, and pipelined requests behind it are answered; the parser's own refusals, in the
 * headers or in a chunked body's framing, are JSON like every other error.
 */
import { readFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { LocalEngine } from '../../src/engine/local-engine.js';
import type { InferenceEngine } from '../../src/engine/inference-engine.js';
import { buildTestApp } from '../helpers.js';
import { SAMPLES } from '../paths.js';

/** Holds preprocessing at a gate while a test has one set, to disconnect mid-decode. */
const decode = vi.hoisted(() => ({
  gate: undefined as Promise<void> | undefined,
  entered: undefined as (() => void) | undefined,
}));
vi.mock('../../src/image/preprocess.js', async (importOriginal) => {
  const actual = await importOriginal<typeof import('../../src/image/preprocess.js')>();
  return {
    ...actual,
    decodeForModel: async (...args: Parameters<typeof actual.decodeForModel>) => {
      if (decode.gate) {
        decode.entered?.();
        await decode.gate;
      }
      return actual.decodeForModel(...args);
    },
  };
});

const STEP_DELAY_MS = 15;
const HEADERS_TIMEOUT_MS = 500;
const MAX_QUEUE = 8;
const BATCH = 2;

let app: FastifyInstance;
let engine: InferenceEngine | undefined;
let port: number;
let sample: Buffer;

beforeAll(async () => {
  ({ app, engine } = await buildTestApp({
    MAX_QUEUE: String(MAX_QUEUE),
    BATCH_MAX_SIZE: String(BATCH),
    BATCH_MAX_DELAY_MS: '0',
    HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS),
  }));
  // Slowed steps keep requests queued and running long enough to leave mid-way.
  const { stepper } = engine as LocalEngine;
  const steps = stepper.steps.bind(stepper);
  stepper.steps = async (samples, k) => {
    await sleep(k * STEP_DELAY_MS);
    return steps(samples, k);
  };
  await app.listen({ port: 0, host: '127.0.0.1' });
  port = (app.server.address() as { port: number }).port;
  sample = await readFile(path.join(SAMPLES, '0000-ankle-boot.png'));
});
afterAll(() => app.close());

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return Number(line?.split(' ')[1]);
}

/** Polls until `check` holds, or fails after `ms`. */
async function eventually(check: () => Promise<boolean>, ms = 5000): Promise<void> {
  const until = performance.now() + ms;
  while (!(await check())) {
    if (performance.now() > until) throw new Error('condition not reached');
    await sleep(20);
  }
}

/** Waits until the engine has computed nothing for a while. */
async function engineIdle(): Promise<number> {
  let last = -1;
  for (;;) {
    const now = await metric('predify_timesteps_total');
    if (now === last) return now;
    last = now;
    await sleep(8 * STEP_DELAY_MS);
  }
}

const classifyHead = (timesteps: number, length: number, type = 'image/png') =>
  `POST /classify?timesteps=${timesteps} HTTP/1.1\r\nHost: test\r\nContent-Type: ${type}\r\nContent-Length: ${length}\r\n\r\n`;

function open(): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => resolve(socket));
    socket.on('error', reject);
  });
}

interface Watched {
  socket: Socket;
  /** everything received so far */
  text(): string;
  /** when the first byte of an answer came, and when the server closed */
  answeredAt(): Promise<number>;
  closedAt: Promise<number>;
}

async function watch(): Promise<Watched> {
  const socket = await open();
  let raw = '';
  let answered: (t: number) => void;
  const answer = new Promise<number>((resolve) => (answered = resolve));
  socket.setEncoding('latin1');
  socket.on('data', (d: string) => {
    if (raw === '') answered(performance.now());
    raw += d;
  });
  socket.on('error', () => {});
  const closedAt = new Promise<number>((resolve) => socket.on('close', () => resolve(performance.now())));
  return { socket, text: () => raw, answeredAt: () => answer, closedAt };
}

/** The JSON body of the first answer in `raw`. */
function firstBody(raw: string): { code?: string; message: string; statusCode: number } {
  const start = raw.indexOf('\r\n\r\n') + 4;
  const length = Number(/content-length: (\d+)/i.exec(raw)?.[1]);
  return JSON.parse(raw.slice(start, start + length));
}

describe('departed clients release what they held', () => {
  it('pipelined requests on sockets closed mid-queue leave no admission slot taken', async () => {
    const sockets = await Promise.all(Array.from({ length: 6 }, open));
    for (const s of sockets) {
      s.on('error', () => {});
      s.write(
        Array.from({ length: 10 }, () => classifyHead(64, sample.length) + sample.toString('latin1')).join(
          '',
        ),
        'latin1',
      );
    }
    // Capacity is MAX_QUEUE + BATCH: the rest were refused, the admitted ones hold slots.
    await eventually(async () => (await metric('predify_classify_in_flight')) === MAX_QUEUE + BATCH);
    for (const s of sockets) s.destroy();
    await eventually(async () => (await metric('predify_classify_in_flight')) === 0);

    // A burst that fills the queue is admitted in full.
    const burst = await Promise.all(
      Array.from({ length: MAX_QUEUE }, () =>
        fetch(`http://127.0.0.1:${port}/classify?timesteps=1`, {
          method: 'POST',
          headers: { 'content-type': 'image/png' },
          body: new Uint8Array(sample),
        }),
      ),
    );
    expect(burst.map((r) => r.status)).toEqual(burst.map(() => 200));
    expect(await metric('predify_classify_in_flight')).toBe(0);
  });
});

describe('work for a client that has gone is never computed', () => {
  it('while its body is read', async () => {
    const before = await engineIdle();
    const s = await open();
    s.write(classifyHead(64, sample.length) + sample.subarray(0, 20).toString('latin1'), 'latin1');
    await sleep(50);
    s.destroy();
    await eventually(async () => (await metric('predify_classify_in_flight')) === 0);
    expect(await engineIdle()).toBe(before);
  });

  it('while it is decoded', async () => {
    const before = await engineIdle();
    let release!: () => void;
    decode.gate = new Promise<void>((resolve) => (release = resolve));
    const entered = new Promise<void>((resolve) => (decode.entered = resolve));
    const s = await open();
    s.on('error', () => {});
    s.write(classifyHead(64, sample.length) + sample.toString('latin1'), 'latin1');
    await entered;
    s.destroy();
    await eventually(async () => (await metric('predify_classify_in_flight')) === 0);
    decode.gate = undefined;
    release();
    expect(await engineIdle()).toBe(before);
  });

  it('while it is queued, and from the end of the running call while it runs', async () => {
    const before = await engineIdle();
    // Two requests fill the batch; the third waits in the queue.
    const running = await Promise.all([watch(), watch()]);
    for (const w of running)
      w.socket.write(classifyHead(10, sample.length) + sample.toString('latin1'), 'latin1');
    await eventually(async () => (await metric('predify_timesteps_total')) > before);
    const queued = await open();
    queued.on('error', () => {});
    queued.write(classifyHead(64, sample.length) + sample.toString('latin1'), 'latin1');
    await eventually(async () => (await metric('predify_classify_in_flight')) === 3);
    queued.destroy();
    // One of the running pair leaves too, after a few steps.
    await sleep(3 * STEP_DELAY_MS);
    running[1]!.socket.destroy();
    await running[0]!.answeredAt();
    const after = await engineIdle();
    // The first ran its 11 timesteps; the second stopped at the end of the call it left in
    // (the batch was full: up to ENGINE_STEPS_PER_CALL = 8 timesteps a call); the queued one
    // computed nothing.
    expect(after - before).toBeGreaterThanOrEqual(11 + 1);
    expect(after - before).toBeLessThan(11 + 11);
    expect(running[0]!.text()).toMatch(/^HTTP\/1\.1 200 /);
  });
});

/** Each HTTP answer in `raw`, in order: its status, its headers and its body. */
function answers(raw: string): { status: number; headers: string; body: string }[] {
  const out = [];
  let at = 0;
  while (at < raw.length) {
    const end = raw.indexOf('\r\n\r\n', at);
    if (end < 0) break;
    const headers = raw.slice(at, end);
    const length = Number(/content-length: (\d+)/i.exec(headers)?.[1] ?? 0);
    out.push({ status: Number(headers.slice(9, 12)), headers, body: raw.slice(end + 4, end + 4 + length) });
    at = end + 4 + length;
  }
  return out;
}

const post = (url: string, type: string, body: Buffer | string) =>
  Buffer.concat([
    Buffer.from(
      `POST ${url} HTTP/1.1\r\nHost: t\r\nContent-Type: ${type}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`,
    ),
    Buffer.from(body),
  ]);

describe('early answers', () => {
  /** Announces a body (by length, or chunked) and sends a byte of it every 100 ms. */
  async function dribble(head: string, chunked = false) {
    const w = await watch();
    w.socket.write(head);
    const timer = setInterval(() => w.socket.writable && w.socket.write(chunked ? '1\r\nx\r\n' : 'x'), 100);
    const answeredAt = await w.answeredAt();
    const closedAt = await Promise.race([w.closedAt, sleep(4000).then(() => Infinity)]);
    clearInterval(timer);
    w.socket.destroy();
    return { raw: w.text(), afterAnswerMs: closedAt - answeredAt };
  }
  const length = 5 * 1024 * 1024;

  it.each([
    ['415 for a media type the route does not take', classifyHead(1, length, 'text/plain'), 415],
    [
      '404 for a route that does not exist',
      `POST /nowhere HTTP/1.1\r\nHost: t\r\nContent-Length: ${length}\r\n\r\n`,
      404,
    ],
    [
      '200 from a route that does not read its body',
      `GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: ${length}\r\n\r\n`,
      200,
    ],
  ])('close the connection when the announced body is beyond the bound: %s', async (_name, head, status) => {
    const { raw, afterAnswerMs } = await dribble(head);
    expect(raw.startsWith(`HTTP/1.1 ${status} `), raw.slice(0, 80)).toBe(true);
    expect(raw).toMatch(/connection: close/i);
    expect(afterAnswerMs).toBeLessThan(1000);
  });

  it.each([
    ['a small body announced by length', classifyHead(1, 2000, 'text/plain'), false],
    ['a chunked body', 'POST /nowhere HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n', true],
  ])('keep the connection for the bound, then cut a dribbler: %s', async (_name, head, chunked) => {
    const { raw, afterAnswerMs } = await dribble(head, chunked);
    expect(raw).not.toMatch(/connection: close/i);
    // Cut DRAIN.ms (1 s) after the answer, not at the keep-alive or request timeout.
    expect(afterAnswerMs).toBeGreaterThanOrEqual(900);
    expect(afterAnswerMs).toBeLessThan(2000);
  });

  it('cut a fast body when it goes past the bound of bytes', async () => {
    const w = await watch();
    w.socket.write('POST /nowhere HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n');
    const answeredAt = await w.answeredAt();
    const chunk = `4000\r\n${'x'.repeat(0x4000)}\r\n`;
    for (let i = 0; i < 16 && w.socket.writable; i++) {
      w.socket.write(chunk);
      await sleep(5);
    }
    const closedAt = await Promise.race([w.closedAt, sleep(3000).then(() => Infinity)]);
    expect(answers(w.text())[0]!.status).toBe(404);
    expect(closedAt - answeredAt).toBeLessThan(900);
  });

  it('answer 50 pipelined requests in order, refusals among them, and close after unparseable JSON', async () => {
    const kinds: [Buffer, number][] = [
      [post('/classify?timesteps=1', 'image/png', sample), 200],
      [post('/classify?timesteps=abc', 'image/png', sample), 400],
      [post('/classify', 'text/plain', 'hello'), 415],
      [post('/nowhere', 'text/plain', 'abc'), 404],
      [post('/classify', 'image/png', 'not a png'), 422],
      [Buffer.from('GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n'), 200],
      [post('/v2/models/nope/infer', 'application/json', '{"inputs":[]}'), 404],
    ];
    const sent = Array.from({ length: 49 }, (_, i) => kinds[i % kinds.length]!);
    sent.push([post('/v2/models/fashion-pc/infer', 'application/json', '{"inputs": [tru'), 400]);
    const w = await watch();
    w.socket.write(Buffer.concat(sent.map(([bytes]) => bytes)));
    await Promise.race([w.closedAt, sleep(10_000)]);
    const got = answers(w.text());
    expect(got).toHaveLength(sent.length);
    // Requests to /classify beyond MAX_QUEUE + BATCH in flight are refused for load (503), in
    // their place; everything else gets its own answer.
    const classify = sent.map(([bytes]) => bytes.toString('latin1').startsWith('POST /classify'));
    expect(got.map((a, i) => (classify[i] && a.status === 503 ? sent[i]![1] : a.status))).toEqual(
      sent.map(([, status]) => status),
    );
    expect(got.filter((a) => a.status === 200).length).toBeGreaterThanOrEqual(7);
    expect(got.slice(0, -1).every((a) => !/connection: close/i.test(a.headers))).toBe(true);
    expect(got.at(-1)!.headers).toMatch(/connection: close/i);
    expect(w.socket.destroyed || w.socket.readableEnded).toBe(true);
  });
});

describe('malformed chunked bodies', () => {
  const head =
    'POST /classify HTTP/1.1\r\nHost: t\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n';
  const cases: [string, string, number, string][] = [
    ['a chunk size that is not hexadecimal', 'zz\r\nab\r\n0\r\n\r\n', 400, 'PREDIFY_ERR_MALFORMED_HTTP'],
    ['a negative chunk size', '-5\r\nab\r\n', 400, 'PREDIFY_ERR_MALFORMED_HTTP'],
    ['a chunk size of 2^72', 'ffffffffffffffffff\r\nab\r\n', 400, 'PREDIFY_ERR_MALFORMED_HTTP'],
    [
      'a 40 KB chunk extension',
      `5;${'e'.repeat(40_000)}\r\nhello\r\n0\r\n\r\n`,
      413,
      'PREDIFY_ERR_CHUNK_EXTENSIONS_TOO_LARGE',
    ],
  ];

  it.each(cases)('answer %s in JSON, then close', async (_name, body, status, code) => {
    const w = await watch();
    w.socket.write(head + body);
    await Promise.race([w.closedAt, sleep(3000)]);
    const got = answers(w.text());
    expect(got).toHaveLength(1);
    expect(got[0]!.status).toBe(status);
    expect(got[0]!.headers).toMatch(/connection: close/i);
    expect(JSON.parse(got[0]!.body)).toMatchObject({ statusCode: status, code });
    expect(w.socket.destroyed || w.socket.readableEnded).toBe(true);
  });

  it('give no second answer when the broken framing comes after an early answer', async () => {
    const w = await watch();
    w.socket.write('POST /nowhere HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n');
    await w.answeredAt();
    await sleep(50);
    w.socket.write('zz\r\nab\r\n');
    await Promise.race([w.closedAt, sleep(3000)]);
    expect(answers(w.text()).map((a) => a.status)).toEqual([404]);
    expect(w.socket.destroyed || w.socket.readableEnded).toBe(true);
  });

  it('answer after the requests pipelined before the broken one, in order', async () => {
    const w = await watch();
    // The first is computing (slowed steps) when the broken framing arrives.
    w.socket.write(
      Buffer.concat([post('/classify?timesteps=6', 'image/png', sample), Buffer.from(head + 'zz\r\n')]),
    );
    await Promise.race([w.closedAt, sleep(5000)]);
    const got = answers(w.text());
    expect(got.map((a) => a.status)).toEqual([200, 400]);
    expect(JSON.parse(got[1]!.body).code).toBe('PREDIFY_ERR_MALFORMED_HTTP');
  });
});

describe('slow and malformed requests', () => {
  it('closes a slowloris client at the header timeout, with a JSON 408', async () => {
    const w = await watch();
    const started = performance.now();
    w.socket.write('POST /classify HTTP/1.1\r\nHost: t\r\n');
    const timer = setInterval(() => w.socket.writable && w.socket.write('X-A: b\r\n'), 100);
    const closedAt = await Promise.race([w.closedAt, sleep(5000).then(() => Infinity)]);
    clearInterval(timer);
    expect(closedAt - started).toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS - 10);
    expect(closedAt - started).toBeLessThan(HEADERS_TIMEOUT_MS * 2 + 500);
    expect(w.text()).toMatch(/^HTTP\/1\.1 408 /);
    expect(firstBody(w.text()).code).toBe('PREDIFY_ERR_HEADERS_TIMEOUT');
  });

  it.each([
    [
      'an Expect header other than 100-continue',
      'GET /healthz HTTP/1.1\r\nHost: t\r\nExpect: 999-bogus\r\n\r\n',
      417,
      'PREDIFY_ERR_EXPECTATION_FAILED',
    ],
    ['a malformed request line', 'GET /healthz HTTP/9.9 extra\r\n\r\n', 400, 'PREDIFY_ERR_MALFORMED_HTTP'],
    [
      'an invalid header',
      'GET /healthz HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n',
      400,
      'PREDIFY_ERR_MALFORMED_HTTP',
    ],
    [
      'headers over the limit',
      `GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
      431,
      'PREDIFY_ERR_HEADERS_TOO_LARGE',
    ],
  ])('answers %s in the documented JSON shape', async (_name, request, status, code) => {
    const w = await watch();
    w.socket.write(request);
    await w.closedAt;
    expect(w.text().startsWith(`HTTP/1.1 ${status} `), w.text().slice(0, 80)).toBe(true);
    const body = firstBody(w.text());
    expect(body).toMatchObject({ statusCode: status, code });
    expect(body.message).toEqual(expect.any(String));
  });
});

describe('multipart', () => {
  const form = (parts: string[]) =>
    Buffer.concat([
      ...parts.map((p) => Buffer.concat([Buffer.from(`--b\r\n${p}\r\n`, 'latin1')])),
      Buffer.from('--b--\r\n'),
    ]);
  const filePart = (name: string, filename = 'x.png') =>
    `Content-Disposition: form-data; name="${name}"; filename="${filename}"\r\nContent-Type: image/png\r\n\r\n${sample.toString('latin1')}`;
  const post = (body: Buffer) =>
    fetch(`http://127.0.0.1:${port}/classify?timesteps=0`, {
      method: 'POST',
      headers: { 'content-type': 'multipart/form-data; boundary=b' },
      body: new Uint8Array(body),
    });

  it('refuses a second file part with 413, however many there are', async () => {
    for (const n of [2, 1000]) {
      const res = await post(form(Array.from({ length: n }, (_, i) => filePart(`f${i}`))));
      expect(res.status).toBe(413);
      const body = (await res.json()) as { code: string; message: string };
      expect(body.code).toBe('PREDIFY_ERR_MULTIPART_LIMIT');
      expect(body.message).toContain('files');
    }
  });

  it('names an oversized file name as the problem', async () => {
    const res = await post(form([filePart('f', 'a'.repeat(1 << 20))]));
    expect(res.status).toBe(400);
    const body = (await res.json()) as { code: string; message: string };
    expect(body.code).toBe('PREDIFY_ERR_MULTIPART_INVALID');
    expect(body.message).toContain('file name');
  });

  it('still classifies a form with one file', async () => {
    const res = await post(form([filePart('image')]));
    expect(res.status).toBe(200);
  });
});
