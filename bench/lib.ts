/** Shared pieces of the benchmarks: paths, model loading, timing, tables. */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { loadModel, type LoadedModel } from '../src/model/load-model.js';
import type { Graph, SessionSettings } from '../src/model/onnx-backend.js';
import { elementCount, type FloatTensor } from '../src/tensor.js';
import { PredictiveLoop } from '../src/engine/predictive-loop.js';

/** Repository root (benchmarks run compiled from build/bench/bench/). */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const DEFAULT_MODEL = path.join(ROOT, 'models', 'fashion-pc');
export const quiet = pino({ level: 'warn' });

export function machine(): string {
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  return `${os.cpus().length} × ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, node ${process.version}`;
}

export function openModel(dir: string, settings: Partial<SessionSettings> = {}): Promise<LoadedModel> {
  // Benchmarks compare the step graph with graph-by-graph runs: every graph is opened.
  return loadModel(dir, { providers: ['cpu'], intraOpThreads: 2, ...settings }, quiet, 'all');
}

export function randomImages(loop: PredictiveLoop, batch: number, seed = 1): Float32Array {
  const size = loop.stepper.inputSize;
  const out = new Float32Array(batch * size);
  let s = seed;
  for (let k = 0; k < out.length; k++) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    out[k] = (s / 2 ** 31) * 2 - 1;
  }
  return out;
}

export interface Throughput {
  sampleStepsPerSecond: number;
  seconds: number;
  sessionShare: number;
}

/** batch x (T + 1) sample-timesteps per second of the engine, measured for at least `seconds`. */
export async function engineThroughput(
  loop: PredictiveLoop,
  batch: number,
  timesteps: number,
  seconds = 3,
): Promise<Throughput> {
  const images = randomImages(loop, batch);
  await loop.run(images, batch, 1); // warm-up
  loop.stepper.sessionSeconds = 0;
  let runs = 0;
  const started = performance.now();
  let elapsed: number;
  do {
    await loop.run(images, batch, timesteps);
    runs++;
    elapsed = (performance.now() - started) / 1000;
  } while (elapsed < seconds || runs < 2);
  return {
    sampleStepsPerSecond: (runs * batch * (timesteps + 1)) / elapsed,
    seconds: elapsed,
    sessionShare: loop.stepper.sessionSeconds / elapsed,
  };
}

export interface ReferenceResult {
  batch: number;
  sampleStepsPerSecond: number;
}

export function pytorchReference(args: string[]): { results: ReferenceResult[]; torch: string } {
  const out = execFileSync('/usr/bin/python3', [path.join(ROOT, 'scripts', 'bench_reference.py'), ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return JSON.parse(out) as { results: ReferenceResult[]; torch: string };
}

export function table(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map((c) => (typeof c === 'number' ? format(c) : c)))];
  const widths = headers.map((_, j) => Math.max(...cells.map((r) => String(r[j]).length)));
  const line = (r: (string | number)[]) => `| ${r.map((c, j) => String(c).padEnd(widths[j]!)).join(' | ')} |`;
  return [
    line(cells[0]!),
    `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`,
    ...cells.slice(1).map(line),
  ].join('\n');
}

function format(n: number): string {
  if (Number.isInteger(n)) return String(n);
  return Math.abs(n) >= 100 ? n.toFixed(0) : Math.abs(n) >= 10 ? n.toFixed(1) : n.toFixed(2);
}

export interface Server {
  base: string;
  pid: number;
  metrics(): Promise<string>;
  stop(): Promise<void>;
}

/** Starts dist/server.js on a free loopback port with `env` and waits until it is ready. */
export async function startServer(env: Record<string, string>): Promise<Server> {
  const { spawn } = await import('node:child_process');
  const { createServer } = await import('node:net');
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as { port: number }).port;
  await new Promise((resolve) => probe.close(resolve));
  const child = spawn(process.execPath, [path.join(ROOT, 'dist', 'server.js')], {
    env: { ...process.env, HOST: '127.0.0.1', PORT: String(port), GRPC_PORT: '0', LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (Date.now() > deadline) throw new Error('server did not become ready');
    try {
      if ((await fetch(`${base}/readyz`)).ok) break;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    base,
    pid: child.pid!,
    metrics: async () => (await fetch(`${base}/metrics`)).text(),
    stop: () =>
      new Promise((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/**
 * `connections` clients posting `body` to /classify?timesteps=`timesteps` for `duration` s, or,
 * with `rate`, that many requests a second spread over them.
 */
export async function classifyLoad(
  base: string,
  body: Buffer,
  {
    timesteps,
    connections,
    duration,
    timeout = 10,
    rate,
  }: { timesteps: number; connections: number; duration: number; timeout?: number; rate?: number },
): Promise<import('autocannon').Result> {
  const { default: autocannon } = await import('autocannon');
  return autocannon({
    url: `${base}/classify?timesteps=${timesteps}`,
    method: 'POST',
    headers: { 'content-type': 'image/png' },
    body,
    connections,
    duration,
    timeout,
    // Requests at this rate whatever the answers' pace (connections permitting): arrivals as
    // from many independent users, rather than a fixed set of clients each awaiting its answer.
    ...(rate ? { overallRate: rate } : {}),
  });
}

/** A value of a Prometheus series in text format. */
export function metric(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line ? Number(line.slice(series.length + 1)) : NaN;
}

export function meanBatchSize(metricsText: string): number {
  return metric(metricsText, 'predify_batch_size_sum') / metric(metricsText, 'predify_batch_size_count');
}

/** Resident set size of a process, in MiB (Linux). */
/** The resident memory of a process and of every process under it (an engine run as a child). */
export async function rssMiB(pid: number): Promise<number> {
  const { self, below } = await rssParts(pid);
  return self + below;
}

/** The processes a process started (an engine run as a child), from /proc (Linux). */
export async function childrenOf(pid: number): Promise<number[]> {
  const { readFile, readdir } = await import('node:fs/promises');
  const tasks = await readdir(`/proc/${pid}/task`).catch(() => []);
  const lists = await Promise.all(
    tasks.map((t) => readFile(`/proc/${pid}/task/${t}/children`, 'utf8').catch(() => '')),
  );
  return lists
    .flatMap((list) => list.split(' '))
    .filter(Boolean)
    .map(Number);
}

/** The resident memory of a process itself, and that of all its descendants together. */
export async function rssParts(pid: number): Promise<{ self: number; below: number }> {
  const { readFile } = await import('node:fs/promises');
  const read = (file: string) => readFile(file, 'utf8').catch(() => '');
  const status = await read(`/proc/${pid}/status`);
  const kb = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0);
  const below = await Promise.all((await childrenOf(pid)).map((child) => rssMiB(child)));
  return { self: kb / 1024, below: below.reduce((a, b) => a + b, 0) };
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The q-quantile (0..1) of unsorted numbers. */
export function quantile(values: number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** autocannon, resolved with its result, calling `onResponse` for every answer as it comes. */
export async function loadTest(
  options: import('autocannon').Options,
  onResponse: (status: number, ms: number) => void,
): Promise<import('autocannon').Result> {
  const { default: autocannon } = await import('autocannon');
  return new Promise((resolve, reject) => {
    const run = autocannon(options, (err, res) => (err ? reject(err) : resolve(res)));
    run.on('response', (_client, status, _bytes, ms) => onResponse(status, ms));
  });
}

/**
 * One of the paper's networks at 224 x 224 with random weights, imported from
 * models/predify/<name>.toml into build/bench-models/<name> on first use (never committed).
 */
export function paperModel(name: string): { dir: string; toml: string; backbone: string } {
  const toml = path.join(ROOT, 'models', 'predify', `${name}.toml`);
  const dir = path.join(ROOT, 'build', 'bench-models', name);
  const backbone = name === 'pvgg16' ? 'vgg16' : 'efficientnet_b0';
  if (!existsSync(path.join(dir, 'manifest.json'))) {
    console.log(`importing ${name} at 224 x 224 (random weights) to ${path.relative(ROOT, dir)} ...`);
    execFileSync(
      '/usr/bin/python3',
      [
        path.join(ROOT, 'scripts', 'import_predify.py'),
        ...['--config', toml, '--backbone', backbone, '--random-weights', '0', '--golden', '0', '--out', dir],
      ],
      { stdio: ['ignore', 'inherit', 'inherit'] },
    );
  }
  return { dir, toml, backbone };
}

export interface Flops {
  flopsPerSample: number;
  ceiling: string | null;
  ceilingFlopsPerSample: number;
}

/** The model's FLOP counts and ceiling graphs, made again when the manifest is newer. */
export function flopsOf(name: string, dir: string): { report: Record<string, Flops>; out: string } {
  const out = path.join(ROOT, 'build', 'ceiling', name);
  const report = path.join(out, 'flops.json');
  const manifest = path.join(dir, 'manifest.json');
  const stale =
    !existsSync(report) ||
    !existsSync(path.join(out, 'reference.onnx')) ||
    statSync(report).mtimeMs < statSync(manifest).mtimeMs;
  if (stale)
    execFileSync('/usr/bin/python3', [path.join(ROOT, 'scripts', 'graph_flops.py'), dir, out], {
      stdio: ['ignore', 'inherit', 'inherit'],
    });
  return { report: JSON.parse(readFileSync(report, 'utf8')) as Record<string, Flops>, out };
}

/** Inputs of `graph` at `batch`, filled with small values (the work does not depend on them). */
export function feedsFor(graph: Graph, batch: number): Record<string, FloatTensor> {
  return Object.fromEntries(
    graph.inputs.map((i) => {
      const dims = i.shape.map((d) => (typeof d === 'number' ? d : batch));
      return [i.name, { data: new Float32Array(elementCount(dims)).fill(0.01), dims }];
    }),
  );
}

/** The command line of the benchmarks that load a server: duration, clients, model, engine calls. */
export const SERVER_LOAD_OPTIONS = {
  duration: { type: 'string', default: '15' },
  connections: { type: 'string', default: '32' },
  model: { type: 'string', default: DEFAULT_MODEL },
  'steps-per-call': { type: 'string', default: '8' },
  // which batches take several timesteps per call (ENGINE_MULTI_STEP)
  'multi-step': { type: 'string', default: 'full' },
} as const;

/** The server's engine settings from those options. */
export const engineEnv = (values: { 'steps-per-call': string; 'multi-step': string }) => ({
  ENGINE_STEPS_PER_CALL: values['steps-per-call'],
  ENGINE_MULTI_STEP: values['multi-step'],
});
