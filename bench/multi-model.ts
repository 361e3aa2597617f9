/**
 * Two models in one server: does a slow model stall a fast one? A repository of the shipped
 * model (fast) and the PVGG16 test import (slow: 830 MB of graphs at 32 x 32; run npm test
 * once to create it). For each thread setting, the fast model's latency at T = 8 is measured
 * alone, then while 4 connections keep the slow model busy, in the same run.
 *
 *   npm run bench:multi-model
 */
import { mkdir, readFile, rm, symlink } from 'node:fs/promises';
import path from 'node:path';
import { DEFAULT_MODEL, machine, quantile, ROOT, sleep, startServer, table } from './lib.js';

const SLOW = path.join(ROOT, 'build', 'test-models', 'pvgg16');
const repo = path.join(ROOT, 'build', 'bench-repo');
await rm(repo, { recursive: true, force: true });
await mkdir(repo, { recursive: true });
await symlink(DEFAULT_MODEL, path.join(repo, 'a-fast'));
await symlink(SLOW, path.join(repo, 'b-slow'));
const image = await readFile(path.join(DEFAULT_MODEL, 'samples', '0000-ankle-boot.png'));

console.log(`# one server, two models: the fast one's latency with the slow one busy\n# ${machine()}\n`);
const rows = [];
for (const threads of ['0', '1']) {
  const server = await startServer({ MODEL_DIR: repo, ORT_INTRA_OP_THREADS: threads });
  const post = (model: string, timesteps: number) =>
    fetch(`${server.base}/classify?model=${model}&timesteps=${timesteps}`, {
      method: 'POST',
      headers: { 'content-type': 'image/png' },
      body: new Uint8Array(image),
    }).then((r) => r.json() as Promise<{ model: string }>);
  const fastLatencies = async (n: number) => {
    const out = [];
    for (let k = 0; k < n; k++) {
      const t = performance.now();
      await post('fashion-pc', 8);
      out.push(performance.now() - t);
    }
    return out;
  };
  await fastLatencies(5); // warm-up
  await post('pvgg16', 1);
  const alone = await fastLatencies(40);
  let busy = true;
  let slowDone = 0;
  const load = Array.from({ length: 4 }, async () => {
    while (busy) {
      await post('pvgg16', 8);
      slowDone++;
    }
  });
  await sleep(1000);
  const started = performance.now();
  const contended = await fastLatencies(40);
  const seconds = (performance.now() - started) / 1000;
  busy = false;
  await Promise.all(load);
  await server.stop();
  rows.push([
    threads === '0' ? '0 (onnxruntime chooses: 2 per session)' : '1 per session',
    quantile(alone, 0.5),
    quantile(alone, 0.99),
    quantile(contended, 0.5),
    quantile(contended, 0.99),
    `${(quantile(contended, 0.5) / quantile(alone, 0.5)).toFixed(2)}×`,
    slowDone / seconds,
  ]);
}
console.log(
  table(
    [
      'ORT_INTRA_OP_THREADS',
      'fast p50 alone (ms)',
      'fast p99 alone',
      'fast p50, slow busy',
      'fast p99, slow busy',
      'p50 ratio',
      'slow requests/s',
    ],
    rows,
  ),
);
await rm(repo, { recursive: true, force: true });
