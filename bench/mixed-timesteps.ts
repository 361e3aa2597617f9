/**
 * Benchmark 4: mixed timesteps. Half the connections ask for timesteps=1, half for
 * timesteps=32, at the same time; p50/p99 of each class with continuous batching on and off.
 *
 *   npm run bench:mixed [-- --duration 15 --connections 32 --steps-per-call 8 --multi-step full]
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { engineEnv, machine, meanBatchSize, SERVER_LOAD_OPTIONS, startServer, table } from './lib.js';

const { values } = parseArgs({ options: SERVER_LOAD_OPTIONS });
const duration = Number(values.duration);
const half = Math.max(1, Math.floor(Number(values.connections) / 2));
const modelDir = path.resolve(values.model);
const body = await readFile(path.join(modelDir, 'samples', '0000-ankle-boot.png'));
console.log(
  `# mixed timesteps: ${half} connections at T = 1 and ${half} at T = 32, ${duration} s per configuration\n# ${machine()}\n`,
);

const load = (base: string, T: number) =>
  autocannon({
    url: `${base}/classify?timesteps=${T}`,
    method: 'POST',
    headers: { 'content-type': 'image/png' },
    body,
    connections: half,
    duration,
  });

const rows = [];
const p99Short: number[] = [];
for (const [name, env] of [
  ['continuous batching on', {}],
  ['continuous batching off', { CONTINUOUS_BATCHING: 'false' }],
] as const) {
  const server = await startServer({
    MODEL_DIR: modelDir,
    ...engineEnv(values),
    ...env,
  });
  const models = (await (await fetch(`${server.base}/models`)).json()) as {
    models: { batch: { size: number; source: string } }[];
  };
  const { size, source } = models.models[0]!.batch;
  const [short, long] = await Promise.all([load(server.base, 1), load(server.base, 32)]);
  const batch = meanBatchSize(await server.metrics());
  await server.stop();
  p99Short.push(short.latency.p99);
  rows.push([
    `${name} (batch ${size}, ${source})`,
    'T = 1',
    short.requests.total,
    short.latency.p50,
    short.latency.p99,
    batch,
    short.non2xx + short.errors,
  ]);
  rows.push([
    `${name} (batch ${size}, ${source})`,
    'T = 32',
    long.requests.total,
    long.latency.p50,
    long.latency.p99,
    batch,
    long.non2xx + long.errors,
  ]);
}
console.log(
  table(['configuration', 'class', 'requests', 'p50 (ms)', 'p99 (ms)', 'mean batch', 'failed'], rows),
);
console.log(
  `\nshort class p99, continuous on / off: ${p99Short[0]} / ${p99Short[1]} ms = ${(p99Short[0]! / p99Short[1]!).toFixed(2)} (target ≤ 0.33)`,
);
