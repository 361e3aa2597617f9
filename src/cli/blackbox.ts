/**
 * npm run attack:blackbox: Square Attack through the HTTP API of a server on this machine, by an
 * attacker reading only the final answer and by one reading every timestep
 * (robustness/blackbox-study.ts). Traffic goes only to loopback: to a server this command
 * starts (node dist/server.js on 127.0.0.1), or to one given with --server on loopback.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_MODEL_DIR } from '../config/config.js';
import { decodeAtModelSize } from '../image/preprocess.js';
import { readManifest, type Manifest } from '../model/manifest.js';
import {
  blackboxStudy,
  httpQuery,
  loopbackUrl,
  type BlackboxImage,
  type BlackboxReport,
} from '../robustness/blackbox-study.js';
import { FASHION_MNIST, ImageSetError, readImageSet, type FashionPart } from '../robustness/image-set.js';
import { ATTACKER_VIEWS, type AttackerView } from '../robustness/square-attack.js';
import { parseCli, wholeNumber } from './args.js';

const usage = `usage: npm run attack:blackbox -- [options]

Square Attack (L-inf, score-based) through POST /classify, once reading only the final answer's
probabilities and once reading every timestep's; reports the queries each needs for 50% success.

  --model DIR      the model (default: the shipped one); the command starts a server on it on
                   127.0.0.1 unless --server is given
  --server URL     a running server on loopback (127.0.0.0/8, ::1, localhost) serving --model
  --api-key KEY    sent as a bearer token
  --images DIR     an ImageFolder, or ${FASHION_MNIST} (default)
  --split dev|final  Fashion-MNIST's test part (default dev)
  --per-class N    images of each class (default 5)
  --epsilon E      the L-inf radius in pixel units, (0, 1] (default 0.05)
  --budget N       queries per image at most (default 500)
  --timesteps T    what each query asks: a number, auto, or default (none named; default 5)
  --views LIST     final, timesteps or both (default final,timesteps)
  --p-init P       Square Attack's first window share (default 0.05)
  --concurrency N  images attacked at once (default 8)
  --seed N         the random draws (default 0)
  --out DIR        where results.json and results.md go (default build/adversarial/blackbox-<model>)`;

const { values } = parseCli(
  {
    options: {
      model: { type: 'string' },
      server: { type: 'string' },
      'api-key': { type: 'string' },
      images: { type: 'string' },
      split: { type: 'string' },
      'per-class': { type: 'string' },
      epsilon: { type: 'string' },
      budget: { type: 'string' },
      timesteps: { type: 'string' },
      views: { type: 'string' },
      'p-init': { type: 'string' },
      concurrency: { type: 'string' },
      seed: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean' },
    },
  },
  usage,
);

function refuse(message: string): never {
  console.error(`attack:blackbox: ${message}\n\n${usage}`);
  process.exit(2);
}

const epsilon = Number(values.epsilon ?? '0.05');
if (!(epsilon > 0 && epsilon <= 1))
  refuse(`--epsilon ${values.epsilon}: must be in (0, 1], in pixel units of images in [0, 1]`);
const levels = Math.floor(epsilon * 255 + 1e-6);
if (levels < 1)
  refuse(`--epsilon ${epsilon}: below one 8-bit level (1/255), an uploaded image cannot change`);
const pInit = Number(values['p-init'] ?? '0.05');
if (!(pInit > 0 && pInit <= 1)) refuse(`--p-init ${values['p-init']}: must be in (0, 1]`);
const views = (values.views ?? 'final,timesteps').split(',') as AttackerView[];
if (!views.length || views.some((v) => !ATTACKER_VIEWS.includes(v)))
  refuse(`--views ${values.views}: final, timesteps or both`);
const split = (values.split ?? 'dev') as FashionPart;
if (split !== 'dev' && split !== 'final') refuse(`--split ${values.split}: dev or final`);
const timesteps = values.timesteps ?? '5';
if (!/^(\d+|auto|default)$/.test(timesteps)) refuse(`--timesteps ${timesteps}: a number, auto or default`);
const budget = Math.max(1, wholeNumber('budget', values.budget, 500));
const perClass = Math.max(1, wholeNumber('per-class', values['per-class'], 5));
const concurrency = Math.max(1, wholeNumber('concurrency', values.concurrency, 8));
const seed = wholeNumber('seed', values.seed, 0);
let server: URL | undefined;
try {
  server = values.server ? loopbackUrl(values.server) : undefined;
} catch (err) {
  refuse((err as Error).message);
}
const modelDir = values.model ?? DEFAULT_MODEL_DIR;

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** node dist/server.js on 127.0.0.1 serving `dir`, once /readyz says it is ready. */
async function startServer(dir: string): Promise<{ url: URL; child: ChildProcess }> {
  const port = await freePort();
  const entry = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'server.js');
  const child = spawn(process.execPath, [entry], {
    env: {
      ...process.env,
      MODEL_DIR: dir,
      HOST: '127.0.0.1',
      PORT: String(port),
      GRPC_PORT: '0',
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const url = new URL(`http://127.0.0.1:${port}`);
  const until = Date.now() + 120_000;
  while (Date.now() < until) {
    if (child.exitCode !== null)
      throw new ImageSetError(`the server on ${dir} exited (${child.exitCode}) before it was ready`);
    try {
      if ((await fetch(new URL('/readyz', url))).ok) return { url, child };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  child.kill();
  throw new ImageSetError(`the server on ${dir} was not ready within 120 s`);
}

async function imagesOf(manifest: Manifest): Promise<BlackboxImage[]> {
  const where = values.images ?? FASHION_MNIST;
  const set = await readImageSet(where, {
    labels: manifest.labels,
    perClass,
    ...(where === FASHION_MNIST ? { fashion: { split: 't10k' as const, part: split } } : {}),
  });
  return Promise.all(
    set.clean.map(async (im) => {
      if ('pixels' in im.source) {
        if (manifest.input.channels !== 1 || manifest.input.width !== im.source.width)
          throw new ImageSetError(`Fashion-MNIST's 28 x 28 grey images suit only a model that takes them`);
        return { id: im.id, label: im.label, pixels: im.source.pixels };
      }
      const { pixels } = await decodeAtModelSize(await readFile(im.source.file), manifest.input, 'model');
      return { id: im.id, label: im.label, pixels: pixels.data };
    }),
  );
}

function markdown(r: BlackboxReport, manifest: Manifest, asked: string): string {
  const q = (x: number | null) => (x === null ? `> ${budget}` : String(x));
  const lines = [
    `# Square Attack through the API: ${manifest.name}`,
    '',
    `${r.attacked} images attacked (${r.wrongFromStart.length} more were wrong before any attack), epsilon ${epsilon} (${levels}/255), budget ${budget} queries, each query ${asked}; ${r.queries} queries in all. Intervals: 95% bootstrap over images.`,
    '',
    '| attacker reads | queries for 50% success | success within the budget |',
    '|---|---|---|',
    ...Object.entries(r.views).map(
      ([view, v]) =>
        `| ${view === 'final' ? 'the final answer' : 'every timestep'} | ${q(v.queriesFor50.median)} (95% ${q(v.queriesFor50.interval95[0])} to ${q(v.queriesFor50.interval95[1])}) | ${(v.successAtBudget.value * 100).toFixed(1)}% (${(v.successAtBudget.interval95[0] * 100).toFixed(1)} to ${(v.successAtBudget.interval95[1] * 100).toFixed(1)}) |`,
    ),
  ];
  if (r.paired) {
    const p = r.paired;
    lines.push(
      '',
      `Paired, ${p.of}: queries for 50% success ${p.queriesFor50.change ?? 'n/a'}` +
        (p.queriesFor50.interval95
          ? ` (95% ${p.queriesFor50.interval95[0]} to ${p.queriesFor50.interval95[1]})`
          : ' (no interval: a median beyond the budget in too many draws)') +
        `; success within the budget ${(p.successAtBudget.value * 100).toFixed(1)} points (95% ${(p.successAtBudget.interval95[0] * 100).toFixed(1)} to ${(p.successAtBudget.interval95[1] * 100).toFixed(1)}); ${p.fewerQueries} images needed fewer queries, ${p.moreQueries} more.`,
    );
  }
  return lines.join('\n');
}

let child: ChildProcess | undefined;
try {
  const manifest = await readManifest(modelDir);
  const images = await imagesOf(manifest);
  if (!images.length) refuse('no images');
  let url = server;
  if (!url) ({ url, child } = await startServer(modelDir));
  const asked =
    timesteps === 'default' ? 'naming no timesteps (the served default)' : `timesteps=${timesteps}`;
  console.error(
    `attack:blackbox: ${images.length} images of ${manifest.name} through ${url.origin}, ${asked}`,
  );
  const started = performance.now();
  const report = await blackboxStudy({
    images,
    shape: manifest.input,
    views,
    square: { epsilon: levels, budget, pInit },
    seed,
    concurrency,
    query: httpQuery(url, manifest, { timesteps, apiKey: values['api-key'] }),
    onProgress: (line) => console.error(`attack:blackbox: ${line}`),
  });
  const seconds = (performance.now() - started) / 1000;
  const out = values.out ?? path.join('build', 'adversarial', `blackbox-${manifest.name}`);
  await mkdir(out, { recursive: true });
  const record = {
    model: manifest.name,
    server: child ? 'started by the command on 127.0.0.1' : url.origin,
    request: asked,
    epsilon,
    epsilonLevels: levels,
    ...report,
    imageSource: values.images ?? `${FASHION_MNIST} t10k ${split}`,
    seconds: Math.round(seconds),
    command: `npm run attack:blackbox -- ${process.argv.slice(2).join(' ')}`,
    measuredAt: new Date().toISOString(),
  };
  await writeFile(path.join(out, 'results.json'), JSON.stringify(record, null, 1) + '\n');
  const md = markdown(report, manifest, asked);
  await writeFile(path.join(out, 'results.md'), md + '\n');
  console.log(md);
  console.log(`\nwrote ${out}/results.json and results.md in ${seconds.toFixed(0)}s`);
} catch (err) {
  if (!(err instanceof ImageSetError)) throw err;
  console.error(`attack:blackbox: ${err.message}`);
  process.exitCode = 2;
} finally {
  child?.kill('SIGTERM');
}
