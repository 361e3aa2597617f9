/**
 * Chaos: the engine worker is killed every 5 s while the server takes load at about 70% of
 * what it sustains. Reports the answers (200, 503, anything else: must be none), connection
 * errors (must be none), the time from each death to ready again, and the server's RSS before
 * and after (restarts must not leak: the end within 10% of the start once things settle).
 *
 *   npm run chaos [-- --duration 60 --every 5]
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_MODEL, loadTest, machine, quantile, rssParts, sleep, startServer, table } from './lib.js';

const { values } = parseArgs({
  options: { duration: { type: 'string', default: '60' }, every: { type: 'string', default: '5' } },
});
const duration = Number(values.duration);
const every = Number(values.every);
const T = 8;
const body = await readFile(path.join(DEFAULT_MODEL, 'samples', '0000-ankle-boot.png'));
console.log(`# Chaos: kill the engine worker every ${every} s under load, ${duration} s\n# ${machine()}\n`);

const server = await startServer({
  ENGINE_FAULTS: '1',
  ENGINE_MAX_RESTARTS: '1000',
});
const url = `${server.base}/classify?timesteps=${T}`;
const request = { url, method: 'POST' as const, headers: { 'content-type': 'image/png' }, body };

const sustained = await loadTest({ ...request, connections: 32, duration: 10 }, () => {});
const rate = Math.round(sustained.requests.average * 0.7);
await sleep(2000);
const partsStart = await rssParts(server.pid);
const rssStart = partsStart.self + partsStart.below;

const statuses = new Map<number, number>();
const recoveries: number[] = [];
let running = true;
const started = performance.now();
const killer = (async () => {
  for (let k = 1; every > 0 && k * every <= duration; k++) {
    // On a fixed schedule (the k-th kill at k * every seconds), whatever the recoveries took,
    // 150 ms after the second starts: autocannon sends each second's requests in a burst at
    // its start, and a kill in the idle rest of the second would find no work to lose.
    await sleep(started + k * every * 1000 + 150 - performance.now());
    if (!running) return;
    const killedAt = performance.now();
    process.kill(server.pid, 'SIGUSR2');
    let seenDown = false;
    while (running) {
      const status = await fetch(`${server.base}/readyz`).then(
        (r) => r.status,
        () => 0,
      );
      if (status !== 200) seenDown = true;
      else if (seenDown) break;
      if (performance.now() - killedAt > 30_000) break;
      await sleep(10);
    }
    recoveries.push(performance.now() - killedAt);
  }
})();
const result = await loadTest(
  { ...request, connections: 32, duration: duration + 1, overallRate: rate },
  (status) => statuses.set(status, (statuses.get(status) ?? 0) + 1),
);
running = false;
await killer;
await sleep(10_000);
const partsEnd = await rssParts(server.pid);
const rssEnd = partsEnd.self + partsEnd.below;
const metrics = await server.metrics();
await server.stop();

const count = (s: number) => statuses.get(s) ?? 0;
const sent = [...statuses.values()].reduce((a, b) => a + b, 0);
const other = sent - count(200) - count(503);
console.log(
  table(
    [
      'offered /s',
      'sent',
      '200',
      '503',
      'other',
      'connection errors',
      'kills',
      'death → ready p50 (ms)',
      'p99',
      'RSS start (MiB)',
      'RSS end',
    ],
    [
      [
        rate,
        sent,
        count(200),
        count(503),
        other,
        result.errors,
        recoveries.length,
        quantile(recoveries, 0.5),
        quantile(recoveries, 0.99),
        rssStart,
        rssEnd,
      ],
    ],
  ),
);
const counter = (name: string) =>
  new RegExp(`^${name}\\{model="fashion-pc"\\} (\\S+)$`, 'm').exec(metrics)?.[1];
console.log(
  `\nrestarts counted: ${counter('predify_engine_restarts_total')}; requests lost to them: ${counter('predify_engine_requests_lost_total')}`,
);
const refusals = [...metrics.matchAll(/^predify_http_requests_total\{([^}]*status="503"[^}]*)\} (\S+)$/gm)];
console.log(`503 answers by route: ${refusals.map((m) => `${m[1]} ${m[2]}`).join('; ')}`);
const mib = (v: number) => v.toFixed(0);
console.log(
  `RSS end / start: ${(rssEnd / rssStart).toFixed(3)} (server process ${mib(partsStart.self)} → ${mib(partsEnd.self)} MiB, ` +
    `engine processes ${mib(partsStart.below)} → ${mib(partsEnd.below)} MiB; ENGINE_ISOLATION=${process.env['ENGINE_ISOLATION'] ?? 'process'})`,
);
const heap = /^predify_nodejs_heap_size_used_bytes (\S+)$/m.exec(metrics)?.[1];
console.log(`JS heap used at the end: ${(Number(heap) / 2 ** 20).toFixed(0)} MiB`);
if (other > 0 || result.errors > 0) process.exitCode = 1;
