/**
 * Overload: what the server does when offered several times the rate it can sustain.
 *
 * 1. Measures the sustainable rate: 32 connections post a sample to /classify?timesteps=8
 *    for --measure seconds (closed loop, so the server sets the pace).
 * 2. Floods it for --duration seconds from --connections connections, each sending one
 *    request a second: more connections than the server admits (MAX_QUEUE + BATCH_MAX_SIZE),
 *    so that the rest are refused and come back. The offered rate is measured and must be at
 *    least --factor times the sustainable one.
 * 3. Checks: the process stays up, every answer is a 200 or the documented 503
 *    (PREDIFY_ERR_OVERLOADED with Retry-After), no connection errors, the p99 latency of the
 *    accepted requests stays bounded (by what MAX_QUEUE allows), /readyz said "overloaded"
 *    during the burst, and resident memory returns to its pre-burst level.
 *
 *   npm run bench:overload [-- --connections 500 --duration 20]
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import {
  DEFAULT_MODEL,
  loadTest,
  machine,
  metric,
  quantile,
  rssMiB,
  sleep,
  startServer,
  table,
} from './lib.js';

const { values } = parseArgs({
  options: {
    factor: { type: 'string', default: '4' },
    duration: { type: 'string', default: '20' },
    measure: { type: 'string', default: '10' },
    connections: { type: 'string', default: '500' },
  },
});
const factor = Number(values.factor);
const duration = Number(values.duration);
const connections = Number(values.connections);
const T = 8;
const MAX_QUEUE = 256;
const body = await readFile(path.join(DEFAULT_MODEL, 'samples', '0000-ankle-boot.png'));
const url = (base: string) => `${base}/classify?timesteps=${T}`;

console.log(`# Overload: POST /classify?timesteps=${T}, MAX_QUEUE=${MAX_QUEUE}\n# ${machine()}\n`);
const server = await startServer({ MAX_QUEUE: String(MAX_QUEUE) });

const sustained = await autocannon({
  url: url(server.base),
  method: 'POST',
  headers: { 'content-type': 'image/png' },
  body,
  connections: 32,
  duration: Number(values.measure),
});
const rate = sustained.requests.average;
await sleep(3000);
const rssBefore = await rssMiB(server.pid);
const heapBefore = metric(await server.metrics(), 'predify_nodejs_heap_size_used_bytes') / 2 ** 20;
console.log(
  `sustainable: ${rate.toFixed(1)} requests/s (32 connections, ${values.measure} s); RSS ${rssBefore.toFixed(0)} MiB`,
);

// While the burst runs: resident memory and what /readyz says, twice a second.
let peakRss = rssBefore;
const readiness = new Map<string, number>();
let watching = true;
const watcher = (async () => {
  while (watching) {
    peakRss = Math.max(peakRss, await rssMiB(server.pid));
    const ready = await fetch(`${server.base}/readyz`).then(
      async (r) => ((await r.json()) as { status: string }).status,
      () => 'no answer',
    );
    readiness.set(ready, (readiness.get(ready) ?? 0) + 1);
    await sleep(500);
  }
})();

const statuses = new Map<number, number>();
const accepted: number[] = [];
const refused: number[] = [];
const result = await loadTest(
  {
    url: url(server.base),
    method: 'POST',
    headers: { 'content-type': 'image/png' },
    body,
    connections,
    connectionRate: 1,
    duration,
    timeout: 60,
  },
  (status, ms) => {
    statuses.set(status, (statuses.get(status) ?? 0) + 1);
    (status === 200 ? accepted : refused).push(ms);
  },
);
watching = false;
await watcher;

const alive = (await fetch(`${server.base}/healthz`)).ok;
// The backlog admitted during the burst finishes first; then the process settles.
const burstEnded = performance.now();
while (metric(await server.metrics(), 'predify_classify_in_flight') > 0) await sleep(200);
const drainSeconds = (performance.now() - burstEnded) / 1000;
// V8 collects lazily: the garbage of a burst can sit in the heap for a minute before an idle
// collection returns it. Memory is watched until it is back near its pre-burst level.
const rssLimit = rssBefore * 1.1 + 16;
const settleStart = performance.now();
let rssAfter: number;
let heapAfter: number;
for (;;) {
  rssAfter = await rssMiB(server.pid);
  heapAfter = metric(await server.metrics(), 'predify_nodejs_heap_size_used_bytes') / 2 ** 20;
  if (rssAfter <= rssLimit || performance.now() - settleStart > 120_000) break;
  await sleep(1000);
}
const settleSeconds = (performance.now() - settleStart) / 1000;
const after = await fetch(url(server.base), {
  method: 'POST',
  headers: { 'content-type': 'image/png' },
  body: new Uint8Array(body),
});
const stillClassifies =
  after.ok && ((await after.json()) as { prediction: { label: string } }).prediction.label === 'Ankle boot';
await server.stop();

const total = [...statuses.values()].reduce((a, b) => a + b, 0);
const offered = total / duration;
console.log(
  `\nburst: ${connections} connections for ${duration} s offered ${offered.toFixed(0)} requests/s, ${(offered / rate).toFixed(1)}× sustainable\n`,
);
console.log(
  table(
    ['status', 'answers', 'share', 'p50 (ms)', 'p99 (ms)'],
    [...statuses.entries()]
      .sort(([a], [b]) => a - b)
      .map(([status, n]) => {
        const times = status === 200 ? accepted : refused;
        return [status, n, `${((n / total) * 100).toFixed(1)}%`, quantile(times, 0.5), quantile(times, 0.99)];
      }),
  ),
);
const acceptedRate = accepted.length / duration;
// A request accepted behind a full queue waits for MAX_QUEUE others at the sustainable rate.
const p99Bound = ((MAX_QUEUE + 32) / rate) * 1000 * 1.5;
const p99 = quantile(accepted, 0.99);
const memoryBack = rssAfter <= rssLimit;
console.log(`
accepted throughput during the burst: ${acceptedRate.toFixed(1)} requests/s (${((acceptedRate / rate) * 100).toFixed(0)}% of sustainable)
connection errors: ${result.errors}, timeouts: ${result.timeouts}
/readyz during the burst: ${[...readiness.entries()].map(([k, v]) => `${k} ×${v}`).join(', ')}
p99 of accepted requests: ${p99.toFixed(0)} ms (bound ${p99Bound.toFixed(0)} ms: 1.5 × (MAX_QUEUE + 32) / sustainable rate)
backlog drained ${drainSeconds.toFixed(1)} s after the burst\nRSS: ${rssBefore.toFixed(0)} MiB before, ${peakRss.toFixed(0)} MiB peak, ${rssAfter.toFixed(0)} MiB ${settleSeconds.toFixed(0)} s after the drain (limit ${rssLimit.toFixed(0)}, waited up to 120 s); JS heap used ${heapBefore.toFixed(0)} → ${heapAfter.toFixed(0)} MiB
after the burst: /healthz ${alive ? 'ok' : 'FAILED'}, a sample still classified correctly: ${stillClassifies ? 'yes' : 'NO'}`);

const onlyDocumented = [...statuses.keys()].every((s) => s === 200 || s === 503);
const checks: [string, boolean][] = [
  ['every answer is 200 or 503', onlyDocumented],
  [`offered at least ${factor}× the sustainable rate`, offered >= factor * rate],
  ['some requests were refused', (statuses.get(503) ?? 0) > 0],
  ['no connection errors or timeouts', result.errors === 0 && result.timeouts === 0],
  ['p99 of accepted requests within the bound', p99 <= p99Bound],
  ['RSS back within 10% + 16 MiB of its pre-burst level within 120 s', memoryBack],
  ['server alive and correct afterwards', alive && stillClassifies],
];
console.log();
for (const [name, ok] of checks) console.log(`${ok ? 'PASS' : 'FAIL'}  ${name}`);
if (checks.some(([, ok]) => !ok)) process.exitCode = 1;
