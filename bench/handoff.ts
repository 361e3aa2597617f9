/**
 * The hand-off of real-size images from the HTTP side to the engine, at 224 x 224, measured in
 * one run:
 * - the bytes an image takes to cross (its 8-bit pixels now; float32 before);
 * - what decoding alone gives on these cores (decodeForModel, 16 at a time, no server);
 * - what the HTTP side alone feeds: the server with its engine on the HTTP thread, no hand-off,
 *   and a stand-in that runs no graph and answers at once (ENGINE_WORKER=false,
 *   ENGINE_STAND_IN=true): receiving, decoding, normalising, batching and answering, nothing else;
 * - what a server feeds a GPU stand-in through the hand-off, in both isolations, with 16 and 64
 *   connections: the stand-in runs no graph and waits --step-ms a call without using a core, as
 *   a thread waiting on a GPU does (ENGINE_STAND_IN, an ENGINE_FAULTS rehearsal setting), at
 *   T = 0 under a cap of 64: images/s, the mean batch, and the mean time a request spends outside
 *   the engine's queue and calls (HTTP, decoding and the hand-off together);
 * - PEfficientNetB0 at 224 with 16 connections under a cap of 16: its mean batch, and images/s
 *   against the engine alone at that batch (no HTTP, the server's steps per call and threads),
 *   measured just before and just after the served run.
 *
 *   npm run bench:handoff [-- --duration 10 --effnet-duration 30 --step-ms 3]
 *
 * Targets (issue 44): the stand-in's feed at least 90% of what the HTTP side alone feeds; the
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
    'step-ms': { type: 'string', default: '3' },
  },
});
const duration = Number(values.duration);

/**
 * The model whose manifest the stand-in serves: test/fixtures/tiny224 imported once (a 224 px
 * input, ten classes, one PCoder). The stand-in runs none of its graphs.
 */
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
const stepMs = Number(values['step-ms']);
const STAND_IN = { ENGINE_FAULTS: '1', ENGINE_STAND_IN: 'true' };
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

const CONNECTIONS = [16, 64];
// The HTTP side alone: no hand-off, and an engine that costs only its host's share
// (normalising and batching), on the HTTP thread.
const httpSide = new Map<number, Fed>();
for (const connections of CONNECTIONS)
  httpSide.set(
    connections,
    await feed(tiny, { ENGINE_WORKER: 'false', BATCH_MAX_SIZE: '64', ...STAND_IN }, connections, 0, duration),
  );
const handedOff: { isolation: string; connections: number; fed: Fed }[] = [];
for (const isolation of ['process', 'thread'])
  for (const connections of CONNECTIONS) {
    const env = { ENGINE_ISOLATION: isolation, BATCH_MAX_SIZE: '64', ENGINE_STEP_DELAY_MS: String(stepMs) };
    handedOff.push({
      isolation,
      connections,
      fed: await feed(tiny, { ...env, ...STAND_IN }, connections, 0, duration),
    });
  }

const share = (rps: number, of: number) => `${((100 * rps) / of).toFixed(0)}%`;
const row = (worker: string, connections: number | string, f: Fed) => [
  worker,
  connections,
  f.rps.toFixed(1),
  share(f.rps, httpSide.get(Number(connections))?.rps ?? NaN),
  share(f.rps, alone),
  f.meanBatch.toFixed(1),
  f.outsideMs.toFixed(0),
  f.failures,
];
console.log(`GPU stand-in (no graph run, each call ${stepMs} ms without using a core, T = 0, cap 64):\n`);
console.log(
  table(
    [
      'worker',
      'connections',
      'images/s',
      'of the HTTP side alone',
      'of decode alone',
      'mean batch',
      'ms outside the engine',
      'failures',
    ],
    [
      ['decode alone, no server', 16, alone.toFixed(1), '', '100%', '', '', ''],
      ...CONNECTIONS.map((c) => row('HTTP side alone (no hand-off)', c, httpSide.get(c)!)),
      ...handedOff.map(({ isolation, connections, fed }) => row(isolation, connections, fed)),
    ],
  ),
);
const ratios = handedOff.map(({ connections, fed }) => fed.rps / httpSide.get(connections)!.rps);
const lowest = Math.min(...ratios);
console.log(
  `\nfeed through the hand-off: ${(100 * lowest).toFixed(0)}-${(100 * Math.max(...ratios)).toFixed(0)}% of the HTTP side alone (target >= 90%: ${lowest >= 0.9 ? 'met' : 'missed'})`,
);

const effnet = paperModel('pefficientnet_b0').dir;
const seconds = Number(values['effnet-duration']);
const STEPS_PER_CALL = 8; // the server's default ENGINE_STEPS_PER_CALL
const engineAlone = async (batch: number) => {
  const model = await openModel(effnet, { intraOpThreads: 0 });
  try {
    const loop = new PredictiveLoop(model, { stepsPerCall: STEPS_PER_CALL });
    return (await engineThroughput(loop, batch, 8, 10)).sampleStepsPerSecond / 9;
  } finally {
    await model.release();
  }
};
// This machine's speed drifts over minutes: the engine alone is measured on both sides of the
// served run, at the batch the server held, and the two are averaged.
const before = await engineAlone(14);
const served = await feed(effnet, { BATCH_MAX_SIZE: '16' }, 16, 8, seconds);
const batch = Math.max(1, Math.round(served.meanBatch));
const beforeAtBatch = batch === 14 ? before : await engineAlone(batch);
const after = await engineAlone(batch);
const engineRps = (beforeAtBatch + after) / 2;
console.log(`\nPEfficientNetB0 at 224, 16 connections, cap 16, T = 8, ${seconds} s:\n`);
console.log(
  table(
    [
      'mean batch',
      'served images/s',
      `engine alone at batch ${batch}, images/s (before, after)`,
      'served / engine',
      'ms outside the engine',
    ],
    [
      [
        served.meanBatch.toFixed(1),
        served.rps.toFixed(2),
        `${engineRps.toFixed(2)} (${beforeAtBatch.toFixed(2)}, ${after.toFixed(2)})`,
        (served.rps / engineRps).toFixed(2),
        served.outsideMs.toFixed(0),
      ],
    ],
  ),
);
console.log(
  `\nmean batch ${served.meanBatch.toFixed(1)} (target >= 12: ${served.meanBatch >= 12 ? 'met' : 'missed'}); served / engine alone ${(served.rps / engineRps).toFixed(2)} (target >= 0.95: ${served.rps / engineRps >= 0.95 ? 'met' : 'missed'})`,
);
