/**
 * Hostile clients against a default server (dist/server.js), over loopback: the probes of
 * docs/reliability.md's "Hostile clients" section. For each probe it prints what the server
 * did, its resident memory and the p99 latency of /healthz, polled every 50 ms meanwhile.
 *
 *   npm run bench:hostile
 */
import { readFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import path from 'node:path';
import { DEFAULT_MODEL, machine, metric, quantile, rssMiB, sleep, startServer, table } from './lib.js';

const server = await startServer({});
const { hostname, port } = new URL(server.base);
const sample = await readFile(path.join(DEFAULT_MODEL, 'samples', '0000-ankle-boot.png'));
const image = sample.toString('latin1');
const head = (timesteps: number, length: number, type = 'image/png') =>
  `POST /classify?timesteps=${timesteps} HTTP/1.1\r\nHost: b\r\nContent-Type: ${type}\r\nContent-Length: ${length}\r\n\r\n`;

function open(): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(Number(port), hostname, () => resolve(s));
    s.on('error', reject);
  });
}

/** Resolves with [ms to the first answer byte, ms to the server's close] from `sent`. */
function timings(s: Socket, sent: number): Promise<[number, number]> {
  return new Promise((resolve) => {
    let first = NaN;
    s.on('data', () => (first = Number.isNaN(first) ? performance.now() - sent : first));
    s.on('error', () => {});
    s.on('close', () => resolve([first, performance.now() - sent]));
  });
}

const steps = async () => metric(await server.metrics(), 'predify_timesteps_total');
const inFlight = async () => metric(await server.metrics(), 'predify_classify_in_flight');
const classify = (timesteps = 1) =>
  fetch(`${server.base}/classify?timesteps=${timesteps}`, {
    method: 'POST',
    headers: { 'content-type': 'image/png' },
    body: new Uint8Array(sample),
  });

/**
 * 20 requests refused early (415) while their `length`-byte bodies are dribbled a byte every
 * 100 ms: ms from each answer to the server's close.
 */
function earlyAnswers(length: number): Promise<number[]> {
  return Promise.all(
    Array.from({ length: 20 }, async () => {
      const s = await open();
      const done = timings(s, performance.now());
      s.write(head(1, length, 'text/plain'));
      const timer = setInterval(() => s.writable && s.write('x'), 100);
      const [answer, close] = await Promise.race([
        done,
        sleep(10_000).then(() => [0, Infinity] as [number, number]),
      ]);
      clearInterval(timer);
      s.destroy();
      return close - answer;
    }),
  );
}

/** Runs `probe` while polling /healthz and sampling RSS. */
async function during(name: string, probe: () => Promise<string>): Promise<(string | number)[]> {
  const health: number[] = [];
  let rss = 0;
  let running = true;
  const poll = (async () => {
    while (running) {
      const t = performance.now();
      await fetch(`${server.base}/healthz`);
      health.push(performance.now() - t);
      rss = Math.max(rss, await rssMiB(server.pid));
      await sleep(50);
    }
  })();
  const outcome = await probe();
  running = false;
  await poll;
  return [name, outcome, Math.round(rss), quantile(health, 0.99)];
}

const rows = [
  await during('34 sockets x 10 pipelined /classify?timesteps=64, closed after 200 ms', async () => {
    const sockets = await Promise.all(Array.from({ length: 34 }, open));
    for (const s of sockets)
      s.write(Array.from({ length: 10 }, () => head(64, sample.length) + image).join(''), 'latin1');
    await sleep(200);
    for (const s of sockets) s.destroy();
    await sleep(2000);
    const left = await inFlight();
    const burst = await Promise.all(Array.from({ length: 64 }, () => classify()));
    return `in flight 2 s later: ${left}; then ${burst.filter((r) => r.ok).length}/64 requests admitted`;
  }),
  await during('200 requests at timesteps=64, sockets destroyed 50 ms after sending', async () => {
    await sleep(500);
    const before = await steps();
    const sockets = await Promise.all(Array.from({ length: 200 }, open));
    for (const s of sockets) s.write(head(64, sample.length) + image, 'latin1');
    await sleep(50);
    for (const s of sockets) s.destroy();
    await sleep(2000);
    const computed = (await steps()) - before;
    const t = performance.now();
    await classify(8);
    return `${computed} sample-steps computed for them (a full run would be ${200 * 65}); a request 2 s later took ${Math.round(performance.now() - t)} ms`;
  }),
  await during('20 early answers (415) with a 5 MB body dribbled a byte every 100 ms', async () => {
    const closes = await earlyAnswers(5 << 20);
    return `closed ${Math.round(quantile(closes, 1))} ms or less after the answer (all 20)`;
  }),
  await during('20 early answers (415) with a 2 KB body dribbled a byte every 100 ms', async () => {
    const closes = await earlyAnswers(2048);
    return `kept, then cut ${Math.round(quantile(closes, 0))}-${Math.round(quantile(closes, 1))} ms after the answer (bound: 64 KiB within 1 s)`;
  }),
  await during('20 connections x 50 pipelined mixed requests (200, 400, 415, 404, 422)', async () => {
    const post = (url: string, type: string, body: string) =>
      `POST ${url} HTTP/1.1\r\nHost: b\r\nContent-Type: ${type}\r\nContent-Length: ${Buffer.byteLength(body, 'latin1')}\r\n\r\n${body}`;
    const kinds = [
      post('/classify?timesteps=1', 'image/png', image),
      post('/classify?timesteps=abc', 'image/png', image),
      post('/classify', 'text/plain', 'hello'),
      post('/nowhere', 'text/plain', 'abc'),
      post('/classify', 'image/png', 'not a png'),
    ];
    const counts = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const s = await open();
        let raw = '';
        s.setEncoding('latin1');
        s.on('data', (d: string) => (raw += d));
        s.write(Array.from({ length: 50 }, (_, i) => kinds[i % kinds.length]).join(''), 'latin1');
        const until = performance.now() + 20_000;
        while ((raw.match(/HTTP\/1\.1 /g) ?? []).length < 50 && performance.now() < until && !s.destroyed)
          await sleep(20);
        s.destroy();
        return (raw.match(/HTTP\/1\.1 /g) ?? []).length;
      }),
    );
    return `${counts.reduce((a, b) => a + b, 0)}/1000 answered (fewest on one connection: ${Math.min(...counts)})`;
  }),
  await during('20 malformed chunked bodies (bad, negative, 2^72 sizes; 40 KB extension)', async () => {
    const bodies = [
      'zz\r\nab\r\n',
      '-5\r\nab\r\n',
      'ffffffffffffffffff\r\nab\r\n',
      `5;${'e'.repeat(40_000)}\r\nhello\r\n`,
    ];
    const statuses = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const s = await open();
        let raw = '';
        s.setEncoding('latin1');
        s.on('data', (d: string) => (raw += d));
        s.on('error', () => {});
        const closed = new Promise((resolve) => s.on('close', resolve));
        s.write(
          `POST /classify HTTP/1.1\r\nHost: b\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n${bodies[i % 4]}`,
        );
        await Promise.race([closed, sleep(5000)]);
        s.destroy();
        return /^HTTP\/1\.1 (\d+)[\s\S]*"code":"PREDIFY_ERR_/.exec(raw)?.[1] ?? 'nothing';
      }),
    );
    const tally = new Map<string, number>();
    for (const status of statuses) tally.set(status, (tally.get(status) ?? 0) + 1);
    return `${[...tally].map(([status, n]) => `${n} x ${status}`).join(', ')} (JSON answers before the close)`;
  }),
  await during('100 slowloris connections, a header line every second', async () => {
    const closes = await Promise.all(
      Array.from({ length: 100 }, async () => {
        const s = await open();
        const done = timings(s, performance.now());
        s.write('POST /classify HTTP/1.1\r\nHost: b\r\n');
        const timer = setInterval(() => s.writable && s.write('X-A: b\r\n'), 1000);
        const [, close] = await Promise.race([
          done,
          sleep(30_000).then(() => [0, Infinity] as [number, number]),
        ]);
        clearInterval(timer);
        s.destroy();
        return close;
      }),
    );
    return `closed with a JSON 408 after ${(quantile(closes, 0) / 1000).toFixed(1)}-${(quantile(closes, 1) / 1000).toFixed(1)} s (HEADERS_TIMEOUT_MS 10 s)`;
  }),
];

console.log(`# Hostile clients against a default server\n# ${machine()}\n`);
console.log(table(['probe', 'outcome', 'RSS max (MiB)', '/healthz p99 (ms)'], rows));
await server.stop();
