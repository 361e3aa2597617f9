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
 *   against the engine alone at that batch (the server's engine and settings, kept busy by that
 *   many requests at a time without HTTP), measured just before and just after the served run.
 *
 * Each stand-in setting runs twice (A B C, then C B A) and decoding alone before and after them,
 * so that this machine's drift over minutes weighs on each alike; the tables give each run.
 *
 *   npm run bench:handoff [-- --duration 10 --effnet-duration 30 --step-ms 3 --part all|feed|effnet]
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
import { engineSettings, loadConfig } from '../src/config/config.js';
import { LocalEngine } from '../src/engine/local-engine.js';
import {
  classifyLoad,
  machine,
  meanBatchSize,
  metric,
  paperModel,
  quiet,
  ROOT,
  sleep,
  startServer,
  table,
} from './lib.js';

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    'effnet-duration': { type: 'string', default: '30' },
    'step-ms': { type: 'string', default: '3' },
    part: { type: 'string', default: 'all' },
  },
});
if (!['all', 'feed', 'effnet'].includes(values.part)) {
  console.error(`--part is all, feed or effnet, not ${values.part}`);
  process.exit(2);
}
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
interface Fed {
  rps: number;
  meanBatch: number;
  outsideMs: number;
  failures: number;
  /** means over the run of the gauges: images the engine holds, and images handed over that it has not taken in */
  held: number;
  inTransit: number;
}

/** A gauge's value summed over its models, from Prometheus text. */
function gauge(text: string, name: string): number {
  return text
    .split('\n')
    .filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `))
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
}

/** Reads the engine's two gauges every 250 ms until stopped; their means. */
function watchGauges(server: { metrics(): Promise<string> }) {
  const seen: { held: number; inTransit: number }[] = [];
  let watching = true;
  const done = (async () => {
    while (watching) {
      const m = await server.metrics();
      seen.push({
        held: gauge(m, 'predify_engine_in_flight'),
        inTransit: gauge(m, 'predify_engine_in_transit'),
      });
      await sleep(250);
    }
  })();
  return async () => {
    watching = false;
    await done;
    const mean = (f: (x: (typeof seen)[number]) => number) =>
      seen.reduce((a, x) => a + f(x), 0) / seen.length;
    return { held: mean((x) => x.held), inTransit: mean((x) => x.inTransit) };
  };
}

/** An engine's steady state: images/s, the share of the time it was stepping, its cost per sample. */
interface Steady {
  rps: number;
  busy: number;
  msPerSampleStep: number;
}

/**
 * Steady-state windows start once every request has been answered a few times, and run between
 * two ends of engine calls, so that they hold whole calls only.
 */
const STEADY_AFTER_S = 15;

async function feed(
  modelDir: string,
  env: Record<string, string>,
  connections: number,
  timesteps: number,
  seconds: number,
): Promise<Fed> {
  const server = await startServer({ MODEL_DIR: modelDir, ...env });
  try {
    const stopWatching = watchGauges(server);
    const r = await classifyLoad(server.base, upload, {
      timesteps,
      connections,
      duration: seconds,
      timeout: 120,
    });
    const gauges = await stopWatching();
    const m = await server.metrics();
    const mean = (name: string) => metric(m, `${name}_sum`) / Math.max(1, metric(m, `${name}_count`));
    const engineMs = (mean('predify_queue_wait_seconds') + mean('predify_inference_seconds')) * 1000;
    return {
      rps: r.requests.average,
      meanBatch: meanBatchSize(m),
      outsideMs: r.latency.average - engineMs,
      failures: r.errors + r.timeouts + r.non2xx,
      ...gauges,
    };
  } finally {
    await server.stop();
  }
}

/**
 * What the HTTP side alone feeds, what it feeds through the hand-off in each isolation, and what
 * decoding alone gives. This machine's speed drifts over minutes, so every setting runs twice, in
 * the order A B C then C B A, and the two runs are averaged: a steady drift then weighs on each
 * setting alike.
 */
async function feedPart(): Promise<void> {
  const CONNECTIONS = [16, 64];
  // The HTTP side alone: no hand-off, and an engine that costs only its host's share
  // (normalising and batching), on the HTTP thread.
  const settings: { worker: string; env: Record<string, string> }[] = [
    { worker: 'HTTP side alone (no hand-off)', env: { ENGINE_WORKER: 'false' } },
    ...['process', 'thread'].map((isolation) => ({
      worker: isolation,
      env: { ENGINE_ISOLATION: isolation, ENGINE_STEP_DELAY_MS: String(stepMs) },
    })),
  ];
  const runs = new Map<string, Fed[]>();
  const decoded: number[] = [await decodeAlone(duration, 16)];
  for (const order of [settings, [...settings].reverse()])
    for (const { worker, env } of order)
      for (const connections of CONNECTIONS) {
        const key = `${worker}/${connections}`;
        const fed = await feed(tiny, { ...env, BATCH_MAX_SIZE: '64', ...STAND_IN }, connections, 0, duration);
        runs.set(key, [...(runs.get(key) ?? []), fed]);
      }
  decoded.push(await decodeAlone(duration, 16));
  const alone = (decoded[0]! + decoded[1]!) / 2;
  const averaged = (key: string): Fed => {
    const [a, b] = runs.get(key)!;
    const mean = (f: (x: Fed) => number) => (f(a!) + f(b!)) / 2;
    return {
      rps: mean((x) => x.rps),
      meanBatch: mean((x) => x.meanBatch),
      outsideMs: mean((x) => x.outsideMs),
      failures: a!.failures + b!.failures,
      held: mean((x) => x.held),
      inTransit: mean((x) => x.inTransit),
    };
  };
  const share = (rps: number, of: number) => `${((100 * rps) / of).toFixed(0)}%`;
  const httpSide = (connections: number) => averaged(`${settings[0]!.worker}/${connections}`);
  const rows = settings.flatMap(({ worker }) =>
    CONNECTIONS.map((connections) => {
      const f = averaged(`${worker}/${connections}`);
      const each = runs.get(`${worker}/${connections}`)!.map((x) => x.rps.toFixed(1));
      return [
        worker,
        connections,
        `${f.rps.toFixed(1)} (${each.join(', ')})`,
        share(f.rps, httpSide(connections).rps),
        share(f.rps, alone),
        f.meanBatch.toFixed(1),
        f.outsideMs.toFixed(0),
        `${f.held.toFixed(1)} / ${f.inTransit.toFixed(1)}`,
        f.failures,
      ];
    }),
  );
  console.log(`GPU stand-in (no graph run, each call ${stepMs} ms without using a core, T = 0, cap 64):\n`);
  console.log(
    table(
      [
        'worker',
        'connections',
        'images/s (each run)',
        'of the HTTP side alone',
        'of decode alone',
        'mean batch',
        'ms outside the engine',
        'images held / in transit',
        'failures',
      ],
      [
        [
          'decode alone, no server',
          16,
          `${alone.toFixed(1)} (${decoded.map((d) => d.toFixed(1)).join(', ')})`,
          '',
          '100%',
          '',
          '',
          '',
          '',
        ],
        ...rows,
      ],
    ),
  );
  const ratios = settings
    .slice(1)
    .flatMap(({ worker }) => CONNECTIONS.map((c) => averaged(`${worker}/${c}`).rps / httpSide(c).rps));
  const lowest = Math.min(...ratios);
  console.log(
    `\nfeed through the hand-off: ${(100 * lowest).toFixed(0)}-${(100 * Math.max(...ratios)).toFixed(0)}% of the HTTP side alone (target >= 90%: ${lowest >= 0.9 ? 'met' : 'missed'})`,
  );
}

/**
 * What a server does in steady state, from its own counters over a window that starts once every
 * connection has been answered a few times and ends before the load does. A request here takes
 * seconds: counted by answers from the load's start to its end, the first round's wait and the
 * answers cut off at the end would lower the rate by about half a request's time over the run's,
 * and the few answers in a window would make it jump by a request's worth.
 */
async function servedSteady(
  modelDir: string,
  env: Record<string, string>,
  connections: number,
  timesteps: number,
  seconds: number,
): Promise<Fed & Steady> {
  const warm = STEADY_AFTER_S;
  const server = await startServer({ MODEL_DIR: modelDir, ...env });
  try {
    const load = classifyLoad(server.base, upload, {
      timesteps,
      connections,
      duration: warm + seconds + 5,
      timeout: 120,
    });
    await sleep(warm * 1000);
    // The engine's counters move when a call ends, and a call of several timesteps takes seconds:
    // the window runs from the first call to end after the warm-up to the last to end before its
    // close, so that it holds whole calls only.
    const snapshots: { at: number; m: string }[] = [];
    const until = performance.now() + seconds * 1000;
    while (performance.now() < until) {
      snapshots.push({ at: performance.now(), m: await server.metrics() });
      await sleep(100);
    }
    const work = (x: { m: string }) => metric(x.m, 'predify_timesteps_total');
    const ends = snapshots.filter((x, k) => k > 0 && work(x) !== work(snapshots[k - 1]!));
    const meanOf = (name: string) => snapshots.reduce((a, x) => a + gauge(x.m, name), 0) / snapshots.length;
    const [first, last] = [ends[0]!, ends.at(-1)!];
    const r = await load;
    const delta = (series: string) => metric(last.m, series) - metric(first.m, series);
    const steady = (series: string, labels = '') =>
      delta(`${series}_sum${labels}`) / delta(`${series}_count${labels}`);
    const engineMs = (steady('predify_queue_wait_seconds') + steady('predify_inference_seconds')) * 1000;
    const window = (last.at - first.at) / 1000;
    const stepping = delta('predify_engine_step_seconds_sum');
    return {
      // Images' worth of work done in the window: a sample-step a timestep of one image. Counting
      // answers instead would lump a whole request's work into its last step's moment.
      rps: delta('predify_timesteps_total') / (timesteps + 1) / window,
      busy: stepping / window,
      msPerSampleStep: (stepping * 1000) / delta('predify_batch_size_sum'),
      meanBatch: steady('predify_batch_size'),
      outsideMs: steady('predify_http_request_duration_seconds', '{route="/classify"}') * 1000 - engineMs,
      failures: r.errors + r.timeouts + r.non2xx,
      held: meanOf('predify_engine_in_flight'),
      inTransit: meanOf('predify_engine_in_transit'),
    };
  } finally {
    await server.stop();
  }
}

/** PEfficientNetB0 served at 224 against the engine alone at the batch the server held. */
async function effnetPart(): Promise<void> {
  const effnet = paperModel('pefficientnet_b0').dir;
  const seconds = Number(values['effnet-duration']);
  /**
   * The engine alone at the served batch: the server's own engine and settings (cap 16, its steps
   * per call, its threads) on this thread, kept busy by `clients` requests at a time that each
   * submit again as soon as they are answered: no HTTP, no decoding, no hand-off.
   */
  const engineAlone = async (clients: number): Promise<Steady> => {
    const engine = await LocalEngine.open(
      engineSettings(loadConfig({ MODEL_DIR: effnet, BATCH_MAX_SIZE: '16' })),
      quiet,
    );
    try {
      const image = (k: number) => Float32Array.from({ length: 3 * 224 * 224 }, (_, j) => Math.sin(k + j));
      const images = Array.from({ length: clients }, (_, k) => image(k));
      const once = (x: Float32Array) => engine.submit({ image: x, timesteps: 8 });
      const warmStart = performance.now();
      await Promise.all(images.map(once)); // warm-up, and how long one request takes
      const requestMs = performance.now() - warmStart;
      const calls: { at: number; ms: number; sampleSteps: number }[] = [];
      engine.onStep = (stats) =>
        calls.push({ at: performance.now(), ms: stats.ms, sampleSteps: stats.batchSize });
      const from = performance.now() + STEADY_AFTER_S * 1000;
      const stop = from + (seconds + 5) * 1000;
      // Spread over one request's time, as a server's requests arrive, not all at once.
      await Promise.all(
        images.map(async (x, k) => {
          await sleep((k * requestMs) / clients);
          while (performance.now() < stop) await once(x);
        }),
      );
      const inWindow = calls.filter((c) => c.at >= from && c.at <= from + seconds * 1000);
      const first = inWindow[0]!.at;
      const counted = inWindow.filter((c) => c.at > first);
      const window = (counted.at(-1)!.at - first) / 1000;
      const stepMs = counted.reduce((sum, c) => sum + c.ms, 0);
      const sampleSteps = counted.reduce((sum, c) => sum + c.sampleSteps, 0);
      return {
        rps: sampleSteps / 9 / window,
        busy: stepMs / 1000 / window,
        msPerSampleStep: stepMs / sampleSteps,
      };
    } finally {
      await engine.close();
    }
  };
  // This machine's speed drifts over minutes: the engine alone is measured on both sides of the
  // served run, at the batch the server held, and the two are averaged.
  const before = await engineAlone(14);
  const served = await servedSteady(effnet, { BATCH_MAX_SIZE: '16' }, 16, 8, seconds);
  const batch = Math.max(1, Math.round(served.meanBatch));
  const beforeAtBatch = batch === 14 ? before : await engineAlone(batch);
  const after = await engineAlone(batch);
  const engineRps = (beforeAtBatch.rps + after.rps) / 2;
  const ratio = served.rps / engineRps;
  console.log(
    `\nPEfficientNetB0 at 224, 16 connections, cap 16, T = 8; each a ${seconds} s window from ${STEADY_AFTER_S} s in:\n`,
  );
  const pct = (x: number) => `${(100 * x).toFixed(0)}%`;
  console.log(
    table(
      [
        '',
        'mean batch',
        'images/s',
        'engine stepping',
        'ms a sample-step',
        'ms outside the engine',
        'images held / in transit',
      ],
      [
        [
          'served',
          served.meanBatch.toFixed(1),
          served.rps.toFixed(2),
          pct(served.busy),
          served.msPerSampleStep.toFixed(1),
          served.outsideMs.toFixed(0),
          `${served.held.toFixed(1)} / ${served.inTransit.toFixed(1)}`,
        ],
        ...[
          ['engine alone, before', beforeAtBatch],
          ['engine alone, after', after],
        ].map(([name, e]) => {
          const x = e as Steady;
          return [name as string, batch, x.rps.toFixed(2), pct(x.busy), x.msPerSampleStep.toFixed(1), '', ''];
        }),
      ],
    ),
  );
  console.log(
    `\nmean batch ${served.meanBatch.toFixed(1)} (target >= 12: ${served.meanBatch >= 12 ? 'met' : 'missed'}); served / engine alone at batch ${batch} ${ratio.toFixed(2)} (target >= 0.95: ${ratio >= 0.95 ? 'met' : 'missed'})`,
  );
}

if (values.part !== 'effnet') await feedPart();
if (values.part !== 'feed') await effnetPart();
