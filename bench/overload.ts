/**
 * Overload: what the server does when offered several times the rate it can sustain.
 *
 * 1. Measures the sustainable rate: 32 connections post a sample to /classify?timesteps=8
 *    for --measure seconds (closed loop, so the server sets the pace).
 * 2. Offers --factor times that rate from --connections connections for --duration seconds.
 * 3. Checks: the process stays up, every answer is a 200 or the documented 503
 *    (PREDIFY_ERR_OVERLOADED with Retry-After), no connection errors, the p99 latency of the
 *    accepted requests stays bounded (by what MAX_QUEUE allows), /readyz said "overloaded"
 *    during the burst, and resident memory returns to its pre-burst level.
 *
 *   npm run bench:overload [-- --factor 4 --duration 20]
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { DEFAULT_MODEL, machine, quantile, rssMiB, sleep, startServer, table } from './lib.js';

const { values } = parseArgs({
  options: {
    factor: { type: 'string', default: '4' },
    duration: { type: 'string', default: '20' },
    measure: { type: 'string', default: '10' },
    connections: { type: 'string', default: '1000' },
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
const result = await new Promise<autocannon.Result>((resolve, reject) => {
  const burst = autocannon(
    {
      url: url(server.base),
      method: 'POST',
      headers: { 'content-type': 'image/png' },
      body,
      connections,
      overallRate: Math.round(factor * rate),
      duration,
      timeout: 60,
    },
    (err, res) => (err ? reject(err) : resolve(res)),
  );
  burst.on('response', (_client, status, _bytes, ms) => {
    statuses.set(status, (statuses.get(status) ?? 0) + 1);
    (status === 200 ? accepted : refused).push(ms);
  });
});
watching = false;
await watcher;

const alive = (await fetch(`${server.base}/healthz`)).ok;
const after = await fetch(url(server.base), {
  method: 'POST',
  headers: { 'content-type': 'image/png' },
  body: new Uint8Array(body),
});
const stillClassifies =
  after.ok && ((await after.json()) as { prediction: { label: string } }).prediction.label === 'Ankle boot';
// Let the process settle: queued work finishes, sockets close, the collector runs.
await sleep(10_000);
const rssAfter = await rssMiB(server.pid);
await server.stop();

const total = [...statuses.values()].reduce((a, b) => a + b, 0);
const offered = factor * rate;
console.log(
  `\nburst: offered ${offered.toFixed(0)} requests/s (${factor}× sustainable) from ${connections} connections for ${duration} s\n`,
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
const memoryBack = rssAfter <= rssBefore * 1.1 + 16;
console.log(`
accepted throughput during the burst: ${acceptedRate.toFixed(1)} requests/s (${((acceptedRate / rate) * 100).toFixed(0)}% of sustainable)
connection errors: ${result.errors}, timeouts: ${result.timeouts}
/readyz during the burst: ${[...readiness.entries()].map(([k, v]) => `${k} ×${v}`).join(', ')}
p99 of accepted requests: ${p99.toFixed(0)} ms (bound ${p99Bound.toFixed(0)} ms: 1.5 × (MAX_QUEUE + 32) / sustainable rate)
RSS: ${rssBefore.toFixed(0)} MiB before, ${peakRss.toFixed(0)} MiB peak, ${rssAfter.toFixed(0)} MiB 10 s after (limit ${(rssBefore * 1.1 + 16).toFixed(0)})
after the burst: /healthz ${alive ? 'ok' : 'FAILED'}, a sample still classified correctly: ${stillClassifies ? 'yes' : 'NO'}`);

const onlyDocumented = [...statuses.keys()].every((s) => s === 200 || s === 503);
const checks: [string, boolean][] = [
  ['every answer is 200 or 503', onlyDocumented],
  ['some requests were refused (the burst really overloaded)', (statuses.get(503) ?? 0) > 0],
  ['no connection errors or timeouts', result.errors === 0 && result.timeouts === 0],
  ['p99 of accepted requests within the bound', p99 <= p99Bound],
  ['RSS back within 10% + 16 MiB of its pre-burst level', memoryBack],
  ['server alive and correct afterwards', alive && stillClassifies],
];
console.log();
for (const [name, ok] of checks) console.log(`${ok ? 'PASS' : 'FAIL'}  ${name}`);
if (checks.some(([, ok]) => !ok)) process.exitCode = 1;
