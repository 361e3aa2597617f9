/**
 * Hostile input over a real socket: several hundred generated malformed requests (truncated
 * and bit-flipped images of every served format, wrong media types, decompression bombs,
 * empty bodies, huge headers, broken multipart). Every answer is JSON with a message: a 4xx,
 * or a 200 only where the damage left a decodable image. Never a 5xx, never a crash; a good image is
 * still classified correctly afterwards.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp } from '../helpers.js';
import { gifBomb, pngBomb } from '../image/bombs.js';
import { REPORTS, SAMPLES } from '../paths.js';

interface Case {
  name: string;
  body: Buffer;
  headers: Record<string, string>;
}

let app: FastifyInstance;
let port: number;
let sample: Buffer;

beforeAll(async () => {
  ({ app } = await buildTestApp({ BODY_LIMIT_BYTES: '200000' }));
  await app.listen({ port: 0, host: '127.0.0.1' });
  port = (app.server.address() as { port: number }).port;
  sample = await readFile(path.join(SAMPLES, '0000-ankle-boot.png'));
});
afterAll(() => app.close());

function send(c: Case): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        port,
        host: '127.0.0.1',
        method: 'POST',
        path: '/classify?timesteps=0',
        headers: c.headers,
        agent: false,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end(c.body);
  });
}

/** A deterministic pseudo-random sequence, so that a failure can be replayed. */
function rng(seed: number) {
  let s = seed;
  return (n: number) => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return s % n;
  };
}

function multipart(boundary: string, parts: string[]): Buffer {
  return Buffer.from(
    parts.map((p) => `--${boundary}\r\n${p}\r\n`).join('') + `--${boundary}--\r\n`,
    'latin1',
  );
}

async function cases(): Promise<Case[]> {
  const out: Case[] = [];
  const next = rng(2026);
  const formats = ['png', 'jpeg', 'webp', 'gif', 'tiff'] as const;
  for (const format of formats) {
    const good = format === 'png' ? sample : await sharp(sample).toFormat(format).toBuffer();
    const type = `image/${format}`;
    for (let k = 0; k < 25; k++) {
      out.push({
        name: `${format} truncated #${k}`,
        body: good.subarray(0, next(good.length)),
        headers: { 'content-type': type },
      });
    }
    for (let k = 0; k < 25; k++) {
      const flipped = Buffer.from(good);
      for (let f = 0; f < 1 + next(8); f++) flipped[next(flipped.length)]! ^= 1 << next(8);
      out.push({ name: `${format} bit-flipped #${k}`, body: flipped, headers: { 'content-type': type } });
    }
    out.push({ name: `${format} empty`, body: Buffer.alloc(0), headers: { 'content-type': type } });
    out.push({
      name: `${format} header only`,
      body: good.subarray(0, 16),
      headers: { 'content-type': type },
    });
  }
  const types = [
    'application/json',
    'text/plain',
    'image/svg+xml',
    'image/bmp',
    'application/octet-stream',
    'video/mp4',
    'image/x-icon',
    'text/html',
    'application/xml',
    'image/avif',
  ];
  for (const [k, type] of types.entries()) {
    out.push({ name: `wrong type ${type}`, body: sample, headers: { 'content-type': type } });
    out.push({
      name: `random bytes as ${type} #${k}`,
      body: Buffer.from(Array.from({ length: 200 }, () => next(256))),
      headers: { 'content-type': type },
    });
  }
  out.push({ name: 'no content type', body: sample, headers: {} });
  out.push({
    name: 'svg labelled png',
    body: Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>'),
    headers: { 'content-type': 'image/png' },
  });
  for (const [w, h] of [
    [50_000, 50_000],
    [65_535, 65_535],
    [100_000, 1],
    [1, 100_000],
    [30_000, 30_000],
  ] as const) {
    out.push({ name: `png bomb ${w}x${h}`, body: pngBomb(w, h), headers: { 'content-type': 'image/png' } });
  }
  for (const [w, h] of [
    [65_535, 65_535],
    [50_000, 50_000],
    [40_000, 2_000],
  ] as const) {
    out.push({ name: `gif bomb ${w}x${h}`, body: gifBomb(w, h), headers: { 'content-type': 'image/gif' } });
  }
  out.push({
    name: 'body over the limit',
    body: Buffer.alloc(300_000, 7),
    headers: { 'content-type': 'image/png' },
  });
  out.push({
    name: 'huge header',
    body: sample,
    headers: { 'content-type': 'image/png', 'x-padding': 'a'.repeat(20_000) },
  });
  out.push({
    name: 'many headers (200, just under the 16 KiB limit)',
    body: sample,
    headers: {
      'content-type': 'image/png',
      ...Object.fromEntries(Array.from({ length: 200 }, (_, k) => [`x-h${k}`, 'v'.repeat(60)])),
    },
  });
  const png = sample.toString('latin1');
  const mp = [
    [
      'no boundary',
      'multipart/form-data',
      multipart('b0', [
        `Content-Disposition: form-data; name="f"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n${png}`,
      ]),
    ],
    [
      'wrong boundary',
      'multipart/form-data; boundary=other',
      multipart('b1', [
        `Content-Disposition: form-data; name="f"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n${png}`,
      ]),
    ],
    [
      'no closing boundary',
      'multipart/form-data; boundary=b2',
      Buffer.from(
        `--b2\r\nContent-Disposition: form-data; name="f"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n${png}`,
        'latin1',
      ),
    ],
    [
      'no disposition',
      'multipart/form-data; boundary=b3',
      multipart('b3', [`Content-Type: image/png\r\n\r\n${png}`]),
    ],
    [
      'fields only',
      'multipart/form-data; boundary=b4',
      multipart('b4', [
        'Content-Disposition: form-data; name="a"\r\n\r\n1',
        'Content-Disposition: form-data; name="b"\r\n\r\n2',
      ]),
    ],
    [
      'two files',
      'multipart/form-data; boundary=b5',
      multipart(
        'b5',
        [1, 2].map(
          (k) =>
            `Content-Disposition: form-data; name="f${k}"; filename="${k}.png"\r\nContent-Type: image/png\r\n\r\n${png}`,
        ),
      ),
    ],
    [
      'text file part',
      'multipart/form-data; boundary=b6',
      multipart('b6', [
        'Content-Disposition: form-data; name="f"; filename="a.txt"\r\nContent-Type: text/plain\r\n\r\nhello',
      ]),
    ],
    [
      'truncated image part',
      'multipart/form-data; boundary=b7',
      multipart('b7', [
        `Content-Disposition: form-data; name="f"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n${png.slice(0, 60)}`,
      ]),
    ],
    ['garbage', 'multipart/form-data; boundary=b8', Buffer.from('this is not multipart at all')],
    ['empty', 'multipart/form-data; boundary=b9', Buffer.alloc(0)],
  ] as const;
  for (const [name, type, body] of mp)
    out.push({ name: `multipart ${name}`, body, headers: { 'content-type': type } });
  for (let k = 0; k < 20; k++) {
    const body = multipart(`r${k}`, [
      `Content-Disposition: form-data; name="f"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n${png.slice(0, next(png.length))}`,
    ]);
    const cut = body.subarray(0, next(body.length));
    out.push({
      name: `multipart truncated #${k}`,
      body: cut,
      headers: { 'content-type': `multipart/form-data; boundary=r${k}` },
    });
  }
  return out;
}

describe('fuzzing /classify over a real socket', () => {
  it('answers every malformed request with 4xx JSON (or 200 when it still decodes), never 5xx', async () => {
    const all = await cases();
    expect(all.length).toBeGreaterThanOrEqual(300);
    const decoded: string[] = [];
    const outcomes: Record<string, Record<string, number>> = {};
    for (const c of all) {
      const { status, body } = await send(c).catch((err: Error) => {
        throw new Error(`${c.name}: ${err.message}`);
      });
      expect(status, c.name).toBeLessThan(500);
      // Nothing about the server's insides reaches a client.
      expect(body, c.name).not.toMatch(/\n\s+at |node_modules|\/dist\/|\/src\//);
      expect(body, c.name).not.toContain(process.cwd());
      const family = c.name
        .replace(/ #\d+$/, '')
        .replace(/ \d+x\d+$/, '')
        .replace(/^wrong type .*/, 'image bytes, wrong media type')
        .replace(/^random bytes as .*/, 'random bytes, other media type')
        .replace(/ \(.*\)$/, '');
      (outcomes[family] ??= {})[status] = (outcomes[family][status] ?? 0) + 1;
      const parsed = JSON.parse(body) as { message?: string; steps?: unknown[] };
      if (status === 200) {
        expect(parsed.steps, c.name).toHaveLength(1);
        decoded.push(c.name);
      } else {
        expect(status, c.name).toBeGreaterThanOrEqual(400);
        expect(parsed.message, c.name).toEqual(expect.any(String));
      }
    }
    // Only damage that leaves a decodable image may be answered with a classification: bit
    // flips in pixel data, and truncations that libvips reads without complaint (uncompressed
    // TIFF strips; a GIF cut after its last frame). Everything else must be refused.
    const mayDecode = /bit-flipped|tiff truncated|gif truncated|many headers/;
    expect(decoded.filter((name) => !mayDecode.test(name)).join(', ')).toBe('');
    // The tally by family of case and status, for docs/reliability.md.
    await mkdir(REPORTS, { recursive: true });
    await writeFile(
      path.join(REPORTS, 'fuzz.json'),
      JSON.stringify({ cases: all.length, outcomes }, null, 2),
    );
  }, 120_000);

  it('still classifies a good image correctly afterwards', async () => {
    const res = await send({ name: 'good', body: sample, headers: { 'content-type': 'image/png' } });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body).prediction.label).toBe('Ankle boot');
  });
});
