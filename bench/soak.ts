/**
 * Soak: a bounded run of mixed good and bad requests over loopback against a server this
 * script starts. Reports requests served, answers by status, and resident memory at the start
 * (after warm-up), middle and end. Passes when nothing answered 5xx, every status is one the
 * mix should produce, and memory does not grow after warm-up: V8 collects lazily, so RSS is a
 * sawtooth, and what is compared is its floor (the lowest sample) in the first and last
 * quarters after warm-up.
 *
 *   npm run soak [-- --duration 180 --connections 8]
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import sharp from 'sharp';
import { DEFAULT_MODEL, loadTest, machine, rssMiB, sleep, startServer, table } from './lib.js';

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '180' },
    connections: { type: 'string', default: '8' },
  },
});
const duration = Number(values.duration);
const connections = Number(values.connections);
const warmup = Math.max(10, duration * 0.2);

const png = await readFile(path.join(DEFAULT_MODEL, 'samples', '0001-pullover.png'));
const jpeg = await sharp(await readFile(path.join(DEFAULT_MODEL, 'samples', '0002-trouser.png')))
  .jpeg()
  .toBuffer();
const boundary = 'soak-boundary';
const form = Buffer.concat([
  Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="t.jpg"\r\nContent-Type: image/jpeg\r\n\r\n`,
  ),
  jpeg,
  Buffer.from(`\r\n--${boundary}--\r\n`),
]);

type Mix = { name: string; expect: number; request: autocannon.Request };
const post = (p: string, type: string, body: Buffer, headers: Record<string, string> = {}) => ({
  method: 'POST' as const,
  path: p,
  headers: { 'content-type': type, ...headers },
  body,
});
const mix: Mix[] = [
  { name: 'PNG, 8 timesteps', expect: 200, request: post('/classify?timesteps=8', 'image/png', png) },
  {
    name: 'JPEG in a form, 2 timesteps',
    expect: 200,
    request: post('/classify?timesteps=2', `multipart/form-data; boundary=${boundary}`, form),
  },
  {
    name: 'PNG streamed as SSE, 4 timesteps',
    expect: 200,
    request: post('/classify?timesteps=4', 'image/png', png, { accept: 'text/event-stream' }),
  },
  { name: 'truncated PNG', expect: 422, request: post('/classify', 'image/png', png.subarray(0, 200)) },
  { name: 'text body', expect: 415, request: post('/classify', 'text/plain', Buffer.from('hello')) },
  { name: 'timesteps=abc', expect: 400, request: post('/classify?timesteps=abc', 'image/png', png) },
  { name: 'empty body', expect: 400, request: post('/classify', 'image/png', Buffer.alloc(0)) },
  { name: 'unknown route', expect: 404, request: { method: 'GET', path: '/nothing' } },
  { name: 'model list', expect: 200, request: { method: 'GET', path: '/models' } },
];

console.log(
  `# Soak: ${duration} s, ${connections} connections, ${mix.length} kinds of request in turn (warm-up ${warmup} s)\n# ${machine()}\n`,
);
const server = await startServer({});
const samples: { s: number; rss: number }[] = [];
const started = performance.now();
let running = true;
const watcher = (async () => {
  while (running) {
    samples.push({ s: (performance.now() - started) / 1000, rss: await rssMiB(server.pid) });
    await sleep(2000);
  }
})();

const statuses = new Map<number, number>();
const result = await loadTest(
  { url: server.base, connections, duration, requests: mix.map((m) => m.request), timeout: 30 },
  (status) => statuses.set(status, (statuses.get(status) ?? 0) + 1),
);
running = false;
await watcher;
await server.stop();

const total = [...statuses.values()].reduce((a, b) => a + b, 0);
console.log(
  `requests answered: ${total} (${(total / duration).toFixed(1)}/s), connection errors ${result.errors}, timeouts ${result.timeouts}\n`,
);
console.log(
  table(
    ['status', 'answers', 'share'],
    [...statuses.entries()]
      .sort(([a], [b]) => a - b)
      .map(([s, n]) => [s, n, `${((n / total) * 100).toFixed(1)}%`]),
  ),
);

const after = samples.filter((x) => x.s >= warmup);
const at = (frac: number) => after[Math.min(after.length - 1, Math.floor(frac * after.length))]!;
const quarter = Math.max(1, Math.floor(after.length / 4));
const firstFloor = Math.min(...after.slice(0, quarter).map((x) => x.rss));
const lastFloor = Math.min(...after.slice(-quarter).map((x) => x.rss));
const peak = Math.max(...samples.map((x) => x.rss));
console.log(`
RSS (MiB): start of run ${samples[0]!.rss.toFixed(0)}; after warm-up ${at(0).rss.toFixed(0)} (${at(0).s.toFixed(0)} s), middle ${at(0.5).rss.toFixed(0)} (${at(0.5).s.toFixed(0)} s), end ${at(1).rss.toFixed(0)} (${at(1).s.toFixed(0)} s); peak ${peak.toFixed(0)}
RSS floor: first quarter after warm-up ${firstFloor.toFixed(0)}, last quarter ${lastFloor.toFixed(0)} (${(lastFloor - firstFloor).toFixed(0)} MiB)
`);

const expected = new Set(mix.map((m) => m.expect));
const checks: [string, boolean][] = [
  ['no 5xx', [...statuses.keys()].every((s) => s < 500)],
  [
    `only the statuses the mix produces (${[...expected].join(', ')})`,
    [...statuses.keys()].every((s) => expected.has(s)),
  ],
  ['no connection errors or timeouts', result.errors === 0 && result.timeouts === 0],
  ['RSS floor does not grow after warm-up (last ≤ first + 5% + 8 MiB)', lastFloor <= firstFloor * 1.05 + 8],
];
for (const [name, ok] of checks) console.log(`${ok ? 'PASS' : 'FAIL'}  ${name}`);
if (checks.some(([, ok]) => !ok)) process.exitCode = 1;
