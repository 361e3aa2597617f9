/**
 * Benchmark 3: HTTP under load. 32 autocannon connections post a sample image to
 * /classify?timesteps=8 on a server this script starts on loopback, once with batching off
 * (BATCH_MAX_SIZE=1) and once on (the defaults), for a bounded time each. Reports requests/s,
 * p50/p99 latency and the mean engine batch size, and compares the server, in the same run,
 * with the engine alone at that batch size and with the PyTorch reference loop at batch 32
 * (a Python script classifying the same model, with no HTTP at all).
 *
 *   npm run loadtest [-- --duration 15 --connections 32 --steps-per-call 8 --multi-step full]
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { PredictiveLoop } from '../src/engine/predictive-loop.js';
import {
  classifyLoad,
  engineEnv,
  engineThroughput,
  machine,
  meanBatchSize,
  openModel,
  pytorchReference,
  SERVER_LOAD_OPTIONS,
  startServer,
  table,
} from './lib.js';

const { values } = parseArgs({ options: SERVER_LOAD_OPTIONS });
const duration = Number(values.duration);
const connections = Number(values.connections);
const T = 8;
const modelDir = path.resolve(values.model);
const stepsPerCall = values['steps-per-call'];
const body = await readFile(path.join(modelDir, 'samples', '0000-ankle-boot.png'));

console.log(
  `# HTTP load: ${connections} connections, POST /classify?timesteps=${T}, ${duration} s per configuration\n# ${machine()}\n`,
);

const configurations: [string, Record<string, string>][] = [
  ['batching off', { BATCH_MAX_SIZE: '1' }],
  ['batching on', {}],
];
const results = [];
for (const [name, env] of configurations) {
  const server = await startServer({
    MODEL_DIR: modelDir,
    ...engineEnv(values),
    ...env,
  });
  const r = await classifyLoad(server.base, body, { timesteps: T, connections, duration });
  const batch = meanBatchSize(await server.metrics());
  await server.stop();
  const ok = r.requests.total > 0 && r.non2xx === 0 && r.errors === 0;
  results.push({
    name,
    rps: r.requests.average,
    p50: r.latency.p50,
    p99: r.latency.p99,
    batch,
    ok,
    non2xx: r.non2xx,
    errors: r.errors,
  });
}

// The engine alone, at the mean batch size the server reached with batching on.
const on = results[1]!;
const model = await openModel(modelDir, { intraOpThreads: 0 });
const engineBatch = Math.max(1, Math.round(on.batch));
const loop = new PredictiveLoop(model, { stepsPerCall: Number(stepsPerCall) });
const engine = await engineThroughput(loop, engineBatch, T, 5);
await model.release();
const engineImages = engine.sampleStepsPerSecond / (T + 1);
const reference = pytorchReference(
  ['--model', modelDir, '--timesteps', String(T), '--threads', '2', '--seconds', '5'].concat([
    '--batches',
    '32',
  ]),
);
const referenceImages = reference.results[0]!.sampleStepsPerSecond / (T + 1);

console.log(
  table(
    ['configuration', 'requests/s', 'p50 (ms)', 'p99 (ms)', 'mean batch', 'non-2xx', 'errors'],
    results.map((r) => [r.name, r.rps, r.p50, r.p99, r.batch, r.non2xx, r.errors]),
  ),
);
console.log(`\nbatching on / off: ${(on.rps / results[0]!.rps).toFixed(2)}× requests/s (target ≥ 3×)`);
console.log(
  `server with batching on: ${on.rps.toFixed(1)} images/s; engine alone at batch ${engineBatch}: ${engineImages.toFixed(1)} images/s; ` +
    `server / engine ${((on.rps / engineImages) * 100).toFixed(0)}% (target ≥ 80%)`,
);
console.log(
  `PyTorch ${reference.torch} reference loop at batch 32, no HTTP: ${referenceImages.toFixed(1)} images/s; ` +
    `server / PyTorch ${(on.rps / referenceImages).toFixed(2)}× (target ≥ 1.2×)`,
);
if (results.some((r) => !r.ok)) process.exitCode = 1;
