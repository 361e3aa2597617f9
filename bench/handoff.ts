/**
 * The hand-off of real-size images from the HTTP side to the engine, at 224 x 224, measured in
 * one run:
 * - the bytes an image takes to cross (its 8-bit pixels now; float32 before);
 * - what the HTTP side alone decodes on these cores (decodeForModel, 16 at a time, no server);
 * - what a server feeds an engine that answers almost at once (a GPU stand-in: a tiny 224 px
 *   model whose calls cost next to no CPU, each made to block 3 ms as a GPU call would, T = 0),
 *   with 16 and 64 connections, in both isolations: images/s, the
 *   mean batch, and the mean time a request spends outside the engine's queue and calls
 *   (decode, HTTP and the hand-off together);
 * - PEfficientNetB0 at 224 with 16 connections under a cap of 16: its mean batch, and images/s
 *   against the engine alone at that batch (no HTTP, the same thread count).
 *
 *   npm run bench:handoff [-- --duration 10 --effnet-duration 30]
 *
 * Targets (issue 44): the stand-in's feed rate at least 90% of the decode-alone rate; the
 * PEfficientNetB0 server's mean batch at least 12 and its rate at least 0.95x the engine alone.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { decodeForModel } from '../src/image/preprocess.js';
import { readManifest } from '../src/model/manifest.js';
import { PredictiveLoop } from '../src/engine/predictive-loop.js';
import {
  classifyLoad,
  engineThroughput,
  machine,
  meanBatchSize,
  metric,
  openModel,
  paperModel,
  ROOT,
  startServer,
  table,
} from './lib.js';

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    'effnet-duration': { type: 'string', default: '30' },
  },
});
const duration = Number(values.duration);

/** The GPU stand-in: test/fixtures/tiny224 imported once (a convolution and one PCoder). */
function tinyModel(): string {
  const dir = path.join(ROOT, 'build', 'bench-models', 'tiny224');
  if (!existsSync(path.join(dir, 'manifest.json'))) {
    const fixtures = path.join(ROOT, 'test', 'fixtures');
    execFileSync('/usr/bin/python3', [
      path.join(ROOT, 'scripts', 'import_predify.py'),
      ...['--config', path.join(fixtures, 'tiny224.toml')],
      ...['--backbone-module', `${path.join(fixtures, 'tiny224.py')}:build`],
      ...['--random-weights', '3', '--golden', '0', '--out', dir],
      ...['--labels', path.join(ROOT, 'models', 'predify', 'fashion-labels.txt')],
    ]);
  }
  return dir;
}

// A photo-sized upload: a 320 x 240 JPEG of smooth colour and noise, resized by the service.
const raw = Buffer.alloc(320 * 240 * 3);
for (let k = 0; k < raw.length; k++) raw[k] = ((k % 960) / 4 + ((k * 2654435761) >>> 24) / 4) & 255;
const upload = await sharp(raw, { raw: { width: 320, height: 240, channels: 3 } })
  .jpeg({ quality: 90 })
  .toBuffer();

const tiny = tinyModel();
// Each call of the stand-in blocks its thread 3 ms more without using a core, as a call waiting
// on a GPU does (ENGINE_STEP_DELAY_MS, a rehearsal setting).
const GPU_CALL = { ENGINE_FAULTS: '1', ENGINE_STEP_DELAY_MS: '3' };
const spec = (await readManifest(tiny)).input;
console.log(
  `# the hand-off to the engine at ${spec.width} x ${spec.height}: a ${Math.round(upload.length / 1000)} kB JPEG upload, ${duration} s a run\n# ${machine()}\n`,
);
console.log(
  `bytes an image crosses: ${spec.width * spec.height * 3} (8-bit pixels), was ${spec.width * spec.height * 3 * 4} (float32)\n`,
);

async function decodeAlone(seconds: number, concurrency: number): Promise<number> {
  let done = 0;
  const until = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < until) {
        await decodeForModel(upload, spec);
        done++;
      }
    }),
  );
  return done / seconds;
}
const alone = await decodeAlone(duration, 16);
console.log(`the HTTP side's decode alone (decodeForModel, 16 at a time): ${alone.toFixed(1)} images/s\n`);

interface Fed {
  rps: number;
  meanBatch: number;
  outsideMs: number;
  failures: number;
}

async function feed(
  modelDir: string,
  env: Record<string, string>,
  connections: number,
  timesteps: number,
  seconds: number,
): Promise<Fed> {
  const server = await startServer({ MODEL_DIR: modelDir, ...env });
  try {
    const r = await classifyLoad(server.base, upload, {
      timesteps,
      connections,
      duration: seconds,
      timeout: 120,
    });
    const m = await server.metrics();
    const mean = (name: string) => metric(m, `${name}_sum`) / Math.max(1, metric(m, `${name}_count`));
    const engineMs = (mean('predify_queue_wait_seconds') + mean('predify_inference_seconds')) * 1000;
    return {
      rps: r.requests.average,
      meanBatch: meanBatchSize(m),
      outsideMs: r.latency.average - engineMs,
      failures: r.errors + r.timeouts + r.non2xx,
    };
  } finally {
    await server.stop();
  }
}

const rows: (string | number)[][] = [];
const standInRow = (worker: string, connections: number, f: Fed) => [
  worker,
  connections,
  f.rps.toFixed(1),
  `${((100 * f.rps) / alone).toFixed(0)}%`,
  f.meanBatch.toFixed(1),
  f.outsideMs.toFixed(0),
  f.failures,
];
for (const isolation of ['process', 'thread'])
  for (const connections of [16, 64]) {
    const f = await feed(
      tiny,
      { ENGINE_ISOLATION: isolation, BATCH_MAX_SIZE: '64', ...GPU_CALL },
      connections,
      0,
      duration,
    );
    rows.push(standInRow(isolation, connections, f));
  }
// The server without any hand-off: the engine on the HTTP thread (ENGINE_WORKER=false), the
// stand-in's calls without their 3 ms (they would block the HTTP thread): what HTTP, decoding
// and the engine's bookkeeping alone allow on these cores.
for (const connections of [16, 64]) {
  const f = await feed(tiny, { ENGINE_WORKER: 'false', BATCH_MAX_SIZE: '64' }, connections, 0, duration);
  rows.push(standInRow('none (no hand-off)', connections, f));
}
console.log('GPU stand-in (tiny 224 px model, each call 3 ms longer without CPU, T = 0, cap 64):\n');
console.log(
  table(
    [
      'worker',
      'connections',
      'images/s',
      'of decode alone',
      'mean batch',
      'ms outside the engine',
      'failures',
    ],
    rows,
  ),
);

const effnet = paperModel('pefficientnet_b0').dir;
const seconds = Number(values['effnet-duration']);
const served = await feed(effnet, { BATCH_MAX_SIZE: '16' }, 16, 8, seconds);
const model = await openModel(effnet, { intraOpThreads: 0 });
const batch = Math.max(1, Math.round(served.meanBatch));
const engine = await engineThroughput(new PredictiveLoop(model), batch, 8, 10);
await model.release();
const engineRps = engine.sampleStepsPerSecond / 9;
console.log(`\nPEfficientNetB0 at 224, 16 connections, cap 16, T = 8, ${seconds} s:\n`);
console.log(
  table(
    [
      'mean batch',
      'served images/s',
      `engine alone at batch ${batch}, images/s`,
      'served / engine',
      'ms outside the engine',
    ],
    [
      [
        served.meanBatch.toFixed(1),
        served.rps.toFixed(2),
        engineRps.toFixed(2),
        (served.rps / engineRps).toFixed(2),
        served.outsideMs.toFixed(0),
      ],
    ],
  ),
);
